//! Shared helpers: start a KubeSim without kubelet, make namespaces, raw HTTP requests.

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::{Value, json};

pub async fn sim() -> (KubeSim, Client) {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        ..Default::default()
    })
    .await
    .expect("start kubesim");
    let client = sim.client().await.expect("client");
    (sim, client)
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Sends a raw request; returns the status code and the body parsed as JSON (or a string).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    raw_with(client, method, path, content_type, None, body).await
}

pub async fn raw_with(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    let req = b
        .body(kube::client::Body::from(
            body.unwrap_or("").as_bytes().to_vec(),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (code, v)
}

/// The API error of a failed kube call.
pub fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
