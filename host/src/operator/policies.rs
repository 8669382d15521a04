//! Per-namespace policies: from a namespace's selection ConfigMap (`policy::selection`) to a
//! compiled policy the engine can call.
//!
//! * Selections come from a reflector of the ConfigMaps named `quarks-job-policies` (all
//!   namespaces, small objects): reading one costs no API call, and a decision is only made
//!   once that cache is synced, so a namespace's selection is never missed for a default.
//! * A module in a ConfigMap is read once per resourceVersion; the cluster-wide ConfigMap
//!   metadata watch (`module_touched`) drops a cached module when its ConfigMap changes, so the
//!   next decision uses the new bytes.
//! * Compiling happens in the background, one module at a time (so an untrusted module can take
//!   at most one core, and its size is capped by the ConfigMap's 1 MiB): until it is ready the
//!   namespace's decisions fail with `PolicyPending`, and its QuarksJobs are reconciled again
//!   the moment compilation ends (the namespace is sent on the channel given to `new`).
//! * Compiled modules are shared by digest across namespaces (the engine's cache) and freed
//!   when no selection uses them any more.
//! * Every problem is a `PolicyError` for the namespace that selected the module: fail closed,
//!   never a fallback to another policy than the one selected.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use crate::policy::selection::{ModuleRef, PolicyRef, SELECTION_CONFIG_MAP, selected};
use crate::policy::{LoadedPolicy, PolicyDigest, PolicyEngine, PolicyError, World, builtin};

/// A policy ready to be called, and how the namespace named it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub policy: Arc<LoadedPolicy>,
    pub reference: String,
}

/// Where a module's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ModuleKey {
    namespace: String,
    name: String,
    key: String,
    world: World,
}

enum ModuleState {
    Compiling,
    Ready(Arc<LoadedPolicy>),
    /// Compiling failed; kept so that every decision does not compile the bad bytes again.
    Failed(PolicyError),
}

struct ModuleEntry {
    /// The resourceVersion of the ConfigMap the bytes were read from.
    resource_version: String,
    digest: PolicyDigest,
    state: ModuleState,
    /// Namespaces whose decisions wait for this module's compilation.
    waiting: BTreeSet<String>,
}

pub struct PolicyResolver {
    client: kube::Client,
    engine: Arc<PolicyEngine>,
    operator_namespace: String,
    selections: Store<ConfigMap>,
    builtins: Vec<Arc<LoadedPolicy>>,
    modules: Arc<Mutex<HashMap<ModuleKey, ModuleEntry>>>,
    /// One compilation at a time.
    compile_gate: Arc<Semaphore>,
    /// Namespaces whose QuarksJobs should be reconciled again (a module finished compiling).
    wake: mpsc::UnboundedSender<String>,
}

impl PolicyResolver {
    /// Compiles the built-ins (they are always available) and returns the resolver.
    pub fn new(
        client: kube::Client,
        engine: Arc<PolicyEngine>,
        operator_namespace: String,
        selections: Store<ConfigMap>,
        wake: mpsc::UnboundedSender<String>,
    ) -> Result<Self, PolicyError> {
        let builtins = builtin::all()
            .iter()
            .map(|b| engine.load(b.bytes, b.world))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PolicyResolver {
            client,
            engine,
            operator_namespace,
            selections,
            builtins,
            modules: Arc::default(),
            compile_gate: Arc::new(Semaphore::new(1)),
            wake,
        })
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The policy `namespace` selected for `world`.
    pub async fn resolve(&self, namespace: &str, world: World) -> Result<Resolved, PolicyError> {
        // Before the first sync an absent selection would look like "use the defaults".
        self.selections
            .wait_until_ready()
            .await
            .map_err(|e| PolicyError::Unavailable(format!("policy selections: {e}")))?;
        let selection = self
            .selections
            .get(&ObjectRef::new(SELECTION_CONFIG_MAP).within(namespace));
        let reference =
            selected(selection.as_ref().and_then(|c| c.data.as_ref()), world).map_err(|e| {
                PolicyError::Selection(format!("ConfigMap {SELECTION_CONFIG_MAP}: {e}"))
            })?;
        let text = reference.to_string();
        let policy = match reference {
            PolicyRef::Builtin(b) => self.builtin(b),
            PolicyRef::ConfigMap(module) => self.module(namespace, &module, world, &text).await?,
        };
        Ok(Resolved {
            policy,
            reference: text,
        })
    }

    fn builtin(&self, wanted: &builtin::Builtin) -> Arc<LoadedPolicy> {
        let digest = PolicyDigest::of(wanted.bytes);
        self.builtins
            .iter()
            .find(|p| p.digest() == digest && p.world() == wanted.world)
            .cloned()
            .expect("every built-in is loaded at start")
    }

    async fn module(
        &self,
        namespace: &str,
        module: &ModuleRef,
        world: World,
        reference: &str,
    ) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let key = ModuleKey {
            namespace: module
                .namespace(namespace, &self.operator_namespace)
                .to_owned(),
            name: module.name.clone(),
            key: module.key.clone(),
            world,
        };
        if let Some(found) = self.cached_module(&key, module, namespace, reference) {
            return found;
        }

        // Read the bytes (at most 1 MiB: a ConfigMap's limit).
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.namespace);
        let config_map = api
            .get_opt(&key.name)
            .await
            .map_err(|e| PolicyError::Unavailable(format!("ConfigMap {}: {e}", key.name)))?
            .ok_or_else(|| {
                PolicyError::ModuleMissing(format!(
                    "{reference}: ConfigMap {} not found in namespace {}",
                    key.name, key.namespace
                ))
            })?;
        let Some(bytes) = config_map
            .binary_data
            .as_ref()
            .and_then(|d| d.get(&key.key))
        else {
            let hint = if config_map
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(&key.key))
            {
                " (it is under data; a module must be under binaryData)"
            } else {
                ""
            };
            return Err(PolicyError::ModuleMissing(format!(
                "{reference}: ConfigMap {} has no binaryData key {}{hint}",
                key.name, key.key
            )));
        };
        let bytes = bytes.0.clone();
        let digest = PolicyDigest::of(&bytes);
        check_pin(module, digest, reference)?;
        let resource_version = config_map.resource_version().unwrap_or_default();

        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(policy) = self.engine.cached(digest, world) {
            // Compiled for another namespace already: shared.
            modules.insert(
                key,
                ModuleEntry {
                    resource_version,
                    digest,
                    state: ModuleState::Ready(policy.clone()),
                    waiting: BTreeSet::new(),
                },
            );
            return Ok(policy);
        }
        modules.insert(
            key.clone(),
            ModuleEntry {
                resource_version,
                digest,
                state: ModuleState::Compiling,
                waiting: BTreeSet::from([namespace.to_owned()]),
            },
        );
        drop(modules);
        self.spawn_compile(key, digest, bytes, reference.to_owned());
        Err(PolicyError::Pending(reference.to_owned()))
    }

    /// The module from the cache, if it is there (ready, failed or still compiling).
    fn cached_module(
        &self,
        key: &ModuleKey,
        module: &ModuleRef,
        namespace: &str,
        reference: &str,
    ) -> Option<Result<Arc<LoadedPolicy>, PolicyError>> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let entry = modules.get_mut(key)?;
        if let Err(mismatch) = check_pin(module, entry.digest, reference) {
            return Some(Err(mismatch));
        }
        Some(match &entry.state {
            ModuleState::Ready(policy) => Ok(policy.clone()),
            ModuleState::Failed(error) => Err(error.clone()),
            ModuleState::Compiling => {
                entry.waiting.insert(namespace.to_owned());
                Err(PolicyError::Pending(reference.to_owned()))
            }
        })
    }

    fn spawn_compile(
        &self,
        key: ModuleKey,
        digest: PolicyDigest,
        bytes: Vec<u8>,
        reference: String,
    ) {
        let engine = self.engine.clone();
        let gate = self.compile_gate.clone();
        let modules = self.modules.clone();
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let world = key.world;
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || engine.load(&bytes, world))
                .await
                .unwrap_or_else(|e| Err(PolicyError::Engine(format!("compiling stopped: {e}"))));
            match &result {
                Ok(_) => {
                    info!(%reference, %digest, elapsed = ?started.elapsed(), "policy module compiled")
                }
                Err(error) => warn!(%reference, %digest, %error, "policy module rejected"),
            }
            let mut modules = modules.lock().unwrap_or_else(|p| p.into_inner());
            // The ConfigMap may have changed meanwhile; then this result is stale.
            let Some(entry) = modules.get_mut(&key).filter(|e| e.digest == digest) else {
                return;
            };
            entry.state = match result {
                Ok(policy) => ModuleState::Ready(policy),
                Err(error) => ModuleState::Failed(error),
            };
            for namespace in std::mem::take(&mut entry.waiting) {
                let _ = wake.send(namespace);
            }
        });
    }

    /// A ConfigMap changed (seen by the metadata watch): a cached module read from an older
    /// version of it is dropped. Returns the namespaces whose decisions may now differ.
    pub fn module_touched(&self, config_map: &PartialObjectMeta<ConfigMap>) -> Vec<String> {
        let namespace = config_map.namespace().unwrap_or_default();
        let name = config_map.name_any();
        let version = config_map.resource_version().unwrap_or_default();
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let before = modules.len();
        modules.retain(|key, entry| {
            !(key.namespace == namespace && key.name == name && entry.resource_version != version)
        });
        if modules.len() == before {
            return Vec::new();
        }
        drop(modules);
        if namespace == self.operator_namespace {
            // A catalog module: any namespace may use it.
            self.selections
                .state()
                .iter()
                .filter_map(|c| c.namespace())
                .collect()
        } else {
            vec![namespace]
        }
    }

    /// Drops cached modules that no selection names any more (their compiled code is freed
    /// once the last decision using it ends).
    pub fn evict_unused(&self) {
        let mut used = HashSet::new();
        for selection in self.selections.state() {
            let namespace = selection.namespace().unwrap_or_default();
            for world in [World::Trigger, World::Output] {
                if let Ok(PolicyRef::ConfigMap(module)) = selected(selection.data.as_ref(), world) {
                    used.insert((
                        module
                            .namespace(&namespace, &self.operator_namespace)
                            .to_owned(),
                        module.name,
                        module.key,
                        world,
                    ));
                }
            }
        }
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        modules.retain(|k, _| {
            used.contains(&(k.namespace.clone(), k.name.clone(), k.key.clone(), k.world))
        });
    }

    /// How many modules the resolver holds (for tests and metrics).
    pub fn cached_modules(&self) -> usize {
        self.modules.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn check_pin(module: &ModuleRef, digest: PolicyDigest, reference: &str) -> Result<(), PolicyError> {
    match module.pin {
        Some(pin) if pin != digest => Err(PolicyError::DigestMismatch {
            reference: reference.to_owned(),
            expected: pin.to_string(),
            found: digest.to_string(),
        }),
        _ => Ok(()),
    }
}
