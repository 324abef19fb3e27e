//! Redis-backed distributed counters, re-exported by the `distkit` facade as
//! `distkit::counter` (and `distkit::icounter` with the `instance-aware` feature).
//!
//! See [`counter`] for the strict and lax counters.
//!
//! # Feature flags
//!
//! Generated from the `##` comments of the manifest, so it always matches it:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod buffer;
mod checked;
pub mod counter;
#[cfg(feature = "instance-aware")]
#[cfg_attr(docsrs, doc(cfg(feature = "instance-aware")))]
pub mod icounter;
mod observe;
mod scripts;
mod shards;
mod wire;

// Everything a project depending only on this crate needs besides the counters.
pub use distkit_core::{
    ConnectOptions, CounterComparator, CounterError, DistkitError, DistkitRedisKey,
    ReconnectPolicy, ReplicaAcks, connect, fred,
};
