//! The [`DeltaSink`] of [`LaxCounter`](super::LaxCounter): the `counter_flush` script.

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
        args.push(Value::from(if batch.resend { "1" } else { "0" }));
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
