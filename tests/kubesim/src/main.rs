//! The `kubesim` binary. Without a subcommand it starts a [`kubesim::KubeSim`] from
//! command-line flags, prints its URL once the kubeconfig is written, and runs until SIGINT
//! or SIGTERM. `kubesim node` runs kubesim's kubelet as the node of another API server
//! ([`kubesim::node`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use k8s_openapi::api::core::v1::Pod;
use kubesim::kubelet::images::ImageTable;
use kubesim::node::NodeOptions;
use kubesim::{KubeSim, KubeSimOptions};
use tokio_util::sync::CancellationToken;

/// A local Kubernetes API server with a Job controller and a process-running kubelet.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join an API server (e.g. a real kube-apiserver) as its node: bind its unscheduled
    /// pods and run them as local processes, as a scheduler and kubelet would.
    Node(NodeArgs),
    /// List the pods of the current namespace with kube's default client configuration
    /// (in a pod: the in-cluster config); checks a pod's identity from inside.
    #[command(hide = true)]
    ListPods,
}

/// The API server (the command without a subcommand).
#[derive(Debug, Args)]
struct ServeArgs {
    /// Where to write the kubeconfig (written only once the server is ready; required).
    #[arg(long, env = "KUBESIM_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KUBESIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[command(flatten)]
    kubelet: KubeletArgs,
    /// Enforce RBAC for service-account users.
    #[arg(long, env = "KUBESIM_ENFORCE_RBAC")]
    enforce_rbac: bool,
    /// Serve the API only: no Job controller, no kubelet.
    #[arg(long)]
    no_kubelet: bool,
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// The kubeconfig of the API server to join (its current context is used).
    #[arg(long, env = "KUBESIM_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The Node's name.
    #[arg(long, env = "KUBESIM_NODE_NAME", default_value = kubesim::kubelet::NODE_NAME)]
    name: String,
    #[command(flatten)]
    kubelet: KubeletArgs,
}

/// What the kubelet needs, in both modes.
#[derive(Debug, Args)]
struct KubeletArgs {
    /// Directory for pod volumes and logs (default: a temporary directory).
    #[arg(long, env = "KUBESIM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The quarks-job binary for images named `*quarks-job`.
    #[arg(long, env = "KUBESIM_QUARKS_JOB_BIN")]
    quarks_job_bin: Option<PathBuf>,
    /// Extra image mapping PATTERN=PROGRAM (repeatable; the variable takes a comma list).
    #[arg(
        long = "image",
        value_name = "PATTERN=PROGRAM",
        env = "KUBESIM_IMAGES",
        value_delimiter = ','
    )]
    images: Vec<String>,
}

impl KubeletArgs {
    fn extra_images(&self) -> anyhow::Result<Vec<(String, PathBuf)>> {
        self.images
            .iter()
            .map(|i| {
                let (pattern, program) = i
                    .split_once('=')
                    .with_context(|| format!("--image {i}: expected PATTERN=PROGRAM"))?;
                Ok((pattern.to_string(), PathBuf::from(program)))
            })
            .collect()
    }

    fn image_table(&self) -> anyhow::Result<ImageTable> {
        let mut images = ImageTable::with_defaults(self.quarks_job_bin.clone());
        for (pattern, program) in self.extra_images()? {
            images.add(&pattern, program);
        }
        Ok(images)
    }
}

/// Returns on SIGINT or SIGTERM.
async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Node(args)) => node(args).await,
        Some(Command::ListPods) => list_pods().await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let Some(kubeconfig) = args.kubeconfig else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  --kubeconfig <KUBECONFIG>",
            )
            .exit();
    };
    let sim = KubeSim::start(KubeSimOptions {
        listen: args.listen,
        state_dir: args.kubelet.state_dir.clone(),
        kubeconfig: Some(kubeconfig),
        run_kubelet: !args.no_kubelet,
        quarks_job_bin: args.kubelet.quarks_job_bin.clone(),
        extra_images: args.kubelet.extra_images()?,
        enforce_rbac: args.enforce_rbac,
    })
    .await?;
    println!("{}", sim.url());
    terminated().await?;
    sim.stop().await;
    Ok(())
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let opts = NodeOptions {
        kubeconfig: args.kubeconfig,
        name: args.name.clone(),
        state_dir: args.kubelet.state_dir.clone(),
        images: args.kubelet.image_table()?,
    };
    let shutdown = CancellationToken::new();
    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = terminated().await {
                tracing::error!(error = %e, "cannot wait for signals");
            }
            shutdown.cancel();
        })
    };
    let name = args.name;
    let result = kubesim::node::run(opts, shutdown, |info| {
        println!(
            "node {name} ready: state dir {}, log endpoint https://{}",
            info.state_dir.display(),
            info.log_endpoint
        );
    })
    .await;
    signals.abort();
    result
}

async fn list_pods() -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("kube default client config")?;
    let pods: kube::Api<Pod> = kube::Api::default_namespaced(client);
    for pod in pods.list(&Default::default()).await? {
        println!("{}", pod.metadata.name.unwrap_or_default());
    }
    Ok(())
}
