//! Release notifications: one pub/sub subscriber per client, shared by every lock built on
//! that client.
//!
//! Release scripts `PUBLISH` on the lock's channel (`<namespace>:{<key>}:released`, with the
//! lock's hash tag). A waiter registers its interest in the channel before it waits, and
//! wakes on a message or after its jittered poll interval, whichever comes first: a lost
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

#[derive(Debug, Default)]
struct Channel {
    notify: Arc<Notify>,
    interest: usize,
}

/// The shared subscriber of one client.
#[derive(Debug)]
pub(crate) struct ReleaseNotifier {
    subscriber: SubscriberClient,
    connected: OnceCell<()>,
    channels: StdMutex<HashMap<String, Channel>>,
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
        });
        registry.insert(client.id().to_owned(), Arc::downgrade(&notifier));
        notifier
    }

    /// Registers interest in `channel` and subscribes to it if this is the first interest.
    pub(crate) async fn watch(self: &Arc<Self>, channel: &str) -> Interest {
        let (notify, first) = {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = channels.entry(channel.to_owned()).or_default();
            entry.interest = entry.interest.saturating_add(1);
            (Arc::clone(&entry.notify), entry.interest == 1)
        };
        let interest = Interest {
            notifier: Arc::clone(self),
            channel: channel.to_owned(),
            notify,
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
        let result = self
            .connected
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
                            Ok(message) => notifier.wake(&message.channel),
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

    fn wake(&self, channel: &str) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = channels.get(channel) {
            entry.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in channels.values() {
            entry.notify.notify_waiters();
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

/// A waiter's registered interest in a release channel; unsubscribes when the last one goes.
#[derive(Debug)]
pub(crate) struct Interest {
    notifier: Arc<ReleaseNotifier>,
    channel: String,
    notify: Arc<Notify>,
}

impl Interest {
    /// The notification handle of the channel.
    pub(crate) fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
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
                    entry.interest = entry.interest.saturating_sub(1);
                    if entry.interest == 0 {
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
