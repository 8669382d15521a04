//! Per-call limits of a policy call, and the store-side limiter that enforces the memory part.

use std::time::Duration;

/// What one policy call may use. The defaults are safe for untrusted modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock CPU budget of one call (instantiation included), enforced by epoch
    /// interruption: a call is stopped at most one tick (`EPOCH_TICK`) after the budget.
    pub cpu: Duration,
    /// Linear memory and tables (all memories and tables of the instance together), in bytes.
    pub memory_bytes: usize,
    /// Total size of the returned strings and bytes, in bytes. What the host allocates to
    /// lift a result (strings, bytes and the entries of its lists) is bounded before it is
    /// lifted, at [`Limits::lift_bytes`].
    pub result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            result_bytes: 2 << 20,
        }
    }
}

impl Limits {
    /// What the host may allocate to lift one result out of the guest: the strings and bytes
    /// (`result_bytes`) and as much again for the host-side entries of its lists (48 bytes a
    /// reason or map entry), checked by wasmtime on the canonical ABI before anything is
    /// allocated. Millions of empty reasons are refused at the list's length.
    pub fn lift_bytes(&self) -> usize {
        self.result_bytes.saturating_mul(2)
    }
}

/// How often the engine's epoch advances; the granularity of the CPU limit.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What one component may instantiate (checked when it is loaded, and again per call). Rust
/// policies need 3–5 core instances and 1–3 tables; componentize-py ones 38 core instances.
pub(crate) const MAX_CORE_INSTANCES: u32 = 64;
pub(crate) const MAX_TABLES: u32 = 32;
pub(crate) const MAX_MEMORIES: u32 = 4;

/// Table elements one table may have (Rust components need a few hundred).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Bytes one table element costs the host, counted against `Limits::memory_bytes`.
pub(crate) const TABLE_ELEMENT_BYTES: usize = 8;

/// Enforces `Limits::memory_bytes` over memories and tables together, and remembers whether a
/// limit was hit, so that the trap that follows is reported as `MemoryLimit` rather than as a
/// generic trap.
pub(crate) struct CallLimiter {
    memory_budget: usize,
    memory_in_use: usize,
    pub(crate) hit_memory_limit: bool,
}

impl CallLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        CallLimiter {
            memory_budget: limits.memory_bytes,
            memory_in_use: 0,
            hit_memory_limit: false,
        }
    }

    /// Moves one memory or table from `current` to `desired` bytes, if the budget allows.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let after = (self.memory_in_use - current.min(self.memory_in_use)).saturating_add(desired);
        if after > self.memory_budget {
            self.hit_memory_limit = true;
            // An error (not `Ok(false)`) traps at once, instead of letting the guest's
            // allocator abort somewhere less obvious.
            wasmtime::bail!(
                "memory limit of {} bytes (memories and tables) exceeded",
                self.memory_budget
            );
        }
        self.memory_in_use = after;
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn tables_and_memories_share_one_budget() {
        let mut limiter = CallLimiter::new(&Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        // 64 Ki elements of 8 bytes: 512 KiB, the rest of the budget.
        assert!(limiter.table_growing(0, 64 << 10, None).unwrap());
        assert!(
            limiter
                .table_growing(64 << 10, (64 << 10) + 1, None)
                .is_err()
        );
        assert!(limiter.hit_memory_limit);
    }

    #[test]
    fn a_table_over_the_element_limit_is_refused() {
        let mut limiter = CallLimiter::new(&Limits::default());
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
        assert!(!limiter.hit_memory_limit);
    }
}
