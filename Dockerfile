# The quarks-job image: the operator, and the output helper it adds to Job pods
# (/usr/local/bin/quarks-job persist-output). Built from the repository root:
#
#   docker build -t ghcr.io/quarks-job/quarks-job:0.1.0 .
#
# The tag must match the chart's image (charts/quarks-job values image.*, appVersion), which is
# also what the chart passes as --persist-output-image. See README "Deploying with Helm".

# Build: the toolchain pinned in rust-toolchain.toml (rustup installs it, with the
# wasm32-wasip2 target, on first use); host/build.rs compiles the built-in policies to
# WebAssembly and the binary embeds them.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup show active-toolchain \
    && cargo build --locked --release -p quarks-job --bin quarks-job \
    && install -m 0755 target/release/quarks-job /quarks-job

# Run: glibc and libgcc only (distroless "cc"), no shell, no package manager; a non-root user
# (65532, the chart's runAsUser), read-only root filesystem friendly.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /quarks-job /usr/local/bin/quarks-job
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/quarks-job"]
