//! The machinery shared by the lax counters: sharded local state and exactly-once batches.

mod lax_core;
mod local;
mod outbox;

pub(crate) use lax_core::LaxCore;
pub(crate) use local::{BatchChange, LocalChange, LocalState, Snapshot};
pub(crate) use outbox::{Batch, Confirmation, DeltaSink, Outbox};
