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
//! Every server process runs the binary named by `DISTKIT_REDIS_SERVER` ([`SERVER_VARIABLE`];
//! `redis-server` on `PATH` when unset) and every command-line call the client named by
//! `DISTKIT_REDIS_CLI` ([`CLI_VARIABLE`]; `redis-cli`), so the whole suite runs against
//! another server (`valkey-server`, an older Redis build). Every start is bounded: a server
//! that exits or does not answer within 20 s fails the test with its binary, arguments and
//! log tail. [`TestRedis::server_version`] lets a test that needs a newer server say so.
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
pub use server::{
    CLI_VARIABLE, DEPLOYMENT_VARIABLE, SERVER_VARIABLE, ServerVersion, TestRedis, cli_binary,
    cli_command, server_binary, unique_prefix,
};
