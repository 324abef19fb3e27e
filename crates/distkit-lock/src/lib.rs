//! Redis-backed distributed locks.
