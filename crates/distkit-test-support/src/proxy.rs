//! An in-process TCP proxy that can delay, hold or cut the traffic of the connections it
//! forwards, each direction on its own: a client connected through it sees a slow, stalled
//! or broken network while the server stays healthy.
//!
//! Plain threads and blocking sockets: it works with any client and any runtime, and a
//! stalled runtime of the test does not stall the proxy.
//!
//! It does not reorder bytes within a connection: that would corrupt the protocol rather than
//! model a network (TCP delivers in order). Messages are reordered *between* connections —
//! a client's commands and its subscriber's pub/sub messages, say — by holding or delaying
//! one direction of one proxy while another flows.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{JoinHandle, sleep};
use std::time::Duration;

/// How often the proxy's threads look at their controls while idle.
const TICK: Duration = Duration::from_millis(5);

/// A direction of the traffic through a [`Proxy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server (commands).
    Upstream,
    /// From the server to the client (replies, pub/sub messages).
    Downstream,
}

/// The controls of one direction.
#[derive(Debug, Default)]
struct Lane {
    /// Added before each chunk is forwarded, in microseconds.
    delay_micros: AtomicU64,
    /// While set, nothing is forwarded (it waits in the proxy and the socket buffers).
    held: AtomicBool,
}

#[derive(Debug, Default)]
struct Controls {
    upstream: Lane,
    downstream: Lane,
    /// Bumped by [`Proxy::cut`]: connections of an older generation close.
    generation: AtomicU64,
    stopped: AtomicBool,
}

impl Controls {
    fn lane(&self, direction: Direction) -> &Lane {
        match direction {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    fn cut_since(&self, generation: u64) -> bool {
        self.stopped.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation
    }
}

/// A TCP proxy on a free loopback port, forwarding to `127.0.0.1:<target port>`. Stops (and
/// closes every connection) on drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    controls: Arc<Controls>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to the server on `target_port`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for a proxy");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let controls = Arc::new(Controls::default());
        let acceptor = {
            let controls = Arc::clone(&controls);
            std::thread::spawn(move || accept(&listener, target_port, &controls))
        };
        Self {
            port,
            controls,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL that connects through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Delays every chunk of `direction` by `delay` (zero: no delay).
    pub fn delay(&self, direction: Direction, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.controls
            .lane(direction)
            .delay_micros
            .store(micros, Ordering::SeqCst);
    }

    /// Holds (`true`) or lets go (`false`) the traffic of `direction`: held traffic is
    /// delivered, in order, when let go, unless the connection is cut meanwhile.
    pub fn hold(&self, direction: Direction, held: bool) {
        self.controls
            .lane(direction)
            .held
            .store(held, Ordering::SeqCst);
    }

    /// Closes every connection open through the proxy now (new ones are accepted); what was
    /// held is lost.
    pub fn cut(&self) {
        self.controls.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Back to a plain proxy: no delay, nothing held.
    pub fn heal(&self) {
        for direction in [Direction::Upstream, Direction::Downstream] {
            self.delay(direction, Duration::ZERO);
            self.hold(direction, false);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.controls.stopped.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: &TcpListener, target_port: u16, controls: &Arc<Controls>) {
    while !controls.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let generation = controls.generation.load(Ordering::SeqCst);
                for (from, to, direction) in [
                    (client.try_clone(), server.try_clone(), Direction::Upstream),
                    (
                        server.try_clone(),
                        client.try_clone(),
                        Direction::Downstream,
                    ),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let controls = Arc::clone(controls);
                        std::thread::spawn(move || {
                            pump(&from, &to, direction, &controls, generation);
                        });
                    }
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => sleep(TICK),
            Err(_) => sleep(TICK),
        }
    }
}

/// Forwards `from` to `to` under the controls of `direction` until either side closes or the
/// connection is cut; then closes both.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    direction: Direction,
    controls: &Controls,
    generation: u64,
) {
    let lane = controls.lane(direction);
    let _ = from.set_nonblocking(false);
    let _ = from.set_read_timeout(Some(TICK.saturating_mul(4)));
    let mut buffer = vec![0_u8; 64 * 1024];
    let mut reader = from;
    let mut writer = to;
    'forward: loop {
        if controls.cut_since(generation) {
            break;
        }
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => break,
        };
        while lane.held.load(Ordering::SeqCst) {
            if controls.cut_since(generation) {
                break 'forward;
            }
            sleep(TICK);
        }
        let delay = Duration::from_micros(lane.delay_micros.load(Ordering::SeqCst));
        if !delay.is_zero() {
            sleep(delay);
        }
        if controls.cut_since(generation) {
            break;
        }
        let Some(chunk) = buffer.get(..read) else {
            break;
        };
        if writer.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
