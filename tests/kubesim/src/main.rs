//! The `kubesim` binary: starts a [`kubesim::KubeSim`] from command-line flags, prints its
//! URL once the kubeconfig is written, and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubesim::{KubeSim, KubeSimOptions};

/// A local Kubernetes API server with a Job controller and a process-running kubelet.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Args {
    /// Where to write the kubeconfig (written only once the server is ready).
    #[arg(long, env = "KUBESIM_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "KUBESIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for pod volumes and logs (default: a temporary directory).
    #[arg(long, env = "KUBESIM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The quarks-job binary for images named `*quarks-job`.
    #[arg(long, env = "KUBESIM_QUARKS_JOB_BIN")]
    quarks_job_bin: Option<PathBuf>,
    /// Extra image mapping PATTERN=PROGRAM (repeatable).
    #[arg(long = "image", value_name = "PATTERN=PROGRAM")]
    images: Vec<String>,
    /// Enforce RBAC for service-account users.
    #[arg(long, env = "KUBESIM_ENFORCE_RBAC")]
    enforce_rbac: bool,
    /// Serve the API only: no Job controller, no kubelet.
    #[arg(long)]
    no_kubelet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut extra_images = Vec::new();
    for i in &args.images {
        let (pattern, program) = i
            .split_once('=')
            .with_context(|| format!("--image {i}: expected PATTERN=PROGRAM"))?;
        extra_images.push((pattern.to_string(), PathBuf::from(program)));
    }
    let sim = KubeSim::start(KubeSimOptions {
        listen: args.listen,
        state_dir: args.state_dir,
        kubeconfig: Some(args.kubeconfig),
        run_kubelet: !args.no_kubelet,
        quarks_job_bin: args.quarks_job_bin,
        extra_images,
        enforce_rbac: args.enforce_rbac,
    })
    .await?;
    println!("{}", sim.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.stop().await;
    Ok(())
}
