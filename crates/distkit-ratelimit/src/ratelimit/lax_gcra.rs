//! The lax GCRA limiter: local admission, background sync with Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::script::{CallPolicy, LuaScript};
use distkit_core::{DistkitError, DistkitRedisKey};
use fred::clients::Client;
use fred::types::Value;

use super::gcra::check_cost;
use super::lax::{self, Algorithm, Core, DEFAULT_SYNC_INTERVAL, Delivery};
use super::policy::{Charge, FailurePolicy, LimiterKind, decide_under};
use super::{Decision, GcraLimiter, GcraOptions, GcraRate, non_negative, redis_key};

/// The delivery script of the lax GCRA limiter.
pub(super) static GCRA_SYNC: LuaScript = LuaScript::new(
    "gcra_sync",
    concat!(
        include_str!("scripts/gcra_common.lua"),
        include_str!("scripts/gcra_sync.lua")
    ),
);

/// How far ahead of now a delivery may push a TAT (2^52 µs): `gcra_sync.lua` saturates there.
const MAX_ADVANCE_US: u128 = 1 << 52;

/// The shortest time an unconfirmed delivery is resent for.
const MIN_GIVE_UP: Duration = Duration::from_secs(1);

/// The options of a [`LaxGcraLimiter`].
///
/// Build them with [`new`](Self::new) and set fields, or with [`builder`](Self::builder).
/// [`LaxGcraLimiter::new`] checks them with [`validate`](Self::validate). The rate is given
/// per call ([`GcraRate`]), as with [`GcraLimiter`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LaxGcraOptions {
    /// The namespace of the limiter's keys. Lax and strict ([`GcraLimiter`]) limiters with
    /// the same prefix share each key's state.
    pub prefix: DistkitRedisKey,
    /// The Redis client.
    pub client: Client,
    /// How often the units admitted locally are delivered to Redis and the key's state is
    /// read back: 20 ms by default, from [`MIN_SYNC_INTERVAL`](super::MIN_SYNC_INTERVAL)
    /// (1 ms) to [`MAX_SYNC_INTERVAL`](super::MAX_SYNC_INTERVAL) (1 h). How much other
    /// objects' admissions a view misses grows with it (see [`LaxGcraLimiter`]).
    pub sync_interval: Duration,
    /// What a call on a cold key does when Redis fails it or does not answer in time (warm
    /// keys are decided in memory): fail closed (return the error) by default; see
    /// [`FailurePolicy`].
    pub failure_policy: FailurePolicy,
}

impl LaxGcraOptions {
    /// Options for a limiter of `prefix` on `client`, synced every 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            failure_policy: FailurePolicy::default(),
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(prefix: DistkitRedisKey, client: Client) -> LaxGcraOptionsBuilder {
        LaxGcraOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks `sync_interval` without any I/O; what [`LaxGcraLimiter::new`] checks.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `sync_interval` is shorter than
    /// [`MIN_SYNC_INTERVAL`](super::MIN_SYNC_INTERVAL) or longer than
    /// [`MAX_SYNC_INTERVAL`](super::MAX_SYNC_INTERVAL).
    pub fn validate(&self) -> Result<(), DistkitError> {
        lax::check_sync_interval("lax gcra limiter", self.sync_interval)
    }
}

/// Builds [`LaxGcraOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct LaxGcraOptionsBuilder {
    options: LaxGcraOptions,
}

impl LaxGcraOptionsBuilder {
    /// Sets [`LaxGcraOptions::sync_interval`].
    pub fn sync_interval(mut self, sync_interval: Duration) -> Self {
        self.options.sync_interval = sync_interval;
        self
    }

    /// Sets [`LaxGcraOptions::failure_policy`].
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.options.failure_policy = failure_policy;
        self
    }

    /// The options, unchecked: [`LaxGcraLimiter::new`] checks them, and
    /// [`LaxGcraOptions::validate`] checks them on demand.
    pub fn build(self) -> LaxGcraOptions {
        self.options
    }
}

/// A lax (hybrid) GCRA limiter: the semantics and keys of [`GcraLimiter`], but a warm key
/// is decided from local memory, without I/O, and synced with Redis in the background.
///
/// # How it decides
///
/// For each key it uses, the object keeps a **view**: the key's TAT (theoretical arrival
/// time) as Redis returned it at the last sync, advanced by this object's own admissions
/// since, and an estimate of the server clock: the server time of the last reply plus the
/// local (monotonic) time elapsed since that reply arrived — never ahead of the server
/// clock, since the reply was written before it arrived, and never going back. A call of
/// `cost` at estimated time `now` is admitted when the standard GCRA test passes on the
/// view: `max(TAT, now) + cost × T <= now + burst × T` (`T = period / limit`, the emission
/// interval, exact as with [`GcraLimiter`]); the view's TAT then becomes the left side.
///
/// - A **cold** key (not known to this object) costs one strict call: the `gcra` script of
///   [`GcraLimiter::check`], whose answer is returned and whose TAT and server time start the
///   view. Other calls on the key wait for that call, then decide in memory.
/// - Every `sync_interval` (20 ms by default) a background task runs the `gcra_sync`
///   script once per key this object tracks (each an atomic `EVALSHA` on the node of the
///   key's hash tag, sent concurrently): it adds the units admitted since the last delivery
///   to the key's state, `TAT = max(TAT, now) + units × T` on the server clock, without a
///   limit check (they were admitted already), and returns the TAT and the server time. The
///   view becomes the larger of its own TAT and the returned one plus the units admitted
///   since the delivery was taken. Strict and lax limiters with the same prefix therefore
///   share each key's state.
/// - [`flush`](Self::flush) syncs now; dropping the last `Arc` delivers what is left from a
///   detached task that retries for 10 s. The background task ends when the limiter is
///   dropped.
/// - A key unused for 50 sync cycles, with nothing left to deliver, is forgotten (cold
///   again), so memory follows the working set.
///
/// Units are delivered at the rate of the key's latest admitted call (a key's rate may
/// change between calls; then the units admitted at the old rate since the last sync are
/// charged at the new one, and the TAT is rounded up to a whole microsecond, as the `gcra`
/// script does).
///
/// A rejection charges nothing; its `retry_after` and `remaining` are computed on the view,
/// as the strict limiter computes them on the server's state.
///
/// # Over-admission bound
///
/// For a key used at one rate (`limit` per `period`, `burst`): the view's TAT only grows,
/// by at least `cost × T` with each call the object admits (locally or by its strict
/// warming call, which is decided on the server), and it never lies more than
/// `burst × T` ahead of the time an admission was decided at (an estimate never ahead of the
/// server clock). So, as for any GCRA, **one object admits at most
/// `burst + limit × elapsed / period` units of a key over `elapsed`** of server time, from
/// its first admission to its last. `N` lax objects sharing a key (in one process or many)
/// admit at most `N × (burst + limit × elapsed / period)`, and a strict [`GcraLimiter`] on
/// the same prefix counts as one more object. What an object does not see are the units
/// other objects admitted after its last sync: in steady use it over-admits about what the
/// others admitted during one sync interval (their deliveries plus its own read-back).
/// Conversely, a call is rejected only when the units admitted by everyone since the TAT of
/// the view was last behind the clock, plus its cost, exceed `burst` plus what the rate
/// refilled since — no under-admission beyond a TAT another object's delivery pushed
/// forward in its own time (a unit delivered later than admitted weighs from its delivery).
///
/// # Delivery: exactly once
///
/// Each delivery carries a sequence number, increasing per limiter object, and the script
/// keeps the last number it applied for this object and key in a record,
/// `distkit:rl:<prefix>:{<key>}:gcra:sync:<object id>` (same hash tag, so one slot), living
/// `2 × max(burst × T, 1 s) + 60 s` after the last delivery. A delivery whose reply was lost
/// (connection failure, timeout) is resent, with the same number and units, until it is
/// confirmed: the script adds it at most once. Units admitted meanwhile wait behind it. A
/// delivery still unconfirmed `max(burst × T, 1 s)` after its first send is dropped (by then
/// the units no longer limit anything), so a resend never meets an expired record.
///
/// Never charged twice, then; not delivered: units pending when the process dies, and those
/// of a final flush that failed for 10 s. While Redis is unreachable, warm keys keep
/// deciding on their last view (the bound above still holds for each object), cold keys
/// fail with the strict call's error, and syncs back off up to 2 s between attempts.
///
/// ```no_run
/// # use distkit_ratelimit as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::ratelimit::{GcraRate, LaxGcraLimiter, LaxGcraOptions};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let options = LaxGcraOptions::builder(DistkitRedisKey::try_from("api")?, client)
///     .sync_interval(Duration::from_millis(20))
///     .build();
/// let limiter = LaxGcraLimiter::new(options)?;
/// let tenant = DistkitRedisKey::try_from("tenant-42")?;
/// // 100 calls per second, 20 at once; after the first call, decided in memory.
/// let rate = GcraRate::per_second(100, 20)?;
/// if !limiter.check(&tenant, &rate, 1).await?.is_allowed() {
///     println!("slow down");
/// }
/// # Ok(())
/// # }
/// ```
pub struct LaxGcraLimiter {
    core: Arc<Core<GcraAlgorithm>>,
    failure_policy: FailurePolicy,
}

impl Drop for LaxGcraLimiter {
    /// Delivers the admitted units before returning where the thread may block (see
    /// [`close`](Self::close)).
    fn drop(&mut self) {
        self.core.finish_on_drop();
    }
}

/// Compact: the prefix, the sync interval and the tracked keys.
impl std::fmt::Debug for LaxGcraLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaxGcraLimiter")
            .field("prefix", &self.core.algorithm.prefix)
            .field("sync_interval", &self.sync_interval())
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

/// GCRA's part of the lax machinery.
#[derive(Debug)]
struct GcraAlgorithm {
    strict: GcraLimiter,
    client: Client,
    prefix: DistkitRedisKey,
    object_id: String,
    /// The origin of the local clock (microseconds since this instant).
    base: Instant,
}

/// What one object knows of one key.
#[derive(Clone, Debug, Default)]
struct View {
    /// The TAT, in `1/scale` µs on the server clock (since the Unix epoch).
    tat_scaled: u128,
    /// The `limit` of the rate `tat_scaled` is counted in (0 before the first call).
    scale: u64,
    /// The server time (µs) at local time 0: the largest one the replies showed.
    offset_us: u64,
    /// The rate of the latest admitted call: its units are delivered at this rate.
    rate: Option<GcraRate>,
}

/// What Redis holds for a key after a delivery.
#[derive(Clone, Copy, Debug)]
struct Synced {
    /// The server time of the reply, in µs.
    now_us: u64,
    /// How far the TAT lies ahead of `now_us`, in `1/rate.limit` µs.
    ahead_scaled: u128,
    /// The rate of the delivery.
    rate: GcraRate,
    /// When the reply arrived.
    received: Instant,
}

/// `tat` counted in `1/from` µs, counted in `1/to` µs: rounded up to a whole microsecond
/// when the scales differ (never admits more than the TAT allows).
fn rescale(tat: u128, from: u64, to: u64) -> u128 {
    if from == to {
        return tat;
    }
    tat.div_ceil(u128::from(from.max(1)))
        .saturating_mul(u128::from(to))
}

impl GcraAlgorithm {
    /// Local monotonic microseconds at `at`.
    fn local_us(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// Moves the view's clock estimate forward to a reply written at `server_us` that
    /// arrived at `received` (never back: each reply is a lower bound of the server clock).
    fn anchor(&self, view: &mut View, server_us: u64, received: Instant) {
        let offset = server_us.saturating_sub(self.local_us(received));
        view.offset_us = view.offset_us.max(offset);
    }

    /// The view's estimate of the server clock now, in µs.
    fn estimated_now_us(&self, view: &View) -> u64 {
        view.offset_us.saturating_add(self.local_us(Instant::now()))
    }
}

impl Algorithm for GcraAlgorithm {
    type View = View;
    type Params = GcraRate;
    type Info = GcraRate;
    type Synced = Synced;

    const NAME: &'static str = "lax gcra";

    fn check_call(&self, rate: &GcraRate, cost: u64) -> Result<(), DistkitError> {
        check_cost(rate, cost)
    }

    /// The GCRA test on the view at the estimated server time; `unsent` is in the view
    /// already.
    fn decide(&self, view: &mut View, _unsent: u64, rate: &GcraRate, cost: u64) -> Decision {
        let limit = rate.limit;
        view.tat_scaled = rescale(view.tat_scaled, view.scale, limit);
        view.scale = limit;
        let now = u128::from(self.estimated_now_us(view)).saturating_mul(u128::from(limit));
        let start = view.tat_scaled.max(now);
        let ahead = start.saturating_sub(now);
        let ahead_after = ahead.saturating_add(u128::from(cost).saturating_mul(rate.period_us));
        if ahead_after <= rate.burst_scaled {
            view.tat_scaled = now.saturating_add(ahead_after);
            view.rate = Some(*rate);
            return rate.decision(true, ahead_after, cost);
        }
        rate.decision(false, ahead, cost)
    }

    async fn warm(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
        cost: u64,
    ) -> Result<(Decision, View), DistkitError> {
        let (decision, now_us, ahead_scaled) =
            self.strict.decide(key, rate, cost, None, false).await?;
        let received = Instant::now();
        let mut view = View {
            tat_scaled: u128::from(now_us)
                .saturating_mul(u128::from(rate.limit))
                .saturating_add(ahead_scaled),
            scale: rate.limit,
            offset_us: 0,
            rate: decision.is_allowed().then_some(*rate),
        };
        self.anchor(&mut view, now_us, received);
        Ok((decision, view))
    }

    async fn peek_strict(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
    ) -> Result<Decision, DistkitError> {
        Ok(self.strict.decide(key, rate, 1, None, true).await?.0)
    }

    /// The rate of the latest admitted call (a view without one has nothing to deliver:
    /// its read-backs use the rate of its scale, any rate would do).
    fn info(&self, view: &View) -> GcraRate {
        view.rate.unwrap_or(GcraRate {
            limit: view.scale.max(1),
            period_us: 1,
            burst: 1,
            burst_scaled: 1,
        })
    }

    /// `burst × T`, at least 1 s: by then the units admitted at that rate no longer limit
    /// anything.
    fn give_up_after(&self, rate: &GcraRate) -> Duration {
        let span_us = rate
            .burst_scaled
            .checked_div(u128::from(rate.limit))
            .unwrap_or(0);
        Duration::from_micros(u64::try_from(span_us).unwrap_or(u64::MAX)).max(MIN_GIVE_UP)
    }

    /// Runs the `gcra_sync` script for one delivery: atomic, idempotent by its sequence
    /// number (so fred may replay it after a reconnect).
    async fn send(&self, delivery: &Delivery<GcraRate>) -> Result<Synced, DistkitError> {
        let rate = delivery.info;
        let state = redis_key(&self.prefix, &delivery.key, "gcra");
        let record = redis_key(
            &self.prefix,
            &delivery.key,
            &format!("gcra:sync:{}", self.object_id),
        );
        let (mut add_us, mut add_frac) = rate.span_of(delivery.units);
        if add_us >= MAX_ADVANCE_US {
            add_us = MAX_ADVANCE_US;
            add_frac = 0;
        }
        let record_ttl = lax::record_ttl_ms(self.give_up_after(&rate));
        let args = vec![
            Value::from(rate.limit.to_string()),
            Value::from(add_us.to_string()),
            Value::from(add_frac.to_string()),
            Value::from(delivery.sequence.to_string()),
            Value::from(record_ttl.to_string()),
        ];
        let reply = GCRA_SYNC
            .run(
                &self.client,
                &[state.as_str(), record.as_str()],
                args,
                CallPolicy::RETRY,
            )
            .await?;
        let received = Instant::now();
        let (ahead_us, ahead_frac, now_us) = super::three_integers("gcra_sync", reply)?;
        let ahead_scaled = u128::from(non_negative("gcra_sync", ahead_us)?)
            .saturating_mul(u128::from(rate.limit))
            .saturating_add(u128::from(non_negative("gcra_sync", ahead_frac)?));
        Ok(Synced {
            now_us: non_negative("gcra_sync", now_us)?,
            ahead_scaled,
            rate,
            received,
        })
    }

    /// The view becomes the larger of its own TAT and the server's plus the units admitted
    /// since the delivery was taken.
    fn confirm(&self, view: &mut View, synced: Synced, pending: u64) {
        self.anchor(view, synced.now_us, synced.received);
        let limit = synced.rate.limit;
        let own = rescale(view.tat_scaled, view.scale, limit);
        // The pending units were admitted at the view's latest rate.
        let pending_rate = view.rate.unwrap_or(synced.rate);
        let pending_scaled = rescale(
            u128::from(pending).saturating_mul(pending_rate.period_us),
            pending_rate.limit,
            limit,
        );
        let server = u128::from(synced.now_us)
            .saturating_mul(u128::from(limit))
            .saturating_add(synced.ahead_scaled)
            .saturating_add(pending_scaled);
        view.tat_scaled = own.max(server);
        view.scale = limit;
    }

    async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        self.strict.reset(key).await
    }
}

impl LaxGcraLimiter {
    /// A lax limiter over the keys of `options.prefix`.
    ///
    /// The sync task runs on distkit's background runtime (see [`distkit_core::task`]),
    /// whichever runtime built this object; this never panics.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when an option is out of range (see
    /// [`LaxGcraOptions::validate`]); no task starts then.
    pub fn new(options: LaxGcraOptions) -> Result<Arc<Self>, DistkitError> {
        options.validate()?;
        let drop_bound = distkit_core::task::drop_bound(&options.client);
        let strict = GcraLimiter::new(GcraOptions::new(
            options.prefix.clone(),
            options.client.clone(),
        ));
        let algorithm = GcraAlgorithm {
            strict,
            client: options.client,
            prefix: options.prefix,
            object_id: ulid::Ulid::new().to_string(),
            base: Instant::now(),
        };
        Ok(Arc::new(Self {
            core: Core::new(algorithm, options.sync_interval, drop_bound),
            failure_policy: options.failure_policy,
        }))
    }

    /// How often the background task syncs.
    pub fn sync_interval(&self) -> Duration {
        self.core.sync_interval()
    }

    /// How many keys this object keeps in memory.
    pub fn tracked_keys(&self) -> usize {
        self.core.tracked_keys()
    }

    /// Charges `cost` units to `key` at `rate` if they conform on this object's view (see
    /// the type docs for the view and the over-admission bound).
    ///
    /// A warm key is decided in memory, without I/O. A cold key runs the `gcra` script once,
    /// as [`GcraLimiter::check`] (atomic, on the server clock, sent once: after a connection
    /// failure the client does not replay it).
    ///
    /// # Errors
    ///
    /// - [`DistkitError::InvalidOption`] when `cost` is 0 or above `rate.burst()`, before any
    ///   I/O.
    /// - For a cold key only, the errors of [`GcraLimiter::check`]:
    ///   [`DistkitError::RedisError`] for a transport failure (the cost may or may not have
    ///   been charged), a server error, or a key holding data distkit did not write.
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
        rate: &GcraRate,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        let call = self.core.check(key, rate, cost);
        let prefix = &self.core.algorithm.prefix;
        let kind = LimiterKind::LaxGcra;
        decide_under(
            self.failure_policy,
            kind,
            prefix,
            key,
            rate.burst,
            Charge::Cost,
            call,
        )
        .await
    }

    /// The decision a call of cost 1 on `key` at `rate` would get now, without charging
    /// anything: from this object's view of a warm key, in memory (a hint, like every lax
    /// decision), or from [`GcraLimiter::peek`] on a cold key (one script call; the key stays
    /// cold).
    ///
    /// # Errors
    ///
    /// - [`DistkitError::Closed`] after [`close`](Self::close).
    /// - For a cold key only, the errors of [`GcraLimiter::peek`].
    ///
    /// # Cancel safety
    ///
    /// Charges nothing, whenever it is dropped; a cold key stays cold.
    pub async fn peek(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
    ) -> Result<Decision, DistkitError> {
        let call = self.core.peek(key, rate);
        let prefix = &self.core.algorithm.prefix;
        let kind = LimiterKind::LaxGcra;
        decide_under(
            self.failure_policy,
            kind,
            prefix,
            key,
            rate.burst,
            Charge::Nothing,
            call,
        )
        .await
    }

    /// Charges `cost` units to `key` at `rate` as soon as this object admits them, sleeping
    /// until then, unless that is later than `max_wait` from now.
    ///
    /// Each attempt is a [`check`](Self::check); after a refusal it sleeps the refusal's
    /// `retry_after` once (computed on the view's estimate of the server clock), and tries
    /// again, so it does not poll. Cancelling it charges nothing unless an attempt was
    /// admitted.
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
        rate: &GcraRate,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision, DistkitError> {
        super::wait_until_admitted(max_wait, || self.check(key, rate, cost)).await
    }

    /// Delivers the units admitted locally and reads back the state of every tracked key,
    /// now, and waits for the replies.
    ///
    /// Runs the `gcra_sync` script once per tracked key (each atomic and applied exactly
    /// once, even when resent after a connection failure).
    ///
    /// # Errors
    ///
    /// The first [`DistkitError::RedisError`] of a delivery (a transport failure, a server
    /// error, or a key holding data distkit did not write); the units of a failed delivery
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

    /// Forgets the state of `key`: it is back to its full burst, and this object drops the
    /// units it admitted but did not deliver yet. One `DEL` of the key's state (other
    /// objects' undelivered units still arrive later), written once: after a connection failure
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

    fn algorithm(client: &Client, prefix: &DistkitRedisKey, object_id: &str) -> GcraAlgorithm {
        GcraAlgorithm {
            strict: GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone())),
            client: client.clone(),
            prefix: prefix.clone(),
            object_id: object_id.to_owned(),
            base: Instant::now(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gcra_delivery_resent_after_a_lost_reply_is_applied_once_and_a_later_one_again() {
        let redis = TestRedis::start();
        let client = client(&redis).await;
        let prefix = key(&unique_prefix());
        let target = algorithm(&client, &prefix, "object");
        let k = key("k");
        // 3 per second (T = 333 333 + 1/3 µs), a burst of 100.
        let rate = GcraRate::per_second(3, 100).unwrap();
        let delivery = |sequence, units| Delivery {
            key: k.clone(),
            sequence,
            units,
            info: rate,
        };
        let ahead_units = |synced: Synced| {
            // How many units of T the TAT lies ahead, rounded up.
            synced.ahead_scaled.div_ceil(rate.period_us)
        };
        // The same delivery sent three times (its replies lost): counted once. The TAT lies
        // 5 T ahead (less the time between the sends).
        for _ in 0..3 {
            let synced = bounded(target.send(&delivery(7, 5))).await.unwrap();
            assert_eq!(ahead_units(synced), 5, "{synced:?}");
        }
        // A read-back adds nothing; an older number adds nothing; a newer one adds.
        assert_eq!(
            ahead_units(bounded(target.send(&delivery(0, 0))).await.unwrap()),
            5
        );
        assert_eq!(
            ahead_units(bounded(target.send(&delivery(6, 4))).await.unwrap()),
            5
        );
        assert_eq!(
            ahead_units(bounded(target.send(&delivery(8, 4))).await.unwrap()),
            9
        );
        // Another object's record is its own.
        let other = algorithm(&client, &prefix, "other");
        assert_eq!(
            ahead_units(bounded(other.send(&delivery(1, 1))).await.unwrap()),
            10
        );
        // The strict limiter of the prefix sees the same state: 10 of the burst of 100 used
        // (a unit comes back every 333 ms, the test takes less).
        let decision = bounded(target.strict.check(&k, &rate, 1)).await.unwrap();
        assert!(
            matches!(decision, Decision::Allowed { remaining, .. } if (89..=90).contains(&remaining)),
            "{decision:?}"
        );
        // The record lives 2 × burst × T + 60 s = 2 × 33.3 s + 60 s.
        let record = redis_key(&prefix, &k, "gcra:sync:object");
        let ttl: u64 = redis.cli(&["PTTL", &record]).parse().unwrap();
        assert!(ttl > 120_000 && ttl <= 126_667, "pttl {ttl}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lax_gcra_sync_task_ends_when_the_limiter_is_dropped_after_its_final_delivery() {
        let redis = TestRedis::start();
        let client = client(&redis).await;
        let prefix = key(&unique_prefix());
        let options = LaxGcraOptions::builder(prefix.clone(), client.clone())
            .sync_interval(Duration::from_millis(5))
            .build();
        let limiter = LaxGcraLimiter::new(options).unwrap();
        let alive = limiter.task_alive();
        assert_eq!(alive.strong_count(), 1, "the task runs");
        let k = key("k");
        // One unit per hour: the state keeps every unit admitted.
        let rate = GcraRate::new(1, Duration::from_secs(3_600), 100).unwrap();
        for _ in 0..10 {
            assert!(
                bounded(limiter.check(&k, &rate, 3))
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
        // The 30 units reach Redis (the task's last sync or the final delivery): the TAT lies
        // 30 hours ahead (the state lives that long), and once, so 70 are left.
        let state = redis_key(&prefix, &k, "gcra");
        let started = Instant::now();
        loop {
            let ttl: i64 = redis.cli(&["PTTL", &state]).parse().unwrap();
            if ttl > 107_000_000 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the state does not hold the 30 units admitted: pttl {ttl}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let strict = GcraLimiter::new(GcraOptions::new(prefix, client));
        assert!(
            bounded(strict.check(&k, &rate, 70))
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(
            !bounded(strict.check(&k, &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
    }
}
