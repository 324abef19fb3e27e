//! Redis-backed distributed locks, re-exported by the `distkit` facade as `distkit::lock`.
//!
//! See [`lock`] for the [`Mutex`](lock::Mutex) and the writer-preferring
//! [`RwLock`](lock::RwLock).
//!
//! # Feature flags
//!
//! Generated from the `##` comments of the manifest, so it always matches it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod lock;
mod scripts;
#[cfg(feature = "semaphore")]
#[cfg_attr(docsrs, doc(cfg(feature = "semaphore")))]
pub mod semaphore;

// Everything a project depending only on this crate needs besides its own items.
pub use distkit_core::{
    ConnectOptions, DistkitError, DistkitRedisKey, LockError, ReconnectPolicy, ReplicaAcks,
    connect, fred,
};
