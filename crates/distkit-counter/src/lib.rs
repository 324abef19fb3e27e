//! Redis-backed distributed counters.
