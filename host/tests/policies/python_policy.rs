//! Builds the Python approval policy (examples/policies/approval-py) into a WebAssembly
//! component with componentize-py, for the tests and the language benchmark
//! (`host/benches/policy_languages.rs` includes this file).
//!
//! The tool is the one `scripts/lib/setup.sh` (`ensure_policy_tools`) installs, at the version
//! pinned in examples/policies/approval-py/requirements.txt; `COMPONENTIZE_PY` names another
//! one. A missing tool fails the test with instructions: it never skips.
//!
//! The component goes to `target/policy-languages/approval-py-<key>.wasm`, the key being a hash
//! of everything that shapes it (source, WIT, tool version, flags): tests run as separate
//! processes, so this file is the cache, and it is written by an atomic rename.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The example's directory and its module (`approval.py`).
const SOURCE_DIR: &str = "examples/policies/approval-py";
const MODULE: &str = "approval";

/// `--stub-wasi`: the component then imports nothing but the contract's types (without it, it
/// imports all of WASI and reads its environment on the first call, which the engine refuses).
const ARGS: &[&str] = &["-d", "wit", "-w", "trigger", "componentize", "--stub-wasi"];

/// The componentize-py command: `$COMPONENTIZE_PY`, or the one `ensure_policy_tools` installed.
pub fn componentize_py() -> PathBuf {
    if let Some(tool) = std::env::var_os("COMPONENTIZE_PY") {
        return PathBuf::from(tool);
    }
    let tool = workspace().join("target/policy-tools/bin/componentize-py");
    assert!(
        tool.is_file(),
        "componentize-py is not installed at {}: run `scripts/test`, or \
         `source scripts/lib/setup.sh && ensure_policy_tools`, which installs the version pinned \
         in {SOURCE_DIR}/requirements.txt (or set COMPONENTIZE_PY to the tool)",
        tool.display()
    );
    tool
}

/// The component of the Python approval policy, built if this source has not been built yet.
pub fn approval_py() -> PathBuf {
    let root = workspace();
    let tool = componentize_py();
    let version = Command::new(&tool)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", tool.display()));
    assert!(
        version.status.success(),
        "{} --version failed: {}",
        tool.display(),
        String::from_utf8_lossy(&version.stderr)
    );

    let mut key = Sha256::new();
    key.update(&version.stdout);
    for arg in ARGS {
        key.update(arg.as_bytes());
        key.update([0]);
    }
    for input in [
        format!("{SOURCE_DIR}/{MODULE}.py"),
        "wit/policy.wit".to_owned(),
    ] {
        let bytes = std::fs::read(root.join(&input)).unwrap_or_else(|e| panic!("{input}: {e}"));
        key.update(&bytes);
    }
    let key = hex::encode(&key.finalize()[..8]);

    let out_dir = root.join("target/policy-languages");
    let out = out_dir.join(format!("approval-py-{key}.wasm"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&out_dir).expect("create target/policy-languages");
    let partial = out_dir.join(format!("approval-py-{key}.{}.partial", std::process::id()));
    let built = Command::new(&tool)
        .args(ARGS)
        .args(["-p", SOURCE_DIR, MODULE, "-o"])
        .arg(&partial)
        .current_dir(&root)
        // No __pycache__ next to the source.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        built.status.success(),
        "componentize-py failed on {SOURCE_DIR}:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::rename(&partial, &out).expect("move the built component into place");
    out
}
