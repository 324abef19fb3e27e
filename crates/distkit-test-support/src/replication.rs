//! A primary with replicas, optionally watched by Sentinels: the topology for failover tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::server::{
    INSTALL_HINT, PORT_RACE_RETRIES, PrivateServer, cli_binary, cli_command, free_port,
    port_race_lost, unique_prefix,
};

/// How long a failover, a resynchronisation or the Sentinels' discovery may take.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(60);

/// One primary and its replicas on loopback, optionally watched by Sentinels that fail it over.
///
/// Every node runs without persistence in its own temporary directory and is killed (by pid)
/// when this value is dropped. Nodes keep their ports for their whole life: a killed node is
/// started again on the same port, empty, as a replica of the current primary. The Sentinels
/// judge a primary down after 1 s without an answer (`down-after-milliseconds 1000`, quorum
/// of a majority).
#[derive(Debug)]
pub struct ReplicatedRedis {
    /// Every data node, by the port it keeps: `None` while a node is killed.
    nodes: Vec<(u16, Option<PrivateServer>)>,
    sentinels: Vec<PrivateServer>,
}

impl ReplicatedRedis {
    /// The name the Sentinels know the primary by (`sentinelServiceName` in the URL).
    pub const MASTER_NAME: &'static str = "distkit-primary";

    /// A primary and `replicas` replicas, no Sentinel; returns once every replica is in sync.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing or the topology does not come up within 60 s.
    pub fn start(replicas: usize) -> Self {
        let primary = spawn_node(None);
        let primary_port = primary.port;
        let mut nodes = vec![(primary_port, Some(primary))];
        for _ in 0..replicas {
            let replica = spawn_node(Some(primary_port));
            nodes.push((replica.port, Some(replica)));
        }
        let topology = Self {
            nodes,
            sentinels: Vec::new(),
        };
        topology.wait_until_in_sync();
        topology
    }

    /// A primary, `replicas` replicas and `sentinels` Sentinels (quorum: a majority of them);
    /// returns once every Sentinel knows every replica and every other Sentinel.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with_sentinels(replicas: usize, sentinels: usize) -> Self {
        let mut topology = Self::start(replicas);
        let primary_port = topology.primary_port();
        let quorum = (sentinels / 2).saturating_add(1);
        let mut lost_races: usize = 0;
        while topology.sentinels.len() < sentinels {
            let port = free_port();
            let dir = temp_dir("sentinel", port);
            if let Some(sentinel) =
                PrivateServer::spawn_sentinel(port, dir, Self::MASTER_NAME, primary_port, quorum)
            {
                topology.sentinels.push(sentinel);
            } else {
                lost_races = lost_races.saturating_add(1);
                assert!(lost_races < PORT_RACE_RETRIES, "{}", port_race_lost());
            }
        }
        topology.wait_until_sentinels_agree(primary_port);
        topology
    }

    /// The URL of the current primary, for a client that does not use Sentinel.
    pub fn primary_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.primary_port())
    }

    /// `redis-sentinel://` URL naming every Sentinel and [`MASTER_NAME`](Self::MASTER_NAME).
    ///
    /// # Panics
    ///
    /// When the topology has no Sentinel.
    pub fn sentinel_url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|sentinel| sentinel.port);
        let first = ports.next().expect("this topology has no Sentinel");
        let others: String = ports
            .map(|port| format!("node=127.0.0.1:{port}&"))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{first}?{others}sentinelServiceName={}",
            Self::MASTER_NAME
        )
    }

    /// The ports of the Sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .map(|sentinel| sentinel.port)
            .collect()
    }

    /// The port of the node that says it is the primary (`ROLE`), among the running nodes.
    ///
    /// # Panics
    ///
    /// When no running node is a primary within 60 s.
    pub fn primary_port(&self) -> u16 {
        let started = Instant::now();
        loop {
            let primaries: Vec<u16> = self
                .running_ports()
                .into_iter()
                .filter(|&port| role_of(port).as_deref() == Some("master"))
                .collect();
            if let [primary] = primaries.as_slice() {
                return *primary;
            }
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "expected one primary, found {primaries:?}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// The ports of the running nodes that are not the primary.
    pub fn replica_ports(&self) -> Vec<u16> {
        let primary = self.primary_port();
        self.running_ports()
            .into_iter()
            .filter(|&port| port != primary)
            .collect()
    }

    /// The process id of the node on `port`, while it runs.
    pub fn pid_of(&self, port: u16) -> Option<u32> {
        self.nodes
            .iter()
            .find(|(node_port, _)| *node_port == port)
            .and_then(|(_, server)| server.as_ref().map(PrivateServer::pid))
    }

    /// Runs `redis-cli` with `args` against the node (or Sentinel) on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// Waits until every running replica follows the primary with its link up and no
    /// synchronisation in progress, and the primary lists it as `online` (before that, `WAIT`
    /// does not count it). Under write load replicas trail by the writes in flight, so offsets
    /// are not compared.
    ///
    /// # Panics
    ///
    /// When that takes over 60 s.
    pub fn wait_until_in_sync(&self) {
        let started = Instant::now();
        loop {
            let primary = self.primary_port();
            let replicas = self.replica_ports();
            let primary_info = cli(primary, &["INFO", "replication"]);
            let in_sync = replicas.iter().all(|&port| {
                let info = cli(port, &["INFO", "replication"]);
                let field = |name: &str| field_of(&info, name);
                let online_at_primary = primary_info.lines().any(|line| {
                    line.starts_with("slave")
                        && line.contains(&format!(",port={port},state=online,"))
                });
                field("master_link_status").as_deref() == Some("up")
                    && field("master_port") == Some(primary.to_string())
                    && field("master_sync_in_progress").as_deref() == Some("0")
                    && online_at_primary
            });
            if in_sync {
                return;
            }
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "the replicas {replicas:?} did not catch up with the primary {primary}"
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Asks the Sentinels to fail over (`SENTINEL FAILOVER`) and waits until a replica is the
    /// primary, every Sentinel says so and the other nodes replicate from it; returns its port.
    ///
    /// # Panics
    ///
    /// When the topology has no Sentinel or the failover does not finish within 60 s.
    pub fn sentinel_failover(&self) -> u16 {
        let old = self.primary_port();
        let sentinel = self.sentinel_ports().first().copied().expect("no Sentinel");
        let started = Instant::now();
        loop {
            let reply = cli(sentinel, &["SENTINEL", "FAILOVER", Self::MASTER_NAME]);
            if reply == "OK" {
                break;
            }
            // NOGOODSLAVE / INPROGRESS right after another failover: the Sentinel's view of
            // the replicas is refreshed within a second or two.
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "SENTINEL FAILOVER kept answering {reply}"
            );
            sleep(Duration::from_millis(200));
        }
        self.wait_for_new_primary(old)
    }

    /// Kills the primary (SIGKILL), waits until the Sentinels promoted a replica and the
    /// remaining replicas follow it, then starts the killed node again on its port, empty, as a
    /// replica of the new primary; returns the new primary's port.
    ///
    /// # Panics
    ///
    /// As [`sentinel_failover`](Self::sentinel_failover).
    pub fn kill_primary(&mut self) -> u16 {
        let old = self.primary_port();
        self.kill_node(old);
        let new = self.wait_for_new_primary(old);
        self.restart_node(old);
        self.wait_until_in_sync();
        new
    }

    /// Kills the node on `port` (SIGKILL) and keeps its port for [`restart_node`](Self::restart_node).
    pub fn kill_node(&mut self, port: u16) {
        if let Some((_, server)) = self.nodes.iter_mut().find(|(node, _)| *node == port) {
            // Dropping the server kills it and waits for it.
            drop(server.take());
        }
    }

    /// Starts the node on `port` again, empty, as a replica of the current primary.
    ///
    /// # Panics
    ///
    /// When the node does not come back within 60 s.
    pub fn restart_node(&mut self, port: u16) {
        let primary = self.primary_port();
        let started = Instant::now();
        let server = loop {
            let dir = temp_dir("node", port);
            // Host and port as two arguments: Redis before 7.0 refuses them as one.
            let primary_port = primary.to_string();
            if let Some(server) = PrivateServer::spawn_with(
                port,
                dir,
                false,
                &["--replicaof", "127.0.0.1", &primary_port],
            ) {
                break server;
            }
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "the node on port {port} did not restart within {TOPOLOGY_TIMEOUT:?}: the port \
                 stayed taken"
            );
            sleep(Duration::from_millis(50));
        };
        if let Some((_, slot)) = self.nodes.iter_mut().find(|(node, _)| *node == port) {
            *slot = Some(server);
        }
    }

    /// Stops the node on `port` (SIGSTOP): it keeps its connections but answers nothing.
    pub fn pause_node(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume_node(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let pid = self
            .pid_of(port)
            .unwrap_or_else(|| panic!("no running node on port {port}"));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, server)| server.is_some())
            .map(|(port, _)| *port)
            .collect()
    }

    /// Waits until a node other than `old` is the one primary and every Sentinel names it.
    fn wait_for_new_primary(&self, old: u16) -> u16 {
        let started = Instant::now();
        loop {
            let primaries: Vec<u16> = self
                .running_ports()
                .into_iter()
                .filter(|&port| port != old && role_of(port).as_deref() == Some("master"))
                .collect();
            if let [new] = primaries.as_slice() {
                let agreed = self
                    .sentinel_ports()
                    .iter()
                    .all(|&sentinel| sentinel_primary(sentinel) == Some(*new));
                let old_follows = role_of(old).is_none_or(|role| role == "slave");
                if agreed && old_follows {
                    return *new;
                }
            }
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "no replica replaced the primary {old} (primaries now: {primaries:?})"
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every Sentinel names `primary` and knows every replica and every other
    /// Sentinel, so that a failover can start at once.
    fn wait_until_sentinels_agree(&self, primary: u16) {
        let replicas = self.nodes.len().saturating_sub(1);
        let others = self.sentinels.len().saturating_sub(1);
        let started = Instant::now();
        loop {
            let ready = self.sentinel_ports().iter().all(|&sentinel| {
                sentinel_primary(sentinel) == Some(primary)
                    && known_count(sentinel, "REPLICAS") == replicas
                    && known_count(sentinel, "SENTINELS") == others
            });
            if ready {
                return;
            }
            assert!(
                started.elapsed() < TOPOLOGY_TIMEOUT,
                "the Sentinels did not discover the topology"
            );
            sleep(Duration::from_millis(100));
        }
    }
}

fn temp_dir(kind: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("distkit-{kind}-{port}-{}", unique_prefix()))
}

/// A new node on a free port: a primary, or a replica of `primary`.
///
/// # Panics
///
/// When the node does not start (see `PrivateServer::spawn_with`), or every one of a few
/// free ports was taken by another process before the node bound it.
fn spawn_node(primary: Option<u16>) -> PrivateServer {
    // Host and port as two arguments: Redis before 7.0 refuses them as one.
    let primary_port = primary.map(|port| port.to_string());
    let extra: Vec<&str> = match &primary_port {
        Some(port) => vec!["--replicaof", "127.0.0.1", port.as_str()],
        None => Vec::new(),
    };
    for _ in 0..PORT_RACE_RETRIES {
        let port = free_port();
        if let Some(server) = PrivateServer::spawn_with(port, temp_dir("node", port), false, &extra)
        {
            return server;
        }
    }
    panic!("{}", port_race_lost());
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = cli_command()
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {} ({error}); {INSTALL_HINT}", cli_binary()));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The value of `field` in `INFO section` of the node on `port`.
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    field_of(&cli(port, &["INFO", section]), field)
}

/// The value of `field` in the text of an `INFO` reply.
fn field_of(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    })
}

/// `master` or `slave` (`INFO replication`), `None` when the node does not answer.
fn role_of(port: u16) -> Option<String> {
    info_field(port, "replication", "role")
}

/// The primary port a Sentinel names.
fn sentinel_primary(sentinel: u16) -> Option<u16> {
    let reply = cli(
        sentinel,
        &[
            "SENTINEL",
            "GET-MASTER-ADDR-BY-NAME",
            ReplicatedRedis::MASTER_NAME,
        ],
    );
    reply
        .lines()
        .nth(1)
        .and_then(|port| port.trim().parse().ok())
}

/// How many replicas (`REPLICAS`) or other Sentinels (`SENTINELS`) a Sentinel knows and
/// considers up.
fn known_count(sentinel: u16, what: &str) -> usize {
    let reply = cli(sentinel, &["SENTINEL", what, ReplicatedRedis::MASTER_NAME]);
    // redis-cli prints each entry's flat field list; the `flags` value of a healthy entry is
    // exactly `slave` or `sentinel`.
    let mut lines = reply.lines();
    let mut count: usize = 0;
    while let Some(line) = lines.next() {
        if line.trim() == "flags" {
            let flags = lines.next().unwrap_or("").trim();
            if flags == "slave" || flags == "sentinel" {
                count = count.saturating_add(1);
            }
        }
    }
    count
}
