//! Per-call limits of a policy call, and the store-side limiter that enforces the memory part.

use std::time::Duration;

/// What one policy call may use. The defaults are safe for untrusted modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock CPU budget of one call (instantiation included), enforced by epoch
    /// interruption: a call is stopped at most one tick (`EPOCH_TICK`) after the budget.
    pub cpu: Duration,
    /// Linear memory (all memories of the instance together), in bytes.
    pub memory_bytes: usize,
    /// Total size of the returned strings and bytes, in bytes.
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

/// How often the engine's epoch advances; the granularity of the CPU limit.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Table elements an instance may allocate (Rust components need a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Enforces `Limits::memory_bytes` and remembers whether a limit was hit, so that the trap that
/// follows is reported as `MemoryLimit` rather than as a generic trap.
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
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.memory_in_use - current.min(self.memory_in_use) + desired;
        if after > self.memory_budget {
            self.hit_memory_limit = true;
            // An error (not `Ok(false)`) traps at once, instead of letting the guest's
            // allocator abort somewhere less obvious.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_budget);
        }
        self.memory_in_use = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
