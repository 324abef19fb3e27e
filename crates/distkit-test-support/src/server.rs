use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a new server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start is retried when another process took the chosen port first.
const PORT_RACE_RETRIES: usize = 5;

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

/// A Redis server for one test.
///
/// With `REDIS_URL` set, that server is used and nothing is started; otherwise a private
/// `redis-server` runs on a free loopback port, without persistence, in a temporary
/// directory, and is killed when this value is dropped.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    port: u16,
    private: Option<PrivateServer>,
}

#[derive(Debug)]
struct PrivateServer {
    child: Child,
    dir: PathBuf,
}

impl TestRedis {
    /// Starts (or, with `REDIS_URL`, names) the server; returns once it answers PING.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing (the message says how to install it) or does not
    /// become ready within 10 s.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("REDIS_URL") {
            let port = url
                .rsplit(':')
                .next()
                .and_then(|tail| tail.split('/').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or(6379);
            return Self {
                url,
                port,
                private: None,
            };
        }
        for _ in 0..PORT_RACE_RETRIES {
            let port = free_port();
            if let Some(private) = PrivateServer::spawn(port) {
                return Self {
                    url: format!("redis://127.0.0.1:{port}"),
                    port,
                    private: Some(private),
                };
            }
        }
        panic!("redis-server did not start after {PORT_RACE_RETRIES} attempts on free ports");
    }

    /// The URL of the server, e.g. `redis://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port of the server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of a private server.
    pub fn pid(&self) -> Option<u32> {
        self.private.as_ref().map(|private| private.child.id())
    }

    /// Runs `redis-cli` with `args` against this server and returns what it printed.
    ///
    /// # Panics
    ///
    /// When `redis-cli` cannot be run.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run redis-cli ({error}); {INSTALL_HINT}"));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stops the server process (SIGSTOP): it keeps its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL) and starts a fresh, empty one on the same port.
    ///
    /// # Panics
    ///
    /// When the server is not private or does not come back within 10 s.
    pub fn restart(&mut self) {
        let private = self
            .private
            .take()
            .unwrap_or_else(|| panic!("restart needs a private server; unset REDIS_URL"));
        drop(private);
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(private) = PrivateServer::spawn(self.port) {
                self.private = Some(private);
                return;
            }
            sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Closes every normal client connection (`CLIENT KILL TYPE normal`) and returns how many.
    pub fn kill_clients(&self) -> usize {
        self.cli(&["CLIENT", "KILL", "TYPE", "normal"])
            .parse()
            .unwrap_or(0)
    }

    /// Closes every pub/sub client connection and returns how many.
    pub fn kill_pubsub_clients(&self) -> usize {
        self.cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .parse()
            .unwrap_or(0)
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("fault injection needs a private server; unset REDIS_URL"));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }
}

impl PrivateServer {
    /// Starts a server on `port`; `None` when it exited at once (the port was taken).
    fn spawn(port: u16) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "distkit-redis-{}-{port}-{}",
            std::process::id(),
            unique_prefix()
        ));
        std::fs::create_dir_all(&dir)
            .expect("cannot create a temporary directory for redis-server");
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
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
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        let mut server = Self { child, dir };
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

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // A paused server ignores SIGTERM but not SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
