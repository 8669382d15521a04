//! RBAC authorization, enforced only when a test asks for it (access reviews and
//! `kubectl auth can-i` always answer from RBAC): service-account users get
//! exactly what their (Cluster)RoleBindings grant, evaluated like the Kubernetes RBAC
//! authorizer (apiGroups, resources incl. `resource/subresource`, verbs, resourceNames,
//! `*`); the admin identity is always allowed. Denials are 403 Status objects worded like
//! kube-apiserver's.

use serde_json::Value;

use super::Cluster;
use super::error::{ApiError, ApiResult, qualified};

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &str, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    let sa = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    match kind {
        "ServiceAccount" => {
            let sns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            sa.is_some_and(|(ns, n)| ns == sns && n == name)
        }
        "User" => name == user,
        "Group" => match name {
            "system:authenticated" => user != "system:anonymous",
            "system:unauthenticated" => user == "system:anonymous",
            "system:serviceaccounts" => sa.is_some(),
            g => sa.is_some_and(|(ns, _)| g.strip_prefix("system:serviceaccounts:") == Some(ns)),
        },
        _ => false,
    }
}

fn rule_allows(
    rule: &Value,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    name: &str,
) -> bool {
    let groups = strs(rule.get("apiGroups"));
    let resources = strs(rule.get("resources"));
    let verbs = strs(rule.get("verbs"));
    let names = strs(rule.get("resourceNames"));
    let full = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    let star_sub = if sub.is_empty() {
        String::new()
    } else {
        format!("*/{sub}")
    };
    verbs.iter().any(|v| *v == "*" || *v == verb)
        && groups.iter().any(|g| *g == "*" || *g == group)
        && resources
            .iter()
            .any(|r| *r == "*" || *r == full || (!sub.is_empty() && *r == star_sub))
        && (names.is_empty() || (!name.is_empty() && names.contains(&name)))
}

fn role_rules(cluster: &Cluster, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let role = match kind {
        "ClusterRole" => cluster
            .store
            .get("clusterroles.rbac.authorization.k8s.io", "", name),
        "Role" => cluster
            .store
            .get("roles.rbac.authorization.k8s.io", binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Allows or denies one request.
#[allow(clippy::too_many_arguments)]
pub fn authorize(
    cluster: &Cluster,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    ns: &str,
    name: &str,
) -> ApiResult<()> {
    if super::handlers::privileged(user) {
        return Ok(());
    }
    let allowed_by = |bindings: Vec<std::sync::Arc<Value>>, scope_ns: &str| {
        bindings.iter().any(|b| {
            let subjects = b
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            subjects.iter().any(|s| subject_matches(s, user, scope_ns))
                && b.get("roleRef").is_some_and(|rr| {
                    role_rules(cluster, rr, scope_ns)
                        .iter()
                        .any(|r| rule_allows(r, verb, group, resource, sub, name))
                })
        })
    };
    let (crbs, _) = cluster
        .store
        .list("clusterrolebindings.rbac.authorization.k8s.io", None, None);
    if allowed_by(crbs, "") {
        return Ok(());
    }
    if !ns.is_empty() {
        let (rbs, _) = cluster
            .store
            .list("rolebindings.rbac.authorization.k8s.io", Some(ns), None);
        if allowed_by(rbs, ns) {
            return Ok(());
        }
    }
    let full = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    let what = if name.is_empty() {
        qualified(group, resource)
    } else {
        format!("{} \"{name}\"", qualified(group, resource))
    };
    let scope = if ns.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{ns}\"")
    };
    let mut e = ApiError::forbidden(format!(
        "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{full}\" in API group \"{group}\" {scope}"
    ));
    e.details.group = (!group.is_empty()).then(|| group.to_string());
    e.details.kind = Some(resource.to_string());
    e.details.name = (!name.is_empty()).then(|| name.to_string());
    Err(e)
}

/// Answers a SubjectAccessReview / SelfSubjectAccessReview / LocalSubjectAccessReview.
pub fn review(
    cluster: &Cluster,
    kind: &str,
    requester: &str,
    url_ns: &str,
    mut body: Value,
) -> Value {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let user = if kind == "SelfSubjectAccessReview" {
        requester.to_string()
    } else {
        spec.get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let allowed = match spec.get("resourceAttributes") {
        Some(ra) => {
            let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let ns = if kind == "LocalSubjectAccessReview" {
                url_ns.to_string()
            } else {
                s("namespace")
            };
            authorize(
                cluster,
                &user,
                &s("verb"),
                &s("group"),
                &s("resource"),
                &s("subresource"),
                &ns,
                &s("name"),
            )
            .is_ok()
        }
        // Non-resource URLs (discovery, /version, /healthz) are open to everyone here.
        None => true,
    };
    body["apiVersion"] = serde_json::json!("authorization.k8s.io/v1");
    body["kind"] = serde_json::json!(kind);
    body["status"] = if allowed {
        serde_json::json!({"allowed": true, "reason": "kubesim RBAC"})
    } else {
        serde_json::json!({"allowed": false})
    };
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_and_subjects() {
        let rule =
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, "get", "", "pods", "log", "p"));
        assert!(!rule_allows(&rule, "delete", "", "pods", "", "p"));
        assert!(!rule_allows(&rule, "get", "batch", "pods", "", "p"));
        let named = json!({"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["*"], "resourceNames": ["a"]});
        assert!(rule_allows(&named, "update", "", "secrets", "", "a"));
        assert!(!rule_allows(&named, "list", "", "secrets", "", ""));
        let sa = json!({"kind": "ServiceAccount", "name": "op"});
        assert!(subject_matches(&sa, "system:serviceaccount:ns:op", "ns"));
        assert!(!subject_matches(
            &sa,
            "system:serviceaccount:other:op",
            "ns"
        ));
    }
}
