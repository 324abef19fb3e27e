//! Redis-backed distributed locks, re-exported by the `distkit` facade as `distkit::lock`.
//!
//! See [`lock`] for the [`Mutex`](lock::Mutex) and the writer-preferring
//! [`RwLock`](lock::RwLock).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod lock;
mod scripts;
