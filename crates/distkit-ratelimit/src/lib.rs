//! Rate limiting for distkit.
//!
//! - [`ratelimit`]: fred-native, cluster-safe limiters — [`GcraLimiter`](ratelimit::GcraLimiter)
//!   (smooth rate with burst) and [`SlidingWindowLimiter`](ratelimit::SlidingWindowLimiter)
//!   (trypema's sliding-window semantics) — on the same fred client, [`DistkitRedisKey`] and
//!   [`DistkitError`] as every distkit primitive. Always available.
//! - `trypema` (feature `trypema`, on by default): the [`trypema`](https://docs.rs/trypema)
//!   crate, re-exported whole with its `redis-tokio` feature, so `trypema::{local, redis,
//!   hybrid, …}` are trypema's own items:
//!   - `trypema::local` limits within one process, with no I/O.
//!   - `trypema::redis` keeps the window in Redis: one atomic script per call, so every
//!     process sharing the Redis shares the limit.
//!   - `trypema::hybrid` admits from local state and syncs with Redis in the background.
//!
//!   trypema's Redis providers talk to Redis through the `redis` crate's `ConnectionManager`
//!   (not through fred) and need a standalone Redis: they don't support Redis Cluster.
//!   `TrypemaError` converts into `DistkitError::TrypemaError`, so `?` works in distkit code.
//!
//! # Feature flags
//!
//! Generated from the `##` comments of the manifest, so it always matches it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod ratelimit;

#[cfg(feature = "trypema")]
#[cfg_attr(docsrs, doc(cfg(feature = "trypema")))]
pub use trypema;

// Everything a project depending only on this crate needs besides its own items.
pub use distkit_core::{
    ConnectOptions, DistkitError, DistkitRedisKey, ReconnectPolicy, connect, fred,
};

/// The exact `redis` crate trypema's Redis providers are built on, to open the
/// `ConnectionManager` they take: `redis::Client::open(url)?.get_connection_manager().await?`.
#[cfg(feature = "trypema")]
#[cfg_attr(docsrs, doc(cfg(feature = "trypema")))]
pub use redis;
