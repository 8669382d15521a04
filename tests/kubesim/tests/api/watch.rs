//! watch: replay from a resourceVersion, 410 Gone, bookmarks, selector transitions,
//! kube-runtime's watcher (initial list, re-list after 410, closed watches), timeouts.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

use super::common::{Cluster, raw, sim};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("cm")
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn watch_replays_from_resource_version() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    // Only this test's objects: the real namespace controller adds kube-root-ca.crt.
    let list = api
        .list(&ListParams::default().labels("set=ours"))
        .await
        .expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    api.create(&PostParams::default(), &cm("a", json!({"set": "ours"})))
        .await
        .expect("a");
    api.delete("a", &Default::default()).await.expect("delete");
    let mut stream = api
        .watch(&WatchParams::default().labels("set=ours").timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut types = Vec::new();
    while types.len() < 2 {
        match tokio::time::timeout(T, stream.try_next())
            .await
            .expect("event in time")
            .expect("ok")
        {
            Some(WatchEvent::Added(c)) => types.push(("ADDED", c.metadata.name)),
            Some(WatchEvent::Deleted(c)) => types.push(("DELETED", c.metadata.name)),
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert_eq!(
        types,
        vec![
            ("ADDED", Some("a".to_string())),
            ("DELETED", Some("a".to_string()))
        ]
    );
    c.stop().await;
}

#[tokio::test]
async fn kubesim_only_compacted_history_gives_410() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let old = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.create(&PostParams::default(), &cm("x", json!({})))
        .await
        .expect("x");
    sim.faults().compact_history();
    let mut stream = api
        .watch(&WatchParams::default(), &old)
        .await
        .expect("watch")
        .boxed();
    match tokio::time::timeout(T, stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
    {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410 ERROR event, got {other:?}"),
    }
    let (code, body) = raw(
        &client,
        "GET",
        &format!(
            "/api/v1/namespaces/default/configmaps?resourceVersion={old}&resourceVersionMatch=Exact"
        ),
        None,
        None,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (410, Some("Expired")));
    sim.stop().await;
}

#[tokio::test]
async fn bookmarks_when_asked() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    // Selects nothing, so that the first event is a bookmark (the real namespace controller
    // adds kube-root-ca.crt meanwhile). A real server sends one 2 s before the timeout.
    let rv = api
        .list(&ListParams::default().labels("set=ours"))
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .labels("set=ours")
            .timeout(10),
            &rv,
        )
        .await
        .expect("watch")
        .boxed();
    // A change in another namespace: the bookmark moves past it all the same (a watch of a
    // quiet namespace resumes from a current version, not one compacted away meanwhile).
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let name = format!("bookmark-{}", c.ns);
    let unselected = elsewhere
        .create(&PostParams::default(), &cm(&name, json!({"set": "ours"})))
        .await
        .expect("create")
        .metadata
        .resource_version
        .expect("rv");
    match tokio::time::timeout(T, stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
    {
        Some(WatchEvent::Bookmark(b)) => {
            let at = b.metadata.resource_version.parse::<u64>().expect("rv");
            assert!(at >= rv.parse::<u64>().expect("rv"));
            assert!(
                at >= unselected.parse::<u64>().expect("rv"),
                "bookmark at {at}, before the unselected change at {unselected}"
            );
        }
        other => panic!("expected bookmark, got {other:?}"),
    }
    elsewhere
        .delete(&name, &Default::default())
        .await
        .expect("delete");
    c.stop().await;
}

#[tokio::test]
async fn selector_watch_sees_objects_enter_and_leave() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    api.create(&PostParams::default(), &cm("s", json!({"app": "no"})))
        .await
        .expect("create");
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().labels("app=yes").timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    for v in ["yes", "no"] {
        let p = json!({"metadata": {"labels": {"app": v}}});
        api.patch("s", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .expect("patch");
    }
    let first = tokio::time::timeout(T, stream.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(
        matches!(first, Some(WatchEvent::Added(_))),
        "entering the selection is ADDED: {first:?}"
    );
    let second = tokio::time::timeout(T, stream.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(
        matches!(second, Some(WatchEvent::Deleted(_))),
        "leaving it is DELETED: {second:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn kubesim_only_runtime_watcher_lists_then_follows_and_survives_closed_watches_and_410() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("pre", json!({})))
        .await
        .expect("pre");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let init = initial_names(&mut events).await;
    assert_eq!(init, ["pre"]);
    api.create(&PostParams::default(), &cm("live", json!({})))
        .await
        .expect("live");
    match tokio::time::timeout(T, events.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open")
    {
        watcher::Event::Apply(c) => assert_eq!(c.metadata.name.as_deref(), Some("live")),
        other => panic!("unexpected {other:?}"),
    }
    // Dropped watches: the watcher re-watches from its last version and sees new changes.
    sim.faults().close_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &cm("after-close", json!({})))
        .await
        .expect("after");
    let mut seen = false;
    while !seen {
        if let watcher::Event::Apply(c) = tokio::time::timeout(T, events.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open")
        {
            seen = c.metadata.name.as_deref() == Some("after-close");
        }
    }
    // History compacted while disconnected: 410, then a fresh list that includes everything.
    sim.faults().compact_history();
    sim.faults().close_watches();
    let mut relisted = Vec::new();
    loop {
        match tokio::time::timeout(T, events.try_next())
            .await
            .expect("in time")
        {
            Ok(Some(watcher::Event::InitApply(c))) => relisted.push(c.metadata.name.expect("name")),
            Ok(Some(watcher::Event::InitDone)) => break,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("watcher ended"),
        }
    }
    relisted.sort();
    assert_eq!(relisted, ["after-close", "live", "pre"]);
    sim.stop().await;
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::all(client.clone());
    let started = std::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watch")
        .boxed();
    while tokio::time::timeout(T, stream.try_next())
        .await
        .expect("ends in time")
        .expect("ok")
        .is_some()
    {}
    assert!(started.elapsed() >= Duration::from_millis(900));
    c.stop().await;
}

/// `sendInitialEvents` is newer than Kubernetes 1.24.
#[tokio::test]
async fn kubesim_only_send_initial_events_ends_with_a_marked_bookmark_and_watches_all_namespaces() {
    let (sim, client) = sim().await;
    super::common::namespace(&client, "w1").await;
    for ns in ["default", "w1"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &cm("i", json!({})))
            .await
            .expect("create");
    }
    let (code, body) = raw(&client, "GET", "/api/v1/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1", None, None).await;
    assert_eq!(code, 200);
    let text = body
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| body.to_string());
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line"))
        .collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| e["object"]["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(added, ["default", "w1"]);
    let marker = events
        .iter()
        .position(|e| {
            e["type"] == "BOOKMARK"
                && e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
        })
        .expect("initial-events-end bookmark");
    assert_eq!(marker, 2, "the marker follows the initial events");
    sim.stop().await;
}

/// kube-runtime's watcher with `config`: the initial objects, then a live change.
async fn watcher_lists_then_follows(c: Cluster, config: watcher::Config) {
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), &c.ns);
    api.create(&PostParams::default(), &cm("s1", json!({"set": "ours"})))
        .await
        .expect("s1");
    // Only this test's objects: real namespaces also hold kube-root-ca.crt.
    let mut events = watcher(api.clone(), config.labels("set=ours")).boxed();
    let init = initial_names(&mut events).await;
    assert_eq!(init, ["s1"]);
    api.create(&PostParams::default(), &cm("s2", json!({"set": "ours"})))
        .await
        .expect("s2");
    match tokio::time::timeout(T, events.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open")
    {
        watcher::Event::Apply(c) => assert_eq!(c.metadata.name.as_deref(), Some("s2")),
        other => panic!("unexpected {other:?}"),
    }
    c.stop().await;
}

#[tokio::test]
async fn runtime_watcher_lists_then_follows() {
    watcher_lists_then_follows(Cluster::start().await, watcher::Config::default()).await;
}

/// Streaming lists (`sendInitialEvents`) are newer than Kubernetes 1.24.
#[tokio::test]
async fn kubesim_only_runtime_watcher_with_streaming_lists() {
    watcher_lists_then_follows(
        Cluster::kubesim().await,
        watcher::Config::default().streaming_lists(),
    )
    .await;
}

/// The names a watcher's initial list delivers, up to its `InitDone`.
async fn initial_names(
    events: &mut futures::stream::BoxStream<'_, watcher::Result<watcher::Event<ConfigMap>>>,
) -> Vec<String> {
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(T, events.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open")
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(c) => init.push(c.metadata.name.expect("name")),
            watcher::Event::InitDone => return init,
            other => panic!("unexpected {other:?}"),
        }
    }
}
