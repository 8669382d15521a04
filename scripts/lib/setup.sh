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
