#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey, connect, fred};

/// Strict and lax distributed counters.
#[cfg(feature = "counter")]
#[cfg_attr(docsrs, doc(cfg(feature = "counter")))]
pub mod counter {
    #[doc(inline)]
    pub use distkit_counter::counter::*;
}

/// Distributed Mutex and writer-preferring RwLock with leases and fencing tokens.
#[cfg(feature = "lock")]
#[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
pub mod lock {
    #[doc(inline)]
    pub use distkit_lock::lock::*;
}
