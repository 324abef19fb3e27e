//! The Lua scripts of the locks.

use distkit_core::script::LuaScript;

/// Takes a mutex if it is free (or confirms a handover), or queues the waiter.
pub(crate) static MUTEX_ACQUIRE: LuaScript = LuaScript::new(
    "mutex_acquire",
    concat!(
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/mutex_acquire.lua"),
        include_str!("scripts/mutex_common.lua"),
        include_str!("scripts/mutex_acquire_queue.lua")
    ),
);
/// Releases a mutex and hands it to the first waiter. Its fast path (nobody waits) comes
/// first: the helpers it does not use are set up only after it.
pub(crate) static MUTEX_RELEASE: LuaScript = LuaScript::new(
    "mutex_release",
    concat!(
        include_str!("scripts/mutex_release.lua"),
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/mutex_common.lua"),
        include_str!("scripts/mutex_release_handover.lua")
    ),
);
/// Removes a waiter from a mutex's queue, passing on a handover it did not confirm.
pub(crate) static MUTEX_LEAVE_QUEUE: LuaScript = LuaScript::new(
    "mutex_leave_queue",
    concat!(
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/mutex_common.lua"),
        include_str!("scripts/mutex_leave_queue.lua")
    ),
);
/// Deletes a rwlock's writer key that still holds a token, and announces the release.
pub(crate) static RW_RELEASE_WRITE: LuaScript = LuaScript::new(
    "rw_release_write",
    concat!(
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_release_write.lua")
    ),
);
/// Renews an owner key that still holds a token.
pub(crate) static OWNER_EXTEND: LuaScript =
    LuaScript::new("owner_extend", include_str!("scripts/owner_extend.lua"));
/// Adds a reader to a rwlock.
pub(crate) static RW_ACQUIRE_READ: LuaScript = LuaScript::new(
    "rw_acquire_read",
    concat!(
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_acquire_read.lua")
    ),
);
/// Takes a rwlock for writing, or queues the writer.
pub(crate) static RW_ACQUIRE_WRITE: LuaScript = LuaScript::new(
    "rw_acquire_write",
    concat!(
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_acquire_write.lua")
    ),
);
/// Removes a waiting writer from the queue.
pub(crate) static RW_LEAVE_QUEUE: LuaScript = LuaScript::new(
    "rw_leave_queue",
    concat!(
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_leave_queue.lua")
    ),
);
/// Removes a reader. Its fast path (no writer waits) comes first: the helpers it does not
/// use are set up only after it.
pub(crate) static RW_RELEASE_READ: LuaScript = LuaScript::new(
    "rw_release_read",
    concat!(
        include_str!("scripts/rw_release_read.lua"),
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_release_read_wake.lua")
    ),
);
/// Renews a reader's lease.
pub(crate) static RW_EXTEND_READ: LuaScript = LuaScript::new(
    "rw_extend_read",
    concat!(
        include_str!("scripts/rw_common.lua"),
        include_str!("scripts/rw_extend_read.lua")
    ),
);
/// Takes permits of a semaphore, or queues the waiter.
#[cfg(feature = "semaphore")]
pub(crate) static SEMAPHORE_ACQUIRE: LuaScript = LuaScript::new(
    "semaphore_acquire",
    concat!(
        include_str!("scripts/fence.lua"),
        include_str!("scripts/loss_guard.lua"),
        include_str!("scripts/semaphore_common.lua"),
        include_str!("scripts/semaphore_acquire.lua")
    ),
);
/// Gives back a holder's permits.
#[cfg(feature = "semaphore")]
pub(crate) static SEMAPHORE_RELEASE: LuaScript = LuaScript::new(
    "semaphore_release",
    concat!(
        include_str!("scripts/semaphore_common.lua"),
        include_str!("scripts/semaphore_release.lua")
    ),
);
/// Renews a holder's lease.
#[cfg(feature = "semaphore")]
pub(crate) static SEMAPHORE_EXTEND: LuaScript = LuaScript::new(
    "semaphore_extend",
    concat!(
        include_str!("scripts/semaphore_common.lua"),
        include_str!("scripts/semaphore_extend.lua")
    ),
);
/// Removes a waiter from a semaphore's line.
#[cfg(feature = "semaphore")]
pub(crate) static SEMAPHORE_LEAVE_QUEUE: LuaScript = LuaScript::new(
    "semaphore_leave_queue",
    concat!(
        include_str!("scripts/semaphore_common.lua"),
        include_str!("scripts/semaphore_leave_queue.lua")
    ),
);
/// Counts a semaphore's free permits.
#[cfg(feature = "semaphore")]
pub(crate) static SEMAPHORE_AVAILABLE: LuaScript = LuaScript::new(
    "semaphore_available",
    concat!(
        include_str!("scripts/semaphore_common.lua"),
        include_str!("scripts/semaphore_available.lua")
    ),
);
