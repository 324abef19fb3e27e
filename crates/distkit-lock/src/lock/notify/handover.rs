//! The handover announcement: `granted <fencing token> <length of lock> <lock><token>`,
//! published by `mutex_hand_over` (mutex_common.lua) in the new holder's inbox. The lock is
//! named by its release channel; the length prefix lets the token contain anything, spaces
//! included.

/// Parses `granted <fence> <length of lock> <lock><token>` (the lock is the lock's release
/// channel; the token may contain anything, spaces included).
pub(super) fn parse_handover(payload: &str) -> Option<(&str, &str, u64)> {
    let rest = payload.strip_prefix("granted ")?;
    let (fence, rest) = rest.split_once(' ')?;
    let (length, rest) = rest.split_once(' ')?;
    let (lock, token) = rest.split_at_checked(length.parse().ok()?)?;
    Some((lock, token, fence.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_handover;

    #[test]
    fn handover_messages_name_lock_token_and_fence() {
        let lock = "distkit-locks:{a b}:released";
        let payload = format!("granted 42 {} {lock}owner with spaces", lock.len());
        assert_eq!(
            parse_handover(&payload),
            Some((lock, "owner with spaces", 42))
        );
    }

    #[test]
    fn malformed_handover_messages_are_ignored() {
        for payload in [
            "released",
            "granted",
            "granted x 3 abcd",
            "granted 1 99 short",
            "granted 1 z abc",
            "granted -1 1 ab",
        ] {
            assert_eq!(parse_handover(payload), None, "{payload}");
        }
    }
}
