//! Process-wide services shared by every lock object built on one client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::ClientLike;

/// One `T` per client (by client id), alive while some lock object holds it.
pub(crate) struct PerClient<T> {
    services: StdMutex<Option<HashMap<String, Weak<T>>>>,
}

impl<T> PerClient<T> {
    /// An empty registry (usable in a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            services: StdMutex::new(None),
        }
    }

    /// The `T` of `client`, made by `make` when it has none alive.
    pub(crate) fn of(&self, client: &Client, make: impl FnOnce() -> T) -> Arc<T> {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let services = services.get_or_insert_with(HashMap::new);
        if let Some(existing) = services.get(client.id()).and_then(Weak::upgrade) {
            return existing;
        }
        services.retain(|_, service| service.strong_count() > 0);
        let service = Arc::new(make());
        services.insert(client.id().to_owned(), Arc::downgrade(&service));
        service
    }

    /// Every `T` alive, of every client.
    pub(crate) fn alive(&self) -> Vec<Arc<T>> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services
            .iter()
            .flat_map(HashMap::values)
            .filter_map(Weak::upgrade)
            .collect()
    }
}
