//! Distributed counters: [`StrictCounter`] and [`LaxCounter`], behind one [`CounterTrait`].
//!
//! # Strict or lax
//!
//! Both counters address the same stored values: a `StrictCounter` and a `LaxCounter`
//! built with the same prefix read and write the same numbers.
//!
//! - [`StrictCounter`] runs every call as one atomic Lua script: the value it returns is
//!   the value in Redis at that instant, and every other process sees it at once. One round
//!   trip per call; use it where the number decides something (billing, quotas, ids).
//! - [`LaxCounter`] buffers `inc`/`dec` in memory and flushes the sum every `allowed_lag`
//!   (20 ms by default). A warm `inc` or `get` costs tens of nanoseconds and no I/O; other
//!   processes see the increments within about `allowed_lag`. Use it for high-rate metrics and
//!   soft limits. `set`, `del`, `clear` and the conditional operations stay immediate and
//!   absolute.
//!
//! # Exactness
//!
//! Values are exact over the whole `i64` range: scripts store and compare decimal strings
//! and never compute with Lua doubles. An operation that would overflow fails with
//! [`CounterError::Overflow`](crate::counter::CounterError) and writes nothing.
//!
//! # Conditions
//!
//! `inc_if` and `set_if` take a [`CounterComparator`] that is checked against the current
//! value (0 when absent) in the same atomic script that writes: a failed comparison writes
//! nothing and returns `(old, old)`. To tell whether the write happened, ask the comparator
//! about the old value: `comparator.matches(old)` (the value it was checked against).
//! Comparing `new` with `old` does not tell, since a write may leave the value unchanged.
//!
//! # Batches
//!
//! `*_all` operations return their results in input order (a key repeated in a batch is
//! applied once per occurrence, in order, each reporting its own values). A prefix's keys are
//! spread over [`CounterOptions::shards`] shards (16 by default; see *Shards* below), and a
//! batch runs one script per shard it touches, shard after shard in the order of each
//! shard's first key. Within a shard, up to 1 000 operations go in one atomic script; a
//! larger part is cut into such chunks. So a batch is all or nothing when all its keys share
//! one shard (always with `shards = 1`) and has at most 1 000 operations. Otherwise, if a
//! later chunk of a shard fails the error is
//! [`CounterError::BatchPartiallyApplied`](crate::counter::CounterError) with the number of
//! that shard's operations applied (when the batch is within one shard), and if a shard fails
//! after other shards applied their part it is
//! [`CounterError::ShardedBatchPartiallyApplied`](crate::counter::CounterError) listing the
//! applied operations. `get_all` reads each shard (and each chunk of 1 000) at its own
//! instant; `clear` removes one shard after the other, each atomically.
//!
//! # Shards
//!
//! Key `k` of a prefix lives in shard `FNV-1a-64(k) mod shards`, in the hash
//! `distkit:{<prefix>:<shard>}:counter` (one hash tag, so one cluster slot, per shard;
//! `distkit:{<prefix>}:counter` with one shard, the layout of earlier versions). Every
//! operation on one key is one script on one slot, so a prefix's load spreads over the
//! masters of a cluster. The count is fixed per prefix: it is recorded in Redis on first use
//! and a handle configured with another count gets
//! [`CounterError::ShardCountMismatch`](crate::counter::CounterError) before anything is
//! applied (each handle checks once, then caches the answer). The README's *Scaling out*
//! has the capacity arithmetic and how to change the count.
//!
//! # Connection loss
//!
//! Writes are sent once: fred never replays them after a reconnect. When the connection
//! fails after a write was sent the call returns
//! [`CounterError::OutcomeUnknown`](crate::counter::CounterError) — the increment may or may
//! not have been applied — and distkit does not retry it by itself. Reads are retried.
//!
//! # Failover and data loss
//!
//! Redis replicates asynchronously: a write the primary acknowledged can be missing on the
//! replica promoted by a failover, and a restart without persistence loses every value.
//! With [`CounterOptions::replica_acks`] a [`StrictCounter`] write returns `Ok` only once
//! that many replicas acknowledged it (`WAIT` after the script, on the same connection);
//! otherwise it fails with [`CounterError::NotReplicated`](crate::counter::CounterError)
//! — the primary applied it, a failover may lose it, retrying would count it twice.
//! Concurrent writes of one counter object share `WAIT`s. A write whose client reconnected
//! before its `WAIT` answered is reported `NotReplicated` too. In the failover tests (ten
//! Sentinel and ten cluster failovers under load) no acknowledged write was lost with
//! replica acknowledgement on; with it off, hundreds of thousands were. A [`LaxCounter`]
//! never waits for replicas: increments flushed shortly before a failover can be lost
//! (never doubled). Use `maxmemory-policy noeviction`: an evicted value is a lost value.
//! The repository README's *When Redis fails* table has the details per fault.
//!
//! ```no_run
//! # use distkit_counter as distkit; // the facade crate, as users name it
//! use distkit::counter::{CounterOptions, CounterTrait, StrictCounter};
//! use distkit::{CounterComparator, DistkitRedisKey};
//!
//! # async fn example() -> Result<(), distkit::DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let counter = StrictCounter::new(CounterOptions::new(DistkitRedisKey::try_from("billing")?, client));
//! let key = DistkitRedisKey::try_from("tenant-42")?;
//!
//! assert_eq!(counter.inc(&key, 5).await?, 5);
//! // Only charge while under the quota of 100.
//! let (new, old) = counter.inc_if(&key, CounterComparator::Lt(100), 10).await?;
//! assert_eq!((new, old), (15, 5));
//! # Ok(())
//! # }
//! ```

mod absolute;
mod counter_trait;
mod group_commit;
mod lax;
mod options;
pub(crate) mod remote;
mod strict;

pub use counter_trait::CounterTrait;
pub use distkit_core::{CounterComparator, CounterError};
pub use lax::LaxCounter;
pub use options::{CounterOptions, CounterOptionsBuilder};
pub use strict::StrictCounter;
