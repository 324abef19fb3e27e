//! A waiter's registration with its client's notifier.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::ReleaseNotifier;

/// Where a waiter is woken.
#[derive(Debug, Default)]
pub(super) struct WaiterSlot {
    pub(super) notify: Notify,
}

/// Where an [`Interest`] is registered.
#[derive(Debug)]
pub(super) enum Registration {
    /// On a release channel.
    Channel(String),
    /// For handovers of a lock to a token, through an inbox (kept subscribed while waited
    /// on).
    Handover((String, String), String),
}

/// A waiter's registration, withdrawn on drop. A release channel stays subscribed for
/// [`LINGER`](super::LINGER) after its last waiter went.
#[derive(Debug)]
pub(crate) struct Interest {
    pub(super) notifier: Arc<ReleaseNotifier>,
    pub(super) registration: Registration,
    pub(super) id: u64,
    pub(super) slot: Arc<WaiterSlot>,
}

impl Interest {
    /// Resolves at this waiter's next notification (a notification sent while nobody waited
    /// is kept, so none is missed between two waits).
    pub(crate) async fn notified(&self) {
        self.slot.notify.notified().await;
    }

    /// This waiter made an attempt: a handover to it that was being confirmed is settled
    /// (see [`settling`](super::settling)).
    pub(crate) fn attempted(&self) {
        if let Registration::Handover((lock, token), _) = &self.registration {
            super::settling::end(lock, token);
        }
    }

    fn leave_channel(&self, channel: &str) {
        let mut channels = self
            .notifier
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut forget = false;
        if let Some(entry) = channels.get_mut(channel) {
            entry.waiters.remove(&self.id);
            if entry.waiters.is_empty() {
                if entry.subscription.initialized() {
                    // Stays subscribed for a while; the listener's sweep unsubscribes it.
                    entry.idle_since = Some(Instant::now());
                } else {
                    // Never subscribed (the subscriber could not connect or subscribe): there
                    // is nothing to unsubscribe, and no listener may be running to sweep it.
                    forget = true;
                }
            }
        }
        if forget {
            channels.remove(channel);
        }
    }

    fn leave_handovers(&self, key: &(String, String)) {
        let mut waiters = self
            .notifier
            .handover_waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = waiters.get_mut(key) {
            slots.remove(&self.id);
            if slots.is_empty() {
                waiters.remove(key);
            }
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        match &self.registration {
            Registration::Channel(channel) => self.leave_channel(channel),
            Registration::Handover(key, inbox) => {
                self.leave_handovers(key);
                self.leave_channel(inbox);
                super::settling::end(&key.0, &key.1);
            }
        }
    }
}
