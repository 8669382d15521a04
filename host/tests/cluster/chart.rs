//! The Helm chart (charts/quarks-job), with real Helm: linted, rendered and validated against the
//! Kubernetes schemas; its CRD is the one the code generates; and what it renders, applied with
//! kubectl to kubesim (RBAC enforced) or to the real control plane (kube-apiserver's RBAC
//! authorizer, escalation checks included), runs the operator under the chart's own service
//! account through one-off QuarksJobs with output.
//!
//! Helm is helm-python-sdk in `target/chart-tools` (scripts/lib/setup.sh `ensure_chart_tools`,
//! run by scripts/test). Without it these tests fail: CI never skips them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kubesim::{KubeSimOptions, RequestRecord};
use quarks_job::crd::Strategy;
use serde::Deserialize as _;
use serde_json::Value;
use tokio::process::Command;

use crate::{
    Cluster, DEADLINE, OperatorProcess, QJob, http_get, jobs_in, kubectl, poll, run_ok, wait_for,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/quarks-job")
}

/// A values file with every key of the Go operator's chart at that chart's defaults.
fn original_values_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/original-chart-values.yaml")
}

/// The Go operator's chart's default monitored id (its full name) for a release: the release
/// namespace when it contains the chart name, else `<release>-quarks-job` (63 characters at most).
fn original_default_monitored_id(release: &str, namespace: &str) -> String {
    let id = if namespace.contains("quarks-job") {
        namespace.to_owned()
    } else {
        format!("{release}-quarks-job")
    };
    id.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// The chart tool (`scripts/lib/chart_tool.py`) run by the chart tools' Python; fails the test
/// when they are not installed.
fn chart_tool(args: &[&str]) -> std::process::Output {
    let python = repo_root().join("target/chart-tools/bin/python");
    assert!(
        python.exists(),
        "Helm is not installed: {} is missing; run `source scripts/lib/setup.sh && ensure_chart_tools` (scripts/test does)",
        python.display()
    );
    run_ok(
        std::process::Command::new(&python)
            .arg(repo_root().join("scripts/lib/chart_tool.py"))
            .args(args),
        &format!("chart_tool.py {args:?}"),
    )
}

#[test]
fn helm_lints_and_renders_the_chart_for_every_value_set_and_every_manifest_is_valid() {
    let output = chart_tool(&["check"]);
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    // The tool checked what it says it checked: 5 value sets (the last is a values file with
    // every key of the original chart), each linted and validated.
    assert_eq!(
        report.matches("ok    helm lint --strict").count(),
        5,
        "{report}"
    );
    assert_eq!(
        report
            .matches("valid against the Kubernetes schemas")
            .count(),
        5,
        "{report}"
    );
    assert!(
        report.contains("ok    what the original chart's values and credentials means"),
        "{report}"
    );
    assert!(
        report.contains("ok    the default monitored id follows the original chart's rule"),
        "{report}"
    );
    assert!(report.contains("lint for 1.24.0"), "{report}");
    assert!(report.contains(" passed, 0 failed"), "{report}");
}

#[test]
fn the_charts_crd_is_what_quarks_job_crd_prints() {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_quarks-job"))
        .arg("crd")
        .output()
        .expect("quarks-job crd");
    assert!(printed.status.success());
    let path = chart_dir().join("crds/quarksjobs.quarks.cloudfoundry.org.yaml");
    let in_chart = std::fs::read_to_string(&path).expect("the chart's CRD");
    assert!(
        in_chart == String::from_utf8_lossy(&printed.stdout),
        "{} differs from `quarks-job crd`; regenerate it: cargo run -p quarks-job -- crd > {}",
        path.display(),
        path.display()
    );
    // The output helper's default image is the operator's version; the chart must match it.
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// The operator's container in the rendered Deployment, and its pod's service account.
struct RenderedOperator {
    namespace: String,
    service_account: String,
    image: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// emptyDir mount paths of the container.
    empty_dirs: Vec<String>,
}

fn rendered_operator(docs: &[Value]) -> RenderedOperator {
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 1);
    let deployment = deployments[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container: the operator");
    let container = &containers[0];
    assert!(
        container["command"].is_null(),
        "the image's entrypoint is quarks-job"
    );
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    let empty_dirs = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            volumes
                .iter()
                .any(|v| v["name"] == m["name"] && v.get("emptyDir").is_some())
        })
        .map(|m| m["mountPath"].as_str().unwrap().to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {e} needs a resolver in this test"));
            (e["name"].as_str().unwrap().to_owned(), value.to_owned())
        })
        .collect();
    RenderedOperator {
        namespace: deployment["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned(),
        service_account: pod["serviceAccountName"].as_str().unwrap().to_owned(),
        image: container["image"].as_str().unwrap().to_owned(),
        args: container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        env,
        empty_dirs,
    }
}

/// The address the operator serves /healthz on, from its (JSON) start-up log line.
fn http_address(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("serving /healthz"))
        .find_map(|l| {
            let line: Value = serde_json::from_str(l).ok()?;
            line["fields"]["addr"].as_str().map(str::to_owned)
        })
}

async fn http_status(addr: &str, path: &str) -> u16 {
    http_get(addr, path).await.0
}

/// The operator's API requests by response code, from its `rest_client_requests_total`.
fn requests_by_code(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("rest_client_requests_total{"))
        .filter_map(|l| {
            let code = l.split("code=\"").nth(1)?.split('"').next()?.to_owned();
            let count = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((code, count))
        })
        .collect()
}

/// Whether a ClusterRole rule allows `record` (same matching as RBAC).
fn allows(rule: &Value, record: &RequestRecord) -> bool {
    let has = |key: &str, value: &str| {
        rule[key]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i == value || i == "*"))
    };
    let resource = if record.subresource.is_empty() {
        record.resource.clone()
    } else {
        format!("{}/{}", record.resource, record.subresource)
    };
    has("apiGroups", &record.group)
        && has("resources", &resource)
        && has("verbs", &record.verb)
        && (rule.get("resourceNames").is_none() || has("resourceNames", &record.name))
}

fn rule_text(rule: &Value) -> String {
    serde_json::to_string(rule).unwrap()
}

/// The chart rendered with `sets`, applied with kubectl to the test's cluster (a fresh
/// kubesim with RBAC enforced for service accounts, or the given cluster), and the operator
/// started as its Deployment runs it.
pub(crate) struct Deployed {
    pub(crate) cluster: Cluster,
    _work: tempfile::TempDir,
    kubeconfig: PathBuf,
    docs: Vec<Value>,
    /// The release's name and namespace.
    release: String,
    /// What `helm install --dry-run=server` on the test's cluster answered: the chart's
    /// `kubeVersion` (checked by Helm against the API server's version) and the release notes.
    install_check: Value,
    operator: RenderedOperator,
    /// The namespace the chart created for QuarksJobs (`global.singleNamespace.name`).
    pub(crate) staging: String,
    pub(crate) process: OperatorProcess,
    /// The operator's /healthz, /readyz and /metrics address.
    addr: String,
}

impl Deployed {
    async fn start(sets: &[&str]) -> Deployed {
        Deployed::start_with_values(&[], sets).await
    }

    /// Like `helm install -f <files>... --set <sets>...`.
    async fn start_with_values(files: &[&Path], sets: &[&str]) -> Deployed {
        // The chart creates cluster-wide objects (a namespace, a ClusterRole, the CRD). On
        // kubesim each test has its own; on a shared cluster the release, its namespace and the
        // created namespace are named after the test's own namespace, so tests do not collide.
        let cluster = Cluster::start_with(KubeSimOptions {
            enforce_rbac: true,
            ..Default::default()
        })
        .await;
        Deployed::install(cluster, files, sets, true).await
    }

    /// Installs the chart on `cluster` like `helm install -f <files>... --set <sets>...`;
    /// without `include_crds` as Helm does where the CRD exists already (it skips `crds/`).
    pub(crate) async fn install(
        cluster: Cluster,
        files: &[&Path],
        sets: &[&str],
        include_crds: bool,
    ) -> Deployed {
        let (release, release_namespace, staging) = match cluster.sim {
            Some(_) => (
                "quarks-job".to_owned(),
                "quarks-job".to_owned(),
                "staging".to_owned(),
            ),
            None => (
                format!("qj-{}", cluster.namespace),
                format!("{}-operator", cluster.namespace),
                format!("{}-staging", cluster.namespace),
            ),
        };
        let work = tempfile::tempdir().unwrap();

        // `helm template` (CRDs included, in Helm's install order).
        let single_namespace = format!("global.singleNamespace.name={staging}");
        // The helper's ClusterRole is cluster-wide: on a shared cluster each install has its own
        // (two `kubectl apply` creating one object at once would collide).
        let helper_role = format!("persistOutputClusterRole.name={release}-persist-output");
        let mut values: Vec<&str> = Vec::new();
        for file in files {
            values.extend(["--values", file.to_str().unwrap()]);
        }
        values.extend(["--set", &single_namespace]);
        if cluster.sim.is_none() {
            values.extend(["--set", &helper_role]);
        }
        for set in sets {
            values.extend(["--set", set]);
        }
        let mut args = vec!["render"];
        if include_crds {
            args.push("--include-crds");
        }
        args.extend(["--release", &release, "--namespace", &release_namespace]);
        args.extend(&values);
        let rendered = chart_tool(&args);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_slice(&rendered.stdout)
            .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
            .collect();
        // The test runs the Deployment's operator itself (a process with the Deployment's
        // arguments and ServiceAccount), so the Deployment is applied with 0 replicas: where the
        // node runs pods (the real control plane's kubesim node runs the operator's image), its
        // own pods would otherwise compete for the Lease.
        let applied: Vec<String> = docs
            .iter()
            .filter(|doc| !doc.is_null())
            .map(|doc| {
                let mut doc = doc.clone();
                if doc["kind"] == "Deployment" {
                    doc["spec"]["replicas"] = 0.into();
                }
                serde_yaml::to_string(&doc).unwrap()
            })
            .collect();
        let manifests = work.path().join("quarks-job.yaml");
        std::fs::write(&manifests, applied.join("---\n")).unwrap();
        let operator = rendered_operator(&docs);

        // `helm install --create-namespace`, with kubectl: the release namespace, then all.
        let kubeconfig = cluster.kubeconfig.clone();
        kubectl(&kubeconfig, &["create", "namespace", &operator.namespace]);
        // First Helm itself, on this cluster: `helm install --dry-run=server` reads the API
        // server's version (kube-apiserver 1.24 on the real control plane) and refuses a chart
        // whose kubeVersion excludes it.
        let mut check_args = vec![
            "install-check",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--release",
            &release,
            "--namespace",
            &release_namespace,
        ];
        check_args.extend(&values);
        let install_check: Value = serde_json::from_slice(&chart_tool(&check_args).stdout)
            .expect("install-check prints JSON");
        let server = cluster.client.apiserver_version().await.unwrap();
        println!(
            "helm install --dry-run=server accepted kubeVersion {} on Kubernetes {}",
            install_check["kubeVersion"], server.git_version
        );
        kubectl(&kubeconfig, &["apply", "-f", manifests.to_str().unwrap()]);

        // The operator as the Deployment runs it: its image's binary, its args and env, as its
        // service account. Two translations for a process on this host: it listens on a free
        // loopback port instead of 0.0.0.0:8080 (tests run in parallel), and its emptyDir
        // mounts are directories of this test.
        assert!(
            operator
                .image
                .ends_with(&format!(":{}", env!("CARGO_PKG_VERSION")))
        );
        // What its pod would present in-cluster: a token of its service account.
        let sa_kubeconfig = cluster
            .service_account_kubeconfig(work.path(), &operator.namespace, &operator.service_account)
            .await;
        let args: Vec<String> = operator
            .args
            .iter()
            .map(|arg| {
                if arg.starts_with("--listen=") {
                    return "--listen=127.0.0.1:0".to_owned();
                }
                let mut arg = arg.clone();
                for (i, dir) in operator.empty_dirs.iter().enumerate() {
                    let local = work.path().join(format!("empty-dir-{i}"));
                    std::fs::create_dir_all(&local).unwrap();
                    arg = arg.replace(dir.as_str(), local.to_str().unwrap());
                }
                arg
            })
            .collect();
        assert!(
            args.iter().any(|a| a.starts_with("--policy-cache-dir=")
                && a.contains(work.path().to_str().unwrap())),
            "{args:?}"
        );
        let process = OperatorProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_quarks-job"))
                .args(&args)
                .env_clear()
                .envs(operator.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("KUBECONFIG", &sa_kubeconfig),
        );

        // The probes the Deployment declares answer: /healthz, then /readyz once caches synced.
        let addr = poll(DEADLINE, || async { http_address(&process.log()) })
            .await
            .unwrap_or_else(|| panic!("the operator serves no /healthz; log:\n{}", process.log()));
        let deployed = Deployed {
            cluster,
            _work: work,
            kubeconfig,
            docs,
            release,
            install_check,
            operator,
            staging,
            process,
            addr,
        };
        let ready = poll(DEADLINE, || async {
            (deployed.log().contains("caches synced")
                && http_status(&deployed.addr, "/readyz").await == 200)
                .then_some(())
        })
        .await;
        if ready.is_none() {
            panic!(
                "the operator did not become ready; refused: {:?}\nlog:\n{}",
                deployed.refused().await,
                deployed.log()
            );
        }
        assert_eq!(http_status(&deployed.addr, "/healthz").await, 200);
        assert!(
            deployed.log().contains("Starting quarks-job"),
            "{}",
            deployed.log()
        );
        deployed
    }

    pub(crate) fn log(&self) -> String {
        self.process.log()
    }

    fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.operator.namespace, self.operator.service_account
        )
    }

    /// The operator's refused requests so far, from its own request counter (any cluster):
    /// (code, count) for every 401 and 403.
    async fn refused(&self) -> Vec<(String, u64)> {
        let (_, metrics) = http_get(&self.addr, "/metrics").await;
        requests_by_code(&metrics)
            .into_iter()
            .filter(|(code, _)| code == "401" || code == "403")
            .collect()
    }

    /// Proves, while the operator still runs, that it made requests and none was refused.
    pub(crate) async fn assert_none_refused(&self) {
        let (_, metrics) = http_get(&self.addr, "/metrics").await;
        let by_code = requests_by_code(&metrics);
        let total: u64 = by_code.iter().map(|(_, n)| n).sum();
        assert!(total > 5, "the operator counts its requests: {by_code:?}");
        let refused = self.refused().await;
        assert!(
            refused.is_empty(),
            "the chart's RBAC refused the operator: {refused:?}\n{}",
            self.log()
        );
    }

    /// kubesim's record of the operator's requests (the real API server keeps none): checked
    /// against the ClusterRole rule by rule.
    fn recorded_requests(&self) -> Option<Vec<RequestRecord>> {
        let user = self.user();
        let sim = self.cluster.sim.as_ref()?;
        let requests: Vec<RequestRecord> = sim
            .request_log()
            .into_iter()
            .filter(|r| r.user == user)
            .collect();
        assert!(
            requests.len() > 5,
            "the operator's requests are its service account's: {requests:?}"
        );
        let refused: Vec<&RequestRecord> = requests
            .iter()
            .filter(|r| r.code == 401 || r.code == 403)
            .collect();
        assert!(
            refused.is_empty(),
            "the chart's RBAC refused the operator: {refused:?}\n{}",
            self.log()
        );
        Some(requests)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_and_apply_crd_the_operator_leads_and_applies_the_crd_under_the_charts_rbac()
 {
    let d = Deployed::start(&["replicas=2", "applyCRD=true"]).await;
    let args = &d.operator.args;
    assert!(args.iter().any(|a| a == "--leader-election"), "{args:?}");
    assert!(args.iter().any(|a| a == "--apply-crd=true"), "{args:?}");
    let log = d.log();
    assert!(log.contains("became leader"), "{log}");
    assert!(log.contains("CRD applied and established"), "{log}");
    d.assert_none_refused().await;
    if let Some(requests) = d.recorded_requests() {
        let succeeded = |verb: &str, resource: &str| {
            requests
                .iter()
                .any(|r| r.verb == verb && r.resource == resource && r.code < 300)
        };
        assert!(succeeded("create", "leases"), "{requests:?}");
        assert!(
            succeeded("patch", "customresourcedefinitions"),
            "{requests:?}"
        );
        // Waiting until established, and the served-CRD check, read the CRD by name.
        assert!(
            succeeded("get", "customresourcedefinitions"),
            "{requests:?}"
        );
    }
    // The Lease is the one the leader-election Role names.
    let lease_name = format!("quarks-job-{}", d.monitored_id());
    let role = d
        .docs
        .iter()
        .find(|doc| {
            doc["kind"] == "Role"
                && doc["metadata"]["namespace"] == d.operator.namespace.as_str()
                && doc["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-leader-election"))
        })
        .expect("the leader-election Role");
    assert!(rule_text(role).contains(&lease_name), "{role}");
    let leases = d
        .cluster
        .api_in::<k8s_openapi::api::coordination::v1::Lease>(&d.operator.namespace);
    let lease = leases.get(&lease_name).await.expect("the operator's Lease");
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "the operator holds its Lease"
    );
}

impl Deployed {
    /// The `--monitored-id` the Deployment passes.
    fn monitored_id(&self) -> String {
        self.flag_value("--monitored-id")
    }

    /// The ClusterRole a namespace's RoleBinding grants the operator (`--namespace-cluster-role`).
    fn namespace_role(&self) -> String {
        self.flag_value("--namespace-cluster-role")
    }

    /// The output helper's ClusterRole (`--persist-output-cluster-role`).
    fn helper_cluster_role(&self) -> String {
        self.flag_value("--persist-output-cluster-role")
    }

    /// The value the Deployment passes for `flag` (written `--name=value`): the tests follow
    /// the names the chart chose rather than repeat them.
    fn flag_value(&self, flag: &str) -> String {
        let args = &self.operator.args;
        args.iter()
            .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("the Deployment passes no {flag}=…: {args:?}"))
            .to_owned()
    }

    /// What an earlier release wrote in `namespace` for the output helper (by an admin, as that
    /// operator held the rights): a Role `quarks-job-persist-output` and a RoleBinding of that
    /// name to it.
    async fn leave_an_earlier_releases_helper_binding(&self, namespace: &str) {
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        let name = "quarks-job-persist-output";
        let role: Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            ],
        }))
        .unwrap();
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }))
        .unwrap();
        self.cluster
            .api_in::<Role>(namespace)
            .create(&Default::default(), &role)
            .await
            .unwrap();
        self.cluster
            .api_in::<RoleBinding>(namespace)
            .create(&Default::default(), &binding)
            .await
            .unwrap();
    }

    /// The opt-in the README documents: a RoleBinding in `namespace` to the namespace ClusterRole.
    async fn bind(&self, namespace: &str) {
        let service_account = format!(
            "--serviceaccount={}:{}",
            self.operator.namespace, self.operator.service_account
        );
        let role = format!("--clusterrole={}", self.namespace_role());
        // kubectl sends `create rolebinding` as protobuf, which kubesim does not take: the same
        // object, rendered by kubectl, is created as JSON.
        let binding = kubectl(
            &self.kubeconfig,
            &[
                "-n",
                namespace,
                "create",
                "rolebinding",
                "quarks-job",
                &role,
                &service_account,
                "--dry-run=client",
                "-o",
                "json",
            ],
        );
        let binding: k8s_openapi::api::rbac::v1::RoleBinding =
            serde_json::from_str(&binding).unwrap();
        let bindings = self
            .cluster
            .api_in::<k8s_openapi::api::rbac::v1::RoleBinding>(namespace);
        bindings
            .create(&Default::default(), &binding)
            .await
            .unwrap();
    }

    /// A namespace labelled for the operator, bound before it is labelled (so no watch of the
    /// operator is ever refused there).
    async fn create_bound_namespace(&self, namespace: &str) {
        self.cluster.create_namespace(namespace, None).await;
        self.bind(namespace).await;
        let label = format!("quarks.cloudfoundry.org/monitored={}", self.monitored_id());
        kubectl(&self.kubeconfig, &["label", "namespace", namespace, &label]);
    }

    /// `kubectl auth can-i ... --as=<the operator>` (the API server's authorizer answers).
    fn can_i(&self, args: &[&str]) -> bool {
        let user = format!("--as={}", self.user());
        let mut all = vec!["auth", "can-i"];
        all.extend(args);
        all.push(&user);
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&all)
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    }

    /// The rules that apply to a request in `namespace` ("" for cluster-scoped): the
    /// ClusterRole bound cluster-wide, and the (Cluster)Roles RoleBindings of the chart bind the
    /// operator to there (by `bound`: the namespaces bound by hand besides), as
    /// (role name, rule).
    fn rules_for(&self, namespace: &str, bound: &[&str]) -> Vec<(String, Value)> {
        let user_sa = (&self.operator.namespace, &self.operator.service_account);
        let binds_operator = |doc: &Value| {
            doc["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == user_sa.1.as_str()
                        && s["namespace"] == user_sa.0.as_str()
                })
            })
        };
        let role_rules = |kind: &str, name: &str, role_namespace: Option<&str>| {
            self.docs
                .iter()
                .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
                .filter(|d| role_namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns))
                .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
                .map(|rule| (name.to_owned(), rule))
                .collect::<Vec<_>>()
        };
        let mut rules = Vec::new();
        for doc in &self.docs {
            let role = doc["roleRef"]["name"].as_str().unwrap_or_default();
            let kind = doc["roleRef"]["kind"].as_str().unwrap_or_default();
            if doc["kind"] == "ClusterRoleBinding" && binds_operator(doc) {
                rules.extend(role_rules("ClusterRole", role, None));
            }
            if doc["kind"] == "RoleBinding"
                && binds_operator(doc)
                && doc["metadata"]["namespace"] == namespace
            {
                let scope = (kind == "Role").then_some(namespace);
                rules.extend(role_rules(kind, role, scope));
            }
        }
        if bound.contains(&namespace) {
            rules.extend(role_rules("ClusterRole", &self.namespace_role(), None));
        }
        rules
    }
}

/// The seed's output one-off in `namespace`: it reads a ConfigMap and a Secret (the operator
/// digests what a run references) and writes `{"greeting": "hello chart"}`; waits until its
/// Secret is written, the one-off is done and its Job deleted (the operator's `delete jobs`).
async fn run_output_job(d: &Deployed, namespace: &str) {
    let script = r#"echo "{\"greeting\": \"$GREETING $NAME\"}" > /mnt/quarks/output.json"#;
    let env = serde_json::json!({"env": [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "chart-config", "key": "greeting"}}},
        {"name": "NAME", "valueFrom": {"secretKeyRef": {"name": "chart-secret", "key": "name"}}},
    ]});
    let qjob = QJob::new("chart-output", "once")
        .output(serde_json::json!({"outputMap": {
            "busybox": {"output.json": {"name": "chart-output-json"}},
        }}))
        .container("busybox", script, env);
    let kubeconfig = &d.kubeconfig;
    kubectl(
        kubeconfig,
        &[
            "-n",
            namespace,
            "create",
            "configmap",
            "chart-config",
            "--from-literal=greeting=hello",
        ],
    );
    kubectl(
        kubeconfig,
        &[
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "chart-secret",
            "--from-literal=name=chart",
        ],
    );
    d.cluster.create_qjob_in(namespace, &qjob).await;
    let qjobs = d.cluster.qjobs_in(namespace);
    let secrets = d.cluster.api_in::<Secret>(namespace);
    let Some(secret) = poll(DEADLINE * 2, || async {
        secrets.get_opt("chart-output-json").await.unwrap()
    })
    .await
    else {
        panic!(
            "no Secret chart-output-json in {namespace}; requests refused: {:?}\noperator log:\n{}",
            d.refused().await,
            d.log(),
        );
    };
    let data = secret.data.unwrap();
    assert_eq!(data["greeting"].0, b"hello chart");
    wait_for("the one-off to be done and its Job deleted", || async {
        let q = qjobs.get("chart-output").await.unwrap();
        q.spec.trigger.strategy == Strategy::Done && jobs_in(&d.cluster, namespace).await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_applied_with_kubectl_runs_an_output_job_under_its_own_rbac() {
    let started = std::time::Instant::now();
    let mut d = Deployed::start(&[]).await;

    // In the namespace the chart created (with the helper's Role and RoleBinding)...
    run_output_job(&d, &d.staging.clone()).await;
    // ...and in one labelled later and bound by hand (README: the opt-in), where the operator
    // writes the helper's ServiceAccount and a RoleBinding to the helper's ClusterRole itself: on
    // kube-apiserver, that binding passes the RBAC escalation check by the operator's `bind` on
    // that ClusterRole (it holds none of the pod rights the role grants). There an earlier
    // release left the helper's Role and a RoleBinding to it: roleRef cannot change, so the
    // operator replaces the binding.
    let later = format!("{}-later", d.staging);
    d.create_bound_namespace(&later).await;
    d.leave_an_earlier_releases_helper_binding(&later).await;
    run_output_job(&d, &later).await;
    let helper_binding = d
        .cluster
        .api_in::<k8s_openapi::api::rbac::v1::RoleBinding>(&later)
        .get("quarks-job-persist-output")
        .await
        .unwrap();
    assert_eq!(
        (
            helper_binding.role_ref.kind.as_str(),
            helper_binding.role_ref.name.as_str()
        ),
        ("ClusterRole", d.helper_cluster_role().as_str())
    );

    // Sufficient: nothing the operator asked for was refused (its own request counter).
    d.assert_none_refused().await;
    d.process.child.start_kill().unwrap();
    let _ = d.process.child.wait().await;
    let operator_user = d.user();
    // kubesim recorded every request: each is allowed by a rule that applies in its namespace
    // (the cluster-wide ClusterRole; the namespace ClusterRole where a RoleBinding grants it; the
    // operator's Role in its own namespace), so the runs above did not pass through some other
    // grant, and every rule was used.
    let Some(requests) = d.recorded_requests() else {
        println!(
            "on the given cluster: runs in two namespaces, no request of {operator_user} refused; test took {:?}",
            started.elapsed()
        );
        return;
    };
    let bound = [later.as_str()];
    let all_rules: Vec<(String, Value)> = d
        .docs
        .iter()
        .filter(|doc| doc["kind"] == "ClusterRole" || doc["kind"] == "Role")
        .filter(|doc| {
            !doc["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("persist-output")
        })
        .flat_map(|doc| {
            let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
            doc["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |rule| (name.clone(), rule))
        })
        .collect();
    for request in &requests {
        assert!(
            d.rules_for(&request.namespace, &bound)
                .iter()
                .any(|(_, rule)| allows(rule, request)),
            "no rule bound to the operator in {:?} allows {request:?}",
            request.namespace
        );
        // Nothing of kube-system or any namespace the operator is not bound in.
        assert!(
            request.namespace.is_empty()
                || [
                    d.staging.as_str(),
                    later.as_str(),
                    d.operator.namespace.as_str()
                ]
                .contains(&request.namespace.as_str()),
            "a request outside the operator's namespaces: {request:?}"
        );
    }
    // Minimal: every rule was needed by this run, but for grants this run cannot show (each
    // says why).
    let not_exercised_here = |role: &str, rule: &Value, verb: &str| -> bool {
        let resources = rule["resources"].as_array().unwrap();
        let has = |r: &str| resources.iter().any(|x| x == r);
        // Events on an unbound Namespace (in `default`): no namespace is unbound here (the
        // test of an unbound namespace uses them).
        role.ends_with("-namespace-events")
            // The served CRD is read at start only on a cluster where a get is allowed
            // (kubesim serves it; checked elsewhere).
            || has("customresourcedefinitions")
            // The operator key is created by the first operator on a cluster only.
            || (verb == "create" && has("secrets") && rule.get("resourceNames").is_none())
        // `bind` is no request verb: kube-apiserver's RBAC escalation check asks for it when
        // the operator writes the helper's RoleBinding (the real-cluster pass proves it;
        // kubesim does not check escalation).
            || verb == "bind"
            // A Job is read directly only when the cache does not have it yet (a Job made by
            // a previous process of the operator, found after a restart).
            || (verb == "get" && has("jobs"))
            // Server-side apply that creates an object is authorized as `create` by
            // kube-apiserver (the later namespace's run needs it there: the real-cluster pass
            // proves it); kubesim authorizes every apply as `patch`.
            || (verb == "create"
                && (has("serviceaccounts") || has("rolebindings") || has("secrets")))
            // `patch` of an Event is for a repeated Event (a series); one run repeats none.
            || (verb == "patch" && has("events"))
            // --apply-crd creates the CRD when it is new; here the chart's crds/ made it.
            || (verb == "create" && has("customresourcedefinitions"))
            // A catalog module (`catalog:` in a selection) is read from the operator's
            // namespace only when a namespace selects one (the policy tests do).
            || (verb == "get" && has("configmaps") && role.ends_with("-operator"))
    };
    let used: BTreeSet<(String, String, String)> = requests
        .iter()
        .flat_map(|request| {
            d.rules_for(&request.namespace, &bound)
                .into_iter()
                .filter(|(_, rule)| allows(rule, request))
                .map(|(role, rule)| (role, rule_text(&rule), request.verb.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut unused = Vec::new();
    for (role, rule) in &all_rules {
        for verb in rule["verbs"].as_array().unwrap() {
            let verb = verb.as_str().unwrap();
            if !used.contains(&(role.clone(), rule_text(rule), verb.to_owned()))
                && !not_exercised_here(role, rule, verb)
            {
                unused.push(format!("{role}: {verb} {}", rule_text(rule)));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "grants this run never used (remove them, or say why they are needed): {unused:#?}"
    );
    println!(
        "{} requests by {operator_user}, none refused; test took {:?}",
        requests.len(),
        started.elapsed()
    );
}

/// A values file written for the Go operator's chart (every key of it, at its defaults, plus
/// registry credentials) installs this chart on the test's cluster — Helm's server-side check of
/// `kubeVersion` against kube-apiserver 1.24 on the real control plane — and each key is
/// honoured, mapped or named in NOTES.txt (README: "Migrating from the Go operator: Helm values").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_charts_values_install_and_each_key_is_honoured_mapped_or_noted() {
    let file = original_values_file();
    let d = Deployed::start_with_values(
        &[&file],
        &[
            "global.image.credentials.username=robot",
            "global.image.credentials.password=s3cret",
            "global.image.credentials.servername=registry.example:5000",
        ],
    )
    .await;
    let args = &d.operator.args;
    let has = |arg: &str| args.iter().any(|a| a == arg);

    // kubeVersion: Helm accepted the chart on this cluster, and would refuse one that excludes it.
    assert_eq!(d.install_check["kubeVersion"], ">=1.24.0-0");
    let server = d.cluster.client.apiserver_version().await.unwrap();
    let refused = std::process::Command::new(repo_root().join("target/chart-tools/bin/python"))
        .arg(repo_root().join("scripts/lib/chart_tool.py"))
        .args(["install-check", "--kubeconfig"])
        .arg(&d.kubeconfig)
        .args([
            "--namespace",
            &d.operator.namespace,
            "--release",
            &d.release,
        ])
        .args(["--chart-kube-version", "<1.24.0-0"])
        .env("HELM_LOG_LEVEL", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(&format!(
                "incompatible with Kubernetes {}",
                server.git_version
            )),
        "a chart for < 1.24 must be refused on Kubernetes {}: {stderr}",
        server.git_version
    );

    // NOTES.txt names each key that has no effect any more.
    let notes = d.install_check["notes"].as_str().unwrap();
    for key in [
        "image.org=cfcontainerization",
        "global.contextTimeout",
        "global.meltdownDuration and global.meltdownRequeueAfter",
    ] {
        assert!(notes.contains(&format!("  - {key}")), "{key}:\n{notes}");
    }
    // persistOutputClusterRole.* is honoured: the helper's ClusterRole by that name (the
    // original's, on kubesim), passed to the operator, which binds it for the runs below.
    assert!(!notes.contains("  - persistOutputClusterRole"), "{notes}");
    let helper_role = d.helper_cluster_role();
    if d.cluster.sim.is_some() {
        assert_eq!(helper_role, "qjob-persist-output");
    }
    assert!(
        d.docs
            .iter()
            .any(|doc| doc["kind"] == "ClusterRole"
                && doc["metadata"]["name"] == helper_role.as_str()),
        "the chart creates ClusterRole {helper_role}"
    );

    // The default monitored id is the original chart's for this release name and namespace.
    let monitored_id = original_default_monitored_id(&d.release, &d.operator.namespace);
    assert!(has(&format!("--monitored-id={monitored_id}")), "{args:?}");
    // applyCRD: true (the original's default) is honoured, under the chart's RBAC.
    assert!(has("--apply-crd=true"), "{args:?}");
    assert!(
        d.log().contains("CRD applied and established"),
        "{}",
        d.log()
    );
    assert!(
        has("--max-workers=1") && has("--log-level=debug"),
        "{args:?}"
    );
    // global.image.pullPolicy and global.image.credentials reach the output helper's flags
    // (the operator starts with them), the pull secret is in both namespaces.
    let pull_secret = format!("{}-pull-secret", d.operator.service_account);
    assert!(
        has("--persist-output-image-pull-policy=IfNotPresent"),
        "{args:?}"
    );
    assert!(
        has(&format!("--persist-output-image-pull-secret={pull_secret}")),
        "{args:?}"
    );
    for namespace in [&d.operator.namespace, &d.staging] {
        let secret = d
            .cluster
            .api_in::<Secret>(namespace)
            .get(&pull_secret)
            .await
            .unwrap_or_else(|e| panic!("pull secret {pull_secret} in {namespace}: {e}"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        let config: Value =
            serde_json::from_slice(&secret.data.unwrap()[".dockerconfigjson"].0).unwrap();
        assert_eq!(
            config["auths"]["registry.example:5000"]["username"],
            "robot"
        );
    }

    // Output QuarksJobs run in the namespace the chart made and in one labelled by hand with
    // the original default id, as a user of the Go operator would have.
    run_output_job(&d, &d.staging.clone()).await;
    let by_hand = format!("{}-by-hand", d.staging);
    d.create_bound_namespace(&by_hand).await;
    assert_eq!(d.monitored_id(), monitored_id);
    run_output_job(&d, &by_hand).await;
    d.assert_none_refused().await;
}

/// A metric from the operator's /metrics, summed over its label sets (0 when absent).
async fn metric(d: &Deployed, name: &str) -> f64 {
    let (_, metrics) = http_get(&d.addr, "/metrics").await;
    crate::metric_sum(&metrics, name)
}

/// Least privilege under the API server's authorizer (`kubectl auth can-i --as=<operator>`,
/// answered by kube-apiserver's RBAC on the real control plane): nothing in kube-system or any
/// namespace not bound, the namespace rights where the chart bound them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_can_neither_create_jobs_nor_read_secrets_outside_its_bound_namespaces() {
    let d = Deployed::start(&[]).await;
    for denied in [
        ["create", "jobs", "-n", "kube-system"],
        ["get", "secrets", "-n", "kube-system"],
        ["list", "secrets", "-n", "kube-system"],
        ["create", "rolebindings", "-n", "kube-system"],
        ["create", "pods", "-n", "kube-system"],
        ["get", "configmaps", "-n", "kube-system"],
        ["create", "jobs", "-n", "default"],
    ] {
        assert!(!d.can_i(&denied), "the operator may {denied:?}");
    }
    assert!(
        !d.can_i(&["list", "secrets", "--all-namespaces"]),
        "the operator may list every Secret"
    );
    let staging = d.staging.clone();
    // The output helper's rights are the helper's, not the operator's: it may bind that one
    // ClusterRole where it is bound, no other role, and read no pod.
    let helper_role = format!("clusterroles/{}", d.helper_cluster_role());
    for denied in [
        ["list", "pods", "-n", staging.as_str()],
        ["get", "pods", "-n", staging.as_str()],
        ["watch", "pods", "-n", staging.as_str()],
        ["create", "roles", "-n", staging.as_str()],
        ["bind", "clusterroles/cluster-admin", "-n", staging.as_str()],
        ["bind", helper_role.as_str(), "-n", "kube-system"],
    ] {
        assert!(!d.can_i(&denied), "the operator may {denied:?}");
    }
    assert!(
        d.can_i(&["bind", helper_role.as_str(), "-n", staging.as_str()]),
        "the operator may not bind {helper_role} in {staging}"
    );
    for allowed in [
        ["create", "jobs", "-n", staging.as_str()],
        ["get", "secrets", "-n", staging.as_str()],
        ["watch", "configmaps", "-n", staging.as_str()],
    ] {
        assert!(d.can_i(&allowed), "the operator may not {allowed:?}");
    }
    assert!(d.can_i(&[
        "watch",
        "quarksjobs.quarks.cloudfoundry.org",
        "--all-namespaces"
    ]));
    assert!(d.can_i(&["watch", "namespaces"]));
    d.assert_none_refused().await;
}

/// A namespace labelled for the operator but without the RoleBinding: its QuarksJob gets
/// `Ready=False, NamespaceNotBound` naming the ClusterRole to bind, the Namespace a Warning
/// Event, `quarks_job_namespaces_unbound` counts it — and once the RoleBinding the message
/// gives is created, the QuarksJob runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_labelled_namespace_is_reported_and_works_once_bound() {
    let started = std::time::Instant::now();
    let d = Deployed::start(&[]).await;
    let unbound = format!("{}-unbound", d.staging);
    d.cluster
        .create_namespace(&unbound, Some(&d.monitored_id()))
        .await;
    let qjob = QJob::new("waits-for-rights", "once").script("echo ran");
    d.cluster.create_qjob_in(&unbound, &qjob).await;
    let message = crate::wait_for_reason(
        &d.cluster,
        &unbound,
        "waits-for-rights",
        "NamespaceNotBound",
    )
    .await;
    let role = d.namespace_role();
    assert!(
        message.contains(&format!("--clusterrole={role}")) && message.contains(&unbound),
        "{message}"
    );
    println!("NamespaceNotBound after {:?}: {message}", started.elapsed());
    assert!(jobs_in(&d.cluster, &unbound).await.is_empty());
    // The Warning Event on the Namespace (cluster-scoped: in `default`).
    let events = d
        .cluster
        .api_in::<k8s_openapi::api::events::v1::Event>("default");
    wait_for("a NamespaceNotBound Event on the Namespace", || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("NamespaceNotBound")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some("Namespace")
                            && r.name.as_deref() == Some(&unbound)
                    })
            })
    })
    .await;
    wait_for("quarks_job_namespaces_unbound 1", || async {
        metric(&d, "quarks_job_namespaces_unbound").await == 1.0
    })
    .await;

    // The opt-in the message names.
    let bound_at = std::time::Instant::now();
    d.bind(&unbound).await;
    let qjobs = d.cluster.qjobs_in(&unbound);
    wait_for("the QuarksJob to run once bound", || async {
        qjobs
            .get("waits-for-rights")
            .await
            .unwrap()
            .spec
            .trigger
            .strategy
            == Strategy::Done
    })
    .await;
    println!("bound -> run started in {:?}", bound_at.elapsed());
    crate::wait_completed(&d.cluster, &unbound, "waits-for-rights", 1).await;
    wait_for("quarks_job_namespaces_unbound 0", || async {
        metric(&d, "quarks_job_namespaces_unbound").await == 0.0
    })
    .await;
    let (reason, _) = crate::ready_condition(&d.cluster, &unbound, "waits-for-rights")
        .await
        .unwrap();
    assert_ne!(reason, "NamespaceNotBound");
    // The refusals were only the namespace's watches before the binding (403s), nothing else.
    if let Some(sim) = d.cluster.sim.as_ref() {
        let user = d.user();
        for r in sim
            .request_log()
            .iter()
            .filter(|r| r.user == user && r.code == 403)
        {
            assert!(
                r.namespace == unbound && ["list", "watch"].contains(&r.verb.as_str()),
                "refused: {r:?}"
            );
        }
    }
}

/// Nothing of an unmonitored namespace reaches the operator: no watch or read there (kubesim's
/// request log), and a Secret written there is no event for it
/// (`quarks_job_config_events_total`); a Secret event in a monitored namespace reconciles only
/// the QuarksJob that references it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_secrets_of_unmonitored_namespaces_are_neither_watched_nor_reconciled() {
    let d = Deployed::start(&["operator.clusterWide=true"]).await;
    let sim = d.cluster.sim.as_ref().unwrap();
    // Unmonitored, although the operator may read it (cluster-wide rights).
    let other = "unmonitored";
    d.cluster.create_namespace(other, None).await;
    let staging = d.staging.clone();
    let qjob = QJob::new("reads-secret", "once")
        .update_on_config_change(true)
        .container(
            "busybox",
            "echo ran",
            serde_json::json!({"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "watched", "key": "k"}}}]}),
        );
    kubectl(
        &d.kubeconfig,
        &[
            "-n",
            &staging,
            "create",
            "secret",
            "generic",
            "watched",
            "--from-literal=k=1",
        ],
    );
    d.cluster.create_qjob_in(&staging, &qjob).await;
    let unrelated = QJob::new("unrelated", "once").script("echo ran");
    d.cluster.create_qjob_in(&staging, &unrelated).await;
    crate::wait_completed(&d.cluster, &staging, "reads-secret", 1).await;
    crate::wait_completed(&d.cluster, &staging, "unrelated", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let events_before = metric(&d, "quarks_job_config_events_total").await;
    let reconciles_before = metric(&d, "controller_runtime_reconcile_total").await;
    for i in 0..20 {
        let name = format!("noise-{i}");
        kubectl(
            &d.kubeconfig,
            &[
                "-n",
                other,
                "create",
                "secret",
                "generic",
                &name,
                "--from-literal=k=v",
            ],
        );
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        metric(&d, "quarks_job_config_events_total").await,
        events_before,
        "a Secret of an unmonitored namespace reached the operator"
    );
    let user = d.user();
    let outside: Vec<RequestRecord> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.user == user)
        .filter(|r| {
            ["secrets", "configmaps", "jobs"].contains(&r.resource.as_str())
                && (r.namespace.is_empty() || r.namespace == other)
        })
        .collect();
    assert!(
        outside.is_empty(),
        "cluster-wide or unmonitored requests: {outside:?}"
    );

    // A change of the referenced Secret reconciles its QuarksJob (it runs again), and only it.
    kubectl(
        &d.kubeconfig,
        &[
            "-n",
            &staging,
            "create",
            "secret",
            "generic",
            "unreferenced",
            "--from-literal=k=1",
        ],
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after_unreferenced = metric(&d, "controller_runtime_reconcile_total").await;
    assert!(metric(&d, "quarks_job_config_events_total").await > events_before);
    assert_eq!(
        after_unreferenced, reconciles_before,
        "a Secret no QuarksJob references reconciled something"
    );
    kubectl(
        &d.kubeconfig,
        &[
            "-n",
            &staging,
            "patch",
            "secret",
            "watched",
            "-p",
            r#"{"stringData":{"k":"2"}}"#,
        ],
    );
    crate::wait_completed(&d.cluster, &staging, "reads-secret", 2).await;
    assert_eq!(crate::run_count(&d.cluster, &staging, "unrelated").await, 1);
    d.assert_none_refused().await;
}
