//! Whether the QuarksJob CRD the API server serves can hold what the operator writes.
//!
//! A cluster upgraded from the Go operator may still serve that operator's CRD (Helm never
//! upgrades `crds/`, and the Go operator created its CRD outside Helm): its status schema has
//! only `lastReconcile` and `completed`, so the API server prunes every other status field the
//! operator writes. The operator would then never see its own run records (`runCount` stays 0,
//! the first run's Job is adopted again and again, succeeded Jobs are never deleted). So at
//! start the served CRD is compared with ours, and the operator refuses to act (log line,
//! `/readyz` failing) while it would lose fields.
//!
//! Pure: the caller reads the served CRD.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// Why the served CRD `served` cannot hold what `ours` describes, one line per problem; empty
/// when it can (it may know more than ours: only what ours has must be kept).
pub fn problems(ours: &CustomResourceDefinition, served: &CustomResourceDefinition) -> Vec<String> {
    let mut problems = Vec::new();
    // `spec.preserveUnknownFields: true`: a legacy (v1beta1-era) CRD that prunes nothing.
    let prunes = served.spec.preserve_unknown_fields != Some(true);
    for version in &ours.spec.versions {
        let name = &version.name;
        let Some(served_version) = served
            .spec
            .versions
            .iter()
            .find(|v| &v.name == name && v.served)
        else {
            problems.push(format!("version {name} is not served"));
            continue;
        };
        let wants_status = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        let has_status = served_version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        if wants_status && !has_status {
            problems.push(format!(
                "version {name} has no status subresource (status writes would fail)"
            ));
        }
        if !prunes {
            continue;
        }
        let schema = |v: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion| {
            v.schema.as_ref().and_then(|s| s.open_api_v3_schema.clone())
        };
        let (Some(our_schema), served_schema) = (schema(version), schema(served_version)) else {
            continue;
        };
        let mut pruned = Vec::new();
        match served_schema {
            Some(served_schema) => pruned_paths(&our_schema, &served_schema, "", &mut pruned),
            None => pruned.push("spec, status (no schema)".to_owned()),
        }
        if !pruned.is_empty() {
            problems.push(format!("version {name} would prune {}", pruned.join(", ")));
        }
    }
    problems
}

/// Appends the paths of fields `ours` describes that `served` would prune.
fn pruned_paths(ours: &JSONSchemaProps, served: &JSONSchemaProps, at: &str, out: &mut Vec<String>) {
    if served.x_kubernetes_preserve_unknown_fields == Some(true) {
        return;
    }
    let join = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    for (name, child) in ours.properties.iter().flatten() {
        match served.properties.as_ref().and_then(|p| p.get(name)) {
            Some(served_child) => pruned_paths(child, served_child, &join(name), out),
            None => out.push(join(name)),
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &ours.items {
        match &served.items {
            Some(JSONSchemaPropsOrArray::Schema(served_item)) => {
                pruned_paths(item, served_item, &format!("{at}[]"), out)
            }
            _ if item.properties.is_some() => out.push(format!("{at}[]")),
            _ => {}
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &ours.additional_properties {
        match &served.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(served_value)) => {
                pruned_paths(value, served_value, &format!("{at}.*"), out)
            }
            Some(JSONSchemaPropsOrBool::Bool(true)) => {}
            _ => out.push(format!("{at}.*")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Go operator's CRD as a v1 CRD (what a cluster that ran it serves), from the test
    /// fixture written after its Go definition.
    fn original() -> CustomResourceDefinition {
        serde_yaml::from_str(include_str!("../../tests/cluster/original-crd.yaml")).unwrap()
    }

    #[test]
    fn our_crd_can_hold_everything_we_write() {
        let ours = crate::crd::crd();
        assert_eq!(problems(&ours, &ours), Vec::<String>::new());
    }

    #[test]
    fn the_original_crd_would_prune_our_status_fields() {
        let found = problems(&crate::crd::crd(), &original());
        assert_eq!(found.len(), 1, "{found:?}");
        for field in [
            "status.runCount",
            "status.lastJobName",
            "status.configDigest",
            "status.outputs",
            "status.conditions",
        ] {
            assert!(found[0].contains(field), "{field}: {found:?}");
        }
        // Its spec keeps everything (template and output maps preserve unknown fields).
        assert!(!found[0].contains("spec."), "{found:?}");
    }

    #[test]
    fn a_status_that_preserves_unknown_fields_or_a_legacy_crd_prunes_nothing() {
        let mut crd = original();
        let schema = crd.spec.versions[0]
            .schema
            .as_mut()
            .unwrap()
            .open_api_v3_schema
            .as_mut()
            .unwrap();
        let status = schema
            .properties
            .as_mut()
            .unwrap()
            .get_mut("status")
            .unwrap();
        status.x_kubernetes_preserve_unknown_fields = Some(true);
        assert_eq!(problems(&crate::crd::crd(), &crd), Vec::<String>::new());

        let mut legacy = original();
        legacy.spec.preserve_unknown_fields = Some(true);
        assert_eq!(problems(&crate::crd::crd(), &legacy), Vec::<String>::new());
    }

    #[test]
    fn no_status_subresource_or_no_served_version_is_a_problem() {
        let mut crd = original();
        crd.spec.versions[0].subresources = None;
        let found = problems(&crate::crd::crd(), &crd);
        assert!(
            found.iter().any(|p| p.contains("no status subresource")),
            "{found:?}"
        );
        crd.spec.versions[0].served = false;
        assert_eq!(
            problems(&crate::crd::crd(), &crd),
            ["version v1alpha1 is not served"]
        );
    }
}
