//! The Redis side of the instance-aware counters: the `icounter` script over the twelve keys
//! of a prefix's shard, and the heartbeat that keeps an idle instance alive.
//!
//! # Shards
//!
//! Each shard of a prefix (see [`crate::shards`]) is a complete instance-aware counter space
//! with its own twelve keys: its own totals, slices, membership (`alive`, `reaping`,
//! `buried`), flush records and `due`. A key's C is the sum of the live slices of that key,
//! which all live in the key's shard, so C = Σ live slices holds per key exactly as with one
//! shard. An instance *joins* a shard with its first call there (any call, a read too: the
//! script renews its lease) and from then on its heartbeat renews its lease in that shard as
//! well, so an idle live instance stays alive in every shard where it can hold slices. The
//! heartbeat costs one `icounter` call per joined shard every quarter threshold (default
//! threshold 30 s: at most 16 calls per 7.5 s per instance with 16 shards, the default on a cluster). An
//! instance that dies is found dead in each shard by that shard's next calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, CallPolicy};
use distkit_core::{CounterComparator, CounterError, DistkitError, DistkitRedisKey, key_schema};
use tracing::Instrument;

use super::options::{MAX_DURATION_MS, MIN_DEAD_INSTANCE_THRESHOLD_MS};
use crate::batch;
use crate::buffer::{Batch, Confirmation, DeltaSink, Snapshot};
use crate::checked::OptionsCheck;
use crate::observe;
use crate::scripts::{INSTANCE_COUNTER, INSTANCE_COUNTER_INC};
use crate::shards::{self, ShardGate};
use crate::wire::{about_one_key, decode_array, decode_i64, script_error};

/// The roles of the keys of one prefix, in the script's `KEYS` order.
const KEY_KINDS: [&str; 12] = [
    "totals",
    "alive",
    "windows",
    "flushes",
    "slices",
    "owned",
    "parked",
    "parked_owned",
    "by_key",
    "reaping",
    "buried",
    "due",
];
/// The keys of the `icounter_inc` fast path, as indexes into [`KEY_KINDS`]: totals, alive,
/// slices, owned, by_key, due.
const FAST_PATH_KEYS: [usize; 6] = [0, 1, 4, 5, 8, 11];
/// The most slices of dead instances one call reaps or collects (beyond that, a call reaps
/// only the dead slices of the keys it touches; see the script's header).
const REAP_BUDGET: i64 = 500;

/// What one operation does (the script's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Inc,
    Set,
    SetOnInstance,
    Get,
    Del,
    DelOnInstance,
    Clear,
    ClearOnInstance,
    Beat,
}

impl Kind {
    fn wire(self) -> &'static str {
        match self {
            Self::Inc => "inc",
            Self::Set => "set",
            Self::SetOnInstance => "seti",
            Self::Get => "get",
            Self::Del => "del",
            Self::DelOnInstance => "deli",
            Self::Clear => "clear",
            Self::ClearOnInstance => "cleari",
            Self::Beat => "beat",
        }
    }

    /// Whether a call made only of this kind changes nothing but the heartbeat (and so may
    /// be replayed after a reconnect).
    fn reads_only(self) -> bool {
        matches!(self, Self::Get | Self::Beat)
    }
}

/// One operation of a call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op<'k> {
    pub(crate) kind: Kind,
    pub(crate) key: Option<&'k DistkitRedisKey>,
    pub(crate) condition: CounterComparator,
    pub(crate) amount: i64,
}

impl<'k> Op<'k> {
    pub(crate) fn on(
        kind: Kind,
        key: &'k DistkitRedisKey,
        condition: CounterComparator,
        amount: i64,
    ) -> Self {
        Self {
            kind,
            key: Some(key),
            condition,
            amount,
        }
    }

    /// One unconditional operation of `kind` per update, in order.
    pub(crate) fn each(kind: Kind, updates: &[(&'k DistkitRedisKey, i64)]) -> Vec<Self> {
        updates
            .iter()
            .map(|&(key, amount)| Self::on(kind, key, CounterComparator::Nil, amount))
            .collect()
    }

    /// One conditional operation of `kind` per update, in order.
    pub(crate) fn each_if(
        kind: Kind,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Vec<Self> {
        updates
            .iter()
            .map(|&(key, condition, amount)| Self::on(kind, key, condition, amount))
            .collect()
    }

    /// One read per key, in order.
    pub(crate) fn reads(keys: &[&'k DistkitRedisKey]) -> Vec<Self> {
        keys.iter()
            .map(|&key| Self::on(Kind::Get, key, CounterComparator::Nil, 0))
            .collect()
    }

    pub(crate) fn global(kind: Kind) -> Self {
        Self {
            kind,
            key: None,
            condition: CounterComparator::Nil,
            amount: 0,
        }
    }
}

/// `(C, I)` after and before one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) new: (i64, i64),
    pub(crate) old: (i64, i64),
}

/// How one instance declares its liveness to the others.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lease {
    /// The dead-instance threshold, as configured (clamped by [`RemoteInstanceCounters::new`]).
    pub(crate) threshold: Duration,
    /// The revival window, as configured (clamped by [`RemoteInstanceCounters::new`]).
    pub(crate) revival_window: Duration,
}

/// A flush sent to the script: its sequence number and whether it was sent before.
#[derive(Clone, Copy, Debug)]
struct Flush {
    sequence: u64,
    stale: bool,
}

/// The keys of one shard of a prefix, and what this instance did there.
#[derive(Debug)]
struct ShardKeys {
    keys: Vec<String>,
    /// The keys of the `icounter_inc` fast path (see [`FAST_PATH_KEYS`]).
    fast_path_keys: Vec<String>,
    /// Whether this instance sent any call to this shard (it then holds a lease there, which
    /// the heartbeat keeps renewing).
    joined: AtomicBool,
    /// For a lax instance: whether it has sent a flush to this shard yet. Until then every
    /// call there records the instance in the shard's `flushes` hash, so that a first flush
    /// resent after a lost reply is not mistaken for one whose record was collected. `None`
    /// for a strict instance.
    flushed: Option<AtomicBool>,
}

/// The keys of one prefix and the identity of one instance.
#[derive(Clone, Debug)]
pub(crate) struct RemoteInstanceCounters {
    client: Client,
    prefix: String,
    /// Per shard, in shard order (one for the single-slot layout).
    shards: Arc<[ShardKeys]>,
    /// Checks once that the prefix's recorded shard count is this handle's.
    gate: Arc<ShardGate>,
    instance_id: String,
    threshold_ms: u64,
    window_ms: u64,
    /// Whether the options were valid: every call checks it before any I/O.
    check: OptionsCheck,
}

impl RemoteInstanceCounters {
    /// The counters of `prefix` for a fresh instance. The threshold is clamped to
    /// 1 s ..= [`MAX_DURATION_MS`], the revival window to threshold ..= [`MAX_DURATION_MS`].
    /// `lax` says whether the instance sends numbered flushes; every call is refused before
    /// any I/O when `check` says the options were invalid.
    pub(crate) fn new(
        client: Client,
        prefix: &DistkitRedisKey,
        shard_count: u16,
        lease: Lease,
        lax: bool,
        check: OptionsCheck,
    ) -> Self {
        let shard_count = shards::resolve(shard_count, &client).max(1);
        let shards: Arc<[ShardKeys]> = shards::all(shard_count)
            .map(|shard| {
                let keys: Vec<String> = KEY_KINDS
                    .iter()
                    .map(|kind| key_schema::instance_counter_in(prefix, shard, kind))
                    .collect();
                let fast_path_keys = FAST_PATH_KEYS
                    .iter()
                    .filter_map(|&index| keys.get(index).cloned())
                    .collect();
                ShardKeys {
                    keys,
                    fast_path_keys,
                    joined: AtomicBool::new(false),
                    flushed: lax.then(|| AtomicBool::new(false)),
                }
            })
            .collect();
        let gate = ShardGate::new(
            client.clone(),
            prefix,
            shard_count,
            key_schema::instance_counter_shard_count(prefix),
            ["totals", "alive", "slices", "parked"]
                .map(|kind| key_schema::instance_counter(prefix, kind)),
        );
        let threshold_ms = u64::try_from(lease.threshold.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(MIN_DEAD_INSTANCE_THRESHOLD_MS, MAX_DURATION_MS);
        let window_ms = u64::try_from(lease.revival_window.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(threshold_ms, MAX_DURATION_MS);
        Self {
            client,
            prefix: prefix.to_string(),
            shards,
            gate: Arc::new(gate),
            instance_id: ulid::Ulid::new().to_string(),
            threshold_ms,
            window_ms,
            check,
        }
    }

    /// How many shards the prefix is spread over.
    fn shard_count(&self) -> u16 {
        self.gate.count()
    }

    /// `Ok` when the options were valid, else their [`DistkitError::InvalidOption`].
    pub(crate) fn check(&self) -> Result<(), DistkitError> {
        self.check.ok()
    }

    pub(crate) fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The dead-instance threshold in use (after clamping).
    pub(crate) fn threshold(&self) -> Duration {
        Duration::from_millis(self.threshold_ms)
    }

    /// How often an idle instance sends a heartbeat: a quarter of the threshold.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.threshold_ms.checked_div(4).unwrap_or(250))
    }

    /// Runs `ops` in order, up to 1 000 per atomic call.
    ///
    /// # Errors
    ///
    /// [`CounterError::Overflow`] naming the key, [`CounterError::OutcomeUnknown`] when the
    /// connection failed after a write was sent, [`CounterError::BatchPartiallyApplied`]
    /// when a later chunk failed, or [`DistkitError::RedisError`].
    pub(crate) async fn run(&self, ops: &[Op<'_>]) -> Result<Vec<Outcome>, DistkitError> {
        self.run_unnamed(ops)
            .await
            .map_err(|error| about_one_key(error, ops.iter().map(|op| op.key)))
    }

    /// [`run`](Self::run), its errors not naming the key.
    async fn run_unnamed(&self, ops: &[Op<'_>]) -> Result<Vec<Outcome>, DistkitError> {
        self.check()?;
        self.gate.ensure().await?;
        if self.shard_count() <= 1 {
            return self.run_in_shard(0, ops).await;
        }
        if let [op] = ops
            && op.key.is_none()
        {
            return self.run_global(*op).await;
        }
        let groups = shards::group(
            self.shard_count(),
            ops.iter().map(|op| op.key.map_or("", |key| key.as_str())),
        );
        if let [(shard, _)] = groups.as_slice() {
            return self.run_in_shard(*shard, ops).await;
        }
        // Several shards: one after the other, in the order of their first operation.
        batch::shard_by_shard(groups, ops, |shard, shard_ops| async move {
            self.run_in_shard(shard, &shard_ops).await
        })
        .await
    }

    /// A global operation (`clear`, `cleari`, `beat`) over several shards, shard after
    /// shard, each atomic on its own: `clear` reaches every shard, `cleari` and `beat` the
    /// shards this instance joined (it holds no slice and no lease elsewhere).
    async fn run_global(&self, op: Op<'_>) -> Result<Vec<Outcome>, DistkitError> {
        for (shard, keys) in self.shards.iter().enumerate() {
            if op.kind == Kind::Clear || keys.joined.load(Ordering::Acquire) {
                self.run_in_shard(shard, &[op]).await?;
            }
        }
        Ok(vec![Outcome::default()])
    }

    /// [`run`](Self::run) for operations that all belong to shard `shard`.
    async fn run_in_shard(
        &self,
        shard: usize,
        ops: &[Op<'_>],
    ) -> Result<Vec<Outcome>, DistkitError> {
        batch::in_chunks(ops.len(), |range| async move {
            let chunk = ops.get(range).unwrap_or_default();
            self.call(shard, chunk, None).await
        })
        .await
    }

    async fn call(
        &self,
        shard: usize,
        ops: &[Op<'_>],
        flush: Option<Flush>,
    ) -> Result<Vec<Outcome>, DistkitError> {
        self.check()?;
        self.gate.ensure().await?;
        let Some(shard_keys) = self.shards.get(shard) else {
            return Err(DistkitError::InvalidOption(format!(
                "shard {shard} of {} does not exist",
                self.shard_count()
            )));
        };
        // Marked before sending: a call whose reply is lost may have made the lease.
        shard_keys.joined.store(true, Ordering::Release);
        let register = shard_keys
            .flushed
            .as_ref()
            .is_some_and(|flushed| !flushed.load(Ordering::Acquire));
        if let ([op], None, false) = (ops, flush, register)
            && op.kind == Kind::Inc
            && op.condition == CounterComparator::Nil
            && let Some(key) = op.key
            && let Some(outcome) = self
                .increment_on_fast_path(shard_keys, key, op.amount)
                .await?
        {
            return Ok(vec![outcome]);
        }
        let mut args = Vec::with_capacity(ops.len().saturating_mul(5).saturating_add(7));
        args.push(Value::from(self.instance_id.as_str()));
        args.push(Value::from(self.threshold_ms.to_string()));
        args.push(Value::from(self.window_ms.to_string()));
        args.push(Value::from(REAP_BUDGET));
        args.push(Value::from(
            flush
                .map(|flush| flush.sequence.to_string())
                .unwrap_or_default(),
        ));
        args.push(Value::from(if flush.is_some_and(|flush| flush.stale) {
            "1"
        } else {
            "0"
        }));
        args.push(Value::from(if register { "1" } else { "0" }));
        for op in ops {
            let (comparator, operand) = op.condition.wire();
            args.push(Value::from(op.kind.wire()));
            args.push(Value::from(op.key.map_or("", |key| key.as_str())));
            args.push(Value::from(comparator));
            args.push(Value::from(operand.to_string()));
            args.push(Value::from(op.amount.to_string()));
        }
        // Idempotent calls (reads, heartbeats, flushes numbered for exactly-once) may be
        // replayed; every other write is sent once.
        let attempts = if flush.is_some() || ops.iter().all(|op| op.kind.reads_only()) {
            Attempts::Retry
        } else {
            Attempts::Once
        };
        let policy = CallPolicy {
            attempts,
            timeout: None,
        };
        let keys: Vec<&str> = shard_keys.keys.iter().map(String::as_str).collect();
        let key_at = |index: usize| {
            ops.get(index)
                .and_then(|op| op.key)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let reply = INSTANCE_COUNTER
            .run(&self.client, &keys, args, policy)
            .await
            .map_err(|error| script_error(error, attempts, key_at))?;
        let items = decode_array(reply)?;
        // After the four values per operation, the number of instances this call found dead.
        let reaped = items
            .len()
            .checked_rem(4)
            .filter(|&extra| extra == 1)
            .and_then(|_| items.last())
            .and_then(Value::as_u64)
            .unwrap_or(0);
        observe::instances_reaped(&self.prefix, &self.instance_id, reaped);
        let mut outcomes = Vec::with_capacity(ops.len());
        for (op, quad) in ops.iter().zip(items.chunks_exact(4)) {
            let key = op.key.map_or("", |key| key.as_str());
            if let [total, own, old_total, old_own] = quad {
                outcomes.push(Outcome {
                    new: (decode_i64(total, key)?, decode_i64(own, key)?),
                    old: (decode_i64(old_total, key)?, decode_i64(old_own, key)?),
                });
            }
        }
        Ok(outcomes)
    }

    /// One unconditional `inc` through the `icounter_inc` script: `None` when that script
    /// declined (it changed nothing but the lease, which the full script renews as well) and
    /// the operation must go through `icounter`.
    ///
    /// # Errors
    ///
    /// [`CounterError::OutcomeUnknown`] when the connection failed after the call was sent
    /// (it is sent once), or [`DistkitError::RedisError`].
    async fn increment_on_fast_path(
        &self,
        shard_keys: &ShardKeys,
        key: &DistkitRedisKey,
        amount: i64,
    ) -> Result<Option<Outcome>, DistkitError> {
        let args = vec![
            Value::from(self.instance_id.as_str()),
            Value::from(self.threshold_ms.to_string()),
            Value::from(key.as_str()),
            Value::from(amount.to_string()),
        ];
        let keys: Vec<&str> = shard_keys
            .fast_path_keys
            .iter()
            .map(String::as_str)
            .collect();
        let reply = INSTANCE_COUNTER_INC
            .run(&self.client, &keys, args, CallPolicy::ONCE)
            .await
            .map_err(|error| script_error(error, Attempts::Once, |_| key.to_string()))?;
        let items = decode_array(reply)?;
        let [total, own, old_total, old_own, _found_dead] = items.as_slice() else {
            return Ok(None);
        };
        let key = key.as_str();
        Ok(Some(Outcome {
            new: (decode_i64(total, key)?, decode_i64(own, key)?),
            old: (decode_i64(old_total, key)?, decode_i64(old_own, key)?),
        }))
    }

    /// Sends a heartbeat (and reaps dead instances' slices) without changing any value, in a
    /// `distkit.icounter.heartbeat` span: to the one shard of the single-slot layout, else to
    /// every shard this instance joined (one call each).
    pub(crate) async fn beat(&self) -> Result<(), DistkitError> {
        let span = tracing::debug_span!(
            "distkit.icounter.heartbeat",
            prefix = self.prefix.as_str(),
            instance = self.instance_id.as_str(),
        );
        self.run(&[Op::global(Kind::Beat)])
            .instrument(span)
            .await
            .map(drop)
    }
}

impl DeltaSink for RemoteInstanceCounters {
    /// The instance's flush record is collected only after the instance was found dead (one
    /// threshold after its last call) and then its revival window passed.
    fn record_lifetime(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// Sends the batch as `inc` operations followed by `get` read-backs, numbered for
    /// exactly-once. A delta that would overflow is left out (and reported as dropped) and
    /// the rest is sent again under the same number.
    ///
    /// A stale batch (first sent longer than the revival window ago) is refused with
    /// [`CounterError::FlushExpired`] when Redis no longer holds this instance's flush record
    /// (collected after its revival window): it may have been applied before, so it is not
    /// applied again.
    async fn send(&self, batch: &Batch) -> Result<Confirmation, DistkitError> {
        self.check()?;
        self.gate.ensure().await?;
        let count = self.shard_count();
        let shard_of =
            |key: &DistkitRedisKey| usize::from(key_schema::shard_of(key.as_str(), count));
        // The batch's part in each shard it touches: positions of its deltas and reads.
        let mut parts: Vec<(usize, Vec<usize>, Vec<usize>)> = Vec::new();
        let mut part_of = |shard: usize| match parts.iter().position(|part| part.0 == shard) {
            Some(index) => index,
            None => {
                parts.push((shard, Vec::new(), Vec::new()));
                parts.len().saturating_sub(1)
            }
        };
        let delta_parts: Vec<usize> = batch
            .deltas
            .iter()
            .map(|(key, _)| part_of(shard_of(key)))
            .collect();
        let read_parts: Vec<usize> = batch
            .reads
            .iter()
            .map(|key| part_of(shard_of(key)))
            .collect();
        for (position, &index) in delta_parts.iter().enumerate() {
            if let Some(part) = parts.get_mut(index) {
                part.1.push(position);
            }
        }
        for (position, &index) in read_parts.iter().enumerate() {
            if let Some(part) = parts.get_mut(index) {
                part.2.push(position);
            }
        }
        let replies = futures_util::future::join_all(parts.iter().map(|(shard, deltas, reads)| {
            let deltas: Vec<(DistkitRedisKey, i64)> = deltas
                .iter()
                .filter_map(|&position| batch.deltas.get(position).cloned())
                .collect();
            let reads: Vec<DistkitRedisKey> = reads
                .iter()
                .filter_map(|&position| batch.reads.get(position).cloned())
                .collect();
            self.send_part(*shard, batch.sequence, batch.stale, deltas, reads)
        }))
        .await;
        let mut confirmation = Confirmation {
            deltas: vec![None; batch.deltas.len()],
            reads: vec![None; batch.reads.len()],
        };
        for ((_, deltas, reads), reply) in parts.iter().zip(replies) {
            let part = match reply {
                Ok(part) => part,
                Err(DistkitError::CounterError(CounterError::FlushExpired { .. })) => {
                    return Err(CounterError::FlushExpired {
                        deltas: batch.deltas.len(),
                    }
                    .into());
                }
                Err(error) => return Err(error),
            };
            for (&position, value) in deltas.iter().zip(part.deltas) {
                if let Some(slot) = confirmation.deltas.get_mut(position) {
                    *slot = value;
                }
            }
            for (&position, value) in reads.iter().zip(part.reads) {
                if let Some(slot) = confirmation.reads.get_mut(position) {
                    *slot = value;
                }
            }
        }
        Ok(confirmation)
    }
}

impl RemoteInstanceCounters {
    /// Sends the part of a batch that belongs to shard `shard`: its deltas as `inc`
    /// operations followed by `get` read-backs, numbered `sequence` for exactly-once in that
    /// shard. A delta that would overflow is left out (and reported as dropped) and the rest
    /// is sent again under the same number.
    async fn send_part(
        &self,
        shard: usize,
        sequence: u64,
        stale: bool,
        batch_deltas: Vec<(DistkitRedisKey, i64)>,
        batch_reads: Vec<DistkitRedisKey>,
    ) -> Result<Confirmation, DistkitError> {
        if let Some(flushed) = self
            .shards
            .get(shard)
            .and_then(|shard_keys| shard_keys.flushed.as_ref())
        {
            flushed.store(true, Ordering::Release);
        }
        // A part that only reads applies nothing, so it cannot apply anything twice.
        let stale = stale && !batch_deltas.is_empty();
        let mut dropped = vec![false; batch_deltas.len()];
        loop {
            let mut ops: Vec<Op<'_>> = batch_deltas
                .iter()
                .zip(&dropped)
                .filter(|&(_, &dropped)| !dropped)
                .map(|((key, delta), _)| Op::on(Kind::Inc, key, CounterComparator::Nil, *delta))
                .collect();
            ops.extend(
                batch_reads
                    .iter()
                    .map(|key| Op::on(Kind::Get, key, CounterComparator::Nil, 0)),
            );
            // After an overflow the rest is sent again under the same number: that call was
            // undone, so it is stale exactly when the batch is.
            let flush = Flush { sequence, stale };
            match self.call(shard, &ops, Some(flush)).await {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    let mut confirmation = Confirmation::default();
                    for &was_dropped in &dropped {
                        let applied = if was_dropped { None } else { outcomes.next() };
                        confirmation.deltas.push(applied.map(|outcome| Snapshot {
                            total: outcome.new.0,
                            own: outcome.new.1,
                        }));
                    }
                    confirmation.reads = outcomes
                        .map(|outcome| {
                            Some(Snapshot {
                                total: outcome.new.0,
                                own: outcome.new.1,
                            })
                        })
                        .collect();
                    return Ok(confirmation);
                }
                Err(DistkitError::CounterError(CounterError::Overflow { key })) => {
                    let position = batch_deltas.iter().zip(&dropped).position(
                        |((candidate, _), &was_dropped)| !was_dropped && candidate.as_str() == key,
                    );
                    match position.and_then(|position| dropped.get_mut(position)) {
                        Some(flag) => *flag = true,
                        None => return Err(CounterError::Overflow { key }.into()),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Keeps `remote`'s instance alive while it exists and `open()` holds: a heartbeat every
/// quarter threshold, from the library's background runtime.
pub(crate) fn start_heartbeat(
    remote: &Arc<RemoteInstanceCounters>,
    open: impl Fn() -> bool + Send + 'static,
) -> bool {
    if remote.check().is_err() {
        // Invalid options: every operation reports them, and nothing runs in the background.
        return false;
    }
    let interval = remote.heartbeat_interval();
    let weak: Weak<RemoteInstanceCounters> = Arc::downgrade(remote);
    distkit_core::task::spawn_background(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(remote) = weak.upgrade().filter(|_| open()) else {
                return;
            };
            if let Err(error) = remote.beat().await {
                tracing::warn!(target: "distkit::counter",
                    %error,
                    prefix = remote.prefix(),
                    instance = remote.instance_id(),
                    "instance-aware counter heartbeat failed"
                );
            }
        }
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use distkit_test_support::{TestRedis, unique_prefix};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    async fn lax_instance(redis: &TestRedis, prefix: &DistkitRedisKey) -> RemoteInstanceCounters {
        let client = tokio::time::timeout(LIMIT, distkit_core::connect(redis.url()))
            .await
            .unwrap()
            .unwrap();
        let lease = Lease {
            threshold: Duration::from_secs(30),
            revival_window: Duration::from_secs(3_600),
        };
        RemoteInstanceCounters::new(client, prefix, 1, lease, true, OptionsCheck::default())
    }

    fn batch(sequence: u64, stale: bool, key: &DistkitRedisKey, delta: i64) -> Batch {
        Batch {
            sequence,
            stale,
            first_sent: None,
            deltas: vec![(key.clone(), delta)],
            reads: Vec::new(),
        }
    }

    async fn total(remote: &RemoteInstanceCounters, key: &DistkitRedisKey) -> i64 {
        let ops = [Op::on(Kind::Get, key, CounterComparator::Nil, 0)];
        let outcomes = tokio::time::timeout(LIMIT, remote.run(&ops))
            .await
            .unwrap()
            .unwrap();
        outcomes.first().unwrap().new.0
    }

    #[tokio::test]
    async fn a_resent_flush_is_applied_once_and_refused_once_its_record_was_collected() {
        let redis = TestRedis::start();
        let prefix = DistkitRedisKey::new(unique_prefix()).unwrap();
        let k = DistkitRedisKey::new("k".to_owned()).unwrap();
        let remote = lax_instance(&redis, &prefix).await;
        // Any call records a lax instance that has not flushed yet: its first flush, resent
        // because the reply of the first attempt was lost, is applied (once).
        assert_eq!(total(&remote, &k).await, 0);
        let first = batch(1, true, &k, 5);
        for _ in 0..2 {
            let confirmation = tokio::time::timeout(LIMIT, remote.send(&first))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                confirmation.deltas,
                vec![Some(Snapshot { total: 5, own: 5 })]
            );
        }
        // The record is collected (as after the revival window): a stale resend may have been
        // applied before, so it is refused and changes nothing; a first attempt is applied.
        let flushes = key_schema::instance_counter(&prefix, "flushes");
        assert_eq!(redis.cli(&["HDEL", &flushes, remote.instance_id()]), "1");
        let resent = tokio::time::timeout(LIMIT, remote.send(&batch(2, true, &k, 7)))
            .await
            .unwrap();
        assert!(
            matches!(
                resent,
                Err(DistkitError::CounterError(CounterError::FlushExpired {
                    deltas: 1
                }))
            ),
            "{resent:?}"
        );
        assert_eq!(total(&remote, &k).await, 5);
        assert_eq!(
            redis.cli(&["HEXISTS", &flushes, remote.instance_id()]),
            "0",
            "an instance that has flushed is not recorded again by other calls"
        );
        tokio::time::timeout(LIMIT, remote.send(&batch(3, false, &k, 1)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(total(&remote, &k).await, 6);
    }

    #[test]
    fn the_revival_window_is_never_below_the_threshold_nor_above_the_maximum() {
        let client = Client::default();
        let prefix = DistkitRedisKey::new("p".to_owned()).unwrap();
        let short = Lease {
            threshold: Duration::from_secs(5),
            revival_window: Duration::from_millis(1),
        };
        let remote = RemoteInstanceCounters::new(
            client.clone(),
            &prefix,
            1,
            short,
            false,
            OptionsCheck::default(),
        );
        assert_eq!((remote.threshold_ms, remote.window_ms), (5_000, 5_000));
        let huge = Lease {
            threshold: Duration::MAX,
            revival_window: Duration::MAX,
        };
        let remote =
            RemoteInstanceCounters::new(client, &prefix, 1, huge, false, OptionsCheck::default());
        assert_eq!(
            (remote.threshold_ms, remote.window_ms),
            (MAX_DURATION_MS, MAX_DURATION_MS)
        );
        assert!(
            remote.shards.iter().all(|shard| shard.flushed.is_none()),
            "a strict instance never records flushes"
        );
    }
}
