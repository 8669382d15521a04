//! Pod volumes on disk: emptyDir, secret, configMap, downwardAPI, projected (with tokens
//! already obtained through TokenRequest) and hostPath volumes, plus kubesim's own
//! service-account and kubeconfig files for pods on kubesim's plain-http server.
//!
//! Owns the layout under `state_dir/pods/<uid>/`: `volumes/<name>` for each volume,
//! `serviceaccount/` and `kubesim/kubeconfig`. It writes files from data already fetched
//! ([`ConfigSources`]) and never talks to the API; mounting them into a container is
//! [`super::mounts`]' job. Secret values are written to files only, never logged.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Pod, Volume, VolumeProjection,
};

use super::env::{ConfigSources, EnvError, ObjectKind, field_ref_value};
use super::tokens::TokenKey;

/// Where the service-account token, namespace and CA appear in a container.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where the pod's kubeconfig directory appears in a container (kubesim's deviation: kube
/// clients' in-cluster config insists on https, so pods get a kubeconfig instead).
pub const KUBECONFIG_MOUNT_DIR: &str = "/var/run/secrets/kubesim";
/// The kubeconfig file inside [`KUBECONFIG_MOUNT_DIR`].
pub const KUBECONFIG_FILE: &str = "kubeconfig";

/// Default file mode of secret/configMap/projected/downwardAPI files (0644).
const DEFAULT_MODE: u32 = 0o644;

/// Why a pod's volumes cannot be set up yet (the pod stays `Pending`, `FailedMount`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : secret \"{name}\" not found")]
    SecretNotFound { volume: String, name: String },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : configmap \"{name}\" not found")]
    ConfigMapNotFound { volume: String, name: String },
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : couldn't find key {key} in {kind} {name}"
    )]
    KeyNotFound {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    Field { volume: String, source: EnvError },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : invalid path {path:?}")]
    InvalidPath { volume: String, path: String },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : hostPath {path} does not exist")]
    HostPathMissing { volume: String, path: String },
    #[error(
        "MountVolume.SetUp failed for volume \"{volume}\" : no service account token was issued"
    )]
    TokenMissing { volume: String },
    #[error("volume \"{volume}\" has a type kubesim does not support")]
    Unsupported { volume: String },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    Io { volume: String, source: io::Error },
}

/// The names of ConfigMaps and Secrets a pod refers to (volumes, env, envFrom), so the
/// kubelet can fetch exactly those.
pub fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (config_maps, secrets);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &p.config_map {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for from in c.env_from.iter().flatten() {
            if let Some(cm) = &from.config_map_ref {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &from.secret_ref {
                secrets.insert(s.name.clone());
            }
        }
        for e in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(cm) = &e.config_map_key_ref {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &e.secret_key_ref {
                secrets.insert(s.name.clone());
            }
        }
    }
    (config_maps, secrets)
}

/// The service-account identity of a pod, as kubesim's API server understands it.
pub fn service_account_token(namespace: &str, service_account: &str) -> String {
    format!("kubesim:serviceaccount:{namespace}:{service_account}")
}

/// The pod's service account name (`default` when unset).
pub fn service_account_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .clone()
                .or_else(|| s.service_account.clone())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// A kubeconfig for the pod's service account (plain http: the server kubesim serves).
pub fn kubeconfig_yaml(api_url: &str, namespace: &str, service_account: &str) -> String {
    let token = service_account_token(namespace, service_account);
    let user = format!("system:serviceaccount:{namespace}:{service_account}");
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesim", "cluster": {"server": api_url}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": user, "namespace": namespace}}],
        "current-context": "kubesim",
    });
    // JSON is valid YAML, and every kubeconfig loader accepts it.
    doc.to_string()
}

/// The on-disk layout of one pod's files.
#[derive(Debug, Clone)]
pub struct PodDir {
    root: PathBuf,
}

impl PodDir {
    pub fn new(state_dir: &Path, pod_uid: &str) -> Self {
        Self {
            root: state_dir.join("pods").join(pod_uid),
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }
    pub fn service_account(&self) -> PathBuf {
        self.root.join("serviceaccount")
    }
    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.root.join("kubesim")
    }
    /// Scratch space for a container's mount plan (staging directories for shadowed paths).
    pub fn staging(&self, container: &str) -> PathBuf {
        self.root.join("staging").join(container)
    }
}

/// Writes the service-account and kubeconfig files of a pod.
pub fn write_identity(dir: &PodDir, pod: &Pod, api_url: &str) -> io::Result<()> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = service_account_name(pod);
    let sa_dir = dir.service_account();
    fs::create_dir_all(&sa_dir)?;
    write_file(
        &sa_dir.join("token"),
        service_account_token(&namespace, &sa).as_bytes(),
        DEFAULT_MODE,
    )?;
    write_file(
        &sa_dir.join("namespace"),
        namespace.as_bytes(),
        DEFAULT_MODE,
    )?;
    // The server speaks plain http, so there is no CA; the file exists because clients
    // expect it.
    write_file(&sa_dir.join("ca.crt"), b"", DEFAULT_MODE)?;
    let kc_dir = dir.kubeconfig_dir();
    fs::create_dir_all(&kc_dir)?;
    write_file(
        &kc_dir.join(KUBECONFIG_FILE),
        kubeconfig_yaml(api_url, &namespace, &sa).as_bytes(),
        0o600,
    )?;
    Ok(())
}

/// Sets up every volume of the pod and returns the host directory of each, by name.
/// Secret/configMap-backed volumes are rewritten on each call; emptyDirs keep their content.
pub fn materialize(
    dir: &PodDir,
    pod: &Pod,
    sources: &ConfigSources,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = materialize_one(dir, pod, sources, volume)?;
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

fn materialize_one(
    dir: &PodDir,
    pod: &Pod,
    sources: &ConfigSources,
    volume: &Volume,
) -> Result<PathBuf, VolumeError> {
    let name = volume.name.as_str();
    let io_err = |source| VolumeError::Io {
        volume: name.to_string(),
        source,
    };
    let target = dir.volume(name);
    if volume.empty_dir.is_some() {
        fs::create_dir_all(&target).map_err(io_err)?;
        // Containers may run as any user; an emptyDir is world-writable as in Kubernetes.
        fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).map_err(io_err)?;
        return Ok(target);
    }
    if let Some(host) = &volume.host_path {
        return host_path(name, host);
    }
    // Everything else is a set of files computed from objects: build it afresh.
    let files = planned_files(pod, sources, volume)?;
    if target.exists() {
        fs::remove_dir_all(&target).map_err(io_err)?;
    }
    fs::create_dir_all(&target).map_err(io_err)?;
    for file in files {
        let path = target.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        write_file(&path, &file.content, file.mode).map_err(io_err)?;
    }
    Ok(target)
}

/// A hostPath volume: the host path itself, created first where its `type` says so.
fn host_path(volume: &str, host: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let io_err = |source| VolumeError::Io {
        volume: volume.to_string(),
        source,
    };
    let path = PathBuf::from(&host.path);
    match host.type_.as_deref() {
        Some("DirectoryOrCreate") => fs::create_dir_all(&path).map_err(io_err)?,
        Some("FileOrCreate") if !path.exists() => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_err)?;
            }
            fs::write(&path, b"").map_err(io_err)?;
        }
        _ if !path.exists() => {
            return Err(VolumeError::HostPathMissing {
                volume: volume.into(),
                path: host.path.clone(),
            });
        }
        _ => {}
    }
    Ok(path)
}

/// One file of an object-backed volume, planned before anything is written.
struct VolumeFile {
    path: String,
    content: Vec<u8>,
    mode: u32,
}

/// The files of a secret, configMap, downwardAPI or projected volume, computed from the
/// pod and the fetched objects alone (no disk access), every path already checked.
fn planned_files(
    pod: &Pod,
    sources: &ConfigSources,
    volume: &Volume,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let name = volume.name.as_str();
    let mut files = Vec::new();
    if let Some(secret) = &volume.secret {
        let object = ObjectSource::new(
            ObjectKind::Secret,
            secret.secret_name.as_deref().unwrap_or_default(),
            &secret.items,
            secret.optional,
        );
        let mode = mode_or(secret.default_mode, DEFAULT_MODE);
        object_files(name, sources, &object, mode, &mut files)?;
    } else if let Some(cm) = &volume.config_map {
        let object = ObjectSource::new(ObjectKind::ConfigMap, &cm.name, &cm.items, cm.optional);
        let mode = mode_or(cm.default_mode, DEFAULT_MODE);
        object_files(name, sources, &object, mode, &mut files)?;
    } else if let Some(dapi) = &volume.downward_api {
        let mode = mode_or(dapi.default_mode, DEFAULT_MODE);
        let items = dapi.items.as_deref().unwrap_or_default();
        downward_files(name, pod, items, mode, &mut files)?;
    } else if let Some(projected) = &volume.projected {
        let mode = mode_or(projected.default_mode, DEFAULT_MODE);
        for source in projected.sources.iter().flatten() {
            projection_files(name, pod, sources, source, mode, &mut files)?;
        }
    } else {
        return Err(VolumeError::Unsupported {
            volume: name.into(),
        });
    }
    if let Some(bad) = files.iter().find(|f| !is_safe_relative(&f.path)) {
        return Err(VolumeError::InvalidPath {
            volume: name.into(),
            path: bad.path.clone(),
        });
    }
    Ok(files)
}

/// The files of one source of a projected volume (a source may set several fields; each
/// contributes, as in Kubernetes).
fn projection_files(
    volume: &str,
    pod: &Pod,
    sources: &ConfigSources,
    source: &VolumeProjection,
    mode: u32,
    files: &mut Vec<VolumeFile>,
) -> Result<(), VolumeError> {
    if let Some(s) = &source.secret {
        let object = ObjectSource::new(ObjectKind::Secret, &s.name, &s.items, s.optional);
        object_files(volume, sources, &object, mode, files)?;
    }
    if let Some(cm) = &source.config_map {
        let object = ObjectSource::new(ObjectKind::ConfigMap, &cm.name, &cm.items, cm.optional);
        object_files(volume, sources, &object, mode, files)?;
    }
    if let Some(d) = &source.downward_api {
        let items = d.items.as_deref().unwrap_or_default();
        downward_files(volume, pod, items, mode, files)?;
    }
    if let Some(token) = &source.service_account_token {
        let value =
            sources
                .tokens
                .get(&TokenKey::of(token))
                .ok_or_else(|| VolumeError::TokenMissing {
                    volume: volume.into(),
                })?;
        files.push(VolumeFile {
            path: token.path.clone(),
            content: value.clone().into_bytes(),
            mode,
        });
    }
    Ok(())
}

fn mode_or(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o777)
}

/// A Secret or ConfigMap as a volume's files: a whole secret/configMap volume or one
/// source of a projected volume, which Kubernetes treats alike.
struct ObjectSource<'a> {
    kind: ObjectKind,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

impl<'a> ObjectSource<'a> {
    fn new(
        kind: ObjectKind,
        name: &'a str,
        items: &'a Option<Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Self {
        Self {
            kind,
            name,
            items: items.as_deref(),
            optional: optional == Some(true),
        }
    }
}

/// Keys (or `items`) of one object as files. A missing object, or a missing key listed in
/// `items`, is an error unless the source is optional, as in Kubernetes.
fn object_files(
    volume: &str,
    sources: &ConfigSources,
    object: &ObjectSource<'_>,
    default_mode: u32,
    files: &mut Vec<VolumeFile>,
) -> Result<(), VolumeError> {
    let Some(entries) = sources.entries(object.kind, object.name) else {
        return match (object.optional, object.kind) {
            (true, _) => Ok(()),
            (false, ObjectKind::Secret) => Err(VolumeError::SecretNotFound {
                volume: volume.into(),
                name: object.name.into(),
            }),
            (false, ObjectKind::ConfigMap) => Err(VolumeError::ConfigMapNotFound {
                volume: volume.into(),
                name: object.name.into(),
            }),
        };
    };
    let Some(items) = object.items else {
        files.extend(entries.into_iter().map(|(path, content)| VolumeFile {
            path,
            content,
            mode: default_mode,
        }));
        return Ok(());
    };
    for item in items {
        match entries.get(&item.key) {
            Some(v) => files.push(VolumeFile {
                path: item.path.clone(),
                content: v.clone(),
                mode: mode_or(item.mode, default_mode),
            }),
            None if object.optional => {}
            None => {
                return Err(VolumeError::KeyNotFound {
                    volume: volume.into(),
                    kind: object.kind.as_str(),
                    name: object.name.into(),
                    key: item.key.clone(),
                });
            }
        }
    }
    Ok(())
}

fn downward_files(
    volume: &str,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    files: &mut Vec<VolumeFile>,
) -> Result<(), VolumeError> {
    for item in items {
        let Some(field) = &item.field_ref else {
            // resourceFieldRef: kubesim has no resource model; documented gap.
            continue;
        };
        let value = field_ref_value(pod, field).map_err(|source| VolumeError::Field {
            volume: volume.into(),
            source,
        })?;
        files.push(VolumeFile {
            path: item.path.clone(),
            content: value.into_bytes(),
            mode: mode_or(item.mode, default_mode),
        });
    }
    Ok(())
}

/// A relative path with no `..`, as the API server validates item paths.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Replaces the token files of the pod's projected volumes with renewed tokens. Each file
/// is written beside itself and renamed over the old one: a container reading it sees the
/// old or the new token, never a partial one (and the volume directory, bind-mounted into
/// containers, stays the same directory).
pub fn rewrite_tokens(
    dir: &PodDir,
    pod: &Pod,
    tokens: &BTreeMap<TokenKey, String>,
) -> Result<(), VolumeError> {
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(projected) = &volume.projected else {
            continue;
        };
        let mode = mode_or(projected.default_mode, DEFAULT_MODE);
        let io_err = |source| VolumeError::Io {
            volume: volume.name.clone(),
            source,
        };
        for token in projected
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.service_account_token.as_ref())
        {
            let value =
                tokens
                    .get(&TokenKey::of(token))
                    .ok_or_else(|| VolumeError::TokenMissing {
                        volume: volume.name.clone(),
                    })?;
            if !is_safe_relative(&token.path) {
                return Err(VolumeError::InvalidPath {
                    volume: volume.name.clone(),
                    path: token.path.clone(),
                });
            }
            let path = dir.volume(&volume.name).join(&token.path);
            let tmp = path.with_file_name(format!(
                ".{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("token")
            ));
            write_file(&tmp, value.as_bytes(), mode).map_err(io_err)?;
            fs::rename(&tmp, &path).map_err(io_err)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "b"}},
            "spec": {"serviceAccountName": "runner", "volumes": volumes,
                     "containers": [{"name": "c", "image": "busybox",
                        "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}]}]}
        }))
        .expect("pod")
    }

    fn sources() -> ConfigSources {
        let mut s = ConfigSources::default()
            .with_object(
                ObjectKind::ConfigMap,
                json!({"metadata": {"name": "cm"}, "data": {"a.conf": "A", "b.conf": "B"}}),
            )
            .with_object(
                ObjectKind::Secret,
                json!({"metadata": {"name": "sec"}, "data": {"password": "aHVudGVyMg=="}}),
            );
        s.tokens.insert(token_key(), "issued".to_string());
        s
    }

    fn token_key() -> TokenKey {
        TokenKey {
            audience: None,
            expiration_seconds: 3600,
        }
    }

    #[test]
    fn references_cover_volumes_and_env() {
        let p = pod(json!([
            {"name": "v1", "secret": {"secretName": "sec"}},
            {"name": "v2", "projected": {"sources": [{"configMap": {"name": "cm"}}, {"secret": {"name": "other"}}]}}
        ]));
        let (cms, secrets) = referenced_objects(&p);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cm"]);
        assert_eq!(
            secrets.into_iter().collect::<Vec<_>>(),
            ["env-secret", "other", "sec"]
        );
    }

    #[test]
    fn volumes_become_files_with_items_and_modes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = PodDir::new(tmp.path(), "u1");
        let p = pod(json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "creds", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "conf", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "sub/a"}]}},
            {"name": "opt", "secret": {"secretName": "absent", "optional": true}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "all", "projected": {"sources": [
                {"configMap": {"name": "cm", "items": [{"key": "b.conf", "path": "b", "mode": 0o600}]}},
                {"secret": {"name": "sec"}},
                {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"serviceAccountToken": {"path": "token"}}
            ]}}
        ]));
        let vols = materialize(&dir, &p, &sources()).expect("materialize");
        let read = |v: &str, f: &str| fs::read_to_string(vols[v].join(f)).expect(f);
        let mode =
            |v: &str, f: &str| fs::metadata(vols[v].join(f)).expect(f).permissions().mode() & 0o777;
        assert!(vols["scratch"].is_dir());
        assert_eq!(read("creds", "password"), "hunter2");
        assert_eq!(mode("creds", "password"), 0o400);
        assert_eq!(read("conf", "sub/a"), "A");
        assert!(!vols["conf"].join("b.conf").exists());
        assert!(vols["opt"].is_dir());
        assert_eq!(read("info", "labels"), "a=\"b\"");
        assert_eq!(read("all", "b"), "B");
        assert_eq!(mode("all", "b"), 0o600);
        assert_eq!(read("all", "password"), "hunter2");
        assert_eq!(read("all", "name"), "p");
        assert_eq!(read("all", "token"), "issued");
        let renewed = BTreeMap::from([(token_key(), "renewed".to_string())]);
        rewrite_tokens(&dir, &p, &renewed).expect("rewrite");
        assert_eq!(read("all", "token"), "renewed");
        assert_eq!(mode("all", "token"), 0o644);

        // emptyDir content survives a second setup; object-backed volumes are rewritten.
        fs::write(vols["scratch"].join("keep"), "x").expect("write");
        let again = materialize(&dir, &p, &sources()).expect("again");
        assert!(again["scratch"].join("keep").exists());
    }

    #[test]
    fn missing_objects_and_keys_block_setup() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = PodDir::new(tmp.path(), "u1");
        let missing = pod(json!([{"name": "creds", "secret": {"secretName": "absent"}}]));
        let err = materialize(&dir, &missing, &sources()).expect_err("missing secret");
        assert!(matches!(err, VolumeError::SecretNotFound { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"creds\" : secret \"absent\" not found"
        );
        let bad_key = pod(
            json!([{"name": "c", "configMap": {"name": "cm", "items": [{"key": "zzz", "path": "z"}]}}]),
        );
        assert!(matches!(
            materialize(&dir, &bad_key, &sources()),
            Err(VolumeError::KeyNotFound { .. })
        ));
        let escape = pod(
            json!([{"name": "c", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "../x"}]}}]),
        );
        assert!(matches!(
            materialize(&dir, &escape, &sources()),
            Err(VolumeError::InvalidPath { .. })
        ));
    }

    #[test]
    fn identity_files_name_the_service_account() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = PodDir::new(tmp.path(), "u1");
        write_identity(&dir, &pod(json!([])), "http://127.0.0.1:1234").expect("identity");
        let token = fs::read_to_string(dir.service_account().join("token")).expect("token");
        assert_eq!(token, "kubesim:serviceaccount:ns:runner");
        let kc: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(dir.kubeconfig_dir().join(KUBECONFIG_FILE)).expect("kc"),
        )
        .expect("json");
        assert_eq!(
            kc["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(
            kc["users"][0]["user"]["token"],
            "kubesim:serviceaccount:ns:runner"
        );
        assert_eq!(kc["contexts"][0]["context"]["namespace"], "ns");
    }
}
