use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey};

use super::StrictInstanceAwareCounterOptions;
use super::absolute::{instance_counter_impl, only, with_both, with_new};
use super::counter_trait::{InstanceAwareCounterTrait, Pair};
use super::remote::{Kind, Lease, Op, Outcome, RemoteInstanceCounters, start_heartbeat};
use crate::checked::OptionsCheck;

/// An instance-aware counter whose every call is one atomic Lua script (`icounter`).
///
/// Each call also sends this instance's heartbeat, revives it if it had been reaped, and
/// reaps up to 500 slices of dead instances. A background task sends a heartbeat every
/// quarter of the dead-instance threshold while the counter exists, so an idle instance stays
/// alive. Writes are sent once: a connection failure after sending is
/// [`CounterError::OutcomeUnknown`](distkit_core::CounterError::OutcomeUnknown).
///
/// ```no_run
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use distkit::icounter::{
///     InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
/// };
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let prefix = DistkitRedisKey::try_from("websockets")?;
/// let open = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(prefix, client));
/// let room = DistkitRedisKey::try_from("lobby")?;
///
/// // This instance now holds 250 connections; the total follows the live instances.
/// let (total, mine) = open.set_on_instance(&room, 250).await?;
/// println!("{mine} of {total} lobby connections are on {}", open.instance_id());
/// # Ok(())
/// # }
/// ```
pub struct StrictInstanceAwareCounter {
    remote: Arc<RemoteInstanceCounters>,
    heartbeat_started: AtomicBool,
}

/// Compact: the prefix, the instance and its dead-instance threshold.
impl std::fmt::Debug for StrictInstanceAwareCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrictInstanceAwareCounter")
            .field("prefix", &self.remote.prefix())
            .field("instance_id", &self.remote.instance_id())
            .field("dead_instance_threshold", &self.remote.threshold())
            .finish_non_exhaustive()
    }
}

impl StrictInstanceAwareCounter {
    /// A counter over the keys of `options.prefix`, with a fresh instance id.
    ///
    /// The heartbeat task runs on distkit's background runtime (see
    /// [`distkit_core::task`]), whichever runtime built this object; this never panics.
    ///
    /// The options are checked here, without any I/O, but this cannot fail: when
    /// [`StrictInstanceAwareCounterOptions::validate`] refuses them, no heartbeat starts and
    /// every operation returns its [`DistkitError::InvalidOption`] before any I/O.
    pub fn new(options: StrictInstanceAwareCounterOptions) -> Arc<Self> {
        let check = OptionsCheck::of(options.validate());
        let lease = Lease {
            threshold: options.dead_instance_threshold,
            revival_window: options.revival_window,
        };
        let remote = Arc::new(RemoteInstanceCounters::new(
            options.client,
            &options.prefix,
            lease,
            false,
            check,
        ));
        let counter = Arc::new(Self {
            remote,
            heartbeat_started: AtomicBool::new(false),
        });
        counter.start_heartbeat();
        counter
    }

    fn start_heartbeat(&self) {
        if !self.heartbeat_started.load(Ordering::Acquire) && start_heartbeat(&self.remote, || true)
        {
            self.heartbeat_started.store(true, Ordering::Release);
        }
    }

    async fn apply_ops(&self, ops: &[Op<'_>]) -> Result<Vec<Outcome>, DistkitError> {
        self.start_heartbeat();
        self.remote.run(ops).await
    }
}

instance_counter_impl!(StrictInstanceAwareCounter {
    fn instance_id(&self) -> &str {
        self.remote.instance_id()
    }

    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        Ok(only(
            &self
                .apply_ops(&[Op::on(Kind::Inc, key, CounterComparator::Nil, count)])
                .await?,
        )
        .new)
    }

    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        let outcomes = match count.checked_neg() {
            Some(delta) => {
                self.apply_ops(&[Op::on(Kind::Inc, key, CounterComparator::Nil, delta)])
                    .await?
            }
            // -i64::MIN does not fit: add i64::MAX and 1 in one atomic call.
            None => {
                self.apply_ops(&[
                    Op::on(Kind::Inc, key, CounterComparator::Nil, i64::MAX),
                    Op::on(Kind::Inc, key, CounterComparator::Nil, 1),
                ])
                .await?
            }
        };
        Ok(outcomes.last().copied().unwrap_or_default().new)
    }

    async fn get(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError> {
        Ok(only(
            &self
                .apply_ops(&[Op::on(Kind::Get, key, CounterComparator::Nil, 0)])
                .await?,
        )
        .new)
    }

    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        let ops = Op::reads(keys);
        Ok(with_new(keys.iter().copied(), self.apply_ops(&ops).await?))
    }

    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        let ops = Op::each(Kind::Inc, updates);
        Ok(with_new(
            updates.iter().map(|&(key, _)| key),
            self.apply_ops(&ops).await?,
        ))
    }

});
