//! `GET pods/NAME/log`: serves the file the kubelet writes for each container
//! ([`crate::kubelet::logs::container_log_path`]), with `container`, `tailLines`,
//! `limitBytes`, `previous` (400: restarts append to one file) and `follow`, which streams
//! new bytes until the container has terminated or the client goes away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::Cluster;
use super::error::{ApiError, ApiResult};
use super::handlers::Request;
use super::http::{Response, stream_response};

fn container_names(pod: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
        {
            names.extend(
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from)),
            );
        }
    }
    names
}

fn terminated(pod: &Value, container: &str) -> bool {
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

pub async fn serve(
    cluster: &Arc<Cluster>,
    req: &Request,
    ns: &str,
    name: &str,
) -> ApiResult<Response> {
    let pod = cluster
        .store
        .get("pods", ns, name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let names = container_names(&pod);
    let container = match req.q("container") {
        Some(c) => {
            if !names.iter().any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_string()
        }
        None => {
            let main: Vec<String> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            match main.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        main.join(" ")
                    )));
                }
            }
        }
    };
    if matches!(req.q("previous"), Some("true")) {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let path: PathBuf =
        crate::kubelet::logs::container_log_path(&cluster.state_dir, ns, name, &container);
    let tail_lines: Option<usize> = req.q("tailLines").and_then(|t| t.parse().ok());
    let limit: Option<usize> = req.q("limitBytes").and_then(|t| t.parse().ok());
    let follow = matches!(req.q("follow"), Some("true" | "1"));
    let content = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            if !follow {
                if phase == "Pending" {
                    return Err(ApiError::bad_request(format!(
                        "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                    )));
                }
                Vec::new()
            } else {
                Vec::new()
            }
        }
        Err(e) => return Err(ApiError::internal(format!("reading log: {e}"))),
    };
    let mut first: Vec<u8> = match tail_lines {
        Some(n) => tail(&content, n).to_vec(),
        None => content.clone(),
    };
    if let Some(l) = limit {
        first.truncate(l);
    }
    if !follow {
        let mut r = hyper::Response::new(super::http::full(first));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        return Ok(r);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let cluster = cluster.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let mut offset = content.len() as u64;
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            // Check termination before reading so the final bytes are not missed.
            let done = match cluster.store.get("pods", &ns, &name) {
                Some(p) => terminated(&p, &container),
                None => true,
            };
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
            if done {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = tx.closed() => return,
                () = cluster.shutdown.cancelled() => return,
            }
        }
    });
    Ok(stream_response("text/plain", rx))
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tail_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\n", 5), b"a\n");
    }
}
