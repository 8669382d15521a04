//! Per-namespace policies: from a namespace's selection ConfigMap (`policy::selection`) to a
//! compiled policy the engine can call.
//!
//! * Selections come from a reflector of the ConfigMaps named `quarks-job-policies` (all
//!   namespaces, small objects): reading one costs no API call, and a decision is only made
//!   once that cache is synced, so a namespace's selection is never missed for a default.
//! * A module in a ConfigMap is read once per resourceVersion; the cluster-wide ConfigMap
//!   metadata watch (`module_touched`) drops a cached module when its ConfigMap changes, so the
//!   next decision uses the new bytes.
//! * A module from an OCI registry is pulled once (size-capped, verified), per namespace (whose
//!   pull secret it used). With a cache directory, its machine code is kept on disk and a
//!   digest-pinned reference is loaded from there after a restart, without a pull.
//! * Fetching and compiling happen in the background, one compilation at a time, each in a
//!   child process on one core under a time and a memory limit (`policy::compile`; its size
//!   is capped too). At most one load per module reference is pending: a load whose entry is
//!   dropped (its ConfigMap changed again, the selection moved on) is cancelled, its compiler
//!   killed or its place in the queue given up. Until the module is ready
//!   the namespace's decisions fail with `PolicyPending`, and its QuarksJobs are reconciled again
//!   the moment it is (the namespace is sent on the channel given to `new`).
//! * Compiled modules are shared by digest across namespaces (the engine's cache) and freed
//!   when no selection uses them any more.
//! * Every problem is a `PolicyError` for the namespace that selected the module: fail closed,
//!   never a fallback to another policy than the one selected.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use crate::policy::compile::{CompileLimits, compile_in_child};
use crate::policy::selection::{
    ModuleRef, OciRef, PULL_SECRET_KEY, PolicyRef, SELECTION_CONFIG_MAP, selected,
};
use crate::policy::{LoadedPolicy, PolicyDigest, PolicyEngine, PolicyError, World, builtin, oci};

/// A policy ready to be called, and how the namespace named it (for OCI tags, with the digest
/// the tag had).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub policy: Arc<LoadedPolicy>,
    pub reference: String,
    /// The built-in default, because the namespace has no selection in the cache. The
    /// selection may still be on its way (created just before the QuarksJob, delivered by
    /// another watch): see [`PolicyResolver::selection_exists`].
    pub unselected: bool,
    /// The namespace's turn for policy calls, when this resolution holds it (an output
    /// phase's: see `calls::NamespacePolicies::resolve`).
    pub(crate) turn: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// How modules from OCI registries are fetched and kept.
#[derive(Clone, Debug)]
pub struct OciSettings {
    /// Registries (`host[:port]`) pulls may reach; none: `oci://` references are refused.
    pub allowed_registries: Vec<String>,
    /// Registries spoken to over plain HTTP (`host:port`); they must be allowed too.
    pub insecure_registries: Vec<String>,
    /// Whether registries may be on loopback, link-local, private or CGNAT addresses.
    pub allow_private_addresses: bool,
    /// The largest component accepted.
    pub max_module_bytes: u64,
    /// Where compiled modules survive a restart; the operator's own directory.
    pub cache_dir: Option<PathBuf>,
}

impl OciSettings {
    /// The rules every pull follows.
    pub fn rules(&self) -> Result<oci::RegistryRules, String> {
        oci::RegistryRules::new(
            &self.allowed_registries,
            &self.insecure_registries,
            self.allow_private_addresses,
        )
    }

    /// Where the machine code of compiled modules is kept (`cache_dir/compiled`).
    fn compiled_dir(&self) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| d.join("compiled"))
    }
}

/// A failed fetch that may work later (registry down) is tried again after this long.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(30);

/// Where a module's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ModuleKey {
    ConfigMap {
        namespace: String,
        name: String,
        key: String,
        world: World,
    },
    /// Per namespace: the pull used that namespace's credentials.
    Oci {
        namespace: String,
        reference: String,
        pull_secret: Option<String>,
        world: World,
    },
}

impl ModuleKey {
    /// The key of a `configmap:`/`catalog:` module as `namespace` names it.
    fn config_map(
        module: &ModuleRef,
        namespace: &str,
        operator_namespace: &str,
        world: World,
    ) -> Self {
        ModuleKey::ConfigMap {
            namespace: module.namespace(namespace, operator_namespace).to_owned(),
            name: module.name.clone(),
            key: module.key.clone(),
            world,
        }
    }

    /// The key of an `oci://` module as `namespace` names it, pulled with its pull secret.
    fn oci(namespace: &str, reference: String, pull_secret: Option<String>, world: World) -> Self {
        ModuleKey::Oci {
            namespace: namespace.to_owned(),
            reference,
            pull_secret,
            world,
        }
    }
}

enum ModuleState {
    Loading,
    Ready(Arc<LoadedPolicy>),
    /// Loading failed; kept so that every decision does not fetch or compile the bad bytes
    /// again (transient failures are retried after [`RETRY_UNAVAILABLE`]).
    Failed(PolicyError, Instant),
}

struct ModuleEntry {
    /// Which load this entry waits for (a changed ConfigMap starts a new one).
    load: u64,
    /// The resourceVersion of the ConfigMap the bytes were read from ("" for OCI).
    resource_version: String,
    /// The module's digest, once known.
    digest: Option<PolicyDigest>,
    /// The reference as recorded in status.
    source: String,
    state: ModuleState,
    /// Namespaces whose decisions wait for this module.
    waiting: BTreeSet<String>,
    /// Cancels this entry's load (when the entry is dropped: replaced or removed).
    cancel: tokio_util::sync::CancellationToken,
}

impl Drop for ModuleEntry {
    fn drop(&mut self) {
        // A load nobody waits for any more (the ConfigMap was rewritten, the selection
        // changed) stops: its compiler is killed, or its place in the queue given up.
        self.cancel.cancel();
    }
}

pub struct PolicyResolver {
    client: kube::Client,
    engine: Arc<PolicyEngine>,
    operator_namespace: String,
    selections: Store<ConfigMap>,
    /// The built-ins by name, compiled at start (a decision must not hash their bytes).
    builtins: Vec<(&'static str, Arc<LoadedPolicy>)>,
    modules: Arc<Mutex<HashMap<ModuleKey, ModuleEntry>>>,
    /// One compilation at a time.
    compile_gate: Arc<Semaphore>,
    /// Namespaces whose QuarksJobs should be reconciled again (a module finished loading).
    wake: mpsc::UnboundedSender<String>,
    oci: OciSettings,
    /// How modules are compiled: in a child process, under these limits.
    compile: CompileLimits,
    puller: oci::Puller,
    loads: AtomicU64,
    /// Cancelled once the selection cache has its first full list. (The store's own
    /// `wait_until_ready` wakes only one of several waiters: concurrent reconciles would hang.)
    selections_synced: tokio_util::sync::CancellationToken,
}

impl PolicyResolver {
    /// Compiles the built-ins (they are always available) and returns the resolver.
    pub fn new(
        client: kube::Client,
        engine: Arc<PolicyEngine>,
        operator_namespace: String,
        selections: Store<ConfigMap>,
        wake: mpsc::UnboundedSender<String>,
        oci: OciSettings,
    ) -> Result<Self, PolicyError> {
        let builtins = builtin::all()
            .iter()
            .map(|b| Ok((b.name, engine.load(b.bytes, b.world)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let selections_synced = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let store = selections.clone();
            let synced = selections_synced.clone();
            async move {
                // The only waiter on the store; everyone else waits on the token.
                if store.wait_until_ready().await.is_ok() {
                    synced.cancel();
                }
            }
        });
        Ok(PolicyResolver {
            selections_synced,
            client,
            engine,
            operator_namespace,
            selections,
            builtins,
            modules: Arc::default(),
            compile_gate: Arc::new(Semaphore::new(1)),
            wake,
            puller: oci::Puller::new(oci.rules().map_err(PolicyError::Engine)?)
                .map_err(|e| PolicyError::Engine(format!("the OCI client: {e}")))?,
            oci,
            compile: CompileLimits::from_env(),
            loads: AtomicU64::new(0),
        })
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The policy `namespace` selected for `world`.
    pub async fn resolve(&self, namespace: &str, world: World) -> Result<Resolved, PolicyError> {
        // Before the first sync an absent selection would look like "use the defaults".
        self.selections_synced.cancelled().await;
        let selection = self
            .selections
            .get(&ObjectRef::new(SELECTION_CONFIG_MAP).within(namespace));
        let data = selection.as_ref().and_then(|c| c.data.as_ref());
        let reference = selected(data, world).map_err(|e| {
            PolicyError::Selection(format!("ConfigMap {SELECTION_CONFIG_MAP}: {e}"))
        })?;
        let text = reference.to_string();
        match reference {
            PolicyRef::Builtin(b) => Ok(Resolved {
                policy: self.builtin(b),
                reference: text,
                unselected: selection.is_none(),
                turn: None,
            }),
            PolicyRef::ConfigMap(module) => {
                self.config_map_module(namespace, &module, world, &text)
                    .await
            }
            PolicyRef::Oci(oci) => {
                let pull_secret = data.and_then(|d| d.get(PULL_SECRET_KEY)).cloned();
                self.oci_module(namespace, oci, world, text, pull_secret)
            }
        }
    }

    /// Whether `namespace` has a policy selection, read from the API server rather than the
    /// cache (metadata only). Asked before a run that the defaults decided for lack of a
    /// cached selection: the selection watch may not have delivered one created just before
    /// the QuarksJob, and the defaults must not stand in for a policy the namespace chose.
    pub async fn selection_exists(&self, namespace: &str) -> Result<bool, kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_metadata_opt(SELECTION_CONFIG_MAP).await?.is_some())
    }

    fn builtin(&self, wanted: &builtin::Builtin) -> Arc<LoadedPolicy> {
        self.builtins
            .iter()
            .find(|(name, _)| *name == wanted.name)
            .map(|(_, policy)| policy.clone())
            .expect("every built-in is loaded at start")
    }

    async fn config_map_module(
        &self,
        namespace: &str,
        module: &ModuleRef,
        world: World,
        reference: &str,
    ) -> Result<Resolved, PolicyError> {
        let cm_namespace = module
            .namespace(namespace, &self.operator_namespace)
            .to_owned();
        let key = ModuleKey::config_map(module, namespace, &self.operator_namespace, world);
        let pin_check = |digest: Option<PolicyDigest>| match (module.pin, digest) {
            (Some(pin), Some(found)) if pin != found => Err(PolicyError::DigestMismatch {
                reference: reference.to_owned(),
                expected: pin.to_string(),
                found: found.to_string(),
            }),
            _ => Ok(()),
        };
        if let Some(found) = self.cached(&key, namespace, &pin_check) {
            return found;
        }

        let (bytes, resource_version) = self
            .read_config_map_module(&cm_namespace, module, reference)
            .await?;
        let digest = PolicyDigest::of(&bytes);
        pin_check(Some(digest))?;
        if let Some(policy) = self.engine.cached(digest, world) {
            // Compiled for another namespace already: shared.
            self.insert_ready(
                key,
                resource_version.clone(),
                digest,
                reference,
                policy.clone(),
            );
            return Ok(Resolved {
                policy,
                reference: reference.to_owned(),
                unselected: false,
                turn: None,
            });
        }
        let engine = self.engine.clone();
        let gate = self.compile_gate.clone();
        let source = reference.to_owned();
        let cache_dir = None; // ConfigMap modules are cheap to read again after a restart.
        let limits = self.compile.clone();
        self.start_load(
            key,
            namespace,
            resource_version.unwrap_or_default(),
            Some(digest),
            reference,
            async move {
                Ok((
                    compile(engine, gate, bytes, world, cache_dir, limits).await?,
                    source,
                ))
            },
        )
    }

    /// The module bytes of a `configmap:` reference (at most 1 MiB: a ConfigMap's limit) and
    /// the ConfigMap's resourceVersion.
    async fn read_config_map_module(
        &self,
        namespace: &str,
        module: &ModuleRef,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>), PolicyError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let config_map = api
            .get_opt(&module.name)
            .await
            .map_err(|e| PolicyError::Unavailable(format!("ConfigMap {}: {e}", module.name)))?
            .ok_or_else(|| {
                PolicyError::ModuleMissing(format!(
                    "{reference}: ConfigMap {} not found in namespace {namespace}",
                    module.name
                ))
            })?;
        let resource_version = config_map.resource_version();
        let bytes = config_map
            .binary_data
            .and_then(|mut d| d.remove(&module.key));
        match bytes {
            Some(bytes) => Ok((bytes.0, resource_version)),
            None => {
                let in_data = config_map
                    .data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&module.key));
                let hint = if in_data {
                    " (it is under data; a module must be under binaryData)"
                } else {
                    ""
                };
                Err(PolicyError::ModuleMissing(format!(
                    "{reference}: ConfigMap {} has no binaryData key {}{hint}",
                    module.name, module.key
                )))
            }
        }
    }

    fn oci_module(
        &self,
        namespace: &str,
        oci_ref: OciRef,
        world: World,
        reference: String,
        pull_secret: Option<String>,
    ) -> Result<Resolved, PolicyError> {
        let key = ModuleKey::oci(namespace, reference.clone(), pull_secret.clone(), world);
        if let Some(found) = self.cached(&key, namespace, &|_| Ok(())) {
            return found;
        }
        let engine = self.engine.clone();
        let gate = self.compile_gate.clone();
        let client = self.client.clone();
        let puller = self.puller.clone();
        let settings = self.oci.clone();
        let limits = self.compile.clone();
        let owner = namespace.to_owned();
        let text = reference.clone();
        self.start_load(key, namespace, String::new(), None, &reference, async move {
            // A pinned artifact compiled before (by this operator) loads without a pull.
            if let (Some(dir), Some(compiled), Some(_)) =
                (&settings.cache_dir, settings.compiled_dir(), &oci_ref.digest)
                && let Some(digest) = read_ref(dir, &text)
                && let Some(policy) = engine.load_compiled_file(&compiled, digest, world)?
            {
                info!(reference = %text, %digest, "policy module loaded from the disk cache");
                return Ok((policy, text));
            }
            let auth = match &pull_secret {
                Some(name) => pull_auth(&client, &owner, name, &oci_ref.registry).await?,
                None => RegistryAuth::Anonymous,
            };
            let pulled = puller.pull(&oci_ref, &auth, settings.max_module_bytes).await?;
            let digest = PolicyDigest::of(&pulled.bytes);
            info!(reference = %text, manifest = %pulled.manifest_digest, %digest, size = pulled.bytes.len(), "policy module pulled");
            let policy = compile(
                engine,
                gate,
                pulled.bytes,
                world,
                settings.compiled_dir(),
                limits,
            )
            .await?;
            let pinned = format!(
                "oci://{}/{}@{}",
                oci_ref.registry, oci_ref.repository, pulled.manifest_digest
            );
            if let Some(dir) = &settings.cache_dir {
                write_ref(dir, &pinned, digest);
            }
            // A tag is recorded with the digest it had.
            let source = match &oci_ref.tag {
                Some(_) if oci_ref.digest.is_none() => format!("{text}@{}", pulled.manifest_digest),
                _ => text,
            };
            Ok((policy, source))
        })
    }

    /// The module from the cache, if it is there (ready, failed or still loading).
    fn cached(
        &self,
        key: &ModuleKey,
        namespace: &str,
        pin_check: &dyn Fn(Option<PolicyDigest>) -> Result<(), PolicyError>,
    ) -> Option<Result<Resolved, PolicyError>> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let entry = modules.get_mut(key)?;
        if let Err(mismatch) = pin_check(entry.digest) {
            return Some(Err(mismatch));
        }
        Some(match &entry.state {
            ModuleState::Ready(policy) => Ok(Resolved {
                policy: policy.clone(),
                reference: entry.source.clone(),
                unselected: false,
                turn: None,
            }),
            ModuleState::Failed(PolicyError::Unavailable(_), at)
                if at.elapsed() > RETRY_UNAVAILABLE =>
            {
                modules.remove(key);
                return None;
            }
            ModuleState::Failed(error, _) => Err(error.clone()),
            ModuleState::Loading => {
                entry.waiting.insert(namespace.to_owned());
                Err(PolicyError::Pending(entry.source.clone()))
            }
        })
    }

    fn insert_ready(
        &self,
        key: ModuleKey,
        resource_version: Option<String>,
        digest: PolicyDigest,
        source: &str,
        policy: Arc<LoadedPolicy>,
    ) {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        modules.insert(
            key,
            ModuleEntry {
                load: self.loads.fetch_add(1, Ordering::Relaxed),
                resource_version: resource_version.unwrap_or_default(),
                digest: Some(digest),
                source: source.to_owned(),
                state: ModuleState::Ready(policy),
                waiting: BTreeSet::new(),
                cancel: Default::default(),
            },
        );
    }

    /// Records the module as loading, runs `load` in the background and answers `Pending`;
    /// when `load` ends the waiting namespaces are woken.
    fn start_load(
        &self,
        key: ModuleKey,
        namespace: &str,
        resource_version: String,
        digest: Option<PolicyDigest>,
        reference: &str,
        load: impl Future<Output = Result<(Arc<LoadedPolicy>, String), PolicyError>> + Send + 'static,
    ) -> Result<Resolved, PolicyError> {
        let id = self.loads.fetch_add(1, Ordering::Relaxed);
        let cancel = tokio_util::sync::CancellationToken::new();
        let cancelled = cancel.clone();
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key.clone(),
                ModuleEntry {
                    load: id,
                    resource_version,
                    digest,
                    source: reference.to_owned(),
                    state: ModuleState::Loading,
                    waiting: BTreeSet::from([namespace.to_owned()]),
                    cancel,
                },
            );
        let modules = self.modules.clone();
        let wake = self.wake.clone();
        let pending = PolicyError::Pending(reference.to_owned());
        let reference = reference.to_owned();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = tokio::select! {
                () = cancelled.cancelled() => {
                    info!(%reference, elapsed = ?started.elapsed(), "policy module load superseded");
                    return;
                }
                result = load => result,
            };
            match &result {
                Ok((policy, _)) => {
                    info!(%reference, digest = %policy.digest(), elapsed = ?started.elapsed(), "policy module ready")
                }
                Err(error) => warn!(%reference, %error, "policy module rejected"),
            }
            let mut modules = modules.lock().unwrap_or_else(|p| p.into_inner());
            // The ConfigMap or selection may have changed meanwhile; then this result is stale.
            let Some(entry) = modules.get_mut(&key).filter(|e| e.load == id) else {
                return;
            };
            match result {
                Ok((policy, source)) => {
                    entry.digest = Some(policy.digest());
                    entry.source = source;
                    entry.state = ModuleState::Ready(policy);
                }
                Err(error) => entry.state = ModuleState::Failed(error, Instant::now()),
            }
            for namespace in std::mem::take(&mut entry.waiting) {
                let _ = wake.send(namespace);
            }
        });
        Err(pending)
    }

    /// A ConfigMap changed (seen by the metadata watch): a cached module read from an older
    /// version of it is dropped. Returns the namespaces whose decisions may now differ.
    pub fn module_touched(&self, config_map: &PartialObjectMeta<ConfigMap>) -> Vec<String> {
        let namespace = config_map.namespace().unwrap_or_default();
        let name = config_map.name_any();
        let version = config_map.resource_version().unwrap_or_default();
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let before = modules.len();
        modules.retain(|key, entry| match key {
            ModuleKey::ConfigMap {
                namespace: n,
                name: m,
                ..
            } => !(*n == namespace && *m == name && entry.resource_version != version),
            ModuleKey::Oci { .. } => true,
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
            let data = selection.data.as_ref();
            for world in [World::Trigger, World::Output] {
                match selected(data, world) {
                    Ok(PolicyRef::ConfigMap(module)) => {
                        let operator_namespace = &self.operator_namespace;
                        used.insert(ModuleKey::config_map(
                            &module,
                            &namespace,
                            operator_namespace,
                            world,
                        ));
                    }
                    Ok(reference @ PolicyRef::Oci(_)) => {
                        let pull_secret = data.and_then(|d| d.get(PULL_SECRET_KEY)).cloned();
                        used.insert(ModuleKey::oci(
                            &namespace,
                            reference.to_string(),
                            pull_secret,
                            world,
                        ));
                    }
                    _ => {}
                }
            }
        }
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        modules.retain(|key, _| used.contains(key));
    }
}

/// Compiles untrusted bytes in a child process under `limits`, one compilation at a time, and
/// loads the machine code; with `dir`, the machine code is also kept there.
async fn compile(
    engine: Arc<PolicyEngine>,
    gate: Arc<Semaphore>,
    bytes: Vec<u8>,
    world: World,
    dir: Option<PathBuf>,
    limits: CompileLimits,
) -> Result<Arc<LoadedPolicy>, PolicyError> {
    let digest = PolicyDigest::of(&bytes);
    if let Some(found) = engine.cached(digest, world) {
        return Ok(found);
    }
    let _permit = gate.acquire_owned().await;
    let code = compile_in_child(&limits, bytes).await?;
    tokio::task::spawn_blocking(move || {
        // SAFETY: `code` is what our own binary's compiler wrote for the bytes of `digest`.
        let policy = unsafe { engine.load_compiled(&code, digest, world) }?;
        if let Some(dir) = dir {
            engine.keep_compiled(&dir, digest, &code);
        }
        Ok(policy)
    })
    .await
    .unwrap_or_else(|e| Err(PolicyError::Engine(format!("loading stopped: {e}"))))
}

/// Credentials from the namespace's `kubernetes.io/dockerconfigjson` Secret `name`.
async fn pull_auth(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    registry: &str,
) -> Result<RegistryAuth, PolicyError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| PolicyError::Unavailable(format!("pull secret {name}: {e}")))?
        .ok_or_else(|| {
            PolicyError::Selection(format!(
                "the pull secret {name} does not exist in namespace {namespace}"
            ))
        })?;
    let config = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .ok_or_else(|| {
            PolicyError::Selection(format!(
                "the pull secret {name} has no .dockerconfigjson (type kubernetes.io/dockerconfigjson expected)"
            ))
        })?;
    oci::registry_auth(&config.0, registry)
        .map_err(|why| PolicyError::Selection(format!("the pull secret {name}: {why}")))
}

/// The file recording which module a pinned OCI reference had.
fn ref_file(dir: &std::path::Path, reference: &str) -> PathBuf {
    dir.join("refs")
        .join(hex::encode(Sha256::digest(reference.as_bytes())))
}

fn read_ref(dir: &std::path::Path, reference: &str) -> Option<PolicyDigest> {
    let text = std::fs::read_to_string(ref_file(dir, reference)).ok()?;
    PolicyDigest::parse(text.trim())
}

fn write_ref(dir: &std::path::Path, reference: &str, digest: PolicyDigest) {
    let path = ref_file(dir, reference);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, digest.to_string())?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(error) = write() {
        warn!(path = %path.display(), %error, "could not record the policy reference on disk");
    }
}
