//! `quarks-job persist-output`: the helper container of a pod with output. It waits (on a
//! watch of its own pod, no polling) until every container it serves has terminated — with or
//! without its files — reads the mapped files from /mnt/quarks/<container>/, and hands them to
//! the operator as one staging Secret per container (more when its files do not fit one
//! object), owned by the Job and signed with the run's key. Its only credentials are the
//! run's hand-over Secret, mounted into this container alone (`--handover-dir`): a kubeconfig
//! with a token of the helper's ServiceAccount — which may only `create` Secrets and
//! `get/list/watch` Pods — and the run key. It never reads other Secrets and never logs file
//! contents. It always ends: at the latest at
//! its deadline, handing over what finished and reporting the files of containers still
//! running as unfinished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::OUTPUT_DIR;
use super::staging::{self, FileState, STAGING_DATA_BUDGET, StagingManifest};
use crate::names::job::QJOB_NAME_LABEL;
use crate::seal::RunKey;

#[derive(clap::Args, Debug, Clone)]
pub struct PersistOutputArgs {
    /// The QuarksJob whose output this is.
    #[arg(long)]
    pub quarks_job: String,
    /// A container whose output to hand over (repeat for each).
    #[arg(long = "container", required = true)]
    pub containers: Vec<String>,
    /// A mapped output file, as `<container>:<file name>` (repeat for each).
    #[arg(long = "file")]
    pub files: Vec<String>,
    /// Give up after this many seconds (the pod must never hang).
    #[arg(long, default_value_t = 3600)]
    pub deadline_seconds: u64,
    /// This pod's name (downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: String,
    /// This pod's namespace (downward API).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: String,
    /// Where the served containers' output directories are mounted.
    #[arg(long, default_value = OUTPUT_DIR)]
    pub output_root: PathBuf,
    /// Where the run's hand-over Secret is mounted (its `kubeconfig` and `run-key`).
    #[arg(long, default_value = super::pod::HANDOVER_DIR)]
    pub handover_dir: PathBuf,
}

impl PersistOutputArgs {
    /// File names per container, from the `--file` arguments.
    fn mapped_files(&self) -> BTreeMap<String, Vec<String>> {
        let mut mapped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in &self.files {
            if let Some((container, file)) = entry.split_once(':') {
                mapped
                    .entry(container.to_owned())
                    .or_default()
                    .push(file.to_owned());
            }
        }
        mapped
    }
}

/// The helper's credentials: a client of the helper's ServiceAccount and the run key.
async fn credentials(dir: &Path) -> anyhow::Result<(kube::Client, RunKey)> {
    let kubeconfig_path = dir.join(super::handover::KUBECONFIG_KEY);
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path)
        .with_context(|| format!("reading {}", kubeconfig_path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("the hand-over kubeconfig")?;
    let key_path = dir.join(super::handover::RUN_KEY_KEY);
    let key_bytes =
        std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let key = RunKey::from_bytes(&key_bytes)
        .with_context(|| format!("{} does not hold a run key", key_path.display()))?;
    Ok((kube::Client::try_from(config)?, key))
}

/// Runs the helper to completion.
pub async fn run(args: PersistOutputArgs) -> anyhow::Result<()> {
    let (client, key) = credentials(&args.handover_dir)
        .await
        .context("the run's hand-over credentials")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.pod_namespace);
    let deadline = Duration::from_secs(args.deadline_seconds);
    let pod = match tokio::time::timeout(deadline, wait_for_containers(&pods, &args)).await {
        Ok(pod) => pod?,
        // Hand over what finished; the others are reported as unfinished, never waited for.
        Err(_) => {
            warn!(
                deadline_seconds = args.deadline_seconds,
                "not every served container finished before the deadline"
            );
            pods.get(&args.pod_name)
                .await
                .context("reading this pod at the deadline")?
        }
    };

    let owner = job_owner(&pod).context("this pod is not owned by a Job")?;
    let pod_uid = pod.uid().context("this pod has no uid")?;
    let qjob_label = pod
        .labels()
        .get(QJOB_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| crate::names::job::qjob_name_label_value(&args.quarks_job));
    let mapped = args.mapped_files();
    let secrets: Api<Secret> = Api::namespaced(client, &args.pod_namespace);
    for container in &args.containers {
        let exit_code = exit_code(&pod, container).unwrap_or(-1);
        let files = mapped.get(container).cloned().unwrap_or_default();
        let parts = hand_over(
            &secrets,
            &args,
            &qjob_label,
            Run {
                owner: &owner,
                pod_uid: &pod_uid,
                key: &key,
            },
            HandOver {
                container,
                exit_code,
                finished: finished(&pod, container),
            },
            &files,
        )
        .await?;
        info!(
            container,
            exit_code,
            files = files.len(),
            parts,
            "handed output to the operator"
        );
    }
    Ok(())
}

/// The run this pod belongs to, as the helper read it from its own pod.
struct Run<'a> {
    owner: &'a OwnerReference,
    pod_uid: &'a str,
    key: &'a RunKey,
}

/// One served container, as the helper found it.
struct HandOver<'a> {
    container: &'a str,
    exit_code: i32,
    /// Terminated for good (false: still running at the deadline).
    finished: bool,
}

/// Hands one container's files over in as many staging Secrets as their size needs (each
/// under the object size limit), reading one part's files at a time. Returns the number of
/// parts.
async fn hand_over(
    secrets: &Api<Secret>,
    args: &PersistOutputArgs,
    qjob_label: &str,
    run: Run<'_>,
    what: HandOver<'_>,
    files: &[String],
) -> anyhow::Result<usize> {
    let dir = args.output_root.join(what.container);
    let found = inspect_all(&dir, files, what.finished, args.deadline_seconds);
    let sizes: Vec<Option<u64>> = found.iter().map(|f| f.as_ref().ok().copied()).collect();
    let budget = STAGING_DATA_BUDGET as u64;
    let parts = staging::plan_parts(&sizes, budget);
    for (part, indices) in parts.iter().enumerate() {
        let (states, data) = part_contents(&dir, files, &found, part, indices, budget);
        let manifest = StagingManifest {
            quarks_job: args.quarks_job.clone(),
            pod: args.pod_name.clone(),
            pod_uid: run.pod_uid.to_owned(),
            job_uid: run.owner.uid.clone(),
            container: what.container.to_owned(),
            exit_code: what.exit_code,
            files: states,
            staged_at_micros: now_micros(),
        };
        let secret = staging::build(
            &args.pod_namespace,
            qjob_label,
            &manifest,
            part,
            data,
            run.owner.clone(),
            run.key,
        )?;
        // A generated name: nothing can be in the way. (A restarted helper hands over again;
        // the operator writes the same output twice, which changes nothing.)
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .context("creating the staging Secret")?;
    }
    Ok(parts.len())
}

/// Each mapped file's size, or why there is nothing to hand over. A container still running
/// at the deadline may be writing: its files are not read.
fn inspect_all(
    dir: &Path,
    files: &[String],
    finished: bool,
    deadline_seconds: u64,
) -> Vec<Result<u64, FileState>> {
    files
        .iter()
        .map(|f| match finished {
            true => inspect(dir, f),
            false => Err(FileState::Unfinished { deadline_seconds }),
        })
        .collect()
}

/// The manifest's file states and the data of one staging part: the files at `indices`, read
/// now; part 0 also reports, once, every file that cannot be handed over.
fn part_contents(
    dir: &Path,
    files: &[String],
    found: &[Result<u64, FileState>],
    part: usize,
    indices: &[usize],
    budget: u64,
) -> (BTreeMap<String, FileState>, BTreeMap<String, Vec<u8>>) {
    let mut states = BTreeMap::new();
    let mut data = BTreeMap::new();
    if part == 0 {
        for (file, state) in files.iter().zip(found) {
            match state {
                Err(state) => {
                    states.insert(file.clone(), state.clone());
                }
                Ok(size) if *size > budget => {
                    states.insert(file.clone(), FileState::TooLarge { size: *size });
                }
                Ok(_) => {}
            }
        }
    }
    for &index in indices {
        let file = &files[index];
        let state = match read_file(dir, file, budget) {
            Ok(bytes) => {
                let key = format!("file-{index}");
                data.insert(key.clone(), bytes);
                FileState::Present { key }
            }
            Err(state) => state,
        };
        states.insert(file.clone(), state);
    }
    (states, data)
}

fn now_micros() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())
}

/// Watches this pod until every served container has terminated for good.
async fn wait_for_containers(pods: &Api<Pod>, args: &PersistOutputArgs) -> anyhow::Result<Pod> {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.pod_name));
    let mut stream = std::pin::pin!(
        watcher(pods.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    while let Some(pod) = stream.next().await {
        let pod = pod?;
        if args.containers.iter().all(|c| finished(&pod, c)) {
            return Ok(pod);
        }
    }
    bail!("the watch of pod {} ended", args.pod_name)
}

fn status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)
}

/// Terminated, and not about to be restarted (OnFailure restarts failed containers).
fn finished(pod: &Pod, container: &str) -> bool {
    let on_failure =
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    match status(pod, container)
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
    {
        Some(t) => t.exit_code == 0 || !on_failure,
        None => false,
    }
}

fn exit_code(pod: &Pod, container: &str) -> Option<i32> {
    status(pod, container)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn job_owner(pod: &Pod) -> Option<OwnerReference> {
    pod.owner_references()
        .iter()
        .find(|o| o.kind == "Job" && o.controller == Some(true))
        .map(|o| OwnerReference {
            block_owner_deletion: None,
            ..o.clone()
        })
}

/// The size of a mapped file, or why there is nothing to hand over.
fn inspect(dir: &Path, file: &str) -> Result<u64, FileState> {
    // Mapped names are single path components: never read outside the output directory.
    if file.contains('/') || file == ".." || file == "." {
        return Err(FileState::Unreadable {
            reason: "the file name must not contain '/'".into(),
        });
    }
    match std::fs::metadata(dir.join(file)) {
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        Ok(_) => Err(FileState::Unreadable {
            reason: "not a regular file".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileState::Missing),
        Err(e) => Err(FileState::Unreadable {
            reason: e.to_string(),
        }),
    }
}

/// Reads a file [`inspect`] sized; at most `limit` bytes (the containers have terminated,
/// but the read is bounded anyway).
fn read_file(dir: &Path, file: &str, limit: u64) -> Result<Vec<u8>, FileState> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| FileState::Unreadable {
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(dir.join(file))
        .map_err(unreadable)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(FileState::TooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_sized_read_or_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.json"), b"{}").unwrap();
        std::fs::create_dir(dir.path().join("a-dir")).unwrap();
        assert_eq!(inspect(dir.path(), "out.json"), Ok(2));
        assert_eq!(inspect(dir.path(), "missing.json"), Err(FileState::Missing));
        assert!(matches!(
            inspect(dir.path(), "a-dir"),
            Err(FileState::Unreadable { .. })
        ));
        // Never outside the container's output directory.
        for name in ["../etc/passwd", "sub/file", "..", "."] {
            assert!(
                matches!(inspect(dir.path(), name), Err(FileState::Unreadable { .. })),
                "{name}"
            );
        }
        assert_eq!(read_file(dir.path(), "out.json", 2), Ok(b"{}".to_vec()));
        assert_eq!(
            read_file(dir.path(), "out.json", 1),
            Err(FileState::TooLarge { size: 2 })
        );
    }
}
