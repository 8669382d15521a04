//! Compiles the WebAssembly policies the host embeds or tests against, as part of the
//! ordinary `cargo build`:
//!
//! * the built-in policies `policies/trigger-default` and `policies/output-default`, copied to
//!   `$OUT_DIR/<name>.wasm` and embedded by `src/policy/builtin.rs`;
//! * the hostile test fixtures under `tests/policy-fixtures/` and the example policies under
//!   `examples/policies/`, copied to
//!   `$OUT_DIR/fixtures/<name>.wasm`; the directory is exported to the crate as the
//!   compile-time variable `QUARKS_POLICY_FIXTURES`.
//!
//! They are built by a nested `cargo build --target wasm32-wasip2 --profile policy` into a
//! separate target directory (`<target>/policies`): the outer build holds the lock of its own
//! target directory, so sharing it would deadlock. Nothing prebuilt is committed.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "policy";

/// Built-in policies: (package name, file name in OUT_DIR).
const BUILTINS: &[&str] = &["trigger-default", "output-default"];

/// Hostile fixtures: directory names under tests/policy-fixtures; the package is
/// `policy-fixture-<name>`.
const FIXTURES: &[&str] = &["loop-forever", "allocate-forever", "panics", "huge-result"];

/// Example policies: directory names under examples/policies; the package is
/// `example-<name>`. Copied next to the fixtures, for the tests that use them.
const EXAMPLES: &[&str] = &["approval-trigger", "dotenv-output"];

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero; cargo shows stderr.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("host/ has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    // The workspace manifest and lock file hold the `policy` profile and the versions of
    // wit-bindgen and friends, so they shape the components' bytes too.
    for watched in [
        "policies",
        "wit",
        "tests/policy-fixtures",
        "examples/policies",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    ensure_wasm_target()?;

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace.join("target"),
    }
    .join("policies");

    let packages: Vec<String> = BUILTINS
        .iter()
        .map(|name| name.to_string())
        .chain(FIXTURES.iter().map(|name| format!("policy-fixture-{name}")))
        .collect();
    build_components(&workspace, &target_dir, &packages)?;
    // The examples use the built-ins as libraries (feature `component` off). Cargo unifies
    // features within one build, and would put that build's trigger_default.wasm where the
    // built-in's is, so they get a build and a target directory of their own.
    let examples: Vec<String> = EXAMPLES
        .iter()
        .map(|name| format!("example-{name}"))
        .collect();
    let examples_target_dir = target_dir.with_file_name("policy-examples");
    build_components(&workspace, &examples_target_dir, &examples)?;
    let built_examples = examples_target_dir.join(WASM_TARGET).join(PROFILE);

    let built = target_dir.join(WASM_TARGET).join(PROFILE);
    for name in BUILTINS {
        copy_if_changed(
            &component_path(&built, name),
            &out_dir.join(format!("{name}.wasm")),
        )?;
    }
    let fixtures = out_dir.join("fixtures");
    fs::create_dir_all(&fixtures).map_err(|e| format!("creating {}: {e}", fixtures.display()))?;
    let fixture_packages = FIXTURES
        .iter()
        .map(|name| (*name, &built, format!("policy-fixture-{name}")))
        .chain(
            EXAMPLES
                .iter()
                .map(|name| (*name, &built_examples, format!("example-{name}"))),
        );
    for (name, dir, package) in fixture_packages {
        copy_if_changed(
            &component_path(dir, &package),
            &fixtures.join(format!("{name}.wasm")),
        )?;
    }
    println!(
        "cargo:rustc-env=QUARKS_POLICY_FIXTURES={}",
        fixtures.display()
    );
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name} for the build script"))
}

/// Where cargo puts the component of a cdylib package (dashes become underscores).
fn component_path(built: &Path, package: &str) -> PathBuf {
    built.join(format!("{}.wasm", package.replace('-', "_")))
}

/// Makes sure the standard library for wasm32-wasip2 is installed: rust-toolchain.toml lists
/// the target, but rustup only honours that when it installs the toolchain, so a toolchain
/// installed earlier may lack it. With rustup, install it; without, say what to do.
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running {} --print sysroot: {e}", rustc.to_string_lossy()))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let installed = || {
        sysroot
            .join("lib/rustlib")
            .join(WASM_TARGET)
            .join("lib")
            .is_dir()
    };
    if installed() {
        return Ok(());
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    // Progress goes to stderr: the build script's stdout is reserved for cargo directives.
    let status = rustup.stdout(Stdio::from(std::io::stderr())).status();
    match status {
        Ok(status) if status.success() && installed() => Ok(()),
        Ok(status) if status.success() => Err(format!(
            "`rustup target add {WASM_TARGET}` succeeded, but the standard library for \
             {WASM_TARGET} is still missing from {} (is RUSTC a different toolchain than \
             rustup's?)",
            sysroot.display()
        )),
        Ok(status) => Err(format!(
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed \
             ({status}); install it, then build again"
        )),
        Err(_) => Err(format!(
            "the Rust standard library for {WASM_TARGET} is not installed in {} and rustup \
             is not available; install the {WASM_TARGET} target for this toolchain (the built-in \
             policies are compiled to WebAssembly during the build)",
            sysroot.display()
        )),
    }
}

/// Runs the nested cargo build of all policy components in one invocation.
fn build_components(
    workspace: &Path,
    target_dir: &Path,
    packages: &[String],
) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--target", WASM_TARGET, "--profile", PROFILE]);
    for package in packages {
        command.args(["-p", package]);
    }
    command.env("CARGO_TARGET_DIR", target_dir);
    // Panic locations embed source paths. Remapping the machine-specific ones makes a
    // built-in's bytes, and so its digest (recorded in QuarksJob status), depend only on the
    // sources and the pinned toolchain, not on where they were checked out or cached.
    let mut remaps = vec![format!(
        "--remap-path-prefix={}=/workspace",
        workspace.display()
    )];
    if let Some(cargo_home) = cargo_home() {
        remaps.push(format!(
            "--remap-path-prefix={}=/cargo",
            cargo_home.display()
        ));
    }
    command.env("CARGO_ENCODED_RUSTFLAGS", remaps.join("\x1f"));
    // The outer build's other flags are for the host target (and may come from clippy,
    // coverage or a sanitizer); none of them belong in the WebAssembly build. The jobserver
    // variables are kept on purpose: the nested cargo then shares the outer build's job
    // tokens instead of starting as many compilers again.
    for name in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(name);
    }
    for (name, _) in env::vars_os() {
        if name.to_string_lossy().starts_with("CARGO_PROFILE_") {
            command.env_remove(name);
        }
    }
    command.stdout(Stdio::from(std::io::stderr()));
    let status = command
        .status()
        .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the WebAssembly policies ({}) for {WASM_TARGET} failed ({status}); \
             the compiler output is above",
            packages.join(", ")
        ))
    }
}

/// Where cargo keeps downloaded crates' sources (`$CARGO_HOME`, by default `~/.cargo`).
fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

/// Copies `from` to `to` unless `to` already has the same bytes, so that an unchanged
/// component does not make rustc re-embed it.
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| {
        format!(
            "the nested build succeeded but {} is missing: {e}",
            from.display()
        )
    })?;
    if fs::read(to).ok().as_deref() == Some(bytes.as_slice()) {
        return Ok(());
    }
    fs::write(to, &bytes).map_err(|e| format!("writing {}: {e}", to.display()))
}
