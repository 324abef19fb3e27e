//! The Redis side of the counters, shared by [`StrictCounter`](super::StrictCounter) and
//! [`LaxCounter`](super::LaxCounter): every stored value of a prefix is one field of the hash
//! `distkit:{<prefix>}:counter`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::{ClientLike, HashesInterface, KeysInterface};
use distkit_core::fred::types::Value;
use distkit_core::fred::types::config::Options;
use distkit_core::script::{
    AcknowledgementGroup, Attempts, CallPolicy, LuaScript, retry_redirected, wait_for_replicas,
};
use distkit_core::{
    CounterComparator, CounterError, DistkitError, DistkitRedisKey, ReplicaAcks, key_schema,
};

use super::group_commit::{self, Entry, GroupCommit};
use crate::checked::OptionsCheck;
use crate::scripts::{COUNTER_APPLY, COUNTER_INC};
use crate::wire::{decode_array, decode_i64, script_error};

/// The error of a command written once: a transport failure (sent or not, the outcome is
/// unknown) is [`CounterError::OutcomeUnknown`].
fn written_once_error(error: distkit_core::fred::error::Error) -> DistkitError {
    if distkit_core::error_is_transport_failure(&error) {
        CounterError::OutcomeUnknown { source: error }.into()
    } else {
        error.into()
    }
}

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
    /// When set, every write waits for this many replica acknowledgements.
    replica_acks: Option<ReplicaAcks>,
    /// Lets concurrent acknowledged writes share one `WAIT`.
    acknowledgements: Arc<AcknowledgementGroup>,
    /// Coalesces concurrent increments into group commits (without replica acknowledgement).
    group_commit: Arc<GroupCommit>,
    /// Whether the options were valid: every call checks it before any I/O.
    check: OptionsCheck,
}

impl RemoteCounters {
    pub(crate) fn new(client: Client, prefix: &DistkitRedisKey) -> Self {
        let values_key = key_schema::counter_values(prefix);
        Self {
            client,
            values_key,
            replica_acks: None,
            acknowledgements: Arc::new(AcknowledgementGroup::new()),
            group_commit: group_commit::shared(),
            check: OptionsCheck::default(),
        }
    }

    /// The same counters, refusing every call before any I/O when `check` says the options
    /// were invalid.
    pub(crate) fn with_check(mut self, check: OptionsCheck) -> Self {
        self.check = check;
        self
    }

    /// `Ok` when the options were valid, else their [`DistkitError::InvalidOption`].
    pub(crate) fn check(&self) -> Result<(), DistkitError> {
        self.check.ok()
    }

    /// The same counters, with every write waiting for `replica_acks`.
    pub(crate) fn with_replica_acks(mut self, replica_acks: Option<ReplicaAcks>) -> Self {
        self.replica_acks = replica_acks;
        self
    }

    /// Runs a writing script once; with replica acknowledgement on, also waits for the
    /// replicas and reports a write they did not acknowledge as
    /// [`CounterError::NotReplicated`].
    async fn write(
        &self,
        script: &LuaScript,
        args: Vec<Value>,
        key_at: impl Fn(usize) -> String,
    ) -> Result<Value, DistkitError> {
        self.check()?;
        let keys = [self.values_key.as_str()];
        let to_error = |error| script_error(error, Attempts::Once, &key_at);
        let Some(acks) = self.replica_acks else {
            return script
                .run(&self.client, &keys, args, CallPolicy::ONCE)
                .await
                .map_err(to_error);
        };
        // Boxed: the acknowledged call holds two commands' futures, and every caller's
        // future would otherwise carry its size even with acknowledgement off.
        let (reply, acknowledged) = Box::pin(script.run_acknowledged_in(
            &self.acknowledgements,
            &self.client,
            &keys,
            args,
            CallPolicy::ONCE,
            acks,
        ))
        .await
        .map_err(to_error)?;
        require_acks(acknowledged, acks)?;
        Ok(reply)
    }

    /// The group commit of this counter object.
    pub(crate) fn group_commit(&self) -> &GroupCommit {
        &self.group_commit
    }

    /// Runs a script on the values hash, as it is: no option check, no replica
    /// acknowledgement, fred's error as it came.
    pub(crate) async fn run_script(
        &self,
        script: &LuaScript,
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, distkit_core::fred::error::Error> {
        script
            .run(&self.client, &[self.values_key.as_str()], args, policy)
            .await
    }

    /// Adds `delta` to `key`; returns the new value. Without replica acknowledgement,
    /// concurrent increments of this object are coalesced (see [`group_commit`]): alone, or
    /// with a slot free, it runs `counter_inc` at once; else it joins the next group.
    pub(crate) async fn inc(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        if self.replica_acks.is_some() {
            return self.inc_alone(key, delta).await;
        }
        self.check()?;
        match self.group_commit.enter(self, key, delta) {
            Entry::Alone(slot) => {
                let result = self.inc_alone(key, delta).await;
                drop(slot);
                result
            }
            Entry::Queued(answer) => group_commit::queued_answer(answer).await,
        }
    }

    /// Adds `delta` to `key` with the `counter_inc` script; returns the new value.
    async fn inc_alone(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        let reply = self
            .write(
                &COUNTER_INC,
                vec![Value::from(key.as_str()), Value::from(delta)],
                |_| key.to_string(),
            )
            .await?;
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
        self.check()?;
        let (value, _sends) = retry_redirected(&self.client, None, || {
            self.client
                .hget::<Value, _, _>(&self.values_key, key.as_str())
        })
        .await;
        let value = value?;
        decode_i64(&value, key)
    }

    /// Reads many values, in order, `MAX_READS_PER_CALL` per round trip.
    pub(crate) async fn get_many(
        &self,
        keys: &[&DistkitRedisKey],
    ) -> Result<Vec<i64>, DistkitError> {
        self.check()?;
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_READS_PER_CALL) {
            let fields: Vec<&str> = chunk.iter().map(|key| key.as_str()).collect();
            let (reply, _sends) = retry_redirected(&self.client, None, || async {
                if let [field] = fields.as_slice() {
                    let value: Value = self.client.hget(&self.values_key, *field).await?;
                    Ok(Value::Array(vec![value]))
                } else {
                    self.client.hmget(&self.values_key, fields.clone()).await
                }
            })
            .await;
            let reply = reply?;
            let items = decode_array(reply)?;
            for (key, item) in chunk.iter().zip(items.iter()) {
                values.push(decode_i64(item, key)?);
            }
        }
        Ok(values)
    }

    /// Removes every value of the prefix (`UNLINK`: a large hash is freed in the background).
    ///
    /// The `UNLINK` is written once: fred does not replay it after a reconnect, where it
    /// would also remove what was written after it ran. A transport failure after it was
    /// written is [`CounterError::OutcomeUnknown`].
    pub(crate) async fn clear(&self) -> Result<(), DistkitError> {
        self.check()?;
        let once = self.client.with_options(&Options {
            max_attempts: Some(1),
            ..Options::default()
        });
        let Some(acks) = self.replica_acks else {
            let (removed, _sends) = retry_redirected(&self.client, None, || {
                once.unlink::<i64, _>(&self.values_key)
            })
            .await;
            let _removed = removed.map_err(written_once_error)?;
            return Ok(());
        };
        // Queued together, so the WAIT follows the UNLINK on the same connection.
        let keys = [self.values_key.as_str()];
        // A redirected UNLINK is sent again with a new WAIT: the first one ran on the
        // node that redirected it.
        let acknowledged = AtomicUsize::new(0);
        let (removed, _sends) = retry_redirected(&self.client, None, || async {
            let (removed, count) = tokio::join!(
                once.unlink::<i64, _>(&self.values_key),
                wait_for_replicas(&self.client, &keys, acks)
            );
            acknowledged.store(count, Ordering::Relaxed);
            removed
        })
        .await;
        let _removed = removed.map_err(written_once_error)?;
        let acknowledged = acknowledged.into_inner();
        require_acks(acknowledged, acks)
    }

    /// Applies `operations` in order with the `counter_apply` script; returns `(new, old)` per
    /// operation.
    ///
    /// Each chunk of `MAX_OPERATIONS_PER_CALL` is all or nothing; when a later chunk fails, the
    /// error says how many operations were applied (the earlier chunks, and the failing one
    /// too when only its replica acknowledgement failed).
    pub(crate) async fn apply(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.check()?;
        let mut results = Vec::with_capacity(operations.len());
        for chunk in operations.chunks(MAX_OPERATIONS_PER_CALL) {
            match self.apply_chunk(chunk).await {
                Ok(chunk_results) => results.extend(chunk_results),
                Err(error) if results.is_empty() => return Err(error),
                Err(error) => {
                    // A chunk the replicas did not acknowledge was applied all the same.
                    let failed_chunk_applied = matches!(
                        error,
                        DistkitError::CounterError(CounterError::NotReplicated { .. })
                    );
                    let applied = if failed_chunk_applied {
                        results.len().saturating_add(chunk.len())
                    } else {
                        results.len()
                    };
                    return Err(CounterError::BatchPartiallyApplied {
                        applied,
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
        let reply = self.write(&COUNTER_APPLY, args, key_at).await?;
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

/// `Ok` when at least `acks.replicas` replicas acknowledged.
fn require_acks(acknowledged: usize, acks: ReplicaAcks) -> Result<(), DistkitError> {
    if acknowledged >= acks.replicas {
        Ok(())
    } else {
        Err(CounterError::NotReplicated {
            acknowledged,
            required: acks.replicas,
        }
        .into())
    }
}
