/// The state of a guard's lease, as its holder last knew it. See
/// [`MutexGuard::get_state`](super::MutexGuard::get_state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockGuardState {
    /// Held: the lease is being renewed and was confirmed within the last ttl.
    Acquired,
    /// A renewal was refused, or none was confirmed for a whole ttl: the lease is presumed
    /// gone and the lock may no longer be exclusively yours. It may come back to `Acquired`
    /// if a later renewal confirms the same token.
    Lost,
    /// Released; no longer held.
    Released,
}
