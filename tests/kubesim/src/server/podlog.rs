//! `GET pods/NAME/log`: picks the container (`container`, or the pod's only one) and serves
//! the file the kubelet writes for it through [`crate::kubelet::logs`] (`tailLines`,
//! `limitBytes`, `previous` (400: restarts append to one file) and `follow`, which streams
//! new bytes until the container has terminated or the client goes away).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::Cluster;
use super::error::{ApiError, ApiResult};
use super::handlers::Request;
use super::http::{Response, stream_response};
use crate::kubelet::logs::{self, LogQuery};

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
    let path: PathBuf = logs::container_log_path(&cluster.state_dir, ns, name, &container);
    let query = LogQuery::parse(|k| req.q(k));
    let start = logs::open(&path, &query, &pod, &container)
        .await
        .map_err(|e| {
            if e.is_bad_request() {
                ApiError::bad_request(e.to_string())
            } else {
                ApiError::internal(e.to_string())
            }
        })?;
    if !query.follow {
        let mut r = hyper::Response::new(super::http::full(start.first));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        return Ok(r);
    }
    let store_cluster = cluster.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let done = move || {
        let terminated = match store_cluster.store.get("pods", &ns, &name) {
            Some(p) => logs::container_terminated(&p, &container),
            None => true,
        };
        std::future::ready(terminated)
    };
    let rx = logs::follow(path, start, done, cluster.shutdown.clone());
    Ok(stream_response("text/plain", rx))
}
