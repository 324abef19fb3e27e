//! The Redis side of the counters, shared by [`StrictCounter`](super::StrictCounter) and
//! [`LaxCounter`](super::LaxCounter): every stored value of a prefix is one field of the hash
//! of its shard, `distkit:{<prefix>:<shard>}:counter` (`distkit:{<prefix>}:counter` with one
//! shard; see [`crate::shards`]).

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
use crate::batch;
use crate::checked::OptionsCheck;
use crate::scripts::{COUNTER_APPLY, COUNTER_INC};
use crate::shards::{self, ShardGate};
use crate::wire::{about_one_key, decode_array, decode_i64, script_error};

/// The error of a command written once: a transport failure (sent or not, the outcome is
/// unknown) is [`CounterError::OutcomeUnknown`].
fn written_once_error(error: distkit_core::fred::error::Error) -> DistkitError {
    if distkit_core::error_is_transport_failure(&error) {
        CounterError::OutcomeUnknown {
            key: None,
            source: error,
        }
        .into()
    } else {
        error.into()
    }
}

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
    /// The values hash of each shard, in shard order (one for the single-slot layout).
    values_keys: Arc<[String]>,
    /// Checks once that the prefix's recorded shard count is this handle's.
    gate: Arc<ShardGate>,
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
    /// The counters of `prefix` spread over `shards` shards (see [`crate::shards`];
    /// [`AUTO_SHARDS`](crate::shards::AUTO_SHARDS) picks by deployment).
    pub(crate) fn new(client: Client, prefix: &DistkitRedisKey, shards: u16) -> Self {
        let shards = shards::resolve(shards, &client);
        let values_keys: Arc<[String]> = shards::all(shards)
            .map(|shard| key_schema::counter_values_in(prefix, shard))
            .collect();
        let gate = ShardGate::new(
            client.clone(),
            prefix,
            shards.max(1),
            key_schema::counter_shard_count(prefix),
            [key_schema::counter_values(prefix)],
        );
        Self {
            client,
            values_keys,
            gate: Arc::new(gate),
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
    #[inline]
    pub(crate) fn check(&self) -> Result<(), DistkitError> {
        self.check.ok()
    }

    /// [`check`](Self::check), then the shard-count check (one script on a handle's first
    /// call, an atomic load after): every Redis operation runs it first.
    pub(crate) async fn ready(&self) -> Result<(), DistkitError> {
        self.check()?;
        self.gate.ensure().await
    }

    /// The shard-count check of this handle, shared with its lax flushes.
    pub(crate) fn gate(&self) -> &Arc<ShardGate> {
        &self.gate
    }

    /// How many shards the prefix is spread over.
    pub(crate) fn shard_count(&self) -> u16 {
        self.gate.count()
    }

    /// The shard of `key`, as an index into the values keys.
    pub(crate) fn shard_of(&self, key: &str) -> usize {
        usize::from(key_schema::shard_of(key, self.gate.count()))
    }

    /// The values hash of shard `shard`.
    fn values_key_at(&self, shard: usize) -> &str {
        self.values_keys.get(shard).map_or("", String::as_str)
    }

    /// The values hash holding `key`.
    fn values_key(&self, key: &str) -> &str {
        self.values_key_at(self.shard_of(key))
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
        values_key: &str,
        args: Vec<Value>,
        key_at: impl Fn(usize) -> String,
    ) -> Result<Value, DistkitError> {
        self.ready().await?;
        let keys = [values_key];
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

    /// Whether the client talks to a Redis Cluster (where each shard is its own slot).
    pub(crate) fn is_clustered(&self) -> bool {
        self.client.is_clustered()
    }

    /// Runs a script on the values hashes of `shards` (several only on a server that is not
    /// a cluster), as it is: no option check, no replica acknowledgement, fred's error as it
    /// came.
    pub(crate) async fn run_script_on(
        &self,
        script: &LuaScript,
        shards: &[usize],
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, distkit_core::fred::error::Error> {
        let keys: Vec<&str> = shards
            .iter()
            .map(|&shard| self.values_key_at(shard))
            .collect();
        script.run(&self.client, &keys, args, policy).await
    }

    /// Runs a script on the values hash of shard `shard`, as it is: no option check, no
    /// replica acknowledgement, fred's error as it came.
    pub(crate) async fn run_script(
        &self,
        script: &LuaScript,
        shard: usize,
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, distkit_core::fred::error::Error> {
        script
            .run(&self.client, &[self.values_key_at(shard)], args, policy)
            .await
    }

    /// Adds `delta` to `key`; returns the new value. Without replica acknowledgement,
    /// concurrent increments of this object are coalesced (see [`group_commit`]): alone, or
    /// with a slot free, it runs `counter_inc` at once; else it joins the next group.
    pub(crate) async fn inc(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        let result = if self.replica_acks.is_some() {
            self.inc_alone(key, delta).await
        } else {
            self.ready().await?;
            match self.group_commit.enter(self, key, delta) {
                Entry::Alone(slot) => {
                    let result = self.inc_alone(key, delta).await;
                    drop(slot);
                    result
                }
                Entry::Queued(answer) => group_commit::queued_answer(answer).await,
            }
        };
        result.map_err(|error| error.about_key("counter key", key.as_str()))
    }

    /// Adds `delta` to `key` with the `counter_inc` script; returns the new value.
    async fn inc_alone(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        let reply = self
            .write(
                &COUNTER_INC,
                self.values_key(key.as_str()),
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
        self.ready().await?;
        let values_key = self.values_key(key.as_str());
        let (value, _sends) = retry_redirected(&self.client, None, || {
            self.client.hget::<Value, _, _>(values_key, key.as_str())
        })
        .await;
        let value = value
            .map_err(|error| DistkitError::from(error).about_key("counter key", key.as_str()))?;
        decode_i64(&value, key)
    }

    /// Reads many values, in order: per shard, `MAX_READS_PER_CALL` per round trip. Each
    /// read is of its own instant (not one snapshot across shards or chunks).
    pub(crate) async fn get_many(
        &self,
        keys: &[&DistkitRedisKey],
    ) -> Result<Vec<i64>, DistkitError> {
        self.ready().await?;
        if self.shard_count() <= 1 {
            return self.read_shard(0, keys).await;
        }
        let mut values = vec![0_i64; keys.len()];
        for (shard, positions) in shards::group(self.shard_count(), keys.iter().map(|k| k.as_str()))
        {
            let shard_keys: Vec<&DistkitRedisKey> = positions
                .iter()
                .filter_map(|&position| keys.get(position).copied())
                .collect();
            let shard_values = self.read_shard(shard, &shard_keys).await?;
            for (position, value) in positions.into_iter().zip(shard_values) {
                if let Some(slot) = values.get_mut(position) {
                    *slot = value;
                }
            }
        }
        Ok(values)
    }

    /// Reads `keys`, all of shard `shard`, in order, `MAX_READS_PER_CALL` per round trip.
    async fn read_shard(
        &self,
        shard: usize,
        keys: &[&DistkitRedisKey],
    ) -> Result<Vec<i64>, DistkitError> {
        let values_key = self.values_key_at(shard);
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_READS_PER_CALL) {
            let fields: Vec<&str> = chunk.iter().map(|key| key.as_str()).collect();
            let (reply, _sends) = retry_redirected(&self.client, None, || async {
                if let [field] = fields.as_slice() {
                    let value: Value = self.client.hget(values_key, *field).await?;
                    Ok(Value::Array(vec![value]))
                } else {
                    self.client.hmget(values_key, fields.clone()).await
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

    /// Removes every value of the prefix: one `UNLINK` per shard, shard after shard (a large
    /// hash is freed in the background). Each shard is cleared atomically, the prefix as a
    /// whole is not: a concurrent write may land in a shard already cleared. The recorded
    /// shard count stays.
    ///
    /// Each `UNLINK` is written once: fred does not replay it after a reconnect, where it
    /// would also remove what was written after it ran. A transport failure after it was
    /// written is [`CounterError::OutcomeUnknown`].
    pub(crate) async fn clear(&self) -> Result<(), DistkitError> {
        self.ready().await?;
        for shard in 0..self.values_keys.len() {
            self.clear_shard(self.values_key_at(shard)).await?;
        }
        Ok(())
    }

    /// Removes the values hash `values_key` (and waits for the replicas when asked to).
    async fn clear_shard(&self, values_key: &str) -> Result<(), DistkitError> {
        let once = self.client.with_options(&Options {
            max_attempts: Some(1),
            ..Options::default()
        });
        let Some(acks) = self.replica_acks else {
            let (removed, _sends) =
                retry_redirected(&self.client, None, || once.unlink::<i64, _>(values_key)).await;
            let _removed = removed.map_err(written_once_error)?;
            return Ok(());
        };
        // Queued together, so the WAIT follows the UNLINK on the same connection.
        let keys = [values_key];
        // A redirected UNLINK is sent again with a new WAIT: the first one ran on the
        // node that redirected it.
        let acknowledged = AtomicUsize::new(0);
        let (removed, _sends) = retry_redirected(&self.client, None, || async {
            let (removed, count) = tokio::join!(
                once.unlink::<i64, _>(values_key),
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
    /// Each chunk of [`MAX_OPERATIONS_PER_CALL`](batch::MAX_OPERATIONS_PER_CALL) is all or nothing; when a later chunk fails, the
    /// error says how many operations were applied (the earlier chunks, and the failing one
    /// too when only its replica acknowledgement failed).
    pub(crate) async fn apply(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.apply_unnamed(operations).await.map_err(|error| {
            about_one_key(
                error,
                operations.iter().map(|operation| Some(operation.key)),
            )
        })
    }

    /// [`apply`](Self::apply), its errors not naming the key.
    async fn apply_unnamed(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.ready().await?;
        let groups = shards::group(
            self.shard_count(),
            operations.iter().map(|operation| operation.key.as_str()),
        );
        if let [(shard, _)] = groups.as_slice() {
            return self.apply_in_shard(*shard, operations).await;
        }
        // Several shards: one after the other, in the order of their first operation.
        batch::shard_by_shard(groups, operations, |shard, shard_operations| async move {
            self.apply_in_shard(shard, &shard_operations).await
        })
        .await
    }

    /// [`apply`](Self::apply) for operations that all belong to shard `shard`.
    async fn apply_in_shard(
        &self,
        shard: usize,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        batch::in_chunks(operations.len(), |range| async move {
            let chunk = operations.get(range).unwrap_or_default();
            self.apply_chunk(shard, chunk).await
        })
        .await
    }

    async fn apply_chunk(
        &self,
        shard: usize,
        chunk: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
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
        let reply = self
            .write(&COUNTER_APPLY, self.values_key_at(shard), args, key_at)
            .await?;
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
            key: None,
            acknowledged,
            required: acks.replicas,
        }
        .into())
    }
}
