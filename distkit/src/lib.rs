#![cfg_attr(feature = "full", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "full"),
    doc = "Distributed-systems primitives backed by Redis: counters, instance-aware counters, \
           locks and rate limiting. See the README (the crate docs with the `full` feature)."
)]
#![doc = "\n## Feature flags\n\nGenerated from the `##` comments of the manifest, so it always matches it:\n"]
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use distkit_core::{
    ConnectOptions, CounterComparator, DistkitError, DistkitRedisKey, MAX_REPLICA_ACK_TIMEOUT,
    REQUIRED_EVICTION_POLICY, ReconnectPolicy, ReplicaAcks, connect, eviction_policy, fred,
};

#[cfg(feature = "counter")]
#[cfg_attr(docsrs, doc(cfg(feature = "counter")))]
#[doc(inline)]
pub use distkit_counter::counter;

#[cfg(feature = "instance-aware-counter")]
#[cfg_attr(docsrs, doc(cfg(feature = "instance-aware-counter")))]
#[doc(inline)]
pub use distkit_counter::icounter;

#[cfg(feature = "lock")]
#[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
#[doc(inline)]
pub use distkit_lock::lock;

#[cfg(feature = "semaphore")]
#[cfg_attr(docsrs, doc(cfg(feature = "semaphore")))]
#[doc(inline)]
pub use distkit_lock::semaphore;

#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
#[doc(inline)]
pub use distkit_ratelimit::ratelimit;

/// Rate limiting: the whole [`trypema`](https://docs.rs/trypema) crate (with its
/// `redis-tokio` feature), so `distkit::trypema::{local, redis, hybrid, …}` are trypema's
/// own items.
///
/// - `trypema::local` limits within one process, with no I/O.
/// - `trypema::redis` keeps the sliding window in Redis, one atomic script per call, so
///   every process sharing the Redis shares the limit.
/// - `trypema::hybrid` admits from local state and syncs with Redis in the background.
///
/// trypema's Redis and hybrid providers use the `redis` crate's `ConnectionManager` (not
/// fred; the exact version is re-exported as [`distkit::redis`](crate::redis)) and need a
/// standalone Redis: they do not support Redis Cluster. trypema documents Redis 7.2 or newer
/// for them. [`TrypemaError`](trypema::TrypemaError) converts into
/// [`DistkitError::TrypemaError`].
///
/// ```
/// use distkit::trypema::local::LocalRateLimiterProvider;
/// use distkit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};
///
/// let provider = LocalRateLimiterProvider::builder()
///     .window_size(WindowSize::seconds_or_panic(1))
///     .bucket_size(BucketSize::milliseconds_or_panic(100))
///     .build()?;
/// let rate = RateLimit::per_second_or_panic(2.0);
/// assert!(matches!(provider.absolute().inc("user-1", &rate, 1), RateLimitDecision::Allowed));
/// assert!(matches!(provider.absolute().inc("user-1", &rate, 1), RateLimitDecision::Allowed));
/// assert!(matches!(provider.absolute().inc("user-1", &rate, 1), RateLimitDecision::Rejected { .. }));
/// # Ok::<(), distkit::DistkitError>(())
/// ```
///
/// Building a Redis provider:
///
/// ```no_run
/// use distkit::trypema::redis::{RedisKey, RedisRateLimiterProvider};
/// use distkit::trypema::{BucketSize, RateLimiterBuilder, WindowSize};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let connection = distkit::redis::Client::open("redis://127.0.0.1:6379")?
///     .get_connection_manager()
///     .await?;
/// let provider = RedisRateLimiterProvider::builder(connection)
///     .prefix(RedisKey::try_from("my-service")?)
///     .window_size(WindowSize::seconds_or_panic(60))
///     .bucket_size(BucketSize::milliseconds_or_panic(100))
///     .build()?;
/// # let _ = provider;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "trypema")]
#[cfg_attr(docsrs, doc(cfg(feature = "trypema")))]
#[doc(inline)]
pub use distkit_ratelimit::trypema;

/// The exact `redis` crate that trypema's Redis providers are built on, to open the
/// `ConnectionManager` they take.
#[cfg(feature = "trypema")]
#[cfg_attr(docsrs, doc(cfg(feature = "trypema")))]
pub use distkit_ratelimit::redis;
