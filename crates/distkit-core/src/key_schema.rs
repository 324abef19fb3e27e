//! The one place where distkit builds Redis key and channel names.
//!
//! Every name of one primitive instance carries the same [hash tag], so every script touches a
//! single cluster slot and nothing is ever refused with `CROSSSLOT`:
//!
//! | primitive | names |
//! |---|---|
//! | counters | `distkit:{<tag>}:counter`, `distkit:{<tag>}:counter:flush:<id>` |
//! | instance-aware counters | `distkit:{<tag>}:ic:<kind>` |
//! | the shard count of a prefix | `distkit:{<prefix>}:counter:shards`, `distkit:{<prefix>}:ic:shards` |
//! | locks | `<namespace>:{<key>}`, `<namespace>:{<key>}:<part>` |
//!
//! The text between the braces is the prefix (or lock key) with `%`, `{` and `}` written as
//! `%25`, `%7B` and `%7D`, so a user's braces can never end or empty the tag, and two
//! different prefixes never share names. A lock's namespace, before the tag, is escaped the
//! same way: braces in it would otherwise open the tag early (`a{x}` would put every lock of
//! the namespace in one slot; `team{}locks` would scatter a lock's keys over several slots).
//!
//! # Shards
//!
//! A counter prefix is spread over `n` shards (`Shard`), each with a hash tag of its own, so
//! one prefix uses up to `n` cluster slots. A counter key belongs to shard
//! `shard_of(key, n)`: the 64-bit FNV-1a hash of the key's UTF-8 bytes, modulo `n`. FNV-1a
//! is fixed by its published offset basis and prime and has no seed, so every process,
//! version and platform puts a key in the same shard (the unit tests pin known values).
//!
//! The `<tag>` of shard `s` of `n`:
//!
//! - `n = 1`: the escaped prefix, exactly the single-slot layout of earlier versions
//!   (`distkit:{billing}:counter`);
//! - `n > 1`: the escaped prefix, `:` and the shard number (`distkit:{billing:3}:counter`).
//!   A prefix never contains `:` ([`DistkitRedisKey`] refuses it, and escaping adds none), so
//!   no sharded name equals a name of another prefix or of the single-slot layout.
//!
//! The shard count a prefix's data was written with is recorded once in the unsharded tag
//! (`distkit:{<prefix>}:counter:shards`), see the counter crate.
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

/// The most shards a counter prefix may be spread over.
#[cfg(feature = "counter")]
pub const MAX_SHARDS: u16 = 1_024;

/// One shard of a counter prefix: shard `index` of `count` (see the module docs).
#[cfg(feature = "counter")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which shard, `0..count`.
    pub index: u16,
    /// How many shards the prefix is spread over (1 is the single-slot layout).
    pub count: u16,
}

#[cfg(feature = "counter")]
impl Shard {
    /// The one shard of the single-slot layout.
    pub const SINGLE: Self = Self { index: 0, count: 1 };

    /// The shard of `key` among `count` shards (`count` 0 counts as 1).
    pub fn of(key: &str, count: u16) -> Self {
        Self {
            index: shard_of(key, count),
            count: count.max(1),
        }
    }
}

/// The shard of the counter key `key` among `count` shards: the 64-bit FNV-1a hash of its
/// UTF-8 bytes modulo `count` (0 when `count` is 0 or 1). Stable across processes, versions
/// and platforms.
#[cfg(feature = "counter")]
pub fn shard_of(key: &str, count: u16) -> u16 {
    if count <= 1 {
        return 0;
    }
    let hash = fnv1a_64(key.as_bytes());
    u16::try_from(hash.checked_rem(u64::from(count)).unwrap_or(0)).unwrap_or(0)
}

/// The 64-bit FNV-1a hash (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
#[cfg(feature = "counter")]
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The hash tag text of `shard` of `prefix`.
#[cfg(feature = "counter")]
fn shard_tag(prefix: &DistkitRedisKey, shard: Shard) -> Cow<'_, str> {
    let tag = hash_tag(prefix);
    if shard.count <= 1 {
        tag
    } else {
        Cow::Owned(format!("{tag}:{}", shard.index))
    }
}

/// The hash holding every counter value of `prefix` in the single-slot layout (shard 0 of 1).
#[cfg(feature = "counter")]
pub fn counter_values(prefix: &DistkitRedisKey) -> String {
    counter_values_in(prefix, Shard::SINGLE)
}

/// The hash holding the counter values of `prefix` that belong to `shard`, one field per key.
#[cfg(feature = "counter")]
pub fn counter_values_in(prefix: &DistkitRedisKey, shard: Shard) -> String {
    format!("distkit:{{{}}}:counter", shard_tag(prefix, shard))
}

/// The flush sequence number of one lax counter object in the single-slot layout.
#[cfg(feature = "counter")]
pub fn counter_flush_sequence(prefix: &DistkitRedisKey, counter_id: &str) -> String {
    counter_flush_sequence_in(prefix, Shard::SINGLE, counter_id)
}

/// The flush sequence number of one lax counter object in `shard`, which makes its flushes
/// to that shard idempotent (it lives in the slot of the values it guards).
#[cfg(feature = "counter")]
pub fn counter_flush_sequence_in(
    prefix: &DistkitRedisKey,
    shard: Shard,
    counter_id: &str,
) -> String {
    format!(
        "distkit:{{{}}}:counter:flush:{counter_id}",
        shard_tag(prefix, shard)
    )
}

/// Where the shard count of the counters of `prefix` is recorded (the unsharded tag).
#[cfg(feature = "counter")]
pub fn counter_shard_count(prefix: &DistkitRedisKey) -> String {
    format!("distkit:{{{}}}:counter:shards", hash_tag(prefix))
}

/// One of the keys of the instance-aware counters of `prefix` in the single-slot layout;
/// `kind` names its role.
#[cfg(feature = "counter")]
pub fn instance_counter(prefix: &DistkitRedisKey, kind: &str) -> String {
    instance_counter_in(prefix, Shard::SINGLE, kind)
}

/// One of the keys of the instance-aware counters of `prefix` in `shard`.
#[cfg(feature = "counter")]
pub fn instance_counter_in(prefix: &DistkitRedisKey, shard: Shard, kind: &str) -> String {
    format!("distkit:{{{}}}:ic:{kind}", shard_tag(prefix, shard))
}

/// Where the shard count of the instance-aware counters of `prefix` is recorded.
#[cfg(feature = "counter")]
pub fn instance_counter_shard_count(prefix: &DistkitRedisKey) -> String {
    format!("distkit:{{{}}}:ic:shards", hash_tag(prefix))
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
    fn the_shard_hash_is_fnv1a_64_and_pinned() {
        // Published FNV-1a 64 test vectors: a change of the hash would move stored keys.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(
            shard_of("a", 16),
            u16::try_from(0xaf63_dc4c_8601_ec8c_u64 % 16).unwrap()
        );
    }

    #[cfg(feature = "counter")]
    #[test]
    fn one_shard_is_the_single_slot_layout_and_shards_never_share_names() {
        for prefix in ["p", "}", "{", "a%", "a%25", "x{y}z", "p%1"] {
            let prefix = key(prefix);
            assert_eq!(
                counter_values_in(&prefix, Shard::SINGLE),
                counter_values(&prefix)
            );
            assert_eq!(
                instance_counter_in(&prefix, Shard::SINGLE, "totals"),
                instance_counter(&prefix, "totals")
            );
        }
        let mut names = std::collections::HashSet::new();
        for prefix in ["p", "p1", "p%1", "p%", "a%", "a", "{p", "p}"] {
            let prefix = key(prefix);
            assert!(names.insert(counter_values(&prefix)));
            for index in 0..16 {
                let shard = Shard { index, count: 16 };
                assert!(names.insert(counter_values_in(&prefix, shard)), "{prefix}");
                let values = counter_values_in(&prefix, shard);
                assert_eq!(
                    slot_of(&counter_flush_sequence_in(&prefix, shard, "01J")),
                    slot_of(&values)
                );
                assert_eq!(
                    slot_of(&instance_counter_in(&prefix, shard, "alive")),
                    slot_of(&values)
                );
            }
        }
    }

    #[cfg(feature = "counter")]
    #[test]
    fn uniform_keys_spread_over_every_shard() {
        let mut counts = [0_u32; 16];
        for n in 0..16_000 {
            let shard = shard_of(&format!("tenant-{n}"), 16);
            counts[usize::from(shard)] += 1;
        }
        assert!(
            counts.iter().all(|&count| (800..1_200).contains(&count)),
            "{counts:?}"
        );
    }

    #[cfg(feature = "counter")]
    #[test]
    fn different_prefixes_get_different_names() {
        assert_ne!(counter_values(&key("a")), counter_values(&key("b")));
        assert_ne!(counter_values(&key("{")), counter_values(&key("%7B")));
    }
}
