use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a new server may take to answer PING, and a new cluster to report `ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start is retried when another process took the chosen port first.
const PORT_RACE_RETRIES: usize = 5;
/// The environment variable that switches [`TestRedis::start`] to a three-master cluster.
pub const DEPLOYMENT_VARIABLE: &str = "DISTKIT_TEST_DEPLOYMENT";

const INSTALL_HINT: &str = "redis-server was not found on PATH. Install it \
    (Debian/Ubuntu: `apt-get update && apt-get install -y redis-server`; \
    macOS: `brew install redis`) or set REDIS_URL to a Redis you may write to.";

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
struct PrivateServer {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Whether the server keeps an append-only file (fsync on every write) in `dir`, which a
    /// restart reads back; the directory then outlives the process.
    persistent: bool,
}

impl TestRedis {
    /// The deployment this test run asks for (see the type's docs); returns once it is ready.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing (the message says how to install it) or does not
    /// become ready within 20 s.
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
        panic!("redis-server did not start after {PORT_RACE_RETRIES} attempts on free ports");
    }

    /// A private Redis Cluster of three masters (no replicas), joined with
    /// `redis-cli --cluster create`; returns once `CLUSTER INFO` says `cluster_state:ok` on
    /// every node.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_cluster() -> Self {
        let mut servers = Vec::new();
        while servers.len() < 3 {
            // The cluster bus listens on port + 10000: both must be free.
            let port = free_port_with_bus();
            if let Some(server) = PrivateServer::spawn(port, true) {
                servers.push(server);
            }
        }
        let ports: Vec<u16> = servers.iter().map(|server| server.port).collect();
        let nodes: Vec<String> = ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run redis-cli ({error}); {INSTALL_HINT}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
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
        let started = Instant::now();
        while !cluster.ports.iter().all(|&port| {
            cluster
                .node_cli(port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        }) {
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the test cluster never reported cluster_state:ok"
            );
            sleep(Duration::from_millis(50));
        }
        cluster
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
        let mut command = Command::new("redis-cli");
        if self.cluster {
            command.arg("-c");
        }
        let output = command
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run redis-cli ({error}); {INSTALL_HINT}"));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
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
        panic!("redis-server did not start after {PORT_RACE_RETRIES} attempts on free ports");
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
        panic!("redis-server did not restart on port {port}");
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
    pub fn node_of(&self, key: &str) -> u16 {
        if !self.cluster {
            return self.port();
        }
        let slot: u16 = self.cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap_or(0);
        for &port in &self.ports {
            // `CLUSTER NODES` marks the node answering with `myself`, with its slot ranges.
            let nodes = self.node_cli(port, &["CLUSTER", "NODES"]);
            if let Some(mine) = nodes.lines().find(|line| line.contains("myself"))
                && serves_slot(mine, slot)
            {
                return port;
            }
        }
        panic!("no node serves slot {slot}");
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
    fn spawn(port: u16, cluster: bool) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("distkit-redis-{port}-{}", unique_prefix()));
        Self::spawn_in(port, cluster, dir, false)
    }

    /// Starts a server on `port` with its files in `dir`; a persistent one writes (and on a
    /// restart reads) an append-only file there, synced on every write.
    fn spawn_in(port: u16, cluster: bool, dir: PathBuf, persistent: bool) -> Option<Self> {
        std::fs::create_dir_all(&dir)
            .expect("cannot create a temporary directory for redis-server");
        let mut command = Command::new("redis-server");
        command
            .args([
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
            ])
            .args([
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]);
        }
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        let mut server = Self {
            child,
            dir,
            port,
            persistent,
        };
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(Some(_status)) = server.child.try_wait() {
                return None;
            }
            if answers_ping(port) {
                return Some(server);
            }
            sleep(Duration::from_millis(10));
        }
        let _ = server.child.kill();
        panic!("redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}");
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

fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A free port below 55536 whose cluster bus port (+10000) is free as well.
fn free_port_with_bus() -> u16 {
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
