//! Adds the output transport to a run's pod: an `emptyDir` per served container (a container
//! named in `outputMap`), mounted at /mnt/quarks in that container and at
//! /mnt/quarks/<container> (read-only) in the helper container `quarks-persist-output`, which
//! runs `quarks-job persist-output` from the operator's own image. Containers not in
//! `outputMap` get nothing and are never waited for.
//!
//! The pod keeps the template's `serviceAccountName` and `automountServiceAccountToken` as the
//! user wrote them: the user's containers hold no credential of the helper. The helper alone
//! mounts the run's hand-over Secret ([`super::handover`]) at [`HANDOVER_DIR`]; a kubelet
//! mounts a volume only into the containers that name it, so no other container of the pod
//! can read it.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, LocalObjectReference,
    ObjectFieldSelector, PodSpec, SecretVolumeSource, Volume, VolumeMount,
};

use super::OUTPUT_DIR;
use crate::crd::Output;

/// Name of the helper container added to pods with output.
pub const HELPER_CONTAINER: &str = "quarks-persist-output";
/// The helper's ServiceAccount: the hand-over token is one of its tokens (the pod runs as the
/// template's account).
pub const HELPER_SERVICE_ACCOUNT: &str = "quarks-job-persist-output";
/// The helper's ClusterRole when `--persist-output-cluster-role` names none.
pub const DEFAULT_HELPER_CLUSTER_ROLE: &str = "quarks-job-persist-output";
/// Where the helper container, and only it, mounts the run's hand-over Secret.
pub const HANDOVER_DIR: &str = "/var/run/secrets/quarks-job/handover";
/// The pod volume of the hand-over Secret.
pub const HANDOVER_VOLUME: &str = "quarks-handover";

/// How to run the helper.
#[derive(Clone, Debug, Default)]
pub struct HelperSpec {
    /// The operator's image (the helper is the same binary).
    pub image: String,
    /// Give up waiting for the containers after this long (the pod must never hang).
    pub deadline_seconds: u64,
    /// The helper container's `imagePullPolicy`; `None`: the cluster's default.
    pub image_pull_policy: Option<String>,
    /// Pull secrets (names in the Job's namespace) for the helper's image, added to the pod's.
    pub image_pull_secrets: Vec<String>,
}

/// Containers of the pod that have output files mapped, in pod order.
pub fn served_containers<'a>(pod: &'a PodSpec, output: &Output) -> Vec<&'a str> {
    pod.containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| output.output_map.contains_key(*name))
        .collect()
}

/// Mutates the pod spec of a run so that its output reaches the operator.
pub fn add_output_transport(
    pod: &mut PodSpec,
    qjob_name: &str,
    output: &Output,
    helper: &HelperSpec,
) {
    let served: Vec<String> = served_containers(pod, output)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if served.is_empty() {
        return;
    }
    let mut helper_mounts = add_output_volumes(pod, &served);
    helper_mounts.push(add_handover_volume(pod));
    let args = helper_args(qjob_name, output, helper, &served);
    let mut container = helper_container(&helper.image, args, helper_mounts);
    container.image_pull_policy = helper.image_pull_policy.clone();
    pod.containers.push(container);
    let pull_secrets = pod.image_pull_secrets.get_or_insert_with(Vec::new);
    for name in &helper.image_pull_secrets {
        if !pull_secrets.iter().any(|s| &s.name == name) {
            pull_secrets.push(LocalObjectReference { name: name.clone() });
        }
    }
}

/// The hand-over volume, its Secret named at creation ([`set_handover_secret`]); returns the
/// helper's mount of it.
fn add_handover_volume(pod: &mut PodSpec) -> VolumeMount {
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: HANDOVER_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: None,
            // Readable by the helper's user only.
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    });
    VolumeMount {
        name: HANDOVER_VOLUME.to_owned(),
        mount_path: HANDOVER_DIR.to_owned(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// Whether the pod has the output transport (and so needs a hand-over Secret).
pub fn has_output_transport(pod: &PodSpec) -> bool {
    handover_volume(pod).is_some()
}

/// Names the hand-over Secret of the run in its pod.
pub fn set_handover_secret(pod: &mut PodSpec, secret_name: &str) {
    if let Some(source) = pod
        .volumes
        .iter_mut()
        .flatten()
        .find(|v| v.name == HANDOVER_VOLUME)
        .and_then(|v| v.secret.as_mut())
    {
        source.secret_name = Some(secret_name.to_owned());
    }
}

fn handover_volume(pod: &PodSpec) -> Option<&Volume> {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == HANDOVER_VOLUME)
}

/// One `emptyDir` per served container, mounted at /mnt/quarks in it; returns the helper's
/// read-only mounts of the same volumes at /mnt/quarks/<container>.
fn add_output_volumes(pod: &mut PodSpec, served: &[String]) -> Vec<VolumeMount> {
    let mut helper_mounts = Vec::new();
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    for (index, container_name) in served.iter().enumerate() {
        // Volume names must be DNS labels; container names may be up to 63 characters, so
        // index rather than embed them.
        let volume = format!("quarks-output-{index}");
        volumes.push(Volume {
            name: volume.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        if let Some(container) = pod
            .containers
            .iter_mut()
            .find(|c| &c.name == container_name)
        {
            container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: volume.clone(),
                    mount_path: OUTPUT_DIR.to_owned(),
                    ..Default::default()
                });
        }
        helper_mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{OUTPUT_DIR}/{container_name}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    helper_mounts
}

/// The helper's command line: the QuarksJob, its deadline, each served container and its
/// mapped files.
fn helper_args(
    qjob_name: &str,
    output: &Output,
    helper: &HelperSpec,
    served: &[String],
) -> Vec<String> {
    let mut args = vec![
        "persist-output".to_owned(),
        "--quarks-job".to_owned(),
        qjob_name.to_owned(),
        "--deadline-seconds".to_owned(),
        helper.deadline_seconds.to_string(),
        "--handover-dir".to_owned(),
        HANDOVER_DIR.to_owned(),
    ];
    for name in served {
        args.push("--container".to_owned());
        args.push(name.clone());
        for file in output
            .output_map
            .get(name)
            .into_iter()
            .flat_map(|files| files.keys())
        {
            args.push("--file".to_owned());
            args.push(format!("{name}:{file}"));
        }
    }
    args
}

/// The helper container: the operator's binary, told its pod's name and namespace through
/// the downward API.
fn helper_container(image: &str, args: Vec<String>, mounts: Vec<VolumeMount>) -> Container {
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Container {
        name: HELPER_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        command: Some(vec!["/usr/local/bin/quarks-job".to_owned()]),
        args: Some(args),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(field("metadata.name")),
                ..Default::default()
            },
            EnvVar {
                name: "POD_NAMESPACE".into(),
                value_from: Some(field("metadata.namespace")),
                ..Default::default()
            },
        ]),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(containers: &[&str]) -> Output {
        serde_json::from_value(serde_json::json!({
            "outputMap": containers.iter().map(|c| (c.to_string(), serde_json::json!({"output.json": {"name": "s"}}))).collect::<serde_json::Map<_, _>>()
        }))
        .unwrap()
    }

    fn pod() -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}, {"name": "c", "image": "busybox"}]
        }))
        .unwrap()
    }

    #[test]
    fn only_containers_in_the_output_map_are_served() {
        let mut p = pod();
        add_output_transport(
            &mut p,
            "q",
            &output(&["a", "c", "not-in-pod"]),
            &HelperSpec {
                image: "x/quarks-job:1".into(),
                deadline_seconds: 60,
                ..Default::default()
            },
        );
        let mounts = |name: &str| {
            p.containers
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .volume_mounts
                .clone()
                .unwrap_or_default()
        };
        assert_eq!(mounts("a")[0].mount_path, "/mnt/quarks");
        assert!(mounts("b").is_empty());
        let helper = p.containers.last().unwrap();
        assert_eq!(helper.name, HELPER_CONTAINER);
        let helper_paths: Vec<_> = helper
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            helper_paths,
            ["/mnt/quarks/a", "/mnt/quarks/c", HANDOVER_DIR]
        );
        // The hand-over credentials are the helper's alone.
        for user in ["a", "b", "c"] {
            assert!(
                mounts(user).iter().all(|m| m.name != HANDOVER_VOLUME),
                "{user}"
            );
        }

        let args = helper.args.as_ref().unwrap();
        assert!(
            args.windows(2).any(|w| w == ["--container", "a"])
                && args.windows(2).any(|w| w == ["--container", "c"])
        );
        // The pod runs as the template's account (here: the namespace's default).
        assert_eq!(p.service_account_name, None);
        assert!(has_output_transport(&p));
        set_handover_secret(&mut p, "q-1-handover-x");
        let secret = handover_volume(&p).unwrap().secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("q-1-handover-x"));
    }

    #[test]
    fn the_helpers_pull_policy_and_secrets_reach_its_container_and_pod() {
        let mut p = pod();
        p.image_pull_secrets = Some(vec![LocalObjectReference {
            name: "theirs".into(),
        }]);
        add_output_transport(
            &mut p,
            "q",
            &output(&["a"]),
            &HelperSpec {
                image: "i".into(),
                deadline_seconds: 1,
                image_pull_policy: Some("Always".into()),
                image_pull_secrets: vec!["theirs".into(), "ours".into()],
            },
        );
        let helper = p.containers.last().unwrap();
        assert_eq!(helper.image_pull_policy.as_deref(), Some("Always"));
        let names: Vec<_> = p
            .image_pull_secrets
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["theirs", "ours"]);
        // The user's containers keep theirs.
        assert_eq!(p.containers[0].image_pull_policy, None);
    }

    #[test]
    fn no_served_container_means_no_helper() {
        let mut p = pod();
        add_output_transport(
            &mut p,
            "q",
            &output(&["zzz"]),
            &HelperSpec {
                image: "i".into(),
                deadline_seconds: 1,
                ..Default::default()
            },
        );
        assert_eq!(p, pod());
    }

    #[test]
    fn a_service_account_of_the_template_is_kept() {
        let mut p = pod();
        p.service_account_name = Some("mine".into());
        add_output_transport(
            &mut p,
            "q",
            &output(&["a"]),
            &HelperSpec {
                image: "i".into(),
                deadline_seconds: 1,
                ..Default::default()
            },
        );
        assert_eq!(p.service_account_name.as_deref(), Some("mine"));
    }
}
