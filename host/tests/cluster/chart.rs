//! The Helm chart (charts/quarks-job), with real Helm: linted, rendered and validated against the
//! Kubernetes schemas; its CRD is the one the code generates; and what it renders, applied to
//! kubesim with kubectl, runs the operator under the chart's own service account and RBAC
//! (enforced) through a one-off QuarksJob with output.
//!
//! Helm is helm-python-sdk in `target/chart-tools` (scripts/lib/setup.sh `ensure_chart_tools`,
//! run by scripts/test). Without it these tests fail: CI never skips them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kubesim::{KubeSim, KubeSimOptions, RequestRecord};
use quarks_job::crd::{QuarksJob, Strategy};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::process::Command;

use crate::{DEADLINE, wait_for};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/quarks-job")
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
    let output = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/lib/chart_tool.py"))
        .args(args)
        .output()
        .expect("run the chart tool");
    assert!(
        output.status.success(),
        "chart_tool.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn helm_lints_and_renders_the_chart_for_four_value_sets_and_every_manifest_is_valid() {
    let output = chart_tool(&["check"]);
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    // The tool checked what it says it checked: 4 value sets, each linted and validated.
    assert_eq!(
        report.matches("ok    helm lint --strict").count(),
        4,
        "{report}"
    );
    assert_eq!(
        report
            .matches("valid against the Kubernetes schemas")
            .count(),
        4,
        "{report}"
    );
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

/// A kubeconfig presenting the token kubesim gives pods of `namespace/service_account`: what the
/// operator's pod would use in-cluster.
fn service_account_kubeconfig(dir: &Path, url: &str, namespace: &str, sa: &str) -> PathBuf {
    let token = kubesim::service_account_token(namespace, sa);
    let path = dir.join("operator-kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: sa\n  context:\n    cluster: kubesim\n    user: sa\n    namespace: {namespace}\ncurrent-context: sa\nusers:\n- name: sa\n  user:\n    token: {token}\n"
        ),
    )
    .unwrap();
    path
}

fn kubectl(kubeconfig: &Path, args: &[&str]) {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl (1.32) is installed");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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

/// The chart rendered with `sets`, applied with kubectl to a fresh kubesim (RBAC enforced for
/// service accounts), and the operator started as its Deployment runs it.
struct Deployed {
    sim: KubeSim,
    _work: tempfile::TempDir,
    kubeconfig: PathBuf,
    docs: Vec<Value>,
    operator: RenderedOperator,
    child: tokio::process::Child,
    log: tempfile::NamedTempFile,
    /// The operator's /healthz, /readyz and /metrics address.
    addr: String,
}

impl Deployed {
    async fn start(sets: &[&str]) -> Deployed {
        // The chart creates cluster-wide objects (a namespace, a ClusterRole): these tests
        // always run on their own kubesim, also when QUARKS_TEST_KUBECONFIG is set.
        let sim = KubeSim::start(KubeSimOptions {
            quarks_job_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_quarks-job"))),
            enforce_rbac: true,
            ..Default::default()
        })
        .await
        .expect("kubesim starts");
        let work = tempfile::tempdir().unwrap();

        // `helm template` (CRDs included, in Helm's install order).
        let mut args = vec!["render", "--include-crds"];
        for set in sets {
            args.extend(["--set", set]);
        }
        let rendered = chart_tool(&args);
        let manifests = work.path().join("quarks-job.yaml");
        std::fs::write(&manifests, &rendered.stdout).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_slice(&rendered.stdout)
            .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
            .collect();
        let operator = rendered_operator(&docs);

        // `helm install --create-namespace`, with kubectl: the release namespace, then all.
        let kubeconfig = sim.kubeconfig_path().to_path_buf();
        kubectl(&kubeconfig, &["create", "namespace", &operator.namespace]);
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
        let sa_kubeconfig = service_account_kubeconfig(
            work.path(),
            &sim.url(),
            &operator.namespace,
            &operator.service_account,
        );
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
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quarks-job"))
            .args(&args)
            .env_clear()
            .envs(operator.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KUBECONFIG", &sa_kubeconfig)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start quarks-job");

        // The probes the Deployment declares answer: /healthz, then /readyz once caches synced.
        let read = || std::fs::read_to_string(log.path()).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut addr = None;
        while addr.is_none() {
            addr = http_address(&read());
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator serves no /healthz; refused: {:?}\nlog:\n{}",
                sim.request_log()
                    .iter()
                    .filter(|r| r.code == 403)
                    .collect::<Vec<_>>(),
                read()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let addr = addr.unwrap();
        let deployed = Deployed {
            sim,
            _work: work,
            kubeconfig,
            docs,
            operator,
            child,
            log,
            addr,
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !(deployed.log().contains("caches synced")
            && http_status(&deployed.addr, "/readyz").await == 200)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not become ready; refused: {:?}\nlog:\n{}",
                deployed
                    .sim
                    .request_log()
                    .iter()
                    .filter(|r| r.code == 403)
                    .collect::<Vec<_>>(),
                deployed.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(http_status(&deployed.addr, "/healthz").await, 200);
        assert!(
            deployed.log().contains("Starting quarks-job"),
            "{}",
            deployed.log()
        );
        deployed
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.operator.namespace, self.operator.service_account
        )
    }

    /// The operator's requests so far; none refused.
    fn requests_none_refused(&self) -> Vec<RequestRecord> {
        let user = self.user();
        let requests: Vec<RequestRecord> = self
            .sim
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
        requests
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_and_apply_crd_the_operator_leads_and_applies_the_crd_under_the_charts_rbac()
 {
    let d = Deployed::start(&["replicas=2", "applyCRD=true"]).await;
    let args = &d.operator.args;
    assert!(args.iter().any(|a| a == "--leader-election"), "{args:?}");
    assert!(args.iter().any(|a| a == "--apply-crd"), "{args:?}");
    let log = d.log();
    assert!(log.contains("became leader"), "{log}");
    assert!(log.contains("CRD applied and established"), "{log}");
    let requests = d.requests_none_refused();
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
    // Waiting until established lists the CRD by name (a field selector: `resourceNames`).
    assert!(
        succeeded("list", "customresourcedefinitions"),
        "{requests:?}"
    );
    // The Lease is the one the leader-election Role names.
    let lease_name = format!(
        "quarks-job-{}",
        args.iter()
            .find_map(|a| a.strip_prefix("--monitored-id="))
            .unwrap()
    );
    let role = d
        .docs
        .iter()
        .find(|doc| {
            doc["kind"] == "Role" && doc["metadata"]["namespace"] == d.operator.namespace.as_str()
        })
        .expect("the leader-election Role");
    assert!(rule_text(role).contains(&lease_name), "{role}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_applied_with_kubectl_runs_an_output_job_under_its_own_rbac() {
    let started = std::time::Instant::now();
    let mut d = Deployed::start(&[]).await;
    let admin = d.sim.client().await.unwrap();
    let kubeconfig = d.kubeconfig.clone();
    let rules = d
        .docs
        .iter()
        .find(|doc| doc["kind"] == "ClusterRole")
        .expect("a ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .clone();
    let read_log = || d.log();

    // A one-off QuarksJob with output in the namespace the chart created.
    let staging = "staging";
    let qjob: QuarksJob = serde_yaml::from_str(
        r#"
apiVersion: quarks.cloudfoundry.org/v1alpha1
kind: QuarksJob
metadata:
  name: chart-output
spec:
  trigger:
    strategy: once
  output:
    outputMap:
      busybox:
        output.json:
          name: chart-output-json
  template:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: busybox
            image: busybox
            command: ["sh", "-c", "echo \"{\\\"greeting\\\": \\\"$GREETING $NAME\\\"}\" > /mnt/quarks/output.json"]
            env:
            - name: GREETING
              valueFrom: {configMapKeyRef: {name: chart-config, key: greeting}}
            - name: NAME
              valueFrom: {secretKeyRef: {name: chart-secret, key: name}}
"#,
    )
    .unwrap();
    // It reads a ConfigMap and a Secret (the operator digests what a run references).
    kubectl(
        &kubeconfig,
        &[
            "-n",
            staging,
            "create",
            "configmap",
            "chart-config",
            "--from-literal=greeting=hello",
        ],
    );
    kubectl(
        &kubeconfig,
        &[
            "-n",
            staging,
            "create",
            "secret",
            "generic",
            "chart-secret",
            "--from-literal=name=chart",
        ],
    );
    let qjobs: Api<QuarksJob> = Api::namespaced(admin.clone(), staging);
    qjobs.create(&PostParams::default(), &qjob).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), staging);
    let mut secret = None;
    let deadline = tokio::time::Instant::now() + DEADLINE * 2;
    while secret.is_none() {
        secret = secrets.get_opt("chart-output-json").await.unwrap();
        if tokio::time::Instant::now() > deadline {
            panic!(
                "no Secret chart-output-json; operator log:\n{}\nrequests refused: {:?}",
                read_log(),
                d.sim
                    .request_log()
                    .iter()
                    .filter(|r| r.code == 403)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let data = secret.unwrap().data.unwrap();
    assert_eq!(data["greeting"].0, b"hello chart");
    // The run finished: the one-off is done and its Job deleted (the operator's `delete jobs`).
    wait_for("the one-off to be done and its Job deleted", || async {
        let q = qjobs.get("chart-output").await.unwrap();
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(admin.clone(), staging);
        q.spec.trigger.strategy == Strategy::Done
            && jobs
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
    d.child.start_kill().unwrap();
    let _ = d.child.wait().await;

    // Sufficient: nothing the operator asked for was refused.
    let requests = d.requests_none_refused();
    let operator_user = d.user();
    // Every request is allowed by a rule of the ClusterRole (no other role is bound to it with
    // one replica), so the test above did not pass through some other grant.
    for request in &requests {
        assert!(
            rules.iter().any(|rule| allows(rule, request)),
            "no ClusterRole rule allows {request:?}"
        );
    }
    // Minimal: every rule was needed by this run, but for grants this run cannot show (each
    // says why).
    let not_exercised_here = |rule: &Value, verb: &str| -> bool {
        let resources = rule["resources"].as_array().unwrap();
        let has = |r: &str| resources.iter().any(|x| x == r);
        // Held only so the operator may grant it in the helper's Role (RBAC escalation rule).
        has("pods")
            // A Job is read directly only when the cache does not have it yet (a Job made by
            // a previous process of the operator, found after a restart).
            || (verb == "get" && has("jobs"))
            // Server-side apply that creates an object is authorized as `create` by
            // kube-apiserver; kubesim authorizes every apply as `patch`, and here the helper's
            // identity exists already (the chart made it).
            || (verb == "create" && (has("serviceaccounts") || has("roles") || has("secrets")))
            // `patch` of an Event is for a repeated Event (a series); one run repeats none.
            || (verb == "patch" && has("events"))
    };
    let used: BTreeSet<(String, String)> = requests
        .iter()
        .flat_map(|request| {
            rules
                .iter()
                .filter(|rule| allows(rule, request))
                .map(|rule| (rule_text(rule), request.verb.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut unused = Vec::new();
    for rule in &rules {
        for verb in rule["verbs"].as_array().unwrap() {
            let verb = verb.as_str().unwrap();
            if !used.contains(&(rule_text(rule), verb.to_owned()))
                && !not_exercised_here(rule, verb)
            {
                unused.push(format!("{verb} {}", rule_text(rule)));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "ClusterRole grants this run never used (remove them, or say why they are needed): {unused:#?}"
    );
    println!(
        "{} requests by {operator_user}, none refused; test took {:?}",
        requests.len(),
        started.elapsed()
    );
}
