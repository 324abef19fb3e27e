use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a new server may take to answer PING, and a new cluster to report `ok`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a manual cluster failover may take before it is asked for again.
const MANUAL_FAILOVER_PATIENCE: Duration = Duration::from_secs(8);
/// How long a cluster failover may take in all.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a start is retried when another process took the chosen port first.
pub(crate) const PORT_RACE_RETRIES: usize = 5;
/// The environment variable that switches [`TestRedis::start`] to a three-master cluster.
pub const DEPLOYMENT_VARIABLE: &str = "DISTKIT_TEST_DEPLOYMENT";
/// The environment variable naming the server binary every private server, replica, cluster
/// node and Sentinel runs (`redis-server` on `PATH` when unset), e.g.
/// `DISTKIT_REDIS_SERVER=/opt/valkey/bin/valkey-server`. Sentinels run as
/// `<binary> <config> --sentinel`.
pub const SERVER_VARIABLE: &str = "DISTKIT_REDIS_SERVER";
/// The environment variable naming the command-line client the harness runs (`redis-cli` on
/// `PATH` when unset), e.g. `DISTKIT_REDIS_CLI=/opt/valkey/bin/valkey-cli`.
pub const CLI_VARIABLE: &str = "DISTKIT_REDIS_CLI";

pub(crate) const INSTALL_HINT: &str = "the server binary was not found. Install redis-server \
    (Debian/Ubuntu: `apt-get update && apt-get install -y redis-server`; \
    macOS: `brew install redis`), name another one with DISTKIT_REDIS_SERVER and \
    DISTKIT_REDIS_CLI, or set REDIS_URL to a Redis you may write to.";

/// The server binary the harness starts: `$DISTKIT_REDIS_SERVER`, else `redis-server`.
pub fn server_binary() -> String {
    std::env::var(SERVER_VARIABLE)
        .ok()
        .filter(|binary| !binary.is_empty())
        .unwrap_or_else(|| "redis-server".to_owned())
}

/// The client binary the harness runs: `$DISTKIT_REDIS_CLI`, else `redis-cli`.
pub fn cli_binary() -> String {
    std::env::var(CLI_VARIABLE)
        .ok()
        .filter(|binary| !binary.is_empty())
        .unwrap_or_else(|| "redis-cli".to_owned())
}

/// A [`Command`] running the client binary ([`cli_binary`]), for tests that call it
/// themselves.
pub fn cli_command() -> Command {
    Command::new(cli_binary())
}

/// A server's version from `INFO server`: `redis_version` (Valkey reports the Redis version
/// it is compatible with there, 7.2.4 for Valkey 8, and its own in `valkey_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// The major version.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
    /// The patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `redis_version` out of an `INFO server` reply.
    pub fn from_info(info: &str) -> Option<Self> {
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))?
            .trim();
        let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
        Some(Self {
            major: parts.next()??,
            minor: parts.next().flatten().unwrap_or(0),
            patch: parts.next().flatten().unwrap_or(0),
        })
    }

    /// Whether the server has sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`,
    /// `PUBSUB SHARDCHANNELS`): Redis 7.0 and newer.
    pub fn has_sharded_pubsub(self) -> bool {
        self.major >= 7
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A name no other test of this run (or of a concurrent run) uses, valid as a distkit key.
pub fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("test-{}-{sequence}-{nanos}", std::process::id())
}

/// A Redis deployment for one test: a standalone server or a three-master Redis Cluster.
///
/// [`start`](Self::start) gives the deployment the test run asks for: the server named by
/// `REDIS_URL` if set; else a three-master cluster when `DISTKIT_TEST_DEPLOYMENT=cluster`;
/// else a private standalone server. Private servers run on free loopback ports, without
/// persistence, in temporary directories, and are killed when this value is dropped.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    /// The port of every node (the first one for a standalone server).
    ports: Vec<u16>,
    private: Vec<PrivateServer>,
    cluster: bool,
    /// The data directory of a persistent standalone server (removed on drop).
    data_dir: Option<PathBuf>,
}

#[derive(Debug)]
pub(crate) struct PrivateServer {
    child: Child,
    dir: PathBuf,
    pub(crate) port: u16,
    /// Whether the server keeps an append-only file (fsync on every write) in `dir`, which a
    /// restart reads back; the directory then outlives the process.
    persistent: bool,
}

impl TestRedis {
    /// The deployment this test run asks for (see the type's docs); returns once it is ready.
    ///
    /// # Panics
    ///
    /// When the server binary ([`SERVER_VARIABLE`], else `redis-server`) is missing (the
    /// message says how to install it), exits at start or does not answer within 20 s (the
    /// message names the binary, its arguments and the end of its log).
    pub fn start() -> Self {
        if std::env::var(DEPLOYMENT_VARIABLE).is_ok_and(|deployment| deployment == "cluster") {
            Self::start_cluster()
        } else {
            Self::start_standalone()
        }
    }

    /// A standalone server, whatever the run asks for: for tests of what only a standalone
    /// server offers (restarting it, trypema's Redis providers).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_standalone() -> Self {
        if let Ok(url) = std::env::var("REDIS_URL") {
            let port = url
                .rsplit(':')
                .next()
                .and_then(|tail| tail.split('/').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or(6379);
            return Self {
                url,
                ports: vec![port],
                private: Vec::new(),
                cluster: false,
                data_dir: None,
            };
        }
        for _ in 0..PORT_RACE_RETRIES {
            let port = free_port();
            if let Some(server) = PrivateServer::spawn(port, false) {
                return Self {
                    url: format!("redis://127.0.0.1:{port}"),
                    ports: vec![port],
                    private: vec![server],
                    cluster: false,
                    data_dir: None,
                };
            }
        }
        panic!("{}", port_race_lost());
    }

    /// A private Redis Cluster of three masters (no replicas), joined with
    /// `redis-cli --cluster create`; returns once `CLUSTER INFO` says `cluster_state:ok` on
    /// every node.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_cluster() -> Self {
        Self::start_cluster_of(0)
    }

    /// A private Redis Cluster of three masters with one replica each, for failover tests
    /// ([`cluster_failover`](Self::cluster_failover)); [`ports`](Self::ports) lists masters
    /// and replicas.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_cluster_with_replicas() -> Self {
        Self::start_cluster_of(1)
    }

    fn start_cluster_of(replicas_per_master: usize) -> Self {
        let mut servers = Vec::new();
        let node_count = replicas_per_master.saturating_add(1).saturating_mul(3);
        let mut lost_races: usize = 0;
        while servers.len() < node_count {
            // The cluster bus listens on port + 10000: both must be free.
            let port = free_port_with_bus();
            if let Some(server) = PrivateServer::spawn(port, true) {
                servers.push(server);
            } else {
                lost_races = lost_races.saturating_add(1);
                assert!(lost_races < PORT_RACE_RETRIES, "{}", port_race_lost());
            }
        }
        let ports: Vec<u16> = servers.iter().map(|server| server.port).collect();
        let nodes: Vec<String> = ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let replicas = replicas_per_master.to_string();
        let mut create = cli_command();
        create
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .stdin(Stdio::null());
        let output = run_bounded(&mut create, READY_TIMEOUT);
        assert!(
            output.status.success(),
            "`{} --cluster create {} --cluster-replicas {replicas} --cluster-yes` failed \
             ({}): {}{}",
            cli_binary(),
            nodes.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self {
            url: format!(
                "redis-cluster://{}?{}",
                nodes.first().map_or("", String::as_str),
                nodes
                    .iter()
                    .skip(1)
                    .map(|node| format!("node={node}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
            ports,
            private: servers,
            cluster: true,
            data_dir: None,
        };
        cluster.wait_until_cluster_ok(node_count);
        cluster
    }

    /// Waits until every node says `cluster_state:ok` and knows all `node_count` nodes with
    /// every replica attached.
    fn wait_until_cluster_ok(&self, node_count: usize) {
        let started = Instant::now();
        while !self.ports.iter().all(|&port| {
            let info = self.node_cli(port, &["CLUSTER", "INFO"]);
            let nodes = self.node_cli(port, &["CLUSTER", "NODES"]);
            info.contains("cluster_state:ok")
                && nodes
                    .lines()
                    .filter(|line| line.contains("connected"))
                    .count()
                    == node_count
                && !nodes.contains("fail")
        }) {
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the test cluster on ports {:?} never reported cluster_state:ok within \
                 {READY_TIMEOUT:?}; the first node's log ends with:\n{}",
                self.ports,
                self.private
                    .first()
                    .map(|server| log_tail(&server.dir))
                    .unwrap_or_default()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Promotes the replica of the master that serves `key` with `CLUSTER FAILOVER` (a
    /// manual failover: the master pauses its clients until the replica has its whole
    /// stream, so nothing acknowledged is lost) and waits until the cluster is `ok` again;
    /// returns the new master's port.
    ///
    /// # Panics
    ///
    /// When the cluster has no replica for that master or the failover does not finish
    /// within 60 s.
    pub fn cluster_failover(&self, key: &str) -> u16 {
        self.cluster_failover_with(key, false)
    }

    /// As [`cluster_failover`](Self::cluster_failover), with `CLUSTER FAILOVER FORCE` when
    /// `force`: the replica takes over without waiting for the master's last writes, so
    /// writes the master acknowledged but had not yet sent are lost (what an unplanned
    /// failover does).
    ///
    /// # Panics
    ///
    /// As [`cluster_failover`](Self::cluster_failover).
    pub fn cluster_failover_with(&self, key: &str, force: bool) -> u16 {
        let master = self.node_of(key);
        let master_id = self.node_cli(master, &["CLUSTER", "MYID"]);
        // After an earlier failover the demoted master takes a moment to call itself a
        // replica of the new one: ask again until a replica answers.
        let looking = Instant::now();
        let replica = loop {
            let found = self.ports.iter().copied().find(|&port| {
                let nodes = self.node_cli(port, &["CLUSTER", "NODES"]);
                nodes.lines().any(|line| {
                    line.contains("myself") && line.contains("slave") && line.contains(&master_id)
                })
            });
            if let Some(replica) = found {
                break replica;
            }
            assert!(
                looking.elapsed() < FAILOVER_TIMEOUT,
                "the master on port {master} has no replica"
            );
            sleep(Duration::from_millis(20));
        };
        // A manual failover gives up after a few seconds when the master does not hand over
        // its stream in time (a loaded machine): ask again until it takes.
        let started = Instant::now();
        'attempts: loop {
            let reply = if force {
                self.node_cli(replica, &["CLUSTER", "FAILOVER", "FORCE"])
            } else {
                self.node_cli(replica, &["CLUSTER", "FAILOVER"])
            };
            assert_eq!(reply, "OK", "CLUSTER FAILOVER on port {replica}");
            let asked = Instant::now();
            while asked.elapsed() < MANUAL_FAILOVER_PATIENCE {
                if self.try_node_of(key) == Some(replica) {
                    break 'attempts;
                }
                sleep(Duration::from_millis(20));
            }
            assert!(
                started.elapsed() < FAILOVER_TIMEOUT,
                "the replica on port {replica} never took over from {master}"
            );
        }
        self.wait_until_cluster_ok(self.ports.len());
        replica
    }

    /// Moves the cluster slot of `key` to another master the way `redis-cli --cluster
    /// reshard` does, one key at a time with `pause` between keys (so that clients meet the
    /// slot half moved: `ASK` redirections, and `TRYAGAIN` for calls whose keys are split),
    /// then assigns the slot to the new master on every node and waits until the cluster is
    /// `ok`; returns the new master's port.
    ///
    /// # Panics
    ///
    /// When the cluster has no other master, a command fails, or the move does not finish
    /// within 60 s.
    pub fn migrate_slot(&self, key: &str, pause: Duration) -> u16 {
        let source = self.node_of(key);
        let slot = self.cli(&["CLUSTER", "KEYSLOT", key]);
        let masters: Vec<u16> = self
            .ports
            .iter()
            .copied()
            .filter(|&port| {
                let nodes = self.node_cli(port, &["CLUSTER", "NODES"]);
                nodes
                    .lines()
                    .any(|line| line.contains("myself") && line.contains("master"))
            })
            .collect();
        let position = masters.iter().position(|&port| port == source).unwrap_or(0);
        let target = masters
            .iter()
            .copied()
            .cycle()
            .skip(position.saturating_add(1))
            .find(|&port| port != source)
            .unwrap_or_else(|| panic!("no master besides {source} to move slot {slot} to"));
        let source_id = self.node_cli(source, &["CLUSTER", "MYID"]);
        let target_id = self.node_cli(target, &["CLUSTER", "MYID"]);
        let expect_ok = |port: u16, args: &[&str]| {
            let reply = self.node_cli(port, args);
            assert_eq!(reply, "OK", "{args:?} on port {port}");
        };
        expect_ok(
            target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
        );
        expect_ok(
            source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
        );
        let started = Instant::now();
        let target_port = target.to_string();
        loop {
            let keys = self.node_cli(source, &["CLUSTER", "GETKEYSINSLOT", &slot, "1"]);
            let Some(next) = keys.lines().next().filter(|line| !line.is_empty()) else {
                break;
            };
            let reply = self.node_cli(
                source,
                &[
                    "MIGRATE",
                    "127.0.0.1",
                    &target_port,
                    "",
                    "0",
                    "5000",
                    "KEYS",
                    next,
                ],
            );
            assert!(
                reply == "OK" || reply == "NOKEY",
                "MIGRATE of {next} from {source} to {target}: {reply}"
            );
            assert!(
                started.elapsed() < FAILOVER_TIMEOUT,
                "slot {slot} never emptied on {source}"
            );
            sleep(pause);
        }
        expect_ok(target, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
        expect_ok(source, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
        for &port in &masters {
            if port != source && port != target {
                expect_ok(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
            }
        }
        self.wait_until_cluster_ok(self.ports.len());
        target
    }

    /// The URL of the deployment: `redis://127.0.0.1:<port>`, or
    /// `redis-cluster://127.0.0.1:<port>?node=…&node=…` for a cluster.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The TCP port of the (first) server.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(6379)
    }

    /// The TCP ports of every node.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The process id of a private standalone server.
    pub fn pid(&self) -> Option<u32> {
        match self.private.as_slice() {
            [server] => Some(server.child.id()),
            _ => None,
        }
    }

    /// Runs `redis-cli` with `args` and returns what it printed; in a cluster it follows
    /// redirections to the node that owns the key.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn cli(&self, args: &[&str]) -> String {
        self.node_cli(self.port(), args)
    }

    /// Runs `redis-cli` with `args` against the node on `port`.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn node_cli(&self, port: u16, args: &[&str]) -> String {
        let mut command = cli_command();
        if self.cluster {
            command.arg("-c");
        }
        let output = command
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run {} ({error}); {INSTALL_HINT}", cli_binary())
            });
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The version of the (first) server, from `INFO server`.
    ///
    /// # Panics
    ///
    /// When the server does not answer `INFO server` with a `redis_version`.
    pub fn server_version(&self) -> ServerVersion {
        let info = self.cli(&["INFO", "server"]);
        ServerVersion::from_info(&info)
            .unwrap_or_else(|| panic!("INFO server named no redis_version: {info}"))
    }

    /// Stops every server process (SIGSTOP): they keep their connections but answer nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets paused servers go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// A private standalone server that writes every change to an append-only file before
    /// answering (`appendfsync always`), so that [`restart`](Self::restart) brings back
    /// everything it acknowledged: for tests of restarts without data loss.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start); also when `REDIS_URL` is set (a restart needs a private
    /// server).
    pub fn start_persistent() -> Self {
        assert!(
            std::env::var("REDIS_URL").is_err(),
            "a persistent test server must be private; unset REDIS_URL"
        );
        for _ in 0..PORT_RACE_RETRIES {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("distkit-redis-aof-{port}-{}", unique_prefix()));
            if let Some(server) = PrivateServer::spawn_in(port, false, dir.clone(), true) {
                return Self {
                    url: format!("redis://127.0.0.1:{port}"),
                    ports: vec![port],
                    private: vec![server],
                    cluster: false,
                    data_dir: Some(dir),
                };
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("{}", port_race_lost());
    }

    /// Kills a standalone server (SIGKILL) and starts it again on the same port: empty, or,
    /// for a [`start_persistent`](Self::start_persistent) server, from its append-only file.
    ///
    /// # Panics
    ///
    /// When the server is not a private standalone one, or does not come back within 20 s.
    pub fn restart(&mut self) {
        assert!(
            !self.cluster,
            "restart needs a standalone server (TestRedis::start_standalone)"
        );
        assert!(
            !self.private.is_empty(),
            "restart needs a private server; unset REDIS_URL"
        );
        let port = self.port();
        self.private.clear();
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            let restarted = match &self.data_dir {
                Some(dir) => PrivateServer::spawn_in(port, false, dir.clone(), true),
                None => PrivateServer::spawn(port, false),
            };
            if let Some(server) = restarted {
                self.private.push(server);
                return;
            }
            sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not restart on port {port} within {READY_TIMEOUT:?}: the port stayed taken",
            server_binary()
        );
    }

    /// Closes every normal client connection on every node (`CLIENT KILL TYPE normal`) and
    /// returns how many.
    pub fn kill_clients(&self) -> usize {
        self.ports
            .iter()
            .map(|&port| {
                self.node_cli(port, &["CLIENT", "KILL", "TYPE", "normal"])
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The port of the master that serves the cluster slot of `key` (the server's port for a
    /// standalone deployment).
    ///
    /// During a failover no node may claim the slot for a moment: this asks again for up to
    /// 60 s.
    ///
    /// # Panics
    ///
    /// When no node claims the slot for 60 s.
    pub fn node_of(&self, key: &str) -> u16 {
        let started = Instant::now();
        loop {
            if let Some(port) = self.try_node_of(key) {
                return port;
            }
            assert!(
                started.elapsed() < FAILOVER_TIMEOUT,
                "no node serves the slot of {key}"
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// The port of the master that serves the cluster slot of `key` now, if a node claims it.
    fn try_node_of(&self, key: &str) -> Option<u16> {
        if !self.cluster {
            return Some(self.port());
        }
        let slot: u16 = self.cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap_or(0);
        self.ports.iter().copied().find(|&port| {
            // `CLUSTER NODES` marks the node answering with `myself`, with its slot ranges.
            let nodes = self.node_cli(port, &["CLUSTER", "NODES"]);
            nodes
                .lines()
                .find(|line| line.contains("myself"))
                .is_some_and(|mine| serves_slot(mine, slot))
        })
    }

    fn signal(&self, signal: &str) {
        assert!(
            !self.private.is_empty(),
            "fault injection needs a private server; unset REDIS_URL"
        );
        for server in &self.private {
            let status = Command::new("kill")
                .args([signal, &server.child.id().to_string()])
                .status()
                .expect("cannot run kill");
            assert!(
                status.success(),
                "kill {signal} {} failed",
                server.child.id()
            );
        }
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges (`0-5460 5461 …`).
fn serves_slot(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| match range.split_once('-') {
        Some((low, high)) => {
            matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
        }
        None => range.parse::<u16>().is_ok_and(|single| single == slot),
    })
}

impl PrivateServer {
    /// Starts a server on `port`; `None` when it exited at once (the port was taken).
    pub(crate) fn spawn(port: u16, cluster: bool) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("distkit-redis-{port}-{}", unique_prefix()));
        Self::spawn_in(port, cluster, dir, false)
    }

    /// Starts a server on `port` with its files in `dir`; a persistent one writes (and on a
    /// restart reads) an append-only file there, synced on every write.
    fn spawn_in(port: u16, cluster: bool, dir: PathBuf, persistent: bool) -> Option<Self> {
        let cluster_args: &[&str] = if cluster {
            &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
        } else {
            &[]
        };
        Self::spawn_with(port, dir, persistent, cluster_args)
    }

    /// Starts a server on `port` with its files in `dir` and `extra` arguments (a cluster
    /// node's, a replica's); `None` when it exited at once because the port was taken (the
    /// caller picks another port, a bounded number of times).
    ///
    /// Any other exit, and a server that does not answer PING within 20 s, panics with the
    /// binary, its arguments and the end of its logs.
    pub(crate) fn spawn_with(
        port: u16,
        dir: PathBuf,
        persistent: bool,
        extra: &[&str],
    ) -> Option<Self> {
        std::fs::create_dir_all(&dir).expect("cannot create a temporary directory for a server");
        let mut args: Vec<OsString> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            if persistent { "yes" } else { "no" },
            "--appendfsync",
            "always",
            // Full resyncs stream the snapshot to replicas instead of writing it to disk
            // first: the default since Redis 7.0, and what the docs require of Redis 6.2 (with
            // its disk-based default the Sentinel failover stress failed: failovers stalled
            // clients ~3 s and locks without replica acks overlapped).
            "--repl-diskless-sync",
            "yes",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push("--dir".into());
        args.push(dir.clone().into_os_string());
        args.push("--logfile".into());
        args.push(dir.join(SERVER_LOG).into_os_string());
        args.extend(extra.iter().map(OsString::from));
        Self::launch(port, dir, persistent, &args)
    }

    /// A Sentinel on `port` with its configuration file (which it rewrites) in `dir`, watching
    /// the primary on `primary_port` as `master_name` with the given quorum; `None` when the
    /// port was taken (see [`spawn_with`](Self::spawn_with)).
    pub(crate) fn spawn_sentinel(
        port: u16,
        dir: PathBuf,
        master_name: &str,
        primary_port: u16,
        quorum: usize,
    ) -> Option<Self> {
        std::fs::create_dir_all(&dir).expect("cannot create a temporary directory for a Sentinel");
        let config = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nloglevel notice\n\
             dir {dir}\nlogfile {log}\n\
             sentinel monitor {master_name} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {master_name} 1000\n\
             sentinel failover-timeout {master_name} 4000\n\
             sentinel parallel-syncs {master_name} 2\n",
            dir = dir.display(),
            log = dir.join(SERVER_LOG).display(),
        );
        std::fs::write(&config, text).expect("cannot write a sentinel configuration");
        Self::launch(
            port,
            dir,
            false,
            &[config.into_os_string(), OsString::from("--sentinel")],
        )
    }

    /// Runs the server binary with `args` (its standard output and error to a file in
    /// `dir`) and waits until it answers PING on `port`.
    fn launch(port: u16, dir: PathBuf, persistent: bool, args: &[OsString]) -> Option<Self> {
        let binary = server_binary();
        let stdio = std::fs::File::create(dir.join(STDIO_LOG))
            .expect("cannot create a log file for a server");
        let spawned = Command::new(&binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().expect("cannot share a log file"))
            .stderr(stdio)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                panic!("cannot run {binary}: {error}; {INSTALL_HINT}")
            }
            Err(error) => panic!("cannot run {binary}: {error}"),
        };
        let server = Self {
            child,
            dir,
            port,
            persistent,
        };
        server.await_ready(&binary, args)
    }

    /// The process id.
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the new process answers PING: `None` when it exited because its port was
    /// taken; a panic naming the binary, its arguments and its log tail when it exited for
    /// another reason or did not answer within 20 s.
    fn await_ready(mut self, binary: &str, args: &[OsString]) -> Option<Self> {
        let port = self.port;
        let started = Instant::now();
        let shown = || {
            args.iter()
                .map(|arg| format!("{:?}", arg.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                let logs = log_tail(&self.dir);
                if logs.contains("Address already in use") {
                    return None;
                }
                panic!(
                    "{binary} {} exited at start ({status}) on port {port}; its log ends \
                     with:\n{logs}",
                    shown()
                );
            }
            if answers_ping(port) {
                return Some(self);
            }
            sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{binary} {} did not answer PING on port {port} within {READY_TIMEOUT:?}; its log \
             ends with:\n{}",
            shown(),
            log_tail(&self.dir)
        );
    }
}

/// The file a private server (or Sentinel) logs to, in its directory.
const SERVER_LOG: &str = "server.log";
/// The file its standard output and error go to (configuration errors are printed there).
const STDIO_LOG: &str = "stdio.log";

/// The last lines of a server's logs in `dir`.
pub(crate) fn log_tail(dir: &Path) -> String {
    const LINES: usize = 20;
    [STDIO_LOG, SERVER_LOG]
        .iter()
        .filter_map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(LINES)..)
                .unwrap_or_default()
                .join("\n");
            (!tail.trim().is_empty()).then(|| format!("[{name}]\n{tail}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The panic message when every attempt found its free port taken by the time the server
/// bound it.
pub(crate) fn port_race_lost() -> String {
    format!(
        "{} did not start after {PORT_RACE_RETRIES} attempts: each time another process took \
         the free port first",
        server_binary()
    )
}

/// Runs `command` and waits for it at most `limit`; panics when it cannot run or takes
/// longer (it is then killed).
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> std::process::Output {
    let shown = format!("{command:?}");
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {shown} ({error}); {INSTALL_HINT}"));
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!("{shown} failed: {error}"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{shown} did not finish within {limit:?}")
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // The servers first, then the data directory they wrote to.
        self.private.clear();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // A paused server ignores SIGTERM but not SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.persistent {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A free port below 55536 whose cluster bus port (+10000) is free as well.
pub(crate) fn free_port_with_bus() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return port;
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::ServerVersion;

    #[test]
    fn the_server_version_is_read_from_redis_version_also_on_valkey() {
        let redis =
            ServerVersion::from_info("# Server\r\nredis_version:6.2.16\r\nredis_mode:x\r\n");
        assert_eq!(
            redis,
            Some(ServerVersion {
                major: 6,
                minor: 2,
                patch: 16
            })
        );
        assert!(!redis.is_some_and(ServerVersion::has_sharded_pubsub));
        let valkey = ServerVersion::from_info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n",
        );
        assert!(valkey.is_some_and(ServerVersion::has_sharded_pubsub));
        assert_eq!(ServerVersion::from_info("# Server\r\n"), None);
    }
}
