//! Where the kubelet keeps container logs on disk.
//!
//! Owns only the path layout; the kubelet appends each container's stdout and stderr to this
//! file, and the API server serves `pods/log` from it. Nothing here reads or rotates logs.

use std::path::{Path, PathBuf};

/// The log file of one container: `state_dir/logs/<namespace>/<pod>/<container>.log`.
///
/// Restarts of the same container append to the same file (there is no `--previous`).
pub fn container_log_path(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> PathBuf {
    state_dir
        .join("logs")
        .join(namespace)
        .join(pod)
        .join(format!("{container}.log"))
}

/// The directory holding all container logs of one pod (removed with the pod).
pub fn pod_log_dir(state_dir: &Path, namespace: &str, pod: &str) -> PathBuf {
    state_dir.join("logs").join(namespace).join(pod)
}
