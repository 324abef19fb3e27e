//! The Redis side of the counters, shared by [`StrictCounter`](super::StrictCounter) and
//! [`LaxCounter`](super::LaxCounter): every stored value of a prefix is one field of the hash
//! `distkit:{<prefix>}:counter`.

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::{HashesInterface, KeysInterface};
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, CallPolicy};
use distkit_core::{CounterComparator, CounterError, DistkitError, DistkitRedisKey, key_schema};

use crate::scripts::{COUNTER_APPLY, COUNTER_INC};
use crate::wire::{decode_array, decode_i64, script_error};

/// How many operations one `counter_apply` call carries at most, so that no single script
/// holds Redis for long.
pub(crate) const MAX_OPERATIONS_PER_CALL: usize = 1_000;
/// How many keys one `HMGET` reads at most.
pub(crate) const MAX_READS_PER_CALL: usize = 1_000;

/// What one operation of a batch does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OperationKind {
    /// Adds the amount.
    Inc,
    /// Stores the amount.
    Set,
    /// Removes the value.
    Del,
}

impl OperationKind {
    fn wire(self) -> &'static str {
        match self {
            Self::Inc => "inc",
            Self::Set => "set",
            Self::Del => "del",
        }
    }
}

/// One operation for [`RemoteCounters::apply`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operation<'k> {
    pub(crate) kind: OperationKind,
    pub(crate) key: &'k DistkitRedisKey,
    pub(crate) condition: CounterComparator,
    pub(crate) amount: i64,
}

impl<'k> Operation<'k> {
    /// One unconditional operation of `kind` per update, in order.
    pub(crate) fn each(kind: OperationKind, updates: &[(&'k DistkitRedisKey, i64)]) -> Vec<Self> {
        updates
            .iter()
            .map(|&(key, amount)| Self::new(kind, key, CounterComparator::Nil, amount))
            .collect()
    }

    /// One conditional operation of `kind` per update, in order.
    pub(crate) fn each_if(
        kind: OperationKind,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Vec<Self> {
        updates
            .iter()
            .map(|&(key, condition, amount)| Self::new(kind, key, condition, amount))
            .collect()
    }

    pub(crate) fn new(
        kind: OperationKind,
        key: &'k DistkitRedisKey,
        condition: CounterComparator,
        amount: i64,
    ) -> Self {
        Self {
            kind,
            key,
            condition,
            amount,
        }
    }
}

/// The stored values of one prefix.
#[derive(Clone, Debug)]
pub(crate) struct RemoteCounters {
    client: Client,
    values_key: String,
}

impl RemoteCounters {
    pub(crate) fn new(client: Client, prefix: &DistkitRedisKey) -> Self {
        let values_key = key_schema::counter_values(prefix);
        Self { client, values_key }
    }

    /// Adds `delta` to `key` with the `counter_inc` script; returns the new value.
    pub(crate) async fn inc(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        let reply = COUNTER_INC
            .run(
                &self.client,
                &[&self.values_key],
                vec![Value::from(key.as_str()), Value::from(delta)],
                CallPolicy::ONCE,
            )
            .await
            .map_err(|error| script_error(error, Attempts::Once, |_| key.to_string()))?;
        decode_i64(&reply, key)
    }

    /// Subtracts `count` from `key`, exactly even for `i64::MIN`; returns the new value.
    pub(crate) async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        match count.checked_neg() {
            Some(delta) => self.inc(key, delta).await,
            None => {
                // -i64::MIN does not fit in an i64: add i64::MAX and 1 in one atomic call.
                let steps = [
                    Operation::new(OperationKind::Inc, key, CounterComparator::Nil, i64::MAX),
                    Operation::new(OperationKind::Inc, key, CounterComparator::Nil, 1),
                ];
                let results = self.apply(&steps).await?;
                Ok(results.last().map_or(0, |&(new, _old)| new))
            }
        }
    }

    /// Reads one value (0 when absent).
    pub(crate) async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        let value: Value = self.client.hget(&self.values_key, key.as_str()).await?;
        decode_i64(&value, key)
    }

    /// Reads many values, in order, `MAX_READS_PER_CALL` per round trip.
    pub(crate) async fn get_many(
        &self,
        keys: &[&DistkitRedisKey],
    ) -> Result<Vec<i64>, DistkitError> {
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_READS_PER_CALL) {
            let fields: Vec<&str> = chunk.iter().map(|key| key.as_str()).collect();
            let reply: Value = if let [field] = fields.as_slice() {
                Value::Array(vec![self.client.hget(&self.values_key, *field).await?])
            } else {
                self.client.hmget(&self.values_key, fields).await?
            };
            let items = decode_array(reply)?;
            for (key, item) in chunk.iter().zip(items.iter()) {
                values.push(decode_i64(item, key)?);
            }
        }
        Ok(values)
    }

    /// Removes every value of the prefix (`UNLINK`: a large hash is freed in the background).
    pub(crate) async fn clear(&self) -> Result<(), DistkitError> {
        let _removed: i64 = self.client.unlink(&self.values_key).await?;
        Ok(())
    }

    /// Applies `operations` in order with the `counter_apply` script; returns `(new, old)` per
    /// operation.
    ///
    /// Each chunk of `MAX_OPERATIONS_PER_CALL` is all or nothing; when a later chunk fails, the
    /// error says how many operations the earlier chunks applied.
    pub(crate) async fn apply(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        let mut results = Vec::with_capacity(operations.len());
        for chunk in operations.chunks(MAX_OPERATIONS_PER_CALL) {
            match self.apply_chunk(chunk).await {
                Ok(chunk_results) => results.extend(chunk_results),
                Err(error) if results.is_empty() => return Err(error),
                Err(error) => {
                    return Err(CounterError::BatchPartiallyApplied {
                        applied: results.len(),
                        source: Box::new(error),
                    }
                    .into());
                }
            }
        }
        Ok(results)
    }

    async fn apply_chunk(&self, chunk: &[Operation<'_>]) -> Result<Vec<(i64, i64)>, DistkitError> {
        let mut args = Vec::with_capacity(chunk.len().saturating_mul(5));
        for operation in chunk {
            let (op, operand) = operation.condition.wire();
            args.push(Value::from(operation.kind.wire()));
            args.push(Value::from(operation.key.as_str()));
            args.push(Value::from(op));
            args.push(Value::from(operand.to_string()));
            args.push(Value::from(operation.amount.to_string()));
        }
        let key_at = |index: usize| {
            chunk
                .get(index)
                .map(|operation| operation.key.to_string())
                .unwrap_or_default()
        };
        let reply = COUNTER_APPLY
            .run(&self.client, &[&self.values_key], args, CallPolicy::ONCE)
            .await
            .map_err(|error| script_error(error, Attempts::Once, key_at))?;
        let items = decode_array(reply)?;
        let mut results = Vec::with_capacity(chunk.len());
        for (operation, pair) in chunk.iter().zip(items.chunks_exact(2)) {
            if let [new, old] = pair {
                results.push((
                    decode_i64(new, operation.key)?,
                    decode_i64(old, operation.key)?,
                ));
            }
        }
        if results.len() != chunk.len() {
            return Err(distkit_core::fred::error::Error::new(
                distkit_core::fred::error::ErrorKind::Parse,
                "counter_apply returned fewer results than operations",
            )
            .into());
        }
        Ok(results)
    }
}
