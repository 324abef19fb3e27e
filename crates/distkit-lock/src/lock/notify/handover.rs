//! The handover announcement: `granted <fencing token> <previous fencing token> <length of
//! lock> <lock><token>`, published by `mutex_hand_over` (mutex_common.lua) in the new
//! holder's inbox. The lock is named by its release channel; the length prefix lets the
//! token contain anything, spaces included.

/// A handover as announced: its fencing token, and the lock's fencing token before it (the
/// waiter's proof that no acquisition came between its refused attempt and the handover:
/// fencing tokens follow the server clock, so they do not simply count up by one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HandoverGrant {
    /// The fencing token of the handover.
    pub(crate) fence: u64,
    /// The lock's last fencing token before the handover (0 when it had none).
    pub(crate) previous: u64,
}

/// Parses `granted <fence> <previous fence> <length of lock> <lock><token>` (the lock is the
/// lock's release channel; the token may contain anything, spaces included).
pub(super) fn parse_handover(payload: &str) -> Option<(&str, &str, HandoverGrant)> {
    let rest = payload.strip_prefix("granted ")?;
    let (fence, rest) = rest.split_once(' ')?;
    let (previous, rest) = rest.split_once(' ')?;
    let (length, rest) = rest.split_once(' ')?;
    let (lock, token) = rest.split_at_checked(length.parse().ok()?)?;
    let grant = HandoverGrant {
        fence: fence.parse().ok()?,
        previous: previous.parse().ok()?,
    };
    Some((lock, token, grant))
}

#[cfg(test)]
mod tests {
    use super::{HandoverGrant, parse_handover};

    #[test]
    fn handover_messages_name_lock_token_and_fence() {
        let lock = "distkit-locks:{a b}:released";
        let payload = format!(
            "granted 1796135456937809 41 {} {lock}owner with spaces",
            lock.len()
        );
        let grant = HandoverGrant {
            fence: 1_796_135_456_937_809,
            previous: 41,
        };
        assert_eq!(
            parse_handover(&payload),
            Some((lock, "owner with spaces", grant))
        );
    }

    #[test]
    fn malformed_handover_messages_are_ignored() {
        for payload in [
            "released",
            "granted",
            "granted x 0 3 abcd",
            "granted 1 0 99 short",
            "granted 1 0 z abc",
            "granted -1 0 1 ab",
            "granted 2 -1 1 ab",
            "granted 2 1 ab",
        ] {
            assert_eq!(parse_handover(payload), None, "{payload}");
        }
    }
}
