//! The Lua scripts of the counters, each prefixed with the exact-integer helpers.

use distkit_core::script::LuaScript;

/// Adds a delta to one counter (the hot path of `StrictCounter::inc`).
pub(crate) static COUNTER_INC: LuaScript =
    LuaScript::new("counter_inc", include_str!("scripts/counter_inc.lua"));

/// Applies the increments of several concurrent `StrictCounter::inc` calls, each on its own
/// (a group commit).
pub(crate) static COUNTER_INC_GROUP: LuaScript = LuaScript::new(
    "counter_inc_group",
    include_str!("scripts/counter_inc_group.lua"),
);

/// Applies a sequence of inc/set/del operations, conditional or not, all or nothing.
pub(crate) static COUNTER_APPLY: LuaScript = LuaScript::new(
    "counter_apply",
    concat!(
        include_str!("scripts/int64.lua"),
        include_str!("scripts/int64_arith.lua"),
        include_str!("scripts/counter_apply.lua")
    ),
);

/// Delivers a lax counter's pending deltas exactly once.
pub(crate) static COUNTER_FLUSH: LuaScript = LuaScript::new(
    "counter_flush",
    concat!(
        include_str!("scripts/int64.lua"),
        include_str!("scripts/counter_flush.lua")
    ),
);

/// The hot path of the instance-aware counters: one unconditional `inc` of a live instance
/// while no reaping or collection is due (else it writes nothing and `INSTANCE_COUNTER` runs).
#[cfg(feature = "instance-aware")]
pub(crate) static INSTANCE_COUNTER_INC: LuaScript =
    LuaScript::new("icounter_inc", include_str!("scripts/icounter_inc.lua"));

/// Instance-aware counter operations (heartbeat, reaping, revival, then the operations).
#[cfg(feature = "instance-aware")]
pub(crate) static INSTANCE_COUNTER: LuaScript = LuaScript::new(
    "icounter",
    concat!(
        include_str!("scripts/int64.lua"),
        include_str!("scripts/int64_arith.lua"),
        include_str!("scripts/icounter.lua")
    ),
);
