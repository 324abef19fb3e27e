use std::fmt;
use std::ops::Deref;

use crate::DistkitError;

/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// A validated name: a counter key, a counter prefix, a lock key or a lock namespace.
///
/// A valid key is non-empty, at most 255 bytes long (bytes, not characters) and contains no
/// `:`, the separator distkit uses when it builds Redis key names. Anything else is allowed:
/// spaces, unicode and braces are stored as they are.
///
/// A key can't be changed once validated: it dereferences to `&str` but offers no `DerefMut`.
///
/// ```
/// use distkit_core::DistkitRedisKey;
///
/// let key = DistkitRedisKey::new("tenant-42".to_string())?;
/// assert_eq!(key.as_str(), "tenant-42");
///
/// assert!(DistkitRedisKey::new("tenant:42".to_string()).is_err());
/// let sanitized = DistkitRedisKey::try_sanitize("tenant:42".to_string())?;
/// assert_eq!(&*sanitized, "tenant%3A42");
/// # Ok::<(), distkit_core::DistkitError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistkitRedisKey(String);

impl DistkitRedisKey {
    /// Validates `key`.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidRedisKey`] when the key is empty, longer than 255 bytes or
    /// contains a `:`; the message names the rule.
    pub fn new(key: String) -> Result<Self, DistkitError> {
        if key.is_empty() {
            return Err(DistkitError::InvalidRedisKey(
                "a key must not be empty".to_owned(),
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(DistkitError::InvalidRedisKey(format!(
                "a key must be at most {MAX_KEY_BYTES} bytes long, this one has {} bytes",
                key.len()
            )));
        }
        if key.contains(':') {
            return Err(DistkitError::InvalidRedisKey(format!(
                "a key must not contain ':' (found in {key:?}); try_sanitize escapes it"
            )));
        }
        Ok(Self(key))
    }

    /// Validates `key`, panicking when it is invalid.
    ///
    /// Meant for keys written in the source code, where an invalid one is a bug.
    ///
    /// # Panics
    ///
    /// When [`new`](Self::new) would return an error.
    #[expect(clippy::panic, reason = "the documented contract of this constructor")]
    pub fn new_or_panic(key: String) -> Self {
        match Self::new(key) {
            Ok(key) => key,
            Err(error) => panic!("{error}"),
        }
    }

    /// Escapes `key` into a valid key, then validates it: every `%` becomes `%25` and every
    /// `:` becomes `%3A` (percent-encoding of those two characters only).
    ///
    /// The escape is **injective**: two different inputs never give the same key (every `%`
    /// of the result starts an escape, so the input can be read back), so sanitized
    /// user-supplied names never share a counter or a lock by accident. `"tenant:42"` becomes
    /// `"tenant%3A42"` and `"tenant4:2"` becomes `"tenant4%3A2"`. A name with neither `:`
    /// nor `%` is unchanged.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidRedisKey`] when the key is empty or, escaped, longer than 255
    /// bytes.
    pub fn try_sanitize(key: String) -> Result<Self, DistkitError> {
        if key.contains([':', '%']) {
            let mut escaped = String::with_capacity(key.len().saturating_add(8));
            for character in key.chars() {
                match character {
                    '%' => escaped.push_str("%25"),
                    ':' => escaped.push_str("%3A"),
                    other => escaped.push(other),
                }
            }
            Self::new(escaped)
        } else {
            Self::new(key)
        }
    }

    /// Like [`try_sanitize`](Self::try_sanitize), panicking when the key is still invalid.
    ///
    /// # Panics
    ///
    /// When [`try_sanitize`](Self::try_sanitize) would return an error.
    #[expect(clippy::panic, reason = "the documented contract of this constructor")]
    pub fn sanitize_or_panic(key: String) -> Self {
        match Self::try_sanitize(key) {
            Ok(key) => key,
            Err(error) => panic!("{error}"),
        }
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DistkitRedisKey {
    type Error = DistkitError;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl TryFrom<&str> for DistkitRedisKey {
    type Error = DistkitError;

    fn try_from(key: &str) -> Result<Self, Self::Error> {
        Self::new(key.to_owned())
    }
}

impl fmt::Display for DistkitRedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DistkitRedisKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Deref for DistkitRedisKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(result: Result<DistkitRedisKey, DistkitError>) -> String {
        match result {
            Err(DistkitError::InvalidRedisKey(rule)) => rule,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn ordinary_names_spaces_unicode_and_braces_are_valid() {
        for name in [
            "a",
            "tenant-42",
            "with space",
            "ünïcødé ✓",
            "{tag}",
            "x".repeat(255).as_str(),
        ] {
            let key = DistkitRedisKey::new(name.to_owned()).unwrap();
            assert_eq!(key.as_str(), name);
            assert_eq!(key.to_string(), name);
            assert_eq!(&*key, name);
            assert_eq!(key.as_ref(), name);
        }
    }

    #[test]
    fn empty_key_is_rejected_with_its_rule() {
        assert!(rule_of(DistkitRedisKey::new(String::new())).contains("empty"));
    }

    #[test]
    fn length_limit_counts_bytes_not_characters() {
        // 128 two-byte characters: 128 chars but 256 bytes.
        let rule = rule_of(DistkitRedisKey::new("é".repeat(128)));
        assert!(rule.contains("255 bytes"), "{rule}");
        assert!(DistkitRedisKey::new("é".repeat(127)).is_ok());
        assert!(rule_of(DistkitRedisKey::new("x".repeat(256))).contains("256 bytes"));
    }

    #[test]
    fn colon_is_rejected_and_sanitize_escapes_it() {
        assert!(rule_of(DistkitRedisKey::new("tenant:42".into())).contains("':'"));
        assert_eq!(
            DistkitRedisKey::try_sanitize("tenant:42".into())
                .unwrap()
                .as_str(),
            "tenant%3A42"
        );
        assert_eq!(
            DistkitRedisKey::sanitize_or_panic("::a::b".into()).as_str(),
            "%3A%3Aa%3A%3Ab"
        );
        assert_eq!(
            DistkitRedisKey::try_sanitize("plain".into())
                .unwrap()
                .as_str(),
            "plain"
        );
        assert!(rule_of(DistkitRedisKey::try_sanitize(String::new())).contains("empty"));
        // Escaping can make a key too long.
        assert!(rule_of(DistkitRedisKey::try_sanitize(":".repeat(100))).contains("bytes"));
    }

    #[test]
    fn sanitizing_never_maps_two_names_to_one_key() {
        let names = [
            "tenant:42",
            "tenant4:2",
            "tenant42",
            "tenant%3A42",
            "tenant%42",
            "a:b:c",
            "a::bc",
            "ab:c",
            ":",
            "%",
            "%3A",
            "%25",
            "a%",
            "a:",
        ];
        let mut seen = std::collections::HashMap::new();
        for name in names {
            let key = DistkitRedisKey::try_sanitize(name.to_owned()).unwrap();
            if let Some(other) = seen.insert(key.as_str().to_owned(), name) {
                panic!("{name:?} and {other:?} both became {key}");
            }
        }
    }

    #[test]
    fn try_from_string_and_str_validate() {
        assert!(DistkitRedisKey::try_from("ok").is_ok());
        assert!(DistkitRedisKey::try_from(String::from("no:")).is_err());
        assert!(DistkitRedisKey::try_from("").is_err());
    }

    #[test]
    #[should_panic(expected = "must not contain")]
    fn new_or_panic_panics_on_an_invalid_key() {
        let _ = DistkitRedisKey::new_or_panic("a:b".into());
    }

    #[test]
    #[should_panic(expected = "empty")]
    fn sanitize_or_panic_panics_on_an_empty_name() {
        let _ = DistkitRedisKey::sanitize_or_panic(String::new());
    }

    #[test]
    fn keys_order_and_compare_like_their_text() {
        let a = DistkitRedisKey::new_or_panic("a".into());
        let b = DistkitRedisKey::new_or_panic("b".into());
        assert!(a < b);
        assert_eq!(a.clone(), a);
    }
}
