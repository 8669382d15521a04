//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/G`, and the group-version
//! resource lists (with subresources, short names and categories), built from the
//! [`super::resources::Registry`] so CRD groups appear as soon as they are established.
//! Aggregated discovery (apidiscovery.k8s.io/v2, one document for `/api` and one for
//! `/apis`) is served to clients that ask for it, as kubectl does.

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::{Registry, ResourceInfo};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let groups = reg.groups();
    let (_, vs) = groups.iter().find(|(g, _)| g == name)?;
    let mut g = group_json(name, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// The resources of one group-version, `None` if it is not served (a 404 for discovery).
fn served_in(reg: &Registry, group: &str, version: &str) -> Option<Vec<Arc<ResourceInfo>>> {
    let infos: Vec<_> = reg
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    (!infos.is_empty()).then_some(infos)
}

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let infos = served_in(reg, group, version)?;
    let mut resources = Vec::new();
    for r in &infos {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for sub in &r.subresources {
            let (kind, verbs): (&str, Vec<&str>) = match sub.as_str() {
                "log" => ("Pod", vec!["get"]),
                "binding" => ("Binding", vec!["create"]),
                "token" => ("TokenRequest", vec!["create"]),
                "finalize" => ("Namespace", vec!["update"]),
                "scale" => ("Scale", vec!["get", "patch", "update"]),
                _ => (r.kind.as_str(), vec!["get", "patch", "update"]),
            };
            let mut se = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if sub == "scale" {
                se["group"] = json!("autoscaling");
                se["version"] = json!("v1");
            }
            if sub == "token" {
                se["group"] = json!("authentication.k8s.io");
                se["version"] = json!("v1");
            }
            resources.push(se);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/openapi/v3`: one entry per served group-version.
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for one group-version: just the PATCH operations with
/// their group-version-kind and the `fieldValidation` query parameter, which is what
/// kubectl inspects to decide on server-side field validation. No schemas: kubectl then
/// computes strategic merge patches from its compiled-in types, and `kubectl explain`
/// has nothing to show (a documented gap).
pub fn openapi_v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let infos = served_in(reg, group, version)?;
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    for r in infos {
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", r.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}}
                ],
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0-kubesim"}, "paths": paths, "components": {}}),
    )
}

/// The media type of aggregated discovery (apidiscovery.k8s.io/v2), which kubectl asks
/// for first.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Aggregated discovery for `/api` (`core`) or `/apis`: every group, version and
/// resource in one document.
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let mut items = Vec::new();
    for (g, vs) in reg.groups() {
        if g.is_empty() != core {
            continue;
        }
        let mut versions = Vec::new();
        for v in &vs {
            let mut resources = Vec::new();
            for r in reg
                .all()
                .into_iter()
                .filter(|r| r.group == g && &r.version == v)
            {
                let kind = |k: &str| json!({"group": r.group, "version": r.version, "kind": k});
                let subs: Vec<Value> = r
                    .subresources
                    .iter()
                    .map(|sub| {
                        let (k, verbs): (&str, Vec<&str>) = match sub.as_str() {
                            "log" => ("Pod", vec!["get"]),
                            "binding" => ("Binding", vec!["create"]),
                            "token" => ("TokenRequest", vec!["create"]),
                            _ => (r.kind.as_str(), vec!["get", "patch", "update"]),
                        };
                        json!({"subresource": sub, "responseKind": kind(k), "verbs": verbs})
                    })
                    .collect();
                let mut e = json!({
                    "resource": r.plural,
                    "responseKind": kind(&r.kind),
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.singular,
                    "verbs": r.verbs(),
                });
                if !r.short_names.is_empty() {
                    e["shortNames"] = json!(r.short_names);
                }
                if !r.categories.is_empty() {
                    e["categories"] = json!(r.categories);
                }
                if !subs.is_empty() {
                    e["subresources"] = json!(subs);
                }
                resources.push(e);
            }
            versions.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        items.push(
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}),
        );
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
