//! Rate limiting for distkit: the [`trypema`] crate, re-exported whole with its `redis-tokio`
//! feature, so `distkit::trypema::{local, redis, hybrid, …}` are trypema's own items.
//!
//! - [`trypema::local`] limits within one process, with no I/O.
//! - [`trypema::redis`] keeps the window in Redis: one atomic script per call, so every
//!   process sharing the Redis shares the limit.
//! - [`trypema::hybrid`] admits from local state and syncs with Redis in the background.
//!
//! trypema's Redis providers talk to Redis through the `redis` crate's `ConnectionManager`
//! (not through fred) and need a standalone Redis: they don't support Redis Cluster.
//! [`TrypemaError`](trypema::TrypemaError) converts into
//! [`DistkitError::TrypemaError`], so `?` works in distkit code.

pub use trypema;

// Everything a project depending only on this crate needs besides its own items.
pub use distkit_core::{
    ConnectOptions, DistkitError, DistkitRedisKey, ReconnectPolicy, connect, fred,
};

/// The exact `redis` crate trypema's Redis providers are built on, to open the
/// `ConnectionManager` they take: `redis::Client::open(url)?.get_connection_manager().await?`.
pub use redis;
