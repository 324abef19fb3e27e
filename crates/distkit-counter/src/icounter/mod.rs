//! Instance-aware counters: each process (instance) owns a slice of every total.
//!
//! # The model
//!
//! For every key, `C` is the sum of the slices `I` of the **live** instances. An instance is
//! one counter object, identified by a ULID ([`InstanceAwareCounterTrait::instance_id`]).
//! `inc`/`dec` move this instance's slice (and so `C`); `set_on_instance` sets it;
//! `del_on_instance` and `clear_on_instance` remove it. The global `set`, `del` and `clear`
//! reset every instance's slice of the key (or of every key).
//!
//! Use it for totals that must follow the processes that contribute to them: connections
//! per service, in-flight jobs per worker pool, leases held by a fleet. When a process dies,
//! its share leaves the total by itself.
//!
//! # Liveness and cleanup
//!
//! Every call carries the instance's heartbeat, and a background task sends one every quarter
//! of `dead_instance_threshold` (30 s by default; values below 1 s are raised to 1 s), so
//! an idle instance stays alive. Each heartbeat renews the instance's lease by **its own**
//! threshold: an instance whose lease ran out — judged by the Redis server's clock — is dead,
//! whatever the thresholds of the others. The next call of any instance under the prefix
//! takes every dead slice out of the totals it answers with: it reaps up to 500 slices of
//! dead instances and, when more are due, also the dead slices of the keys it touches, so one
//! huge dead instance never blocks Redis and no answer counts a dead slice.
//!
//! # Revival and stale slices
//!
//! A reaped instance that comes back (its next call or heartbeat) within its `revival_window`
//! (1 hour by default, never shorter than its threshold) restores every slice it had,
//! negative ones included, in one atomic step — except slices removed meanwhile by a global
//! `set`, `del` or `clear` of their key: those are gone for good, never subtracted twice and
//! never added back by anyone. After the window, later calls remove the parked slices and
//! the instance's records, a bounded amount per call; an instance that comes back after that
//! starts afresh (its old slices do not return).
//!
//! # State in Redis
//!
//! A global `set` or `del` of a key removes every instance's slice of it (one step per
//! instance that holds one), and `clear` removes every slice: deleting every key, or
//! clearing, leaves nothing key-specific in Redis. What remains per prefix is one record per
//! live instance (and per dead one for its revival window).
//!
//! A warm unconditional `inc` of a live instance, while no dead instance waits and no revival
//! window ends, runs a small script of five commands (server time, the bound below, the lease
//! renewal and two `HINCRBY`s). Every other call runs the full script, which looks for dead
//! instances only once the server clock passes a stored lower bound of the earliest lease
//! deadline and revival-window end, so finding the dead costs nothing while nobody dies.
//!
//! The work of one call is bounded as follows: reaping and collection take at most 500
//! slices; when more slices are due, a call also reaps the dead slices of the keys it
//! touches (keys × dead instances still being reaped); a revival restores all of the
//! instance's parked slices at once (one step per slice); `clear_on_instance` removes all of
//! the instance's slices at once, all or nothing; `clear` is a fixed number of `UNLINK`s.
//!
//! # Shards
//!
//! A prefix's keys are spread over `shards` shards (16 by default, see
//! [`StrictInstanceAwareCounterOptions::shards`]): key `k` lives in shard
//! `FNV-1a-64(k) mod shards`, and each shard is a complete instance-aware counter space with
//! its own keys (`distkit:{<prefix>:<shard>}:ic:…`) and its own membership. `C` of a key is
//! the sum of the live slices in that key's shard, where all its slices live, so everything
//! above holds per key. An instance joins a shard with its first call there; the heartbeat
//! then renews its lease in every shard it joined (one script per joined shard every quarter
//! threshold), so an idle live instance stays alive wherever it holds slices. A reaped
//! instance revives in a shard with its next call there or its next heartbeat. Batches run
//! one script per shard they touch (atomic per shard); `clear` reaches every shard and
//! `clear_on_instance` every shard the instance joined, each shard atomically. The count is
//! fixed per prefix, as for the plain counters (see [`crate::counter`]).
//!
//! # Strict or lax
//!
//! [`StrictInstanceAwareCounter`] runs every call as one atomic script.
//! [`LaxInstanceAwareCounter`] answers `inc`/`dec`/`get` of warm keys from memory and
//! flushes every `flush_interval`, exactly once, like the lax plain counter.
//!
//! ```no_run
//! # use distkit_counter as distkit; // the facade crate, as users name it
//! use distkit::DistkitRedisKey;
//! use distkit::icounter::{
//!     InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
//! };
//!
//! # async fn example() -> Result<(), distkit::DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let prefix = DistkitRedisKey::try_from("connections")?;
//! let counter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(prefix, client));
//! let service = DistkitRedisKey::try_from("api")?;
//!
//! let (total, mine) = counter.inc(&service, 3).await?;
//! println!("{mine} of {total} connections are on instance {}", counter.instance_id());
//! # Ok(())
//! # }
//! ```

mod absolute;
mod counter_trait;
mod lax;
mod options;
mod remote;
mod strict;

pub use counter_trait::{InstanceAwareCounterTrait, Pair};
pub use distkit_core::{CounterComparator, CounterError};
pub use lax::LaxInstanceAwareCounter;
pub use options::{
    LaxInstanceAwareCounterOptions, LaxInstanceAwareCounterOptionsBuilder,
    StrictInstanceAwareCounterOptions, StrictInstanceAwareCounterOptionsBuilder,
};
pub use strict::StrictInstanceAwareCounter;
