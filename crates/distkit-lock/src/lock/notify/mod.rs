//! Release notifications: one pub/sub subscriber per client, shared by every lock built on
//! that client.
//!
//! Two kinds of message reach a waiter:
//!
//! - **Handovers** (mutex waiters). A mutex waiter leaves an *inbox* of its client in the
//!   lock's line with each attempt, and a release that hands the lock to it publishes
//!   `granted <fence> <previous fence> <lock> <token>` there, so exactly one process and one
//!   waiter wake, however many wait. The message only wakes the waiter: its next attempt
//!   confirms the handover in Redis (a neighbour allowed to publish could forge the message).
//!   On a standalone server the inbox is one channel per client and lock namespace
//!   (`<namespace>:inbox:<ulid>`); in a Redis Cluster it is one channel per lock and client
//!   (`<lock channel>:inbox:<ulid>`, in the lock's slot). Either way it lies under the
//!   namespace, so an ACL scoped to `&<namespace>:*` covers it.
//! - **Release broadcasts** (rwlock waiters). Release scripts publish on the lock's channel
//!   (`<namespace>:{<key>}:…released`); every waiter of that channel wakes and tries again.
//!
//! In a Redis Cluster every channel is *sharded* (`SSUBSCRIBE` on the node of the lock's
//! slot, `SPUBLISH` from the scripts): a plain `PUBLISH` travels to the other nodes over the
//! cluster bus, where under load a few messages arrive tens of milliseconds late. A cluster
//! that does not know sharded pub/sub (Redis before 7.0) gets plain channels: the scripts fall
//! back to `PUBLISH` when `SPUBLISH` fails.
//!
//! A channel is subscribed by its first waiter (later waiters wait for that subscription to
//! be confirmed) and stays subscribed for [`LINGER`] after its last waiter left, so a lock
//! waited on again and again costs no subscribe/unsubscribe per acquisition. Subscribing and
//! unsubscribing are serialized, so unsubscribing an idle channel never overtakes a new
//! subscription to it.
//!
//! A waiter registers before it waits, and wakes on its notification or after its jittered
//! poll interval, whichever comes first: a lost message costs at most one poll interval,
//! never correctness. The subscriber resubscribes by itself after a reconnect. In a Redis
//! Cluster, `PUBLISH` reaches every node, so plain channels work there too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use distkit_core::fred::clients::{Client, SubscriberClient};
use distkit_core::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use distkit_core::task::spawn_background;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use super::per_client::PerClient;

mod handover;
mod interest;

use handover::parse_handover;
pub(crate) use interest::Interest;
use interest::{Registration, WaiterSlot};
pub(crate) mod settling;

/// How long a waiter waits for the subscriber to connect or subscribe before it relies on
/// polling alone.
const SETUP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a channel stays subscribed after its last waiter left, so that a lock waited on
/// again soon is watched without a `SUBSCRIBE` round trip.
const LINGER: Duration = Duration::from_secs(10);

/// How often the listener looks for lingering channels to unsubscribe.
const SWEEP_PERIOD: Duration = Duration::from_secs(2);

/// What a waiter's attempt passes to the script as its inbox: `P<channel>` for a channel to
/// `PUBLISH` to, `S<channel>` for a sharded channel to `SPUBLISH` to.
const PLAIN: char = 'P';
const SHARDED: char = 'S';

/// The subscribers of the process.
static NOTIFIERS: PerClient<ReleaseNotifier> = PerClient::new();

/// What wakes a waiter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WakeOn<'a> {
    /// Any message on the lock's release channel.
    Release { channel: &'a str },
    /// A handover of the lock (named by its release channel) to this token, sent to an
    /// inbox of the client; `inbox_prefix` is the namespace's (see
    /// [`key_schema::lock_inbox_prefix`](distkit_core::key_schema::lock_inbox_prefix)).
    Handover {
        lock: &'a str,
        token: &'a str,
        inbox_prefix: &'a str,
    },
}

/// One subscribed (or being subscribed) channel: a release channel, or an inbox (of a
/// namespace, or of a lock in a cluster); and its waiters in this process.
#[derive(Debug, Default)]
struct Channel {
    waiters: HashMap<u64, Arc<WaiterSlot>>,
    /// An inbox: its waiters are woken by handovers only.
    inbox: bool,
    /// Set once the subscription was confirmed: `true` when sharded (`SSUBSCRIBE`).
    subscription: Arc<OnceCell<bool>>,
    /// When the last waiter left; `None` while the channel is waited on.
    idle_since: Option<Instant>,
}

/// The waiters for handovers in this process, by lock and token.
type HandoverWaiters = HashMap<(String, String), HashMap<u64, Arc<WaiterSlot>>>;

/// The shared subscriber of one client.
#[derive(Debug)]
pub(crate) struct ReleaseNotifier {
    subscriber: SubscriberClient,
    connected: OnceCell<()>,
    /// A cluster: an inbox per lock (else per namespace), and sharded channels unless the
    /// cluster refused `SSUBSCRIBE` (`sharding_refused`).
    clustered: bool,
    sharding_refused: std::sync::atomic::AtomicBool,
    /// The id of this subscriber, in the names of its inboxes.
    id: ulid::Ulid,
    handover_waiters: StdMutex<HandoverWaiters>,
    channels: StdMutex<HashMap<String, Channel>>,
    /// Held around every `SUBSCRIBE` and `UNSUBSCRIBE`, so that unsubscribing an idle channel
    /// cannot overtake a new subscription to it.
    subscription_order: AsyncMutex<()>,
    next_waiter: AtomicU64,
}

impl ReleaseNotifier {
    /// The notifier of `client`, made on first use.
    pub(crate) fn of(client: &Client) -> Arc<Self> {
        NOTIFIERS.of(client, || {
            let subscriber = SubscriberClient::new(
                client.client_config(),
                Some(client.perf_config()),
                Some(client.connection_config().clone()),
                client.client_reconnect_policy(),
            );
            let id = ulid::Ulid::new();
            Self {
                subscriber,
                connected: OnceCell::new(),
                clustered: client.is_clustered(),
                sharding_refused: std::sync::atomic::AtomicBool::new(false),
                id,
                handover_waiters: StdMutex::new(HashMap::new()),
                channels: StdMutex::new(HashMap::new()),
                subscription_order: AsyncMutex::new(()),
                next_waiter: AtomicU64::new(0),
            }
        })
    }

    /// Whether new subscriptions are sharded: in a cluster that knows sharded pub/sub.
    fn sharded(&self) -> bool {
        self.clustered && !self.sharding_refused.load(Ordering::Relaxed)
    }

    /// The inbox of this client for the lock named by its release channel: in a cluster,
    /// the lock's own (the channel's hash tag puts it in the lock's slot), else the one of
    /// the lock's namespace (`inbox_prefix`).
    fn lock_inbox(&self, lock: &str, inbox_prefix: &str) -> String {
        if self.clustered {
            format!("{lock}:inbox:{}", self.id)
        } else {
            format!("{inbox_prefix}{}", self.id)
        }
    }

    /// The inbox an attempt on `lock` leaves in the lock's line (`P<channel>` to `PUBLISH`
    /// to, `S<channel>` to `SPUBLISH` to), once its subscription is confirmed; empty before.
    pub(crate) fn inbox_argument(&self, lock: &str, inbox_prefix: &str) -> String {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        // Nothing subscribed (a lock nobody waited on lately): no name to make.
        if channels.is_empty() {
            return String::new();
        }
        let inbox = self.lock_inbox(lock, inbox_prefix);
        match channels
            .get(&inbox)
            .and_then(|entry| entry.subscription.get())
        {
            Some(true) => format!("{SHARDED}{inbox}"),
            Some(false) => format!("{PLAIN}{inbox}"),
            None => String::new(),
        }
    }

    /// Where a release script announces on the lock's `channel`: `S<channel>` (`SPUBLISH`,
    /// falling back to `PUBLISH` where the server lacks it) in a cluster, else `P<channel>`.
    pub(crate) fn announce_target(&self, channel: &str) -> String {
        let mode = if self.sharded() { SHARDED } else { PLAIN };
        format!("{mode}{channel}")
    }

    /// Registers a waiter without any I/O when what it waits on is already subscribed (an
    /// inbox, or a channel waited on now or recently): from then on, no notification for it
    /// is missed.
    pub(crate) fn watch_subscribed(self: &Arc<Self>, wake_on: WakeOn<'_>) -> Option<Interest> {
        match wake_on {
            WakeOn::Release { channel } => {
                let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = channels
                    .get_mut(channel)
                    .filter(|entry| entry.subscription.initialized())?;
                Some(self.add_channel_waiter(entry, channel))
            }
            WakeOn::Handover {
                lock,
                token,
                inbox_prefix,
            } => {
                let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
                // Nothing subscribed: no name to make.
                if channels.is_empty() {
                    return None;
                }
                let inbox = self.lock_inbox(lock, inbox_prefix);
                let (id, slot) = {
                    let entry = channels
                        .get_mut(&inbox)
                        .filter(|entry| entry.subscription.initialized())?;
                    self.add_slot(entry)
                };
                drop(channels);
                Some(self.add_handover_waiter(lock, token, inbox, id, slot))
            }
        }
    }

    /// Registers a waiter and returns once what it waits on is subscribed (or could not be
    /// subscribed within a second: the waiter then relies on polling).
    pub(crate) async fn watch(self: &Arc<Self>, wake_on: WakeOn<'_>) -> Interest {
        match wake_on {
            WakeOn::Release { channel } => {
                let (interest, subscription) = {
                    let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
                    let entry = channels.entry(channel.to_owned()).or_default();
                    let subscription = Arc::clone(&entry.subscription);
                    (self.add_channel_waiter(entry, channel), subscription)
                };
                if self.connect().await {
                    self.subscribe(&subscription, channel).await;
                }
                interest
            }
            WakeOn::Handover {
                lock,
                token,
                inbox_prefix,
            } => {
                let inbox = self.lock_inbox(lock, inbox_prefix);
                let (id, slot, subscription) = {
                    let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
                    let entry = channels.entry(inbox.clone()).or_insert_with(|| Channel {
                        inbox: true,
                        ..Channel::default()
                    });
                    let (id, slot) = self.add_slot(entry);
                    (id, slot, Arc::clone(&entry.subscription))
                };
                let interest = self.add_handover_waiter(lock, token, inbox.clone(), id, slot);
                if self.connect().await {
                    self.subscribe(&subscription, &inbox).await;
                }
                interest
            }
        }
    }

    /// Subscribes to `channel` once, sharded in a cluster that knows sharded pub/sub
    /// (retried by later callers after a failure).
    async fn subscribe(&self, subscription: &OnceCell<bool>, channel: &str) {
        if subscription.initialized() {
            return;
        }
        let subscribed = subscription
            .get_or_try_init(|| async {
                let _order = self.subscription_order.lock().await;
                if self.sharded() {
                    match tokio::time::timeout(SETUP_TIMEOUT, self.subscriber.ssubscribe(channel))
                        .await
                    {
                        Ok(Ok(())) => return Ok(true),
                        Ok(Err(error)) if is_unknown_command(&error) => {
                            // Redis before 7.0: plain channels from now on (the scripts fall
                            // back to `PUBLISH` there too).
                            self.sharding_refused.store(true, Ordering::Relaxed);
                        }
                        Ok(Err(error)) => return Err(error.to_string()),
                        Err(_) => return Err("timed out".to_owned()),
                    }
                }
                match tokio::time::timeout(SETUP_TIMEOUT, self.subscriber.subscribe(channel)).await
                {
                    Ok(Ok(())) => Ok(false),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
            .await;
        if let Err(error) = subscribed {
            tracing::debug!(target: "distkit::lock", %error, channel, "lock release subscription failed; polling");
        }
    }

    fn new_slot(&self) -> (u64, Arc<WaiterSlot>) {
        (
            self.next_waiter.fetch_add(1, Ordering::Relaxed),
            Arc::new(WaiterSlot::default()),
        )
    }

    /// Adds a waiter's slot to a channel entry (keeping the channel subscribed).
    fn add_slot(&self, entry: &mut Channel) -> (u64, Arc<WaiterSlot>) {
        let (id, slot) = self.new_slot();
        entry.waiters.insert(id, Arc::clone(&slot));
        entry.idle_since = None;
        (id, slot)
    }

    fn add_channel_waiter(self: &Arc<Self>, entry: &mut Channel, channel: &str) -> Interest {
        let (id, slot) = self.add_slot(entry);
        Interest {
            notifier: Arc::clone(self),
            registration: Registration::Channel(channel.to_owned()),
            id,
            slot,
        }
    }

    fn add_handover_waiter(
        self: &Arc<Self>,
        lock: &str,
        token: &str,
        inbox: String,
        id: u64,
        slot: Arc<WaiterSlot>,
    ) -> Interest {
        let key = (lock.to_owned(), token.to_owned());
        self.handover_waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .insert(id, Arc::clone(&slot));
        Interest {
            notifier: Arc::clone(self),
            registration: Registration::Handover(key, inbox),
            id,
            slot,
        }
    }

    /// Unsubscribes the channels nobody waited on for [`LINGER`].
    async fn sweep(&self) {
        let _order = self.subscription_order.lock().await;
        let mut plain = Vec::new();
        let mut sharded = Vec::new();
        {
            let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
            channels.retain(|channel, entry| {
                let idle = entry
                    .idle_since
                    .is_some_and(|since| since.elapsed() >= LINGER);
                if idle {
                    match entry.subscription.get() {
                        Some(true) => sharded.push(channel.clone()),
                        Some(false) => plain.push(channel.clone()),
                        None => {}
                    }
                }
                !idle
            });
        }
        if !plain.is_empty()
            && let Err(error) = self.subscriber.unsubscribe(plain).await
        {
            tracing::debug!(target: "distkit::lock", %error, "unsubscribing idle lock release channels failed");
        }
        // Sharded channels of different slots cannot share one `SUNSUBSCRIBE`.
        for channel in sharded {
            if let Err(error) = self.subscriber.sunsubscribe(channel).await {
                tracing::debug!(target: "distkit::lock", %error, "unsubscribing an idle sharded lock channel failed");
            }
        }
    }

    /// Connects the subscriber once; false while it cannot connect.
    ///
    /// The connection is made from a task on the library's background runtime, so the
    /// subscriber's connection task, its resubscriber and the listener live there: a waiter
    /// on any runtime is woken while the process lives, whichever runtime waited first.
    async fn connect(self: &Arc<Self>) -> bool {
        let result = self
            .connected
            .get_or_try_init(|| async {
                let notifier = Arc::clone(self);
                let setup = spawn_background(async move {
                    match tokio::time::timeout(SETUP_TIMEOUT, notifier.subscriber.init()).await {
                        Ok(Ok(_connection)) => {}
                        Ok(Err(error)) => return Err(error.to_string()),
                        Err(_) => return Err("timed out".to_owned()),
                    }
                    let _resubscriber = notifier.subscriber.manage_subscriptions();
                    let _listener = spawn_background(listen(
                        Arc::downgrade(&notifier),
                        notifier.subscriber.message_rx(),
                    ));
                    Ok(())
                });
                match setup {
                    Some(setup) => setup
                        .await
                        .unwrap_or_else(|error| Err(format!("the setup task failed: {error}"))),
                    None => Err("no runtime to run the subscriber on".to_owned()),
                }
            })
            .await;
        if let Err(error) = &result {
            tracing::debug!(target: "distkit::lock", %error, "lock release subscriber could not connect; polling");
        }
        result.is_ok()
    }

    /// Wakes the waiters a message is for: a handover in an inbox wakes the waiter it
    /// names, anything on a release channel wakes the waiters of that channel. A message only
    /// wakes (each waiter then asks Redis): it is never taken as a grant.
    fn deliver(&self, channel: &str, payload: Option<&str>) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let inbox = channels.get(channel).is_some_and(|entry| entry.inbox);
        if inbox {
            drop(channels);
            if let Some((lock, token)) = payload.and_then(parse_handover) {
                self.hand_over(lock, token);
            }
            return;
        }
        if let Some(entry) = channels.get(channel) {
            entry
                .waiters
                .values()
                .for_each(|slot| slot.notify.notify_one());
        }
    }

    /// Wakes the waiters that the announcement of a handover of `lock` (named by its release
    /// channel) to `token` in `inbox` (as the waiter's attempt gave it: `P<channel>` or
    /// `S<channel>`, empty for none) is for, when that inbox belongs to a subscriber of this
    /// process: the releasing client learned all three from Redis's reply to its release,
    /// and such a waiter then tries again at once instead of after the announcement's round
    /// through Redis's pub/sub and the subscriber's listener. A wake only, exactly as the
    /// announcement's (which still goes out): the waiter's next attempt confirms the handover
    /// in Redis.
    pub(crate) fn wake_handover_in_process(lock: &str, token: &str, inbox: &str) {
        if inbox.is_empty() {
            return;
        }
        for notifier in NOTIFIERS.alive() {
            // Every inbox name of a subscriber ends with its id (see `lock_inbox`).
            if inbox.ends_with(&notifier.id.to_string()) {
                notifier.hand_over(lock, token);
            }
        }
    }

    fn hand_over(&self, lock: &str, token: &str) {
        let waiters = self
            .handover_waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (lock.to_owned(), token.to_owned());
        // Every waiter of the token only wakes: its next attempt confirms the handover in
        // Redis, and only one attempt can (a re-attach by an explicit owner id gets a new
        // token).
        let mut woken = false;
        for slot in waiters.get(&key).into_iter().flat_map(HashMap::values) {
            slot.notify.notify_one();
            woken = true;
        }
        drop(waiters);
        if woken {
            settling::begin(lock, token);
        }
    }

    /// After messages were lost (the listener lagged): every waiter tries again.
    fn wake_all(&self) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in channels.values().flat_map(|entry| entry.waiters.values()) {
            slot.notify.notify_one();
        }
        drop(channels);
        let waiters = self
            .handover_waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in waiters.values().flat_map(HashMap::values) {
            slot.notify.notify_one();
        }
    }
}

fn is_unknown_command(error: &distkit_core::fred::error::Error) -> bool {
    error
        .details()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// The listener task of a subscriber: delivers messages, and sweeps idle channels.
async fn listen(
    notifier: Weak<ReleaseNotifier>,
    mut messages: tokio::sync::broadcast::Receiver<distkit_core::fred::types::Message>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut sweeps = tokio::time::interval(SWEEP_PERIOD);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let received = tokio::select! {
            received = messages.recv() => Some(received),
            _ = sweeps.tick() => None,
        };
        let Some(notifier) = notifier.upgrade() else {
            return;
        };
        match received {
            Some(Ok(message)) => {
                notifier.deliver(&message.channel, message.value.as_str().as_deref());
            }
            Some(Err(RecvError::Lagged(_))) => notifier.wake_all(),
            Some(Err(RecvError::Closed)) => return,
            None => {
                let _sweep = spawn_background(async move { notifier.sweep().await });
            }
        }
    }
}

impl Drop for ReleaseNotifier {
    fn drop(&mut self) {
        let subscriber = self.subscriber.clone();
        if self.connected.initialized() {
            let _quit = spawn_background(async move {
                let _ = subscriber.quit().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use distkit_core::fred::prelude::{Builder, Config};

    use super::{ReleaseNotifier, WakeOn};

    #[tokio::test]
    async fn a_channel_never_subscribed_is_forgotten_when_its_last_waiter_leaves() {
        // Nothing listens on port 1: the subscriber never connects, so no listener task runs
        // to sweep idle channels.
        let config = Config::from_url("redis://127.0.0.1:1").unwrap();
        let client = Builder::from_config(config).build().unwrap();
        let notifier = ReleaseNotifier::of(&client);
        let channel = "distkit-locks:{never}:released";
        let interest = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            notifier.watch(WakeOn::Release { channel }),
        )
        .await
        .unwrap();
        let registered = |notifier: &ReleaseNotifier| {
            notifier
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(channel)
        };
        assert!(registered(&notifier));
        drop(interest);
        assert!(!registered(&notifier), "the entry outlived its last waiter");
    }
}
