//! The shared foundation of [distkit](https://docs.rs/distkit).
//!
//! Everything every distkit primitive stands on lives here:
//!
//! - [`DistkitRedisKey`], the validated key type every API takes;
//! - [`CounterComparator`], the condition of the conditional counter operations;
//! - [`DistkitError`] and its feature-gated inner errors;
//! - [`ReplicaAcks`], the opt-in replica acknowledgement of locks and strict counters;
//! - [`connect`] and [`ConnectOptions`], which build a Redis client (from the `fred` crate)
//!   with the reconnect policy and timeouts the primitives rely on;
//! - [`key_schema`], the one place where Redis key names are built (cluster-safe: all keys of
//!   one primitive share one hash tag);
//! - [`script`], the Lua script runner (`EVALSHA`, reload on `NOSCRIPT`, a single attempt for
//!   scripts that must never be applied twice);
//! - [`task`], helpers for the background work of the primitives.
//!
//! Users normally depend on the `distkit` facade crate, which re-exports all of this.
//!
//! # Feature flags
//!
//! Generated from the `##` comments of the manifest, so it always matches it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod comparator;
mod connect;
mod error;
pub mod key_schema;
mod redis_key;
mod replica_acks;
pub mod script;
pub mod task;

pub use comparator::CounterComparator;
pub use connect::{
    ConnectOptions, REQUIRED_EVICTION_POLICY, ReconnectPolicy, connect, eviction_policy,
};
#[cfg(feature = "counter")]
pub use error::CounterError;
pub use error::DistkitError;
#[cfg(feature = "lock")]
pub use error::LockError;
pub use error::is_transport_failure as error_is_transport_failure;
pub use redis_key::DistkitRedisKey;
pub use replica_acks::{MAX_REPLICA_ACK_TIMEOUT, ReplicaAcks};

/// The exact `fred` version distkit is built on.
pub use fred;
