//! Private `redis-server` processes and fault tools for the distkit tests.
//!
//! [`TestRedis::start`] gives every test a deployment of its own — a standalone server, or
//! with `DISTKIT_TEST_DEPLOYMENT=cluster` a three-master Redis Cluster (or the server named
//! by `REDIS_URL`) — and [`unique_prefix`] a name no other test uses, so tests run in
//! parallel and never touch anybody's data. The fault tools — [`TestRedis::pause`],
//! [`TestRedis::resume`], [`TestRedis::restart`], [`TestRedis::kill_clients`] — need
//! private servers. A [`Proxy`] between a client and the server delays, holds or cuts the
//! traffic of one client. [`ReplicatedRedis`] is a primary with replicas, optionally watched by
//! Sentinels, for failover tests; [`TestRedis::start_cluster_with_replicas`] a cluster whose
//! masters each have a replica.
//!
//! This crate depends on no distkit crate: it talks to Redis with `redis-cli` and plain TCP.
#![expect(
    clippy::panic,
    clippy::expect_used,
    reason = "a test harness that cannot set up must fail the test loudly, with its reason"
)]

pub mod bench;
mod proxy;
mod replication;
mod server;

pub use proxy::{Direction, Proxy};
pub use replication::ReplicatedRedis;
pub use server::{DEPLOYMENT_VARIABLE, TestRedis, unique_prefix};
