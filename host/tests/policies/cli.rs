//! The `quarks-job` binary, run as a user would.

use std::process::{Command, Output};

fn quarks_job(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarks-job"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run quarks-job")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn crd_prints_the_quarksjob_definition() {
    let out = quarks_job(&["crd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crd: serde_yaml::Value = serde_yaml::from_str(&stdout(&out)).unwrap();
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(
        crd["metadata"]["name"],
        "quarksjobs.quarks.cloudfoundry.org"
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "quarks.cloudfoundry.org");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "QuarksJob");
    assert_eq!(spec["names"]["plural"], "quarksjobs");
    let short: Vec<&str> = spec["names"]["shortNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(short, ["qjob", "qjobs"]);
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(
        version["subresources"]["status"],
        serde_yaml::Value::Mapping(Default::default())
    );
    let schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let strategies = &schema["properties"]["trigger"]["properties"]["strategy"]["enum"];
    assert_eq!(strategies.as_sequence().unwrap().len(), 4);
    assert!(
        schema["required"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v == "template")
    );
    let output = &schema["properties"]["output"]["properties"];
    assert_eq!(output["outputType"]["enum"][0], "json");
    let file = &output["outputMap"]["additionalProperties"]["additionalProperties"]["properties"];
    assert!(
        file["persistencemethod"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v == "fan-out")
    );
    // The embedded Job template keeps a structural schema (validated and pruned by the server).
    let template =
        &schema["properties"]["template"]["properties"]["spec"]["properties"]["template"];
    assert!(template["properties"]["spec"]["properties"]["containers"].is_mapping());
    // Small enough for client-side `kubectl apply` (annotations are capped at 256 KiB).
    assert!(out.stdout.len() < 256 * 1024, "{} bytes", out.stdout.len());
}

#[test]
fn version_names_the_contract() {
    let out = quarks_job(&["version"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("quarks:policy@0.1.0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn policy_run_decides_the_errand_example() {
    let out = quarks_job(&[
        "policy",
        "run",
        "--policy",
        "builtin:trigger-default",
        "--input",
        "examples/policy-inputs/errand-set-to-now.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decision: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(decision["run"], true);
    assert_eq!(decision["write-strategy"], "manual");
}

#[test]
fn policy_run_transforms_the_seed_output_from_a_component_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("output-default.wasm");
    std::fs::write(&path, quarks_job::policy::builtin::OUTPUT_DEFAULT.bytes).unwrap();
    let out = quarks_job(&[
        "policy",
        "run",
        "--policy",
        path.to_str().unwrap(),
        "--input",
        "examples/policy-inputs/output-foo-json.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(result["secrets"][0]["name"], "foo-json");
    assert_eq!(result["secrets"][0]["data"]["bar"], "baz");
}

#[test]
fn policy_run_explains_bad_input() {
    let missing = quarks_job(&["policy", "run", "--policy", "builtin:nope", "--input", "-"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no built-in policy named \"nope\"") && err.contains("trigger-default"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let out = quarks_job(&[
        "policy",
        "run",
        "--policy",
        junk.to_str().unwrap(),
        "--input",
        "examples/policy-inputs/errand-set-to-now.json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly binary"));

    let ambiguous = dir.path().join("input.json");
    std::fs::write(&ambiguous, "{}").unwrap();
    let out = quarks_job(&[
        "policy",
        "run",
        "--policy",
        junk.to_str().unwrap(),
        "--input",
        ambiguous.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--world"));
}

/// A component built by host/build.rs (fixtures and example policies).
fn component_path(name: &str) -> String {
    format!("{}/{name}.wasm", env!("QUARKS_POLICY_FIXTURES"))
}

#[test]
fn policy_test_passes_each_example_on_its_table_and_fails_the_default_on_the_approval_table() {
    for (example, cases) in [
        (
            "approval-trigger",
            "examples/policies/approval-trigger/cases.yaml",
        ),
        (
            "dotenv-output",
            "examples/policies/dotenv-output/cases.yaml",
        ),
    ] {
        let policy = component_path(example);
        let out = quarks_job(&["policy", "test", "--policy", &policy, cases]);
        assert!(
            out.status.success(),
            "{example}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout(&out).contains(" 0 failed"), "{}", stdout(&out));
    }

    // The built-in runs unapproved QuarksJobs: the table catches it, case by case.
    let out = quarks_job(&[
        "policy",
        "test",
        "--policy",
        "builtin:trigger-default",
        "examples/policies/approval-trigger/cases.yaml",
    ]);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains(
            "FAIL  an unapproved one-off waits and keeps its strategy: /reasons/0/code: expected \"NotApproved\", got \"StrategyOnce\""
        ),
        "{report}"
    );
    assert!(
        report.contains("ok    a manual errand does not run"),
        "{report}"
    );
    assert!(report.contains("17 cases: 13 passed, 4 failed"), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 of 17 cases failed"));
}

#[test]
fn policy_test_expects_errors_by_code() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("cases.yaml");
    std::fs::write(
        &table,
        "world: trigger\ncases:\n- name: it loops\n  input: {event: {type: created}, quarks-job: {name: a, namespace: b, strategy: once}}\n  expect-error: PolicyTimeout\n- name: wrongly expected to run\n  input: {event: {type: created}, quarks-job: {name: a, namespace: b, strategy: once}}\n  expect: {run: true}\n",
    )
    .unwrap();
    let out = quarks_job(&[
        "policy",
        "test",
        "--policy",
        &component_path("loop-forever"),
        table.to_str().unwrap(),
        "--policy-cpu-ms",
        "20",
    ]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("ok    it loops"), "{report}");
    assert!(
        report.contains("FAIL  wrongly expected to run: PolicyTimeout"),
        "{report}"
    );
}

/// `policy new` → `cargo build` → `policy test` on the crate's own table: the path a new
/// author takes. Builds a real crate (about a minute on a cold cache).
#[test]
fn policy_new_creates_a_crate_that_builds_and_passes_its_own_table() {
    let dir = tempfile::tempdir().unwrap();
    for world in ["trigger", "output"] {
        let crate_dir = dir.path().join(format!("my-{world}-policy"));
        let out = quarks_job(&[
            "policy",
            "new",
            crate_dir.to_str().unwrap(),
            "--world",
            world,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout(&out).contains("next: cd"), "{}", stdout(&out));
        // Shared between the two crates and across runs; outside the project's own target dir
        // so this never waits for the build lock of the outer cargo.
        let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/policy-new-test");
        let build = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--release"])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            build.status.success(),
            "{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let wasm = format!("{target}/wasm32-wasip2/release/my_{world}_policy.wasm");
        let out = quarks_job(&[
            "policy",
            "test",
            "--policy",
            &wasm,
            crate_dir.join("cases.yaml").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout(&out).contains(&format!("({world} sha256:")),
            "{}",
            stdout(&out)
        );
    }
    // A non-empty directory is refused, with the reason.
    let again = quarks_job(&[
        "policy",
        "new",
        dir.path().join("my-trigger-policy").to_str().unwrap(),
        "--world",
        "trigger",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}

#[test]
fn policy_push_refuses_a_file_that_is_not_a_policy_before_touching_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"#!/bin/sh\n").unwrap();
    // Port 9 on loopback: nothing listens; the refusal must come first.
    let out = quarks_job(&[
        "policy",
        "push",
        garbage.to_str().unwrap(),
        "127.0.0.1:9/policies/x:v1",
        "--insecure",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a trigger or output policy component"),
        "{stderr}"
    );
}
