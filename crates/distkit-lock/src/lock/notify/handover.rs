//! The handover announcement: `granted <fencing token> <previous fencing token> <length of
//! lock> <lock><token>`, published by `mutex_hand_over` (mutex_common.lua) in the new
//! holder's inbox. The lock is named by its release channel; the length prefix lets the
//! token contain anything, spaces included.
//!
//! The message only wakes the waiter it names: anyone allowed to publish on the inbox can
//! forge it, so its fencing tokens are never used (the waiter's next attempt confirms the
//! handover and takes the fencing token from Redis's reply).

/// Parses `granted <fence> <previous fence> <length of lock> <lock><token>` (the lock is the
/// lock's release channel; the token may contain anything, spaces included) into the lock
/// and the token.
pub(super) fn parse_handover(payload: &str) -> Option<(&str, &str)> {
    let rest = payload.strip_prefix("granted ")?;
    let (fence, rest) = rest.split_once(' ')?;
    let (previous, rest) = rest.split_once(' ')?;
    let (length, rest) = rest.split_once(' ')?;
    let (lock, token) = rest.split_at_checked(length.parse().ok()?)?;
    // Well-formed numbers, or not a handover announcement.
    fence.parse::<u64>().ok()?;
    previous.parse::<u64>().ok()?;
    Some((lock, token))
}

#[cfg(test)]
mod tests {
    use super::parse_handover;

    #[test]
    fn handover_messages_name_lock_and_token() {
        let lock = "distkit-locks:{a b}:released";
        let payload = format!(
            "granted 1796135456937809 41 {} {lock}owner with spaces",
            lock.len()
        );
        assert_eq!(parse_handover(&payload), Some((lock, "owner with spaces")));
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
