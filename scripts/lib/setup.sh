# Shared set-up for scripts/: the pinned Rust toolchain with the wasm32-wasip2 target (the
# built-in policies are compiled to WebAssembly during the build) and cargo-nextest.

ensure_toolchain() {
    if ! command -v rustup >/dev/null; then
        echo "error: rustup is required (https://rustup.rs); it installs the toolchain pinned in rust-toolchain.toml" >&2
        exit 1
    fi
    # Installs the toolchain pinned in rust-toolchain.toml if missing; the target list of a toolchain
    # that is already installed is not updated by rustup on its own, hence the explicit add.
    rustup toolchain install >/dev/null 2>&1 || rustup show active-toolchain >/dev/null
    rustup target add wasm32-wasip2 >/dev/null
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "== installing cargo-nextest"
        cargo install --locked cargo-nextest
    fi
}

# componentize-py (PyPI), which builds the Python example policy (examples/policies/approval-py)
# into a component for the tests and the language benchmark. The version and the hashes of its
# wheels are pinned in examples/policies/approval-py/requirements.txt; it is installed with pip
# into target/policy-tools/ (ignored by git) behind the wrapper
# target/policy-tools/bin/componentize-py, where host/tests/policies/python_policy.rs looks for
# it. Quick when already installed: reinstalls only when requirements.txt changed.
ensure_policy_tools() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    local tools=$root/target/policy-tools
    local requirements=$root/examples/policies/approval-py/requirements.txt
    local wrapper=$tools/bin/componentize-py
    if [ -x "$wrapper" ] && cmp -s "$requirements" "$tools/requirements.txt" \
        && "$wrapper" --version >/dev/null 2>&1; then
        return
    fi
    local python
    # The interpreter itself, not a shim (pyenv) that may pick another one elsewhere.
    python=$(python3 -c 'import sys; print(sys.executable)') || {
        echo "error: python3 (3.9 or later, with pip) is required to build the Python example policy" >&2
        exit 1
    }
    echo "== installing componentize-py (examples/policies/approval-py/requirements.txt) into target/policy-tools"
    rm -rf "$tools/componentize-py"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --require-hashes --target "$tools/componentize-py" -r "$requirements"
    mkdir -p "$tools/bin"
    cat >"$wrapper" <<WRAPPER
#!/bin/sh
# Written by scripts/lib/setup.sh (ensure_policy_tools).
PYTHONPATH="$tools/componentize-py\${PYTHONPATH:+:\$PYTHONPATH}" exec "$python" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "\$@"
WRAPPER
    chmod +x "$wrapper"
    cp "$requirements" "$tools/requirements.txt"
    "$wrapper" --version
}

# The OCI registry the policy-distribution tests push to and pull from: Debian's
# docker-registry package (the CNCF distribution server), started by the tests themselves on a
# loopback port. Installed with apt-get when missing (CI machines run as root).
ensure_registry() {
    if [ -x /usr/bin/docker-registry ]; then
        return
    fi
    echo "== installing docker-registry (Debian) for the OCI policy tests"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null
    # Installing must not start the packaged service: the tests run their own instances.
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        docker-registry >/dev/null; then
        echo "error: could not install docker-registry; install it (apt-get install docker-registry) and run again" >&2
        exit 1
    fi
}

# Real Helm and the Kubernetes JSON schemas for the chart tests (host/tests/cluster/chart.rs):
# helm-python-sdk (Helm v4's Go SDK as a library, bundled in its wheel: no helm binary, no
# download outside PyPI) and kubernetes-validate, pinned with hashes in
# scripts/lib/chart-tools.txt, in a venv at target/chart-tools (ignored by git). Quick when
# already installed: reinstalls only when chart-tools.txt changed. The chart tests fail (never
# skip) when target/chart-tools/bin/python is missing.
ensure_chart_tools() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    local tools=$root/target/chart-tools
    local requirements=$root/scripts/lib/chart-tools.txt
    if [ -x "$tools/bin/python" ] && cmp -s "$requirements" "$tools/requirements.txt" \
        && "$tools/bin/python" -c 'import helm_python, kubernetes_validate' >/dev/null 2>&1; then
        return
    fi
    local python
    python=$(python3 -c 'import sys; print(sys.executable)') || {
        echo "error: python3 (3.11, with venv and pip) is required for the chart tests" >&2
        exit 1
    }
    echo "== installing Helm (helm-python-sdk) and kubernetes-validate (scripts/lib/chart-tools.txt) into target/chart-tools"
    rm -rf "$tools"
    "$python" -m venv "$tools" || {
        echo "error: could not create a venv (python3 -m venv); install python3-venv and run again" >&2
        exit 1
    }
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r "$requirements"
    cp "$requirements" "$tools/requirements.txt"
    "$tools/bin/python" -c 'import helm_python as h; print("Helm", h.helm_sdk_version(), "(helm-python-sdk", h.__version__ + ")")'
}
