//! Release notifications: one pub/sub subscriber per client, shared by every lock built on
//! that client.
//!
//! Release scripts `PUBLISH` on the lock's channel (`<namespace>:{<key>}:…released`, with the
//! lock's hash tag): `granted <token>` when a mutex was handed to the waiter with that token
//! (only that waiter is woken), anything else when the lock was released or a waiter left
//! (every waiter of the channel is woken). A waiter registers before it waits, and wakes on
//! its notification or after its jittered poll interval, whichever comes first: a lost
//! message costs at most one poll interval, never correctness. The subscriber resubscribes
//! by itself after a reconnect. In a Redis Cluster, `PUBLISH` reaches every node, so plain
//! channels work there too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use distkit_core::fred::clients::{Client, SubscriberClient};
use distkit_core::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use distkit_core::task::spawn_if_in_runtime;
use tokio::sync::{Notify, OnceCell};

/// How long a waiter waits for the subscriber to connect or subscribe before it relies on
/// polling alone.
const SETUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The subscribers of the process, by client id.
fn registry() -> &'static StdMutex<HashMap<String, Weak<ReleaseNotifier>>> {
    static REGISTRY: OnceLock<StdMutex<HashMap<String, Weak<ReleaseNotifier>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| StdMutex::new(HashMap::new()))
}

/// The waiters of one channel in this process.
#[derive(Debug, Default)]
struct Channel {
    waiters: HashMap<u64, Waiter>,
}

#[derive(Debug)]
struct Waiter {
    token: Option<String>,
    slot: Arc<WaiterSlot>,
}

/// Where a waiter is woken, and where a handover to it is left.
#[derive(Debug, Default)]
struct WaiterSlot {
    notify: Notify,
    /// The fencing token of a handover announced for this waiter's token.
    grant: StdMutex<Option<u64>>,
}

/// The shared subscriber of one client.
#[derive(Debug)]
pub(crate) struct ReleaseNotifier {
    subscriber: SubscriberClient,
    connected: OnceCell<()>,
    channels: StdMutex<HashMap<String, Channel>>,
    next_waiter: std::sync::atomic::AtomicU64,
}

impl ReleaseNotifier {
    /// The notifier of `client`, made on first use.
    pub(crate) fn of(client: &Client) -> Arc<Self> {
        let mut registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = registry.get(client.id()).and_then(Weak::upgrade) {
            return existing;
        }
        registry.retain(|_, notifier| notifier.strong_count() > 0);
        let subscriber = SubscriberClient::new(
            client.client_config(),
            Some(client.perf_config()),
            Some(client.connection_config().clone()),
            client.client_reconnect_policy(),
        );
        let notifier = Arc::new(Self {
            subscriber,
            connected: OnceCell::new(),
            channels: StdMutex::new(HashMap::new()),
            next_waiter: std::sync::atomic::AtomicU64::new(0),
        });
        registry.insert(client.id().to_owned(), Arc::downgrade(&notifier));
        notifier
    }

    /// Registers a waiter on `channel` (with its lock token, to be woken alone by a
    /// handover to it) and subscribes to the channel if this is its first waiter.
    pub(crate) async fn watch(self: &Arc<Self>, channel: &str, token: Option<&str>) -> Interest {
        let id = self
            .next_waiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = Arc::new(WaiterSlot::default());
        let first = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = channels.entry(channel.to_owned()).or_default();
            let waiter = Waiter {
                token: token.map(str::to_owned),
                slot: Arc::clone(&slot),
            };
            entry.waiters.insert(id, waiter);
            entry.waiters.len() == 1
        };
        let interest = Interest {
            notifier: Arc::clone(self),
            channel: channel.to_owned(),
            id,
            slot,
        };
        if first && self.connect().await {
            match tokio::time::timeout(SETUP_TIMEOUT, self.subscriber.subscribe(channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, channel, "lock release subscription failed; polling");
                }
                Err(_) => tracing::debug!(channel, "lock release subscription timed out; polling"),
            }
        }
        interest
    }

    /// Connects the subscriber once; false while it cannot connect.
    async fn connect(self: &Arc<Self>) -> bool {
        let result =
            self.connected
                .get_or_try_init(|| async {
                    match tokio::time::timeout(SETUP_TIMEOUT, self.subscriber.init()).await {
                        Ok(Ok(_connection)) => {}
                        Ok(Err(error)) => return Err(error.to_string()),
                        Err(_) => return Err("timed out".to_owned()),
                    }
                    let _resubscriber = self.subscriber.manage_subscriptions();
                    let this = Arc::downgrade(self);
                    let mut messages = self.subscriber.message_rx();
                    let _listener = spawn_if_in_runtime(async move {
                        loop {
                            let received = messages.recv().await;
                            let Some(notifier) = this.upgrade() else {
                                return;
                            };
                            match received {
                                Ok(message) => notifier
                                    .wake(&message.channel, message.value.as_str().as_deref()),
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    notifier.wake_all();
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    });
                    Ok(())
                })
                .await;
        if let Err(error) = &result {
            tracing::debug!(%error, "lock release subscriber could not connect; polling");
        }
        result.is_ok()
    }

    /// `granted <token> <fencing token>` hands the lock to the waiter with that token and
    /// wakes it alone; anything else wakes every waiter of the channel.
    fn wake(&self, channel: &str, payload: Option<&str>) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = channels.get(channel) else {
            return;
        };
        let handover = payload
            .and_then(|payload| payload.strip_prefix("granted "))
            .and_then(|rest| rest.rsplit_once(' '))
            .and_then(|(token, fence)| Some((token, fence.parse::<u64>().ok()?)));
        match handover {
            Some((token, fence)) => {
                for waiter in entry
                    .waiters
                    .values()
                    .filter(|waiter| waiter.token.as_deref() == Some(token))
                {
                    *waiter
                        .slot
                        .grant
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(fence);
                    waiter.slot.notify.notify_one();
                }
            }
            None => entry
                .waiters
                .values()
                .for_each(|waiter| waiter.slot.notify.notify_one()),
        }
    }

    fn wake_all(&self) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for waiter in channels.values().flat_map(|entry| entry.waiters.values()) {
            waiter.slot.notify.notify_one();
        }
    }
}

impl Drop for ReleaseNotifier {
    fn drop(&mut self) {
        let subscriber = self.subscriber.clone();
        if self.connected.initialized() {
            let _quit = spawn_if_in_runtime(async move {
                let _ = subscriber.quit().await;
            });
        }
    }
}

/// A waiter's registration on a release channel; unsubscribes when the channel's last
/// waiter goes.
#[derive(Debug)]
pub(crate) struct Interest {
    notifier: Arc<ReleaseNotifier>,
    channel: String,
    id: u64,
    slot: Arc<WaiterSlot>,
}

impl Interest {
    /// Resolves at this waiter's next notification (a notification sent while nobody waited
    /// is kept, so none is missed between two waits).
    pub(crate) async fn notified(&self) {
        self.slot.notify.notified().await;
    }

    /// The fencing token of a handover announced for this waiter, if one arrived.
    pub(crate) fn take_grant(&self) -> Option<u64> {
        self.slot
            .grant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let last = {
            let mut channels = self
                .notifier
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match channels.get_mut(&self.channel) {
                Some(entry) => {
                    entry.waiters.remove(&self.id);
                    if entry.waiters.is_empty() {
                        channels.remove(&self.channel);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last && self.notifier.connected.initialized() {
            let notifier = Arc::clone(&self.notifier);
            let channel = std::mem::take(&mut self.channel);
            let _unsubscribe = spawn_if_in_runtime(async move {
                let still_unwatched = !notifier
                    .channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&channel);
                if still_unwatched {
                    let _ = notifier.subscriber.unsubscribe(channel).await;
                }
            });
        }
    }
}
