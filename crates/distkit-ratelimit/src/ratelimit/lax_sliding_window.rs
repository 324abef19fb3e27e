//! The lax sliding-window limiter: local admission, background sync with Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::script::{CallPolicy, LuaScript};
use distkit_core::{DistkitError, DistkitRedisKey};
use fred::clients::Client;
use fred::types::Value;

use super::lax::{self, Algorithm, Core, DEFAULT_SYNC_INTERVAL, Delivery};
use super::policy::{Charge, FailurePolicy, LimiterKind, decide_under};
use super::sliding_window::check_limit_and_cost;
use super::{
    Decision, SlidingWindowLimiter, SlidingWindowOptions, four_integers, non_negative, redis_key,
};

/// The delivery script of the lax sliding-window limiter.
pub(super) static SLIDING_WINDOW_SYNC: LuaScript = LuaScript::new(
    "sliding_window_sync",
    concat!(
        include_str!("scripts/sliding_window_common.lua"),
        include_str!("scripts/sliding_window_sync.lua")
    ),
);

/// The options of a [`LaxSlidingWindowLimiter`].
///
/// Build them with [`new`](Self::new) and set fields, or with [`builder`](Self::builder).
/// [`LaxSlidingWindowLimiter::new`] checks them with [`validate`](Self::validate).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LaxSlidingWindowOptions {
    /// The namespace of the limiter's keys. Lax and strict
    /// ([`SlidingWindowLimiter`]) limiters with the same prefix share state (and must then
    /// use the same `window` and `bucket`).
    pub prefix: DistkitRedisKey,
    /// The Redis client.
    pub client: Client,
    /// How far back the window reaches: 10 s by default, as
    /// [`SlidingWindowOptions::window`].
    pub window: Duration,
    /// How close together units are counted as one bucket: 100 ms by default, as
    /// [`SlidingWindowOptions::bucket`].
    pub bucket: Duration,
    /// How often the units admitted locally are delivered to Redis and the window's count is
    /// read back: 20 ms by default, from [`MIN_SYNC_INTERVAL`](super::MIN_SYNC_INTERVAL) (1 ms) to
    /// [`MAX_SYNC_INTERVAL`](super::MAX_SYNC_INTERVAL) (1 h). The over-admission of the limiter grows with it (see
    /// [`LaxSlidingWindowLimiter`]).
    pub sync_interval: Duration,
    /// What a call on a cold key does when Redis fails it or does not answer in time (warm
    /// keys are decided in memory): fail closed (return the error) by default; see
    /// [`FailurePolicy`].
    pub failure_policy: FailurePolicy,
}

impl LaxSlidingWindowOptions {
    /// Options for a limiter of `prefix` on `client`: a 10 s window of 100 ms buckets, synced
    /// every 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        let strict = SlidingWindowOptions::new(prefix, client);
        Self {
            prefix: strict.prefix,
            client: strict.client,
            window: strict.window,
            bucket: strict.bucket,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            failure_policy: FailurePolicy::default(),
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(prefix: DistkitRedisKey, client: Client) -> LaxSlidingWindowOptionsBuilder {
        LaxSlidingWindowOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks `window`, `bucket` and `sync_interval` without any I/O; what
    /// [`LaxSlidingWindowLimiter::new`] checks.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `window` or `bucket` is out of range (as
    /// [`SlidingWindowOptions::validate`]), or `sync_interval` is shorter than
    /// [`MIN_SYNC_INTERVAL`](super::MIN_SYNC_INTERVAL) or longer than [`MAX_SYNC_INTERVAL`](super::MAX_SYNC_INTERVAL).
    pub fn validate(&self) -> Result<(), DistkitError> {
        self.strict().window_and_bucket_ms()?;
        lax::check_sync_interval("lax sliding window", self.sync_interval)?;
        Ok(())
    }

    /// The options of the strict limiter that makes the calls on cold keys.
    fn strict(&self) -> SlidingWindowOptions {
        let mut strict = SlidingWindowOptions::new(self.prefix.clone(), self.client.clone());
        strict.window = self.window;
        strict.bucket = self.bucket;
        strict
    }
}

/// Builds [`LaxSlidingWindowOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct LaxSlidingWindowOptionsBuilder {
    options: LaxSlidingWindowOptions,
}

impl LaxSlidingWindowOptionsBuilder {
    /// Sets [`LaxSlidingWindowOptions::window`].
    pub fn window(mut self, window: Duration) -> Self {
        self.options.window = window;
        self
    }

    /// Sets [`LaxSlidingWindowOptions::bucket`].
    pub fn bucket(mut self, bucket: Duration) -> Self {
        self.options.bucket = bucket;
        self
    }

    /// Sets [`LaxSlidingWindowOptions::sync_interval`].
    pub fn sync_interval(mut self, sync_interval: Duration) -> Self {
        self.options.sync_interval = sync_interval;
        self
    }

    /// Sets [`LaxSlidingWindowOptions::failure_policy`].
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.options.failure_policy = failure_policy;
        self
    }

    /// The options, unchecked: [`LaxSlidingWindowLimiter::new`] checks them, and
    /// [`LaxSlidingWindowOptions::validate`] checks them on demand.
    pub fn build(self) -> LaxSlidingWindowOptions {
        self.options
    }
}

/// A lax (hybrid) sliding-window limiter: the semantics and keys of
/// [`SlidingWindowLimiter`], but a warm key is decided from local memory, without I/O, and
/// synced with Redis in the background.
///
/// # How it decides
///
/// For each key it uses, the object keeps a **view**: the window's count as Redis returned
/// it at the last sync, plus the units this object admitted since (delivered or not). A call
/// is admitted when `view + cost <= limit`; its cost joins the units to deliver.
///
/// - A **cold** key (not known to this object) costs one strict call: the
///   `sliding_window` script of [`SlidingWindowLimiter::check`], whose answer is returned and
///   whose count starts the view. Other calls on the key wait for that call, then decide in
///   memory.
/// - Every `sync_interval` (20 ms by default) a background task runs the
///   `sliding_window_sync` script once per key this object tracks (each an atomic `EVALSHA`
///   on the node of the key's hash tag, sent concurrently): it adds the units admitted
///   since the last delivery to the key's newest bucket (or a new one, on the server clock),
///   exactly as the strict script would have, and returns the window's count, which becomes
///   the view. Strict and lax limiters with the same prefix therefore share each key's
///   window.
/// - [`flush`](Self::flush) syncs now; dropping the last `Arc` delivers what is left from a
///   detached task that retries for 10 s. The background task ends when the limiter is
///   dropped.
/// - A key unused for 50 sync cycles, with nothing left to deliver, is forgotten (cold
///   again), so memory follows the working set.
///
/// A rejection charges nothing. Its `retry_after` is a hint, not the exact figure of the
/// strict limiter: the time until the oldest bucket seen at the last sync leaves the window
/// (at least 1 ms), or the sync interval when none was seen or it has left already (the next
/// sync shows it). `remaining` is `limit - view`, `limit` the call's limit, and
/// `reset_after` the time until the newest bucket of the last sync leaves the window, or a
/// window and a sync interval when this object has units not yet delivered.
///
/// # Over-admission bound
///
/// The view never counts a unit that was not admitted, and always counts every unit this
/// object admitted that is still in the window, so **one object never admits more than
/// `limit` units of a key in any stretch of time during which none of its units leave the
/// window** (with a limit that varies between calls, read `limit` as the largest one used).
/// (A unit counts in Redis for a whole window after its delivery, which comes after its
/// admission, whichever bucket it joins: so every unit this object admitted within the last
/// window is in the count it reads back, or still unsent.) Hence one object never admits
/// more than `limit` within any window, and what it does not see are the units other
/// objects admitted after its last sync. For `N` lax objects sharing a key (in one process
/// or many), within any window:
///
/// `admitted <= N × limit`, that is at most `(N − 1) × limit` beyond the limit,
///
/// and a strict [`SlidingWindowLimiter`] on the same prefix counts as one more object. The
/// bound is reached by bursts: objects that see about the same count admit the rest of the
/// limit each before their next sync (the contention test, with tasks calling in a tight
/// loop, admits most of it). In steady use an object's view lags the shared count by
/// about one sync interval of the other objects' admissions (their deliveries plus its own
/// read-back), which is what it can over-admit then. Conversely, a call
/// of cost `c` is rejected only when the units admitted (by everyone) in the window are more
/// than `limit - c`, as of this object's last sync: once other objects' units have left the
/// window, this object admits again after its next sync, so it under-admits for at most a
/// sync interval.
///
/// Delivered units are counted from the time of their delivery (on the server clock), up
/// to one sync interval (plus retries) after they were admitted, so they stay in the window
/// that much longer than with the strict limiter.
///
/// # Delivery: exactly once
///
/// Each delivery carries a sequence number, increasing per limiter object, and the script
/// keeps the last number it applied for this object and key in a record,
/// `distkit:rl:<prefix>:{<key>}:sw:sync:<object id>` (same hash tag, so one slot), living
/// `2 × window + 60 s` after the last delivery. A delivery whose reply was lost (connection
/// failure, timeout) is resent, with the same number and units, until it is confirmed: the
/// script adds it at most once. Units admitted meanwhile wait behind it. A delivery still
/// unconfirmed one window after its first send is dropped (its units have left the
/// window: they no longer count anywhere), so a resend never meets an expired record.
///
/// Never charged twice, then; not delivered: units pending when the process dies, and those
/// of a final flush that failed for 10 s. While Redis is unreachable, warm keys keep
/// deciding on their last view (the bound above still holds for each object), cold keys
/// fail with the strict call's error, and syncs back off up to 2 s between attempts.
///
/// ```no_run
/// # use distkit_ratelimit as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::ratelimit::{LaxSlidingWindowLimiter, LaxSlidingWindowOptions};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let options = LaxSlidingWindowOptions::builder(DistkitRedisKey::try_from("api")?, client)
///     .window(Duration::from_secs(60))
///     .sync_interval(Duration::from_millis(20))
///     .build();
/// let limiter = LaxSlidingWindowLimiter::new(options)?;
/// let tenant = DistkitRedisKey::try_from("tenant-42")?;
/// // 600 calls per minute; after the first call, decided in memory.
/// if !limiter.check(&tenant, 600, 1).await?.is_allowed() {
///     println!("slow down");
/// }
/// # Ok(())
/// # }
/// ```
pub struct LaxSlidingWindowLimiter {
    core: Arc<Core<SlidingWindowAlgorithm>>,
    failure_policy: FailurePolicy,
}

impl Drop for LaxSlidingWindowLimiter {
    /// Delivers the admitted units before returning where the thread may block (see
    /// [`close`](Self::close)).
    fn drop(&mut self) {
        self.core.finish_on_drop();
    }
}

/// Compact: the prefix, the window, the bucket, the sync interval and the tracked keys.
impl std::fmt::Debug for LaxSlidingWindowLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaxSlidingWindowLimiter")
            .field("prefix", &self.core.algorithm.prefix)
            .field("window", &self.window())
            .field("bucket", &self.bucket())
            .field("sync_interval", &self.sync_interval())
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

/// The sliding window's part of the lax machinery.
#[derive(Debug)]
struct SlidingWindowAlgorithm {
    strict: SlidingWindowLimiter,
    client: Client,
    prefix: DistkitRedisKey,
    object_id: String,
    window_ms: u64,
    bucket_ms: u64,
    sync_interval: Duration,
}

/// What one object knows of one key's window.
#[derive(Clone, Debug, Default)]
struct View {
    /// The window's count at the last sync (or strict call).
    total: u64,
    /// When the oldest bucket seen at the last sync leaves the window.
    oldest_leaves: Option<Instant>,
    /// When the newest bucket seen at the last sync (or strict call) leaves the window.
    newest_leaves: Option<Instant>,
}

/// What Redis holds for a key after a delivery.
#[derive(Clone, Copy, Debug)]
struct Synced {
    total: u64,
    oldest_leaves: Duration,
    newest_leaves: Duration,
}

impl SlidingWindowAlgorithm {
    /// The window.
    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// The view's guess of the time until the window is empty: when the newest bucket of
    /// the last sync leaves it, or, when this object has units not yet delivered, a window
    /// and a sync interval (they count for a window from their delivery).
    fn reset_hint(&self, view: &View, own_units: bool) -> Duration {
        let seen = view.newest_leaves.map_or_else(
            || {
                if view.total > 0 {
                    self.window()
                } else {
                    Duration::ZERO
                }
            },
            |leaves| leaves.saturating_duration_since(Instant::now()),
        );
        if own_units {
            seen.max(
                self.window()
                    .saturating_add(self.sync_interval)
                    .saturating_add(Duration::from_millis(1)),
            )
        } else {
            seen
        }
    }
}

impl Algorithm for SlidingWindowAlgorithm {
    type View = View;
    type Params = u64;
    type Info = ();
    type Synced = Synced;

    const NAME: &'static str = "lax sliding window";

    fn check_call(&self, limit: &u64, cost: u64) -> Result<(), DistkitError> {
        check_limit_and_cost(*limit, cost)
    }

    /// Admitted when the count read plus this object's own later units plus `cost` stays
    /// within `limit`.
    fn decide(&self, view: &mut View, unsent: u64, limit: &u64, cost: u64) -> Decision {
        let limit = *limit;
        let counted = view.total.saturating_add(unsent);
        if counted
            .checked_add(cost)
            .is_some_and(|charged| charged <= limit)
        {
            return Decision::Allowed {
                remaining: limit.saturating_sub(counted).saturating_sub(cost),
                limit,
                reset_after: self.reset_hint(view, true),
            };
        }
        // Until the oldest bucket of the last sync leaves; once it has, until the next sync
        // shows it (a sync interval at most).
        let retry_after = view
            .oldest_leaves
            .map(|leaves| leaves.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
            .unwrap_or(self.sync_interval);
        Decision::Rejected {
            retry_after: retry_after.max(Duration::from_millis(1)),
            remaining: limit.saturating_sub(counted),
            limit,
            reset_after: self.reset_hint(view, unsent > 0),
        }
    }

    async fn warm(
        &self,
        key: &DistkitRedisKey,
        limit: &u64,
        cost: u64,
    ) -> Result<(Decision, View), DistkitError> {
        let (decision, total) = self.strict.decide(key, *limit, cost, None, false).await?;
        Ok((
            decision,
            View {
                total,
                oldest_leaves: None,
                newest_leaves: Instant::now().checked_add(decision.reset_after()),
            },
        ))
    }

    async fn peek_strict(
        &self,
        key: &DistkitRedisKey,
        limit: &u64,
    ) -> Result<Decision, DistkitError> {
        Ok(self.strict.decide(key, *limit, 1, None, true).await?.0)
    }

    fn info(&self, _view: &View) {}

    /// A window: by then the units left the window, they no longer count anywhere.
    fn give_up_after(&self, _info: &()) -> Duration {
        self.window()
    }

    /// Runs the `sliding_window_sync` script for one delivery: atomic, idempotent by its
    /// sequence number (so fred may replay it after a reconnect).
    async fn send(&self, delivery: &Delivery<()>) -> Result<Synced, DistkitError> {
        let buckets = redis_key(&self.prefix, &delivery.key, "sw");
        let total = redis_key(&self.prefix, &delivery.key, "sw:total");
        let record = redis_key(
            &self.prefix,
            &delivery.key,
            &format!("sw:sync:{}", self.object_id),
        );
        let args = vec![
            Value::from(delivery.units.to_string()),
            Value::from(self.window_ms.to_string()),
            Value::from(self.bucket_ms.to_string()),
            Value::from(delivery.sequence.to_string()),
            Value::from(lax::record_ttl_ms(self.window()).to_string()),
        ];
        let reply = SLIDING_WINDOW_SYNC
            .run(
                &self.client,
                &[buckets.as_str(), total.as_str(), record.as_str()],
                args,
                CallPolicy::RETRY,
            )
            .await?;
        let [total, oldest_leaves_ms, _applied, newest_leaves_ms] =
            four_integers("sliding_window_sync", reply)?;
        Ok(Synced {
            total: non_negative("sliding_window_sync", total)?,
            oldest_leaves: Duration::from_millis(non_negative(
                "sliding_window_sync",
                oldest_leaves_ms,
            )?),
            newest_leaves: Duration::from_millis(non_negative(
                "sliding_window_sync",
                newest_leaves_ms,
            )?),
        })
    }

    /// The count read back becomes the view.
    fn confirm(&self, view: &mut View, synced: Synced, _pending: u64) {
        view.total = synced.total;
        let now = Instant::now();
        view.oldest_leaves = now.checked_add(synced.oldest_leaves);
        view.newest_leaves = now.checked_add(synced.newest_leaves);
    }

    async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        self.strict.reset(key).await
    }
}

impl LaxSlidingWindowLimiter {
    /// A lax limiter over the keys of `options.prefix`.
    ///
    /// The sync task runs on distkit's background runtime (see [`distkit_core::task`]),
    /// whichever runtime built this object; this never panics.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when an option is out of range (see
    /// [`LaxSlidingWindowOptions::validate`]); no task starts then.
    pub fn new(options: LaxSlidingWindowOptions) -> Result<Arc<Self>, DistkitError> {
        options.validate()?;
        let drop_bound = distkit_core::task::drop_bound(&options.client);
        let strict_options = options.strict();
        let (window_ms, bucket_ms) = strict_options.window_and_bucket_ms()?;
        let strict = SlidingWindowLimiter::new(strict_options)?;
        let algorithm = SlidingWindowAlgorithm {
            strict,
            client: options.client,
            prefix: options.prefix,
            object_id: ulid::Ulid::new().to_string(),
            window_ms,
            bucket_ms,
            sync_interval: options.sync_interval,
        };
        Ok(Arc::new(Self {
            core: Core::new(algorithm, options.sync_interval, drop_bound),
            failure_policy: options.failure_policy,
        }))
    }

    /// The window, in whole milliseconds.
    pub fn window(&self) -> Duration {
        self.core.algorithm.strict.window()
    }

    /// The bucket width, in whole milliseconds.
    pub fn bucket(&self) -> Duration {
        self.core.algorithm.strict.bucket()
    }

    /// How often the background task syncs.
    pub fn sync_interval(&self) -> Duration {
        self.core.sync_interval()
    }

    /// How many keys this object keeps in memory.
    pub fn tracked_keys(&self) -> usize {
        self.core.tracked_keys()
    }

    /// Charges `cost` units to `key` if this object's view of the window's count plus `cost`
    /// stays within `limit` (see the type docs for the view and the over-admission bound).
    ///
    /// A warm key is decided in memory, without I/O. A cold key runs the `sliding_window`
    /// script once, as [`SlidingWindowLimiter::check`] (atomic, on the server clock, sent
    /// once: after a connection failure the client does not replay it).
    ///
    /// # Errors
    ///
    /// - [`DistkitError::InvalidOption`] when `limit` is 0 or above
    ///   [`MAX_WINDOW_LIMIT`](super::MAX_WINDOW_LIMIT), or `cost` is 0 or above `limit`,
    ///   before any I/O.
    /// - For a cold key only, the errors of [`SlidingWindowLimiter::check`]:
    ///   [`DistkitError::RedisError`] for a transport failure (the cost may or may not have
    ///   been charged), a server error, or keys holding data distkit did not write.
    ///
    /// # Cancel safety
    ///
    /// A warm key is decided in memory on the first poll, without an await: an admitted
    /// cost is recorded there and delivered by the sync whatever happens to the future
    /// afterwards (also when the future is dropped while it delivers because `close()` ran
    /// meanwhile). A cold key's strict call, once handed to the client, runs and may charge
    /// `cost` in Redis although its decision is lost; the key then stays cold, and calls
    /// waiting for it to warm are woken by a drop guard and warm it themselves.
    pub async fn check(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        let call = self.core.check(key, &limit, cost);
        let prefix = &self.core.algorithm.prefix;
        let kind = LimiterKind::LaxSlidingWindow;
        decide_under(
            self.failure_policy,
            kind,
            prefix,
            key,
            limit,
            Charge::Cost,
            call,
        )
        .await
    }

    /// The decision a call of cost 1 on `key` within `limit` would get now, without charging
    /// anything: from this object's view of a warm key, in memory (a hint, like every lax
    /// decision), or from [`SlidingWindowLimiter::peek`] on a cold key (one script call; the
    /// key stays cold).
    ///
    /// # Errors
    ///
    /// - [`DistkitError::Closed`] after [`close`](Self::close).
    /// - [`DistkitError::InvalidOption`] when `limit` is 0 or above
    ///   [`MAX_WINDOW_LIMIT`](super::MAX_WINDOW_LIMIT), before any I/O.
    /// - For a cold key only, the errors of [`SlidingWindowLimiter::peek`].
    ///
    /// # Cancel safety
    ///
    /// Charges nothing, whenever it is dropped; a cold key stays cold.
    pub async fn peek(&self, key: &DistkitRedisKey, limit: u64) -> Result<Decision, DistkitError> {
        let call = self.core.peek(key, &limit);
        let prefix = &self.core.algorithm.prefix;
        let kind = LimiterKind::LaxSlidingWindow;
        decide_under(
            self.failure_policy,
            kind,
            prefix,
            key,
            limit,
            Charge::Nothing,
            call,
        )
        .await
    }

    /// Charges `cost` units to `key` within `limit` as soon as this object admits them,
    /// sleeping until then, unless that is later than `max_wait` from now.
    ///
    /// Each attempt is a [`check`](Self::check); after a refusal it sleeps the refusal's
    /// `retry_after` once (a hint from the view: until the oldest bucket of the last sync
    /// leaves the window, or a sync interval), and tries again, so it does not poll.
    /// Cancelling it charges nothing unless an attempt was admitted.
    ///
    /// # Errors
    ///
    /// - [`DistkitError::RateLimited`] at once, charging nothing, when the next admission
    ///   (as far as the view tells) lies more than `max_wait` after the first attempt.
    /// - The errors of [`check`](Self::check).
    ///
    /// # Cancel safety
    ///
    /// Dropped while it sleeps between attempts, nothing is charged and nothing is left
    /// behind. Dropped during an attempt, as [`check`](Self::check).
    pub async fn wait(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision, DistkitError> {
        super::wait_until_admitted(max_wait, || self.check(key, limit, cost)).await
    }

    /// Delivers the units admitted locally and reads back the count of every tracked key,
    /// now, and waits for the replies.
    ///
    /// Runs the `sliding_window_sync` script once per tracked key (each atomic and applied
    /// exactly once, even when resent after a connection failure).
    ///
    /// # Errors
    ///
    /// The first [`DistkitError::RedisError`] of a delivery (a transport failure, a server
    /// error, or keys holding data distkit did not write); the units of a failed delivery
    /// stay pending and are resent by a later sync.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing and charges nothing twice: each key's units are
    /// taken as one numbered delivery that stays in flight until its reply is recorded; a
    /// delivery dropped after it was sent is resent by the next sync with the same number,
    /// and Redis applies it only if it had not already.
    pub async fn flush(&self) -> Result<(), DistkitError> {
        self.core.flush().await
    }

    /// Delivers every unit admitted so far, stops the sync task and closes the limiter:
    /// every later `check` or `reset` returns [`DistkitError::Closed`] and charges nothing.
    ///
    /// Runs the sync script once per tracked key, as [`flush`](Self::flush) (each atomic,
    /// applied exactly once). Await it before the runtime that connected the client ends to
    /// be sure every admitted unit is charged in Redis, whatever kind of runtime this is.
    /// Dropping the last handle does the same before the drop returns inside a multi-thread
    /// runtime or outside any runtime (bounded by the client's command timeout plus a
    /// second); on a current-thread runtime it goes on in the background.
    ///
    /// # Errors
    ///
    /// The first [`DistkitError::RedisError`] of a delivery: its units stay pending (a later
    /// `close()` or the drop tries again); the limiter is closed all the same.
    ///
    /// # Cancel safety
    ///
    /// Cancelling it leaves the limiter closed (later calls return [`DistkitError::Closed`])
    /// and its undelivered units pending, each delivery with its number: a later `close()`
    /// or the drop delivers them, exactly once.
    pub async fn close(&self) -> Result<(), DistkitError> {
        self.core.close().await
    }

    /// Forgets the state of `key`: its window is empty, and this object drops the units it
    /// admitted but did not deliver yet. One `DEL` of the window's keys (other objects'
    /// undelivered units still arrive later), written once: after a connection failure
    /// the client does not send it again.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for a transport or server failure (when the connection
    /// failed after the `DEL` was written, it may or may not have run).
    ///
    /// # Cancel safety
    ///
    /// It forgets the key in this object (dropping its undelivered units) before it sends
    /// the `DEL`: dropped in between, the key is forgotten here but its state stays in Redis
    /// (the next call on it warms it again from Redis). Once the `DEL` was handed to the
    /// client it runs (or not, if the connection fails) and the caller does not learn which.
    pub async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        self.core.reset(key).await
    }

    /// The sync task's liveness: alive while the task runs (tests only).
    #[cfg(test)]
    pub(crate) fn task_alive(&self) -> std::sync::Weak<()> {
        self.core.task_alive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use distkit_test_support::{TestRedis, unique_prefix};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    async fn bounded<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(LIMIT, future)
            .await
            .expect("an operation took longer than 20 s")
    }

    fn key(text: &str) -> DistkitRedisKey {
        DistkitRedisKey::new_or_panic(text.to_owned())
    }

    async fn client(redis: &TestRedis) -> Client {
        bounded(distkit_core::connect(redis.url())).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_resent_after_a_lost_reply_is_applied_once_and_a_later_one_again() {
        let redis = TestRedis::start();
        let client = client(&redis).await;
        let prefix = key(&unique_prefix());
        let mut options = SlidingWindowOptions::new(prefix.clone(), client.clone());
        options.window = Duration::from_secs(60);
        let target = SlidingWindowAlgorithm {
            strict: SlidingWindowLimiter::new(options).unwrap(),
            client: client.clone(),
            prefix: prefix.clone(),
            object_id: "object".to_owned(),
            window_ms: 60_000,
            bucket_ms: 100,
            sync_interval: Duration::from_millis(20),
        };
        let k = key("k");
        let delivery = |sequence, units| Delivery {
            key: k.clone(),
            sequence,
            units,
            info: (),
        };
        // The same delivery sent three times (its replies lost): counted once.
        for _ in 0..3 {
            let synced = bounded(target.send(&delivery(7, 5))).await.unwrap();
            assert_eq!(synced.total, 5);
            assert!(synced.oldest_leaves > Duration::from_secs(59), "{synced:?}");
        }
        // A read-back adds nothing; an older number adds nothing; a newer one adds.
        assert_eq!(
            bounded(target.send(&delivery(0, 0))).await.unwrap().total,
            5
        );
        assert_eq!(
            bounded(target.send(&delivery(6, 4))).await.unwrap().total,
            5
        );
        assert_eq!(
            bounded(target.send(&delivery(8, 4))).await.unwrap().total,
            9
        );
        // Another object's record is its own.
        let other = SlidingWindowAlgorithm {
            strict: SlidingWindowLimiter::new(SlidingWindowOptions::new(
                prefix.clone(),
                client.clone(),
            ))
            .unwrap(),
            client: client.clone(),
            prefix: prefix.clone(),
            object_id: "other".to_owned(),
            window_ms: 60_000,
            bucket_ms: 100,
            sync_interval: Duration::from_millis(20),
        };
        assert_eq!(
            bounded(other.send(&delivery(1, 1))).await.unwrap().total,
            10
        );
        // The strict limiter of the prefix sees the same window.
        let mut options = SlidingWindowOptions::new(prefix, client);
        options.window = Duration::from_secs(60);
        let strict = SlidingWindowLimiter::new(options).unwrap();
        assert_eq!(
            bounded(strict.check(&k, 12, 2)).await.unwrap(),
            Decision::Allowed {
                remaining: 0,
                limit: 12,
                reset_after: Duration::from_millis(60_001)
            }
        );
        assert!(!bounded(strict.check(&k, 12, 1)).await.unwrap().is_allowed());
        // The record lives 2 × window + 60 s.
        let record = redis_key(&target.prefix, &k, "sw:sync:object");
        let ttl: u64 = redis.cli(&["PTTL", &record]).parse().unwrap();
        assert!(ttl > 170_000 && ttl <= 180_000, "pttl {ttl}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sync_task_ends_when_the_limiter_is_dropped_after_its_final_delivery() {
        let redis = TestRedis::start();
        let client = client(&redis).await;
        let prefix = key(&unique_prefix());
        let options = LaxSlidingWindowOptions::builder(prefix.clone(), client.clone())
            .window(Duration::from_secs(60))
            .sync_interval(Duration::from_millis(5))
            .build();
        let limiter = LaxSlidingWindowLimiter::new(options).unwrap();
        let alive = limiter.task_alive();
        assert_eq!(alive.strong_count(), 1, "the task runs");
        let k = key("k");
        for _ in 0..10 {
            assert!(
                bounded(limiter.check(&k, 100, 3))
                    .await
                    .unwrap()
                    .is_allowed()
            );
        }
        drop(limiter);
        let started = Instant::now();
        while alive.strong_count() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the sync task outlived its limiter"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The units admitted locally reach Redis (the task's last sync or the final
        // delivery), once.
        let total = redis_key(&prefix, &k, "sw:total");
        let started = Instant::now();
        while redis.cli(&["GET", &total]) != "30" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the window holds {:?}, not the 30 units admitted",
                redis.cli(&["GET", &total])
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn a_limiter_made_outside_a_runtime_runs_its_task_on_the_background_runtime() {
        let redis = TestRedis::start();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(client(&redis));
        let options = LaxSlidingWindowOptions::new(key(&unique_prefix()), client);
        let limiter = LaxSlidingWindowLimiter::new(options).unwrap();
        // No runtime here: the task runs on distkit's own.
        assert_eq!(limiter.task_alive().strong_count(), 1);
        runtime.block_on(async {
            assert!(
                bounded(limiter.check(&key("k"), 5, 1))
                    .await
                    .unwrap()
                    .is_allowed()
            );
            assert_eq!(limiter.task_alive().strong_count(), 1);
        });
    }
}
