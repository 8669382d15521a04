//! The policy engine: one wasmtime `Engine` per process, each distinct component compiled once
//! (keyed by the sha256 of its bytes) and pre-instantiated, and every call run in a fresh
//! `Store` under the [`Limits`]. Every failure becomes a [`PolicyError`]; nothing a policy does
//! can panic or abort the host.
//!
//! Capabilities: none. The worlds import nothing; whatever else a component imports (a
//! wasm32-wasip2 build may import `wasi:*` interfaces through Rust's std, e.g. for panic
//! messages) is linked to functions that trap, so a policy can compute but never reach out.
//! Untrusted bytes are always compiled, never deserialized as precompiled code: the operator
//! compiles them in a child process of its own (`policy::compile`) and loads the machine code
//! that child wrote, with an engine configured exactly alike ([`engine_config`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use super::bindings::{self, output, trigger};
use super::contract::{OutputInput, OutputResult, Reason, TriggerDecision, TriggerInput};
use super::limits::{
    CallLimiter, EPOCH_TICK, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES,
};
use super::{CONTRACT_VERSION, Limits, PolicyError, World};

/// sha256 of a component's bytes; shown as `sha256:<hex>` in status and metrics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyDigest(pub(crate) [u8; 32]);

impl PolicyDigest {
    pub fn of(bytes: &[u8]) -> Self {
        PolicyDigest(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_digits = text.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).ok()?;
        Some(PolicyDigest(out))
    }
}

impl std::fmt::Display for PolicyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for PolicyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The per-call store data.
struct CallState {
    limiter: CallLimiter,
}

enum Pre {
    Trigger(trigger::TriggerPre<CallState>),
    Output(output::OutputPre<CallState>),
}

/// A compiled, pre-instantiated policy of one world, ready to be called many times.
pub struct LoadedPolicy {
    digest: PolicyDigest,
    pre: Pre,
}

impl LoadedPolicy {
    pub fn digest(&self) -> PolicyDigest {
        self.digest
    }

    pub fn world(&self) -> World {
        match self.pre {
            Pre::Trigger(_) => World::Trigger,
            Pre::Output(_) => World::Output,
        }
    }
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedPolicy({} {})", self.world(), self.digest)
    }
}

/// Compiles, caches and calls policies. Cheap to share (`Arc`); calls are synchronous and
/// CPU-bound, so async callers run them on a blocking thread.
pub struct PolicyEngine {
    engine: Engine,
    limits: Limits,
    /// Compiled policies by digest. Weak: a module lives as long as someone (a namespace's
    /// selection, a built-in) holds it, so unused modules are evicted without bookkeeping,
    /// and a module used by many namespaces is compiled once.
    loaded: Mutex<HashMap<(PolicyDigest, World), Weak<LoadedPolicy>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl PolicyEngine {
    pub fn new(limits: Limits) -> Result<Self, PolicyError> {
        let mut config = engine_config();
        config.allocation_strategy(pooling(&limits));
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        Ok(PolicyEngine {
            engine,
            limits,
            loaded: Mutex::new(HashMap::new()),
            ticker_stop,
        })
    }

    /// Compiles (or finds in the cache) `bytes` as a policy of `world`.
    pub fn load(&self, bytes: &[u8], world: World) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let digest = PolicyDigest::of(bytes);
        if let Some(found) = self.cached(digest, world) {
            return Ok(found);
        }
        // Two threads may have compiled the same bytes at once; the first is kept.
        Ok(self.remember(Arc::new(self.compile(bytes, digest, world)?)))
    }

    /// The loaded policy with this digest, if it was loaded before and is still in use.
    pub fn cached(&self, digest: PolicyDigest, world: World) -> Option<Arc<LoadedPolicy>> {
        let cache = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&(digest, world)).and_then(Weak::upgrade)
    }

    /// How many compiled policies are alive (in use somewhere).
    pub fn compiled_count(&self) -> usize {
        let cache = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        cache.values().filter(|w| w.strong_count() > 0).count()
    }

    /// A key for the machine code this engine produces: it changes with the wasmtime
    /// version, its configuration and the CPU features, so compiled files are only ever
    /// loaded by an engine that could have written them.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn compiled_file(&self, dir: &Path, digest: PolicyDigest) -> PathBuf {
        dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(digest.0),
            self.compatibility_key()
        ))
    }

    /// The policy with this digest from `dir`, where [`compile_to_file`](Self::compile_to_file)
    /// of an engine like this one left its machine code: no compilation and no source bytes
    /// needed. `None` when it is not there.
    pub fn load_compiled_file(
        &self,
        dir: &Path,
        digest: PolicyDigest,
        world: World,
    ) -> Result<Option<Arc<LoadedPolicy>>, PolicyError> {
        if let Some(found) = self.cached(digest, world) {
            return Ok(Some(found));
        }
        let path = self.compiled_file(dir, digest);
        if !path.is_file() {
            return Ok(None);
        }
        // SAFETY: the file is machine code that `compile_to_file` of an engine with the same
        // compatibility key (part of the name) wrote into the operator's own cache directory,
        // from a component it compiled itself; untrusted bytes are never deserialized. The
        // directory must be writable only by the operator (see the README).
        let component =
            unsafe { Component::deserialize_file(&self.engine, &path) }.map_err(|e| {
                match load_error(e) {
                    too @ PolicyError::TooComplex(_) => too,
                    other => PolicyError::Engine(format!("loading {}: {other}", path.display())),
                }
            })?;
        let loaded = Arc::new(self.instantiate_pre(component, digest, world)?);
        Ok(Some(self.remember(loaded)))
    }

    /// The policy whose machine code `code` is, as the operator's compiler child process
    /// (`quarks-job policy compile`, an engine configured like this one) wrote it for the
    /// component with `digest`.
    ///
    /// # Safety
    ///
    /// `code` must come from [`compile_serialized`] run by this operator's own binary on the
    /// component with `digest`; never from anyone else (it is machine code that runs as is).
    pub unsafe fn load_compiled(
        &self,
        code: &[u8],
        digest: PolicyDigest,
        world: World,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        if let Some(found) = self.cached(digest, world) {
            return Ok(found);
        }
        // SAFETY: the caller's promise: machine code compiled by our own binary, from an engine
        // configuration that `deserialize` checks against this one.
        let component =
            unsafe { Component::deserialize(&self.engine, code) }.map_err(load_error)?;
        let loaded = Arc::new(self.instantiate_pre(component, digest, world)?);
        Ok(self.remember(loaded))
    }

    /// Keeps machine code the compiler child wrote in `dir`, for
    /// [`load_compiled_file`](Self::load_compiled_file) after a restart.
    pub fn keep_compiled(&self, dir: &Path, digest: PolicyDigest, code: &[u8]) {
        let path = self.compiled_file(dir, digest);
        let store = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, code)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(error) = store() {
            tracing::warn!(path = %path.display(), %error, "could not keep the compiled policy on disk");
        }
    }

    /// Compiles `bytes` (or finds them in memory) and leaves the machine code in `dir` for
    /// [`load_compiled_file`](Self::load_compiled_file) after a restart.
    pub fn compile_to_file(
        &self,
        dir: &Path,
        bytes: &[u8],
        world: World,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let digest = PolicyDigest::of(bytes);
        if let Some(found) = self.cached(digest, world) {
            return Ok(found);
        }
        let component = self.component(bytes)?;
        let loaded = Arc::new(self.instantiate_pre(component.clone(), digest, world)?);
        // Only a module that loads is kept. Written under a temporary name and renamed, so
        // a crash never leaves a half-written file under the real name.
        let path = self.compiled_file(dir, digest);
        let store = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let code = component
                .serialize()
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, code)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(error) = store() {
            tracing::warn!(path = %path.display(), %error, "could not keep the compiled policy on disk");
        }
        Ok(self.remember(loaded))
    }

    /// Adds a loaded policy to the in-memory cache (or returns the one another thread added).
    fn remember(&self, loaded: Arc<LoadedPolicy>) -> Arc<LoadedPolicy> {
        let key = (loaded.digest, loaded.world());
        let mut cache = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, weak| weak.strong_count() > 0);
        if let Some(first) = cache.get(&key).and_then(Weak::upgrade) {
            return first;
        }
        cache.insert(key, Arc::downgrade(&loaded));
        loaded
    }

    fn compile(
        &self,
        bytes: &[u8],
        digest: PolicyDigest,
        world: World,
    ) -> Result<LoadedPolicy, PolicyError> {
        let component = self.component(bytes)?;
        self.instantiate_pre(component, digest, world)
    }

    /// Compiles untrusted bytes to a component (never deserializes them).
    fn component(&self, bytes: &[u8]) -> Result<Component, PolicyError> {
        check_header(bytes)?;
        Component::new(&self.engine, bytes).map_err(load_error)
    }

    /// Checks the component is of `world` and pre-instantiates it.
    fn instantiate_pre(
        &self,
        component: Component,
        digest: PolicyDigest,
        world: World,
    ) -> Result<LoadedPolicy, PolicyError> {
        self.check_exports(&component, world)?;
        let mut linker = Linker::<CallState>::new(&self.engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::NotAComponent(format!("{e:#}")))?;
        let wrong_world = |e: wasmtime::Error| PolicyError::WrongWorld {
            expected: world,
            detail: format!("{e:#}"),
        };
        let pre = match world {
            World::Trigger => {
                Pre::Trigger(trigger::TriggerPre::new(instance_pre).map_err(wrong_world)?)
            }
            World::Output => {
                Pre::Output(output::OutputPre::new(instance_pre).map_err(wrong_world)?)
            }
        };
        Ok(LoadedPolicy { digest, pre })
    }

    /// The export must be `quarks:policy/<world>-policy@<version>` with our major version.
    fn check_exports(&self, component: &Component, world: World) -> Result<(), PolicyError> {
        let wanted = world.export_interface();
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let Some(found) = exports
            .iter()
            .find(|name| name.split('@').next() == Some(wanted))
        else {
            return Err(PolicyError::WrongWorld {
                expected: world,
                detail: format!(
                    "it exports [{}], not {wanted}@{CONTRACT_VERSION}",
                    exports.join(", ")
                ),
            });
        };
        let version = found.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !same_major(version, CONTRACT_VERSION) {
            return Err(PolicyError::UnsupportedVersion {
                found: found.clone(),
                supported: CONTRACT_VERSION,
            });
        }
        Ok(())
    }

    fn new_store(&self) -> Store<CallState> {
        let mut store = Store::new(
            &self.engine,
            CallState {
                limiter: CallLimiter::new(&self.limits),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(self.limits.cpu));
        // Bounds what lifting the result may allocate on the host, checked on the canonical
        // ABI (list lengths, string lengths) before anything is allocated.
        store.set_hostcall_fuel(self.limits.lift_bytes());
        store.epoch_deadline_trap();
        store
    }

    /// Runs a trigger policy's `decide`.
    pub fn decide(
        &self,
        policy: &LoadedPolicy,
        input: TriggerInput,
    ) -> Result<TriggerDecision, PolicyError> {
        let Pre::Trigger(pre) = &policy.pre else {
            return Err(self.wrong_use(policy, World::Trigger));
        };
        let mut store = self.new_store();
        let raw = pre
            .instantiate(&mut store)
            .and_then(|instance| {
                instance
                    .quarks_policy_trigger_policy()
                    .call_decide(&mut store, &bindings::trigger_input_in(input))
            })
            .map_err(|e| self.classify(&store, e))?;
        self.check_size(bindings::trigger_result_size(&raw))?;
        flatten(bindings::trigger_result_out(raw))
    }

    /// Runs an output policy's `transform`.
    pub fn transform(
        &self,
        policy: &LoadedPolicy,
        input: OutputInput,
    ) -> Result<OutputResult, PolicyError> {
        let Pre::Output(pre) = &policy.pre else {
            return Err(self.wrong_use(policy, World::Output));
        };
        let mut store = self.new_store();
        let raw = pre
            .instantiate(&mut store)
            .and_then(|instance| {
                instance
                    .quarks_policy_output_policy()
                    .call_transform(&mut store, &bindings::output_input_in(input))
            })
            .map_err(|e| self.classify(&store, e))?;
        self.check_size(bindings::output_result_size(&raw))?;
        flatten(bindings::output_result_out(raw))
    }

    fn wrong_use(&self, policy: &LoadedPolicy, expected: World) -> PolicyError {
        PolicyError::WrongWorld {
            expected,
            detail: format!("it was loaded as a {} policy", policy.world()),
        }
    }

    fn check_size(&self, size: usize) -> Result<(), PolicyError> {
        if size > self.limits.result_bytes {
            return Err(PolicyError::ResultTooLarge {
                size,
                limit: self.limits.result_bytes,
            });
        }
        Ok(())
    }

    /// Turns a failed call into the error users need to see.
    fn classify(&self, store: &Store<CallState>, error: wasmtime::Error) -> PolicyError {
        if store.data().limiter.hit_memory_limit {
            return PolicyError::MemoryLimit(self.limits.memory_bytes);
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PolicyError::Timeout(self.limits.cpu);
        }
        if error
            .chain()
            .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
        {
            return PolicyError::EngineBusy;
        }
        if lift_fuel_exhausted(&error) {
            return PolicyError::ResultTooLargeToLift {
                limit: self.limits.lift_bytes(),
            };
        }
        PolicyError::Trap(trap_message(&error))
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The trap's own words first, then the wasm backtrace (function names help authors).
fn trap_message(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    parts.dedup();
    let text = parts.join(": ");
    // Backtraces of deep recursion can be huge; conditions and Events need a bounded message.
    const MAX: usize = 2048;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &text[..cut])
    } else {
        text
    }
}

/// Whether lifting a result stopped at the store's hostcall fuel (wasmtime's error type for it
/// is private: its message is what there is; a test pins it).
fn lift_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// A component that does not load: too big for the pool's per-component limits, or invalid.
fn load_error(error: wasmtime::Error) -> PolicyError {
    let text = format!("{error:#}");
    if text.contains("in the pooling allocator") {
        PolicyError::TooComplex(text)
    } else {
        PolicyError::NotAComponent(text)
    }
}

/// The engine configuration of every policy engine, and of the compiler child whose machine
/// code the operator loads (which must match it exactly, checked on load; the allocation
/// strategy is not part of the compiled code).
pub(crate) fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    // One core per compilation: the `parallel-compilation` feature would otherwise use all.
    config.parallel_compilation(false);
    config
}

/// Compiles a component (untrusted bytes) to machine code, as the compiler child does: the
/// bytes `PolicyEngine::load_compiled` loads.
pub fn compile_serialized(bytes: &[u8]) -> Result<Vec<u8>, PolicyError> {
    check_header(bytes)?;
    let engine =
        Engine::new(&engine_config()).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
    let component = Component::new(&engine, bytes).map_err(load_error)?;
    component
        .serialize()
        .map_err(|e| PolicyError::Engine(format!("{e:#}")))
}

fn flatten<T>(converted: Result<Result<T, Reason>, String>) -> Result<T, PolicyError> {
    match converted {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(reason)) => Err(PolicyError::Refused(reason)),
        Err(invalid) => Err(PolicyError::InvalidResult(invalid)),
    }
}

/// Distinguishes "not wasm", "a core module" and "a component" before compiling, so the error
/// tells the author what to do.
fn check_header(bytes: &[u8]) -> Result<(), PolicyError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PolicyError::NotWasm(format!(
            "{} bytes without the \\0asm header",
            bytes.len()
        )));
    }
    // Bytes 4..8: version and layer. Core modules are layer 0, components layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(PolicyError::NotAComponent(
            "this is a core WebAssembly module; build a component (target wasm32-wasip2, or `wasm-tools component new`)".to_owned(),
        ));
    }
    Ok(())
}

/// Semver compatibility of the contract: same major, or for 0.x the same minor.
fn same_major(found: &str, supported: &str) -> bool {
    fn key(version: &str) -> Option<(u64, u64)> {
        let mut parts = version.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(if major == 0 { (0, minor) } else { (major, 0) })
    }
    matches!((key(found), key(supported)), (Some(a), Some(b)) if a == b)
}

/// Policy calls instantiate a fresh instance every time; the pooling allocator makes that cheap
/// by reusing pre-reserved memory slots instead of mapping new memory per call. Slots bound how
/// many calls run at once, not how many policies are cached.
///
/// Every component is limited (checked when it is loaded) to what a policy needs, and the pool
/// holds that much for every call that can run at once (one per reconcile worker, at most
/// 64), so one call cannot take the slots another namespace's call needs. Should the pool be
/// full anyway, the call fails with `EngineBusy`: retried, not the caller's policy failure.
pub(crate) const CONCURRENT_CALLS: u32 = 64;

fn pooling(limits: &Limits) -> wasmtime::InstanceAllocationStrategy {
    const KEEP_RESIDENT: usize = 2 << 20;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(CONCURRENT_CALLS)
        .total_core_instances(CONCURRENT_CALLS * MAX_CORE_INSTANCES)
        .total_memories(CONCURRENT_CALLS * MAX_MEMORIES)
        .total_tables(CONCURRENT_CALLS * MAX_TABLES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .max_memories_per_component(MAX_MEMORIES)
        .max_tables_per_component(MAX_TABLES)
        .max_memory_size(limits.memory_bytes)
        .table_elements(MAX_TABLE_ELEMENTS)
        // Reset pages in place rather than unmapping them: the next call then takes no page
        // faults, and PAGEMAP_SCAN (Linux 6.7+, used when available) limits the reset to the
        // pages the last call actually dirtied. Together ~4x faster warm calls.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

fn deadline_ticks(cpu: Duration) -> u64 {
    let ticks = cpu.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Advances the engine's epoch every tick until the engine is dropped. One thread per engine;
/// calls whose deadline passes trap with `Trap::Interrupt`. It holds only a weak reference,
/// so dropping the last `PolicyEngine` frees the engine.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("policy-epoch".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(error) = spawned {
        // Without a ticker no call can time out; refuse to run untrusted code like that.
        tracing::error!(%error, "could not start the policy epoch ticker");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_its_text_form() {
        let d = PolicyDigest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(PolicyDigest::parse(&d.to_string()), Some(d));
        assert_eq!(PolicyDigest::parse("sha256:zz"), None);
    }

    #[test]
    fn contract_versions_are_compatible_within_a_major() {
        assert!(same_major("0.1.0", "0.1.0"));
        assert!(same_major("0.1.7", "0.1.0"));
        assert!(!same_major("0.2.0", "0.1.0"));
        assert!(!same_major("1.0.0", "0.1.0"));
        assert!(!same_major("garbage", "0.1.0"));
    }

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_header(b"hello"),
            Err(PolicyError::NotWasm(_))
        ));
        let core_module = b"\0asm\x01\0\0\0";
        assert!(matches!(
            check_header(core_module),
            Err(PolicyError::NotAComponent(_))
        ));
        let component = b"\0asm\x0d\0\x01\0";
        assert!(check_header(component).is_ok());
    }

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 20);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 1);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }
}
