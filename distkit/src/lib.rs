#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey, connect, fred};
