//! Container logs on disk: where the kubelet keeps them and how they are read back.
//!
//! The kubelet appends each container's stdout and stderr to [`container_log_path`]; the
//! API server's `pods/log` ([`crate::server::podlog`]) and `kubesim node`'s kubelet log
//! endpoint ([`crate::node::logserver`]) both read it through [`open`] and [`follow`], so
//! the two answer alike. Nothing here rotates logs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

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

/// What a reader asks of a log: the query parameters of `pods/log` and of the kubelet's
/// `/containerLogs` (the API server forwards them unchanged). `timestamps` and
/// `sinceSeconds` are not honoured: the files hold no times.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub follow: bool,
    pub previous: bool,
}

impl LogQuery {
    /// From query parameters (`q` answers the value of a parameter).
    pub fn parse<'a>(q: impl Fn(&str) -> Option<&'a str>) -> Self {
        let flag = |name| matches!(q(name), Some("true" | "1"));
        LogQuery {
            tail_lines: q("tailLines").and_then(|t| t.parse().ok()),
            limit_bytes: q("limitBytes").and_then(|t| t.parse().ok()),
            follow: flag("follow"),
            previous: flag("previous"),
        }
    }
}

/// Why a log cannot be served (a 400 or 500 answer).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { container: String, pod: String },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")]
    Waiting { container: String, pod: String },
    #[error("reading log: {0}")]
    Io(#[from] std::io::Error),
}

impl LogError {
    /// Whether the request, not the node, is at fault (400 rather than 500).
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, LogError::Io(_))
    }
}

/// The start of an answer: the bytes to send first, and where following continues.
#[derive(Debug)]
pub struct LogStart {
    pub first: Vec<u8>,
    pub offset: u64,
}

/// Reads the log of `container` of `pod` (the pod as JSON, for its phase) per `query`.
pub async fn open(
    path: &Path,
    query: &LogQuery,
    pod: &Value,
    container: &str,
) -> Result<LogStart, LogError> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if query.previous {
        return Err(LogError::NoPrevious {
            container: container.to_string(),
            pod: pod_name.to_string(),
        });
    }
    let content = match tokio::fs::read(path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            if !query.follow && phase == "Pending" {
                return Err(LogError::Waiting {
                    container: container.to_string(),
                    pod: pod_name.to_string(),
                });
            }
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let offset = content.len() as u64;
    let mut first = match query.tail_lines {
        Some(n) => tail(&content, n).to_vec(),
        None => content,
    };
    if let Some(l) = query.limit_bytes {
        first.truncate(l);
    }
    Ok(LogStart { first, offset })
}

/// Streams `start.first`, then the bytes appended to `path`, until `done()` says the
/// container has terminated (checked before each read, so the final bytes are sent), the
/// receiver is dropped, or `cancel` fires.
pub fn follow<D, F>(
    path: PathBuf,
    start: LogStart,
    mut done: D,
    cancel: CancellationToken,
) -> mpsc::Receiver<Bytes>
where
    D: FnMut() -> F + Send + 'static,
    F: Future<Output = bool> + Send,
{
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let LogStart { first, mut offset } = start;
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            let finished = done().await;
            if let Ok(mut f) = tokio::fs::File::open(&path).await
                && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
            {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).await.is_ok() && !buf.is_empty() {
                    offset += buf.len() as u64;
                    if tx.send(Bytes::from(buf)).await.is_err() {
                        return;
                    }
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = tx.closed() => return,
                () = cancel.cancelled() => return,
            }
        }
    });
    rx
}

/// Whether `container` of `pod` (as JSON) has terminated, or the whole pod has finished.
pub fn container_terminated(pod: &Value, container: &str) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return true;
    }
    for list in ["containerStatuses", "initContainerStatuses"] {
        if let Some(ss) = pod
            .pointer(&format!("/status/{list}"))
            .and_then(Value::as_array)
        {
            for s in ss {
                if s.get("name").and_then(Value::as_str) == Some(container) {
                    return s.pointer("/state/terminated").is_some();
                }
            }
        }
    }
    false
}

fn tail(bytes: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return &bytes[bytes.len()..];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut count = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == lines {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\n", 5), b"a\n");
    }

    #[test]
    fn query_parameters() {
        let q = LogQuery::parse(|k| match k {
            "tailLines" => Some("3"),
            "follow" => Some("true"),
            _ => None,
        });
        assert_eq!(
            q,
            LogQuery {
                tail_lines: Some(3),
                limit_bytes: None,
                follow: true,
                previous: false
            }
        );
    }
}
