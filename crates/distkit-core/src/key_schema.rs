//! The one place where distkit builds Redis key and channel names.
//!
//! Every name of one primitive instance carries the same [hash tag], so every script touches a
//! single cluster slot and nothing is ever refused with `CROSSSLOT`:
//!
//! | primitive | names |
//! |---|---|
//! | counters | `distkit:{<prefix>}:counter`, `distkit:{<prefix>}:counter:flush:<id>` |
//! | instance-aware counters | `distkit:{<prefix>}:ic:<kind>` |
//! | locks | `<namespace>:{<key>}`, `<namespace>:{<key>}:<part>` |
//!
//! The text between the braces is the prefix (or lock key) with `%`, `{` and `}` written as
//! `%25`, `%7B` and `%7D`, so a user's braces can never end or empty the tag, and two
//! different prefixes never share names. A lock's namespace, before the tag, is escaped the
//! same way: braces in it would otherwise open the tag early (`a{x}` would put every lock of
//! the namespace in one slot; `team{}locks` would scatter a lock's keys over several slots).
//!
//! [hash tag]: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags

use std::borrow::Cow;

use crate::DistkitRedisKey;

/// The text of a hash tag for `name`: braces and `%` escaped, so the tag is never cut short.
pub fn hash_tag(name: &DistkitRedisKey) -> Cow<'_, str> {
    let text = name.as_str();
    if !text.contains(['%', '{', '}']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len().saturating_add(8));
    for character in text.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

/// The hash holding every counter value of `prefix`, one field per counter key.
#[cfg(feature = "counter")]
pub fn counter_values(prefix: &DistkitRedisKey) -> String {
    format!("distkit:{{{}}}:counter", hash_tag(prefix))
}

/// The flush sequence number of one lax counter object, which makes its flushes idempotent.
#[cfg(feature = "counter")]
pub fn counter_flush_sequence(prefix: &DistkitRedisKey, counter_id: &str) -> String {
    format!(
        "distkit:{{{}}}:counter:flush:{counter_id}",
        hash_tag(prefix)
    )
}

/// One of the keys of the instance-aware counters of `prefix`; `kind` names its role.
#[cfg(feature = "counter")]
pub fn instance_counter(prefix: &DistkitRedisKey, kind: &str) -> String {
    format!("distkit:{{{}}}:ic:{kind}", hash_tag(prefix))
}

/// The key holding the owner token of the lock `key` (the mutex, or the writer of a rwlock).
#[cfg(feature = "lock")]
pub fn lock_owner(namespace: &DistkitRedisKey, key: &DistkitRedisKey) -> String {
    format!("{}:{{{}}}", hash_tag(namespace), hash_tag(key))
}

/// A further key of the lock `key`: `part` names its role (readers, queue, fence, …).
#[cfg(feature = "lock")]
pub fn lock_part(namespace: &DistkitRedisKey, key: &DistkitRedisKey, part: &str) -> String {
    format!("{}:{{{}}}:{part}", hash_tag(namespace), hash_tag(key))
}

/// The pub/sub channel on which releases of the lock `key` are announced.
///
/// It carries the lock's hash tag, so it maps to the lock's slot in a cluster as well.
#[cfg(feature = "lock")]
pub fn lock_release_channel(namespace: &DistkitRedisKey, key: &DistkitRedisKey) -> String {
    lock_part(namespace, key, "released")
}

/// The prefix of the per-client inbox channels of a lock namespace on a standalone server
/// (`<namespace>:inbox:`, followed by the id of a client's subscriber), where mutex
/// handovers are announced: under the namespace, like every key and channel of its locks,
/// so that an ACL scoped to `<namespace>:*` covers them. (In a Redis Cluster each lock has
/// its own inbox channels, under its release channel, in its slot.)
#[cfg(feature = "lock")]
pub fn lock_inbox_prefix(namespace: &DistkitRedisKey) -> String {
    format!("{}:inbox:", hash_tag(namespace))
}

/// The cluster slot of a Redis key (CRC16 of its hash tag, modulo 16384).
pub fn slot_of(redis_key: &str) -> u16 {
    fred::util::redis_keyslot(redis_key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> DistkitRedisKey {
        DistkitRedisKey::new_or_panic(text.to_owned())
    }

    #[test]
    fn plain_names_are_tagged_verbatim() {
        assert_eq!(hash_tag(&key("tenant")), "tenant");
    }

    #[test]
    fn braces_and_percent_are_escaped_so_tags_stay_distinct() {
        assert_eq!(hash_tag(&key("a}b{c%")), "a%7Db%7Bc%25");
        assert_ne!(hash_tag(&key("%7B")), hash_tag(&key("{")));
    }

    #[cfg(feature = "counter")]
    #[test]
    fn all_counter_keys_of_a_prefix_share_one_slot() {
        for prefix in ["p", "}", "{", "{}", "a}b", "x{y}z", "ünï code", "%7D"] {
            let prefix = key(prefix);
            let values = counter_values(&prefix);
            let expected = slot_of(&format!("{{{}}}", hash_tag(&prefix)));
            assert_eq!(slot_of(&values), expected, "{values}");
            assert_eq!(slot_of(&counter_flush_sequence(&prefix, "01J")), expected);
            for kind in ["instances", "slices", "epochs", "totals"] {
                assert_eq!(slot_of(&instance_counter(&prefix, kind)), expected);
            }
        }
    }

    #[cfg(feature = "lock")]
    #[test]
    fn all_keys_and_the_channel_of_a_lock_share_one_slot() {
        let namespace = key("distkit-locks");
        for name in ["job", "}", "{", "{}", "a}b", "x{y}z"] {
            let lock = key(name);
            let owner = lock_owner(&namespace, &lock);
            let expected = slot_of(&owner);
            for part in ["readers", "queue", "fence"] {
                assert_eq!(slot_of(&lock_part(&namespace, &lock, part)), expected);
            }
            assert_eq!(slot_of(&lock_release_channel(&namespace, &lock)), expected);
        }
    }

    #[cfg(feature = "lock")]
    #[test]
    fn braces_in_a_lock_namespace_neither_split_nor_pin_the_slot() {
        for namespace in ["team{}locks", "a{x}", "}", "{", "%7B"] {
            let namespace = key(namespace);
            let slots: std::collections::HashSet<u16> = ["job", "other", "third", "x{y}z"]
                .into_iter()
                .map(|name| {
                    let lock = key(name);
                    let expected = slot_of(&format!("{{{}}}", hash_tag(&lock)));
                    assert_eq!(slot_of(&lock_owner(&namespace, &lock)), expected);
                    for part in ["fence", "waitlist", "rw:writer", "released"] {
                        assert_eq!(slot_of(&lock_part(&namespace, &lock, part)), expected);
                    }
                    expected
                })
                .collect();
            assert!(slots.len() > 1, "every lock of {namespace} in one slot");
        }
        assert_ne!(
            lock_owner(&key("{"), &key("job")),
            lock_owner(&key("%7B"), &key("job"))
        );
    }

    #[cfg(feature = "counter")]
    #[test]
    fn different_prefixes_get_different_names() {
        assert_ne!(counter_values(&key("a")), counter_values(&key("b")));
        assert_ne!(counter_values(&key("{")), counter_values(&key("%7B")));
    }
}
