//! The [`DeltaSink`] of [`LaxCounter`](super::LaxCounter): the `counter_flush` script.

use std::time::Duration;

use distkit_core::DistkitError;
use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, CallPolicy};

use crate::buffer::{Batch, Confirmation, DeltaSink, Snapshot};
use crate::scripts::COUNTER_FLUSH;
use crate::wire::{decode_array, decode_i64, script_error};

/// How long Redis remembers the last sequence number of a counter object (renewed by every
/// applied batch). A batch still unconfirmed when its record expired is dropped, never
/// applied twice: [`CounterError::FlushExpired`](distkit_core::CounterError::FlushExpired).
const SEQUENCE_TTL_MS: i64 = 86_400_000;

/// Where a lax counter object's batches go.
#[derive(Clone, Debug)]
pub(crate) struct FlushTarget {
    pub(crate) client: Client,
    pub(crate) values_key: String,
    pub(crate) sequence_key: String,
}

impl DeltaSink for FlushTarget {
    /// The sequence key lives a day after the last applied batch; half of it leaves ample
    /// room for clock-rate differences.
    fn record_lifetime(&self) -> Duration {
        Duration::from_millis(SEQUENCE_TTL_MS.unsigned_abs() / 2)
    }

    async fn send(&self, batch: &Batch) -> Result<Confirmation, DistkitError> {
        let mut args = Vec::with_capacity(
            batch
                .deltas
                .len()
                .saturating_mul(2)
                .saturating_add(batch.reads.len())
                .saturating_add(4),
        );
        args.push(Value::from(batch.sequence.to_string()));
        args.push(Value::from(SEQUENCE_TTL_MS));
        args.push(Value::from(if batch.stale { "1" } else { "0" }));
        args.push(Value::from(
            i64::try_from(batch.deltas.len()).unwrap_or(i64::MAX),
        ));
        for (key, delta) in &batch.deltas {
            args.push(Value::from(key.as_str()));
            args.push(Value::from(*delta));
        }
        args.extend(batch.reads.iter().map(|key| Value::from(key.as_str())));
        // Idempotent by its sequence number, so fred may replay it after a reconnect.
        let reply = COUNTER_FLUSH
            .run(
                &self.client,
                &[&self.values_key, &self.sequence_key],
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
        for (index, (key, _delta)) in batch.deltas.iter().enumerate() {
            let value = values.next().and_then(|value| decode_i64(&value, key).ok());
            let applied = !failed.contains(&index);
            confirmation
                .deltas
                .push(value.filter(|_| applied).map(Snapshot::single));
        }
        for key in &batch.reads {
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
        let target = FlushTarget {
            client,
            values_key: key_schema::counter_values(&prefix),
            sequence_key: key_schema::counter_flush_sequence(&prefix, "object"),
        };
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
        assert_eq!(redis.cli(&["DEL", &target.sequence_key]), "1");
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
        assert_eq!(redis.cli(&["HGET", &target.values_key, "k"]), "5");
        let confirmation = send(batch(3, false, &k, 1)).await.unwrap();
        assert_eq!(confirmation.deltas, vec![Some(Snapshot::single(6))]);
    }
}
