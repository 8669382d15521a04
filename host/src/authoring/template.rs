//! `quarks-job policy new`: a new policy crate from the SDK, ready to build, run and test.
//!
//! The crate is its own workspace (so it can live anywhere), depends on the SDK by path (the
//! SDK is not published to a registry), exports one world, and comes with a test table for
//! `quarks-job policy test`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::policy::World;

/// The SDK of the source tree this binary was built from, when it still exists.
pub fn default_sdk_path() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

/// The files of a new policy crate, as (relative path, content).
pub fn files(name: &str, world: World, sdk: &Path) -> Vec<(PathBuf, String)> {
    let sdk = sdk.display().to_string().replace('\\', "/");
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
quarks-policy-sdk = {{ path = "{sdk}" }}

# A policy crate is its own workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#
    );
    let lib = match world {
        World::Trigger => TRIGGER_LIB,
        World::Output => OUTPUT_LIB,
    };
    let cases = match world {
        World::Trigger => TRIGGER_CASES,
        World::Output => OUTPUT_CASES,
    };
    let readme = format!(
        "# {name}\n\nA quarks-job {world} policy.\n\n```sh\n\
cargo build --target wasm32-wasip2 --release\n\
quarks-job policy test --policy target/wasm32-wasip2/release/{file}.wasm cases.yaml\n\
kubectl -n <namespace> create configmap {name} --from-file=policy.wasm=target/wasm32-wasip2/release/{file}.wasm\n\
kubectl -n <namespace> create configmap quarks-job-policies --from-literal={world}=configmap:{name}/policy.wasm\n\
```\n",
        file = name.replace('-', "_"),
    );
    vec![
        (PathBuf::from("Cargo.toml"), manifest),
        (PathBuf::from("src/lib.rs"), lib.to_owned()),
        (PathBuf::from("cases.yaml"), cases.to_owned()),
        (PathBuf::from("README.md"), readme),
    ]
}

/// Writes a new policy crate into `dir`, which must not exist or be empty.
pub fn create(dir: &Path, world: World, sdk: &Path) -> anyhow::Result<String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
        .with_context(|| {
            format!(
                "{} is not a usable crate name: use lower-case letters, digits, - and _, starting with a letter",
                dir.display()
            )
        })?
        .to_owned();
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} is not the policy SDK (no Cargo.toml); pass --sdk <path to policies/sdk of the quarks-job sources>",
            sdk.display()
        );
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; choose a new directory",
            dir.display()
        );
    }
    for (path, content) in files(&name, world, sdk) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(name)
}

const TRIGGER_LIB: &str = r#"//! A quarks-job trigger policy: decides whether an event starts a run of a QuarksJob.
//! The contract is `wit/policy.wit` (world `trigger`); the input and output types come from
//! `quarks_policy_sdk::trigger`.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::trigger::{Guest, Strategy, TriggerDecision, TriggerInput};

pub struct Policy;

impl Guest for Policy {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        Ok(decide(&input))
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_trigger!(Policy);

/// Runs errands set to `now` and one-offs (`once`) when no run is active; change this.
pub fn decide(input: &TriggerInput) -> TriggerDecision {
    let write_back = match input.quarks_job.strategy {
        Strategy::Now => Some(Strategy::Manual),
        Strategy::Once => Some(Strategy::Done),
        Strategy::Manual | Strategy::Done => {
            return TriggerDecision {
                run: false,
                write_strategy: None,
                reasons: vec![Reason::new("NothingToDo", "the strategy asks for no run")],
            };
        }
    };
    if input.run_active || !input.missing_config.is_empty() {
        return TriggerDecision {
            run: false,
            write_strategy: None,
            reasons: vec![Reason::new("NotNow", "a run is active or config is missing")],
        };
    }
    TriggerDecision {
        run: true,
        write_strategy: write_back,
        reasons: vec![Reason::new("Run", "the strategy asks for a run")],
    }
}
"#;

const TRIGGER_CASES: &str = r#"# quarks-job policy test --policy <component.wasm> cases.yaml
defaults:
  event: {type: created}
  quarks-job: {name: example, namespace: default, strategy: once}
  run-active: false
cases:
- name: a one-off runs and becomes done
  input: {}
  expect: {run: true, write-strategy: done}
- name: nothing runs while a run is active
  input: {run-active: true}
  expect: {run: false, reasons: [{code: NotNow}]}
- name: an errand waits for now
  input: {quarks-job: {strategy: manual}}
  expect: {run: false}
"#;

const OUTPUT_LIB: &str = r#"//! A quarks-job output policy: turns one output file of a Job into Secrets.
//! The contract is `wit/policy.wit` (world `output`); the input and output types come from
//! `quarks_policy_sdk::output`.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::output::{Guest, OutputInput, OutputResult, SecretSpec};

pub struct Policy;

impl Guest for Policy {
    fn transform(input: OutputInput) -> Result<OutputResult, Reason> {
        transform(&input)
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_output!(Policy);

/// Stores the whole file under one key, `content`, in the Secret the outputMap names; change
/// this.
pub fn transform(input: &OutputInput) -> Result<OutputResult, Reason> {
    if input.exit_code != 0 && !input.output.write_on_failure {
        return Ok(OutputResult {
            secrets: vec![],
            reasons: vec![Reason::new("ContainerFailed", "the container failed")],
        });
    }
    Ok(OutputResult {
        secrets: vec![SecretSpec {
            name: input.file.name.clone(),
            data: vec![("content".to_string(), input.content.clone())],
            labels: input.output.secret_labels.clone(),
            annotations: vec![],
            versioned: input.file.versioned,
        }],
        reasons: vec![Reason::new("Written", "the file is stored as `content`")],
    })
}
"#;

const OUTPUT_CASES: &str = r#"# quarks-job policy test --policy <component.wasm> cases.yaml
defaults:
  quarks-job-name: example
  namespace: default
  output: {output-type: json, secret-labels: {}, write-on-failure: false}
  container: main
  file-name: output.json
  file: {name: example-output}
  content: "hi"
  exit-code: 0
cases:
- name: the file is stored as content
  input: {}
  expect: {secrets: [{name: example-output, data: {content: hi}}]}
- name: a failed container writes nothing
  input: {exit-code: 3}
  expect: {secrets: []}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_depends_on_the_given_sdk_and_is_its_own_workspace() {
        let files = files(
            "my-policy",
            World::Trigger,
            Path::new("/src/quarks-job/policies/sdk"),
        );
        let manifest = &files[0].1;
        assert!(
            manifest.contains(r#"quarks-policy-sdk = { path = "/src/quarks-job/policies/sdk" }"#)
        );
        assert!(manifest.contains("[workspace]"));
        assert!(
            files
                .iter()
                .any(|(p, c)| p == Path::new("src/lib.rs") && c.contains("export_trigger!"))
        );
    }

    #[test]
    fn names_and_non_empty_directories_are_refused_with_a_hint() {
        let sdk = default_sdk_path().expect("tests run from the source tree");
        let dir = tempfile::tempdir().unwrap();
        let error = create(&dir.path().join("My Policy"), World::Trigger, &sdk).unwrap_err();
        assert!(
            error.to_string().contains("not a usable crate name"),
            "{error}"
        );
        std::fs::write(dir.path().join("taken"), "").unwrap();
        let error = create(dir.path(), World::Trigger, &sdk).unwrap_err();
        assert!(
            error.to_string().contains("not a usable crate name")
                || error.to_string().contains("not empty"),
            "{error}"
        );
        let error = create(&dir.path().join("p"), World::Trigger, dir.path()).unwrap_err();
        assert!(error.to_string().contains("--sdk"), "{error}");
    }
}
