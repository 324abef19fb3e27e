//! Replica acknowledgement: how many replicas must confirm a write before it counts.

use std::time::Duration;

use crate::DistkitError;

/// The longest [`ReplicaAcks::timeout`] accepted: a write is held this long at most.
pub const MAX_REPLICA_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks a write to count only once `replicas` replicas acknowledged it within `timeout`
/// (Redis `WAIT`, sent on the connection that made the write, right after it).
///
/// Redis replication is asynchronous: a primary that acknowledged a write and then failed
/// before a replica copied it loses the write in a failover. Waiting for replicas narrows
/// that window to a failure of the primary *and* every acknowledging replica; it does not make
/// Redis strongly consistent (a replica that acknowledged may still not be the one promoted).
///
/// What a primitive does without enough acknowledgements is documented with its option: a
/// lock acquisition does not return a guard (it releases what it took); a strict counter write
/// reports that its outcome is not durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaAcks {
    /// How many replicas must acknowledge (at least 1).
    pub replicas: usize,
    /// How long to wait for them (1 ms to [`MAX_REPLICA_ACK_TIMEOUT`]).
    pub timeout: Duration,
}

impl ReplicaAcks {
    /// `replicas` acknowledgements within `timeout`.
    pub fn new(replicas: usize, timeout: Duration) -> Self {
        Self { replicas, timeout }
    }

    /// Checks the values before any I/O.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `replicas` is 0 or `timeout` is outside
    /// 1 ms ..= [`MAX_REPLICA_ACK_TIMEOUT`].
    pub fn validate(&self) -> Result<(), DistkitError> {
        if self.replicas == 0 {
            return Err(DistkitError::InvalidOption(
                "replica acknowledgement needs at least 1 replica".to_owned(),
            ));
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > MAX_REPLICA_ACK_TIMEOUT {
            return Err(DistkitError::InvalidOption(format!(
                "the replica acknowledgement timeout must be between 1 ms and {MAX_REPLICA_ACK_TIMEOUT:?}, got {:?}",
                self.timeout
            )));
        }
        Ok(())
    }

    /// The timeout in whole milliseconds, as `WAIT` takes it (at least 1).
    pub fn timeout_ms(&self) -> i64 {
        i64::try_from(self.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The replica count as `WAIT` takes it.
    pub fn replicas_i64(&self) -> i64 {
        i64::try_from(self.replicas).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_refused_before_any_io() {
        assert!(
            ReplicaAcks::new(1, Duration::from_millis(100))
                .validate()
                .is_ok()
        );
        assert!(
            ReplicaAcks::new(0, Duration::from_millis(100))
                .validate()
                .is_err()
        );
        assert!(ReplicaAcks::new(1, Duration::ZERO).validate().is_err());
        assert!(ReplicaAcks::new(1, Duration::MAX).validate().is_err());
        assert_eq!(
            ReplicaAcks::new(2, Duration::from_micros(1)).timeout_ms(),
            1
        );
    }
}
