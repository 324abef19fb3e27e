//! The [`DeltaSink`] of [`LaxCounter`](super::LaxCounter): the `counter_flush` script, once
//! per shard a batch touches.
//!
//! Exactly-once per shard: each shard holds its own sequence record of the counter object
//! (`distkit:{<prefix>:<shard>}:counter:flush:<id>`, in the slot of the values it guards),
//! and every shard's part of a batch carries the batch's sequence number. A batch that failed
//! in some shards is resent whole under the same number: the shards that applied it skip
//! their part (and only read back), the others apply theirs.

use std::sync::Arc;
use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, CallPolicy};
use distkit_core::{DistkitError, DistkitRedisKey, key_schema};

use crate::buffer::{Batch, Confirmation, DeltaSink, Snapshot};
use crate::scripts::COUNTER_FLUSH;
use crate::shards::{self, ShardGate};
use crate::wire::{decode_array, decode_i64, script_error};

/// How long Redis remembers the last sequence number of a counter object (renewed by every
/// applied batch). A batch still unconfirmed when its record expired is dropped, never
/// applied twice: [`CounterError::FlushExpired`](distkit_core::CounterError::FlushExpired).
const SEQUENCE_TTL_MS: i64 = 86_400_000;

/// Where a lax counter object's batches go.
#[derive(Clone, Debug)]
pub(crate) struct FlushTarget {
    client: Client,
    /// Per shard, in shard order: the values hash and this object's sequence record there.
    shards: Arc<[(String, String)]>,
    /// The shard-count check of the counter object (shared with its strict operations).
    gate: Arc<ShardGate>,
}

impl FlushTarget {
    /// The flush target of the lax counter object `counter_id` of `prefix`.
    pub(crate) fn new(
        client: Client,
        prefix: &DistkitRedisKey,
        counter_id: &str,
        gate: Arc<ShardGate>,
    ) -> Self {
        let shards = shards::all(gate.count())
            .map(|shard| {
                (
                    key_schema::counter_values_in(prefix, shard),
                    key_schema::counter_flush_sequence_in(prefix, shard, counter_id),
                )
            })
            .collect();
        Self {
            client,
            shards,
            gate,
        }
    }
}

/// The part of a batch that belongs to one shard: positions of its deltas and reads.
struct ShardPart {
    shard: usize,
    deltas: Vec<usize>,
    reads: Vec<usize>,
}

impl DeltaSink for FlushTarget {
    /// The sequence key lives a day after the last applied batch; half of it leaves ample
    /// room for clock-rate differences.
    fn record_lifetime(&self) -> Duration {
        Duration::from_millis(SEQUENCE_TTL_MS.unsigned_abs() / 2)
    }

    async fn send(&self, batch: &Batch) -> Result<Confirmation, DistkitError> {
        self.gate.ensure().await?;
        let count = self.gate.count();
        let mut parts: Vec<ShardPart> = Vec::new();
        let mut part_of = |key: &DistkitRedisKey| {
            let shard = usize::from(key_schema::shard_of(key.as_str(), count));
            match parts.iter().position(|part| part.shard == shard) {
                Some(index) => index,
                None => {
                    parts.push(ShardPart {
                        shard,
                        deltas: Vec::new(),
                        reads: Vec::new(),
                    });
                    parts.len().saturating_sub(1)
                }
            }
        };
        let delta_parts: Vec<usize> = batch.deltas.iter().map(|(key, _)| part_of(key)).collect();
        let read_parts: Vec<usize> = batch.reads.iter().map(&mut part_of).collect();
        for (position, &index) in delta_parts.iter().enumerate() {
            if let Some(part) = parts.get_mut(index) {
                part.deltas.push(position);
            }
        }
        for (position, &index) in read_parts.iter().enumerate() {
            if let Some(part) = parts.get_mut(index) {
                part.reads.push(position);
            }
        }
        let replies =
            futures_util::future::join_all(parts.iter().map(|part| self.send_part(batch, part)))
                .await;
        let mut confirmation = Confirmation {
            deltas: vec![None; batch.deltas.len()],
            reads: vec![None; batch.reads.len()],
        };
        for (part, reply) in parts.iter().zip(replies) {
            let part_confirmation = reply?;
            for (&position, value) in part.deltas.iter().zip(part_confirmation.deltas) {
                if let Some(slot) = confirmation.deltas.get_mut(position) {
                    *slot = value;
                }
            }
            for (&position, value) in part.reads.iter().zip(part_confirmation.reads) {
                if let Some(slot) = confirmation.reads.get_mut(position) {
                    *slot = value;
                }
            }
        }
        Ok(confirmation)
    }
}

impl FlushTarget {
    /// Sends the part of `batch` that belongs to one shard with `counter_flush`.
    async fn send_part(
        &self,
        batch: &Batch,
        part: &ShardPart,
    ) -> Result<Confirmation, DistkitError> {
        let (values_key, sequence_key) = self
            .shards
            .get(part.shard)
            .map_or(("", ""), |(values, sequence)| {
                (values.as_str(), sequence.as_str())
            });
        let deltas: Vec<&(DistkitRedisKey, i64)> = part
            .deltas
            .iter()
            .filter_map(|&position| batch.deltas.get(position))
            .collect();
        let reads: Vec<&DistkitRedisKey> = part
            .reads
            .iter()
            .filter_map(|&position| batch.reads.get(position))
            .collect();
        let mut args = Vec::with_capacity(
            deltas
                .len()
                .saturating_mul(2)
                .saturating_add(reads.len())
                .saturating_add(4),
        );
        args.push(Value::from(batch.sequence.to_string()));
        args.push(Value::from(SEQUENCE_TTL_MS));
        // A part that only reads applies nothing, so it cannot apply anything twice.
        let stale = batch.stale && !deltas.is_empty();
        args.push(Value::from(if stale { "1" } else { "0" }));
        args.push(Value::from(i64::try_from(deltas.len()).unwrap_or(i64::MAX)));
        for (key, delta) in &deltas {
            args.push(Value::from(key.as_str()));
            args.push(Value::from(*delta));
        }
        args.extend(reads.iter().map(|key| Value::from(key.as_str())));
        // Idempotent by its sequence number, so fred may replay it after a reconnect.
        let reply = COUNTER_FLUSH
            .run(
                &self.client,
                &[values_key, sequence_key],
                args,
                CallPolicy::RETRY,
            )
            .await
            .map_err(|error| script_error(error, Attempts::Retry, |_| String::new()))?;
        let mut parts = decode_array(reply)?.into_iter();
        let mut values = decode_array(parts.next().unwrap_or(Value::Null))?.into_iter();
        let failed: Vec<usize> = decode_array(parts.next().unwrap_or(Value::Null))?
            .iter()
            .filter_map(|item| item.as_str()?.split_whitespace().next()?.parse().ok())
            .collect();
        let mut confirmation = Confirmation::default();
        for (index, (key, _delta)) in deltas.iter().enumerate() {
            let value = values.next().and_then(|value| decode_i64(&value, key).ok());
            let applied = !failed.contains(&index);
            confirmation
                .deltas
                .push(value.filter(|_| applied).map(Snapshot::single));
        }
        for key in &reads {
            let value = values.next().and_then(|value| decode_i64(&value, key).ok());
            confirmation.reads.push(value.map(Snapshot::single));
        }
        Ok(confirmation)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use distkit_core::{CounterError, DistkitRedisKey, key_schema};
    use distkit_test_support::{TestRedis, unique_prefix};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    fn batch(sequence: u64, stale: bool, key: &DistkitRedisKey, delta: i64) -> Batch {
        Batch {
            sequence,
            stale,
            first_sent: None,
            deltas: vec![(key.clone(), delta)],
            reads: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_stale_batch_without_a_record_is_refused_and_a_fresh_one_is_applied_once() {
        let redis = TestRedis::start();
        let prefix = DistkitRedisKey::new(unique_prefix()).unwrap();
        let k = DistkitRedisKey::new("k".to_owned()).unwrap();
        let client = tokio::time::timeout(LIMIT, distkit_core::connect(redis.url()))
            .await
            .unwrap()
            .unwrap();
        let gate = Arc::new(ShardGate::new(
            client.clone(),
            &prefix,
            1,
            key_schema::counter_shard_count(&prefix),
            [],
        ));
        let target = FlushTarget::new(client, &prefix, "object", gate);
        let values_key = key_schema::counter_values(&prefix);
        let sequence_key = key_schema::counter_flush_sequence(&prefix, "object");
        let send = |batch: Batch| {
            let target = target.clone();
            async move {
                tokio::time::timeout(LIMIT, target.send(&batch))
                    .await
                    .unwrap()
            }
        };
        // No record and not stale: the batch was never applied (or its effect was lost with
        // the record), so it is applied, once, however often it is resent.
        for _ in 0..2 {
            let confirmation = send(batch(1, false, &k, 5)).await.unwrap();
            assert_eq!(confirmation.deltas, vec![Some(Snapshot::single(5))]);
        }
        // A stale batch finds the record: the sequence number decides.
        let confirmation = send(batch(1, true, &k, 5)).await.unwrap();
        assert_eq!(confirmation.deltas, vec![Some(Snapshot::single(5))]);
        // The record expired: a stale batch may have been applied before, so it is refused.
        assert_eq!(redis.cli(&["DEL", &sequence_key]), "1");
        let refused = send(batch(2, true, &k, 7)).await;
        assert!(
            matches!(
                refused,
                Err(DistkitError::CounterError(
                    CounterError::FlushExpired { .. }
                ))
            ),
            "{refused:?}"
        );
        assert_eq!(redis.cli(&["HGET", &values_key, "k"]), "5");
        let confirmation = send(batch(3, false, &k, 1)).await.unwrap();
        assert_eq!(confirmation.deltas, vec![Some(Snapshot::single(6))]);
    }

    #[tokio::test]
    async fn a_batch_resent_after_some_shards_applied_it_is_applied_once_in_every_shard() {
        let redis = TestRedis::start();
        let prefix = DistkitRedisKey::new(unique_prefix()).unwrap();
        let client = tokio::time::timeout(LIMIT, distkit_core::connect(redis.url()))
            .await
            .unwrap()
            .unwrap();
        let shards = 16;
        let a = DistkitRedisKey::new("a".to_owned()).unwrap();
        let b = (0..)
            .map(|n| DistkitRedisKey::new(format!("b{n}")).unwrap())
            .find(|b| key_schema::shard_of(b.as_str(), shards) != key_schema::shard_of("a", shards))
            .unwrap();
        let gate = Arc::new(ShardGate::new(
            client.clone(),
            &prefix,
            shards,
            key_schema::counter_shard_count(&prefix),
            [],
        ));
        let target = FlushTarget::new(client, &prefix, "object", gate);
        let send = |batch: Batch| {
            let target = target.clone();
            async move {
                tokio::time::timeout(LIMIT, target.send(&batch))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        // The first attempt of batch 1 reached a's shard only (b's shard failed).
        let first = send(batch(1, false, &a, 5)).await;
        assert_eq!(first.deltas, vec![Some(Snapshot::single(5))]);
        // Resent whole under the same number: a's shard skips its part, b's applies it.
        let mut resent = batch(1, false, &a, 5);
        resent.deltas.push((b.clone(), 7));
        for _ in 0..2 {
            let confirmation = send(Batch {
                sequence: resent.sequence,
                stale: resent.stale,
                first_sent: None,
                deltas: resent.deltas.clone(),
                reads: vec![a.clone()],
            })
            .await;
            assert_eq!(
                confirmation.deltas,
                vec![Some(Snapshot::single(5)), Some(Snapshot::single(7))]
            );
            assert_eq!(confirmation.reads, vec![Some(Snapshot::single(5))]);
        }
        let hash_of = |key: &DistkitRedisKey| {
            key_schema::counter_values_in(&prefix, key_schema::Shard::of(key.as_str(), shards))
        };
        assert_ne!(hash_of(&a), hash_of(&b));
        assert_eq!(redis.cli(&["HGET", &hash_of(&a), "a"]), "5");
        assert_eq!(redis.cli(&["HGET", &hash_of(&b), b.as_str()]), "7");
        // Each shard holds its own record of the object's batches.
        for key in [&a, &b] {
            let shard = key_schema::Shard::of(key.as_str(), shards);
            let record = key_schema::counter_flush_sequence_in(&prefix, shard, "object");
            assert_eq!(redis.cli(&["GET", &record]), "1");
        }
    }
}
