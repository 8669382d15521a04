//! The in-process controllers that real clusters run in kube-controller-manager and
//! kube-apiserver: the garbage collector (ownerReferences with background, foreground and
//! orphan propagation), the namespace controller (deleting a namespace's contents, then
//! the namespace), the service-account controller (a `default` ServiceAccount in every
//! new namespace), and dangling-owner cleanup. Event-driven from the store's change feed,
//! plus a periodic resync so nothing is missed if the feed lags.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::Cluster;
use super::objects::{DeleteOpts, WriteCtx, finalizers, meta_mut, str_at};
use super::resources::ResourceInfo;
use super::ssa::Part;
use super::store::{Change, EventType, ObjectRef};

const RESYNC: Duration = Duration::from_secs(2);

pub async fn run(cluster: Arc<Cluster>) {
    let mut rx = cluster.store.subscribe();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            () = cluster.shutdown.cancelled() => break,
            _ = tick.tick() => resync(&cluster),
            r = rx.recv() => match r {
                Ok(c) => on_change(&cluster, &c),
                Err(broadcast::error::RecvError::Lagged(_)) => resync(&cluster),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    str_at(v, p).unwrap_or("")
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn on_change(cluster: &Cluster, c: &Change) {
    match c.kind {
        EventType::Deleted => {
            let old = c.old.as_deref().unwrap_or(&c.object);
            let uid = s(old, "/metadata/uid");
            for dep in cluster.store.dependents_of(uid) {
                process_dependent(cluster, &dep);
            }
            for o in owner_refs(old) {
                if let Some((_, owner)) = cluster
                    .store
                    .by_uid(o.get("uid").and_then(Value::as_str).unwrap_or(""))
                {
                    process_terminating(cluster, &owner);
                }
            }
            if !c.namespace.is_empty()
                && let Some(ns) = cluster.store.get("namespaces", "", &c.namespace)
                && ns.pointer("/metadata/deletionTimestamp").is_some()
            {
                process_terminating(cluster, &ns);
            }
        }
        EventType::Added | EventType::Modified => {
            // The service-account controller: every new namespace gets `default`.
            if c.kind == EventType::Added && &*c.key == "namespaces" {
                cluster.ensure_default_service_account(&c.name);
            }
            if c.object.pointer("/metadata/deletionTimestamp").is_some() {
                process_terminating(cluster, &c.object);
            }
            if c.kind == EventType::Added && !owner_refs(&c.object).is_empty() {
                process_dependent(
                    cluster,
                    &(c.key.clone(), c.namespace.clone(), c.name.clone()),
                );
            }
        }
    }
}

fn resync(cluster: &Cluster) {
    for obj in cluster
        .store
        .scan(|o| o.pointer("/metadata/deletionTimestamp").is_some())
    {
        process_terminating(cluster, &obj);
    }
    for obj in cluster
        .store
        .scan(|o| o.pointer("/metadata/ownerReferences").is_some())
    {
        let Some(info) = cluster.info_for(&obj) else {
            continue;
        };
        let r: ObjectRef = (
            Arc::from(info.storage_key().as_str()),
            s(&obj, "/metadata/namespace").to_string(),
            s(&obj, "/metadata/name").to_string(),
        );
        process_dependent(cluster, &r);
    }
}

fn info_of(cluster: &Cluster, obj: &Value) -> Option<Arc<ResourceInfo>> {
    cluster.info_for(obj)
}

/// Whether an owner reference points at an existing object (same uid; namespaced owners
/// must live in the dependent's namespace, cluster-scoped ones anywhere).
fn owner_exists(cluster: &Cluster, owner: &Value, dep_ns: &str) -> bool {
    let uid = owner.get("uid").and_then(Value::as_str).unwrap_or("");
    match cluster.store.by_uid(uid) {
        Some(((_, ns, _), _)) => ns.is_empty() || ns == dep_ns,
        None => false,
    }
}

/// A dependent whose owners are all gone is deleted; dangling references are removed.
fn process_dependent(cluster: &Cluster, dep: &ObjectRef) {
    let Some(obj) = cluster.store.get(&dep.0, &dep.1, &dep.2) else {
        return;
    };
    let refs = owner_refs(&obj);
    if refs.is_empty() {
        return;
    }
    let alive: Vec<&Value> = refs
        .iter()
        .filter(|o| owner_exists(cluster, o, &dep.1))
        .collect();
    let Some(info) = info_of(cluster, &obj) else {
        return;
    };
    if alive.is_empty() {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            let opts = DeleteOpts {
                propagation: Some("Background".into()),
                precondition_uid: Some(s(&obj, "/metadata/uid").to_string()),
                ..Default::default()
            };
            if let Err(e) = cluster.delete(&info, &dep.1, &dep.2, &opts)
                && e.code != 404
                && e.code != 409
            {
                tracing::warn!(error = %e, name = %dep.2, "garbage collection");
            }
        }
    } else if alive.len() < refs.len() {
        let keep: Vec<String> = alive
            .iter()
            .filter_map(|o| o.get("uid").and_then(Value::as_str).map(String::from))
            .collect();
        remove_owner_refs(cluster, &info, &dep.1, &dep.2, |uid| {
            !keep.iter().any(|k| k == uid)
        });
    }
}

fn remove_owner_refs(
    cluster: &Cluster,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    drop: impl Fn(&str) -> bool,
) {
    let ctx = WriteCtx::system("generic-garbage-collector");
    let res = cluster.modify(info, ns, name, Part::All, &ctx, |cur| {
        let mut new = cur.clone();
        let refs: Vec<Value> = owner_refs(cur)
            .into_iter()
            .filter(|o| !drop(o.get("uid").and_then(Value::as_str).unwrap_or("")))
            .collect();
        let meta = meta_mut(&mut new);
        if refs.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), json!(refs));
        }
        Ok((new, true))
    });
    if let Err(e) = res
        && e.code != 404
    {
        tracing::warn!(error = %e, name, "removing owner references");
    }
}

/// Progress for an object being deleted: orphaning, foreground deletion, namespace cleanup.
fn process_terminating(cluster: &Cluster, obj: &Value) {
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        return;
    }
    let Some(info) = info_of(cluster, obj) else {
        return;
    };
    let uid = s(obj, "/metadata/uid").to_string();
    let ns = s(obj, "/metadata/namespace").to_string();
    let name = s(obj, "/metadata/name").to_string();
    let fins = finalizers(obj);
    if fins.iter().any(|f| f == "orphan") {
        for dep in cluster.store.dependents_of(&uid) {
            if let Some(dobj) = cluster.store.get(&dep.0, &dep.1, &dep.2)
                && let Some(dinfo) = info_of(cluster, &dobj)
            {
                remove_owner_refs(cluster, &dinfo, &dep.1, &dep.2, |u| u == uid);
            }
        }
        let _ = cluster.remove_finalizer(&info, &ns, &name, "orphan");
        return;
    }
    if fins.iter().any(|f| f == "foregroundDeletion") {
        let mut blocking = false;
        for dep in cluster.store.dependents_of(&uid) {
            let Some(dobj) = cluster.store.get(&dep.0, &dep.1, &dep.2) else {
                continue;
            };
            let Some(dinfo) = info_of(cluster, &dobj) else {
                continue;
            };
            if owner_refs(&dobj).iter().any(|o| {
                o.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                    && o.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
            }) {
                blocking = true;
            }
            if dobj.pointer("/metadata/deletionTimestamp").is_none() {
                let opts = DeleteOpts {
                    propagation: Some("Foreground".into()),
                    ..Default::default()
                };
                if let Err(e) = cluster.delete(&dinfo, &dep.1, &dep.2, &opts)
                    && e.code != 404
                {
                    tracing::warn!(error = %e, name = %dep.2, "foreground deletion of dependent");
                }
            }
        }
        if !blocking {
            let _ = cluster.remove_finalizer(&info, &ns, &name, "foregroundDeletion");
        }
        return;
    }
    if info.group.is_empty() && info.plural == "namespaces" {
        let pending = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !pending {
            return;
        }
        let contents = cluster.store.all_in_namespace(&name);
        for (key, ons, oname) in &contents {
            let Some(o) = cluster.store.get(key, ons, oname) else {
                continue;
            };
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let Some(oinfo) = info_of(cluster, &o) else {
                continue;
            };
            let opts = DeleteOpts {
                propagation: Some("Background".into()),
                ..Default::default()
            };
            if let Err(e) = cluster.delete(&oinfo, ons, oname, &opts)
                && e.code != 404
            {
                tracing::warn!(error = %e, name = %oname, "namespace cleanup");
            }
        }
        if cluster.store.all_in_namespace(&name).is_empty() {
            let ctx = WriteCtx::system("namespace-controller");
            let res = cluster.modify(&info, "", &name, Part::All, &ctx, |cur| {
                let mut new = cur.clone();
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("finalizers".into(), json!([]));
                }
                Ok((new, true))
            });
            if let Err(e) = res
                && e.code != 404
            {
                tracing::warn!(error = %e, namespace = %name, "finalizing namespace");
            }
        }
    }
}
