//! The `quarks-job` command line: sub-commands, flags (each also read from an environment
//! variable) and their dispatch. Commands print results on stdout and errors on stderr with a
//! hint at the fix; the exit code is non-zero on any error.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::contract::{OutputInput, TriggerInput};
use crate::policy::{Limits, PolicyEngine, World, builtin};

#[derive(Parser, Debug)]
#[command(name = "quarks-job", version = crate::VERSION, about = "Runs Jobs when something interesting happens and stores their output in Secrets; every decision is made by a WebAssembly policy.")]
pub struct Cli {
    /// Without a sub-command, `quarks-job` runs the operator.
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// Flags of the operator (upstream-compatible names and environment variables).
#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Path to a kubeconfig; by default in-cluster configuration or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Act only in namespaces labelled quarks.cloudfoundry.org/monitored=<id>.
    #[arg(long, env = "MONITORED_ID", default_value = "default")]
    pub monitored_id: String,
    /// Create or update the QuarksJob CRD at start-up (server-side apply), replacing an older
    /// one such as the Go operator's; `--apply-crd=false` leaves the CRD to the installer.
    /// Either way the operator refuses to act while the served CRD would prune its status.
    #[arg(long, env = "APPLY_CRD", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub apply_crd: bool,
    /// How many QuarksJobs are reconciled at once.
    #[arg(long, env = "MAX_WORKERS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_workers: u16,
    /// Log level (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Elect a leader through a Lease so that only one replica acts (needed with replicas > 1).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// The operator's own namespace (holds the leader-election Lease).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "default")]
    pub operator_namespace: String,
    /// The ClusterRole a namespace's RoleBinding grants the operator (named in the
    /// `NamespaceNotBound` condition and Event of a labelled namespace it has no rights in).
    #[arg(
        long,
        env = "QUARKS_JOB_NAMESPACE_CLUSTER_ROLE",
        default_value = "quarks-job-namespace"
    )]
    pub namespace_cluster_role: String,
    /// The operator's ServiceAccount (in --operator-namespace), for the `kubectl create
    /// rolebinding` command that `NamespaceNotBound` messages give.
    #[arg(long, env = "QUARKS_JOB_SERVICE_ACCOUNT", default_value = "quarks-job")]
    pub service_account: String,
    /// Image of the output helper added to pods with output (the operator's own image).
    #[arg(long, env = "PERSIST_OUTPUT_IMAGE", default_value = concat!("ghcr.io/quarks-job/quarks-job:", env!("CARGO_PKG_VERSION")))]
    pub persist_output_image: String,
    /// The output helper's ClusterRole (secrets create; pods get/list/watch), which the operator
    /// binds to the helper's ServiceAccount in each monitored namespace; it must exist (the
    /// chart creates it; `quarks-job persist-output-cluster-role | kubectl apply -f -` otherwise)
    /// and the operator needs `bind` on it.
    #[arg(
        long,
        env = "PERSIST_OUTPUT_CLUSTER_ROLE",
        default_value = crate::output::pod::DEFAULT_HELPER_CLUSTER_ROLE
    )]
    pub persist_output_cluster_role: String,
    /// The output helper gives up waiting for its containers after this many seconds.
    #[arg(long, env = "PERSIST_OUTPUT_DEADLINE_SECONDS", default_value_t = 3600)]
    pub persist_output_deadline_seconds: u64,
    /// Count versioned secrets the operator did not make (no valid seal) as versions, as the
    /// original did: needed where other writers (the Quarks operator) make versions that
    /// QuarksJobs reference. Risk: whoever may create Secrets in a namespace can then redirect
    /// its versioned references (e.g. with a `-v999999`).
    #[arg(long, env = "TRUST_UNSEALED_VERSIONS", default_value_t = false)]
    pub trust_unsealed_versions: bool,
    /// Pull policy of the output helper's container; by default the cluster's (IfNotPresent
    /// for a tagged image). The environment variable is the original operator's.
    #[arg(long, env = "DOCKER_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub persist_output_image_pull_policy: Option<String>,
    /// An image pull secret of the helper's image, added to pods with output (it is read in
    /// the pod's namespace); repeat for more.
    #[arg(
        long = "persist-output-image-pull-secret",
        env = "PERSIST_OUTPUT_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub persist_output_image_pull_secrets: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub oci: OciArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the QuarksJob CustomResourceDefinition (apiextensions.k8s.io/v1) as YAML.
    Crd,
    /// Print the output helper's ClusterRole (rbac.authorization.k8s.io/v1) as YAML, for
    /// `kubectl apply -f -` where the chart does not create it.
    PersistOutputClusterRole {
        /// Its name (the operator's --persist-output-cluster-role).
        #[arg(long, default_value = crate::output::pod::DEFAULT_HELPER_CLUSTER_ROLE)]
        name: String,
    },
    /// Print the version of quarks-job and of the policy contract it speaks.
    Version,
    /// The output helper in a Job's pod: hands the files the served containers wrote to
    /// /mnt/quarks to the operator (added to pods by the operator; not for direct use).
    PersistOutput(crate::output::persist::PersistOutputArgs),
    /// Work with policies without a cluster.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run a trigger or output policy on one input (JSON mirroring the WIT records) and print
    /// its result as JSON.
    Run(PolicyRunArgs),
    /// Run a table of input → expected-result cases (YAML) against a policy; exits non-zero
    /// when a case fails. See `quarks-job policy new` for an example table.
    Test(PolicyTestArgs),
    /// Create a new policy crate (Rust, the SDK) in a new directory.
    New(PolicyNewArgs),
    /// Publish a policy component to an OCI registry; prints the digest reference to select.
    Push(PolicyPushArgs),
}

#[derive(Args, Debug)]
pub struct PolicyPushArgs {
    /// The component (.wasm); it must load as a trigger or an output policy.
    pub file: PathBuf,
    /// Where to push: `[oci://]registry/repository:tag`.
    pub reference: String,
    /// Speak plain HTTP to the registry (local registries only).
    #[arg(long)]
    pub insecure: bool,
    /// Registry user name (with --password; anonymous without).
    #[arg(long, env = "QUARKS_JOB_REGISTRY_USERNAME")]
    pub username: Option<String>,
    #[arg(long, env = "QUARKS_JOB_REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Args, Debug)]
pub struct PolicyTestArgs {
    /// The policy: `builtin:<name>` or a path to a WebAssembly component (.wasm).
    #[arg(long, env = "QUARKS_JOB_POLICY")]
    pub policy: String,
    /// The test table (YAML): `cases: [{name, input, expect | expect-error}]`.
    pub table: PathBuf,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args, Debug)]
pub struct PolicyNewArgs {
    /// Directory to create; its name is the crate's name.
    pub dir: PathBuf,
    /// Which world the policy implements.
    #[arg(long, value_enum)]
    pub world: WorldArg,
    /// Path to the SDK (`policies/sdk` of the quarks-job sources); by default the one this
    /// binary was built from.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PolicyRunArgs {
    /// The policy: `builtin:trigger-default`, `builtin:output-default`, or a path to a
    /// WebAssembly component (.wasm).
    #[arg(long, env = "QUARKS_JOB_POLICY")]
    pub policy: String,
    /// The input as JSON: a file path, or `-` for standard input.
    #[arg(long, env = "QUARKS_JOB_POLICY_INPUT")]
    pub input: PathBuf,
    /// Which world the policy implements; by default inferred from the built-in's name, or from
    /// the input (`event` → trigger, `file-name` → output).
    #[arg(long, value_enum, env = "QUARKS_JOB_POLICY_WORLD")]
    pub world: Option<WorldArg>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum WorldArg {
    Trigger,
    Output,
}

impl From<WorldArg> for World {
    fn from(w: WorldArg) -> World {
        match w {
            WorldArg::Trigger => World::Trigger,
            WorldArg::Output => World::Output,
        }
    }
}

/// Policies from OCI registries.
#[derive(Args, Debug, Clone)]
pub struct OciArgs {
    /// A registry (`HOST[:PORT]`) `oci://` policies may come from; repeat for more. Without
    /// one, OCI references are refused. A token realm or a redirect must name an allowed host
    /// too.
    #[arg(
        long = "policy-allow-registry",
        env = "QUARKS_JOB_POLICY_ALLOW_REGISTRIES",
        value_delimiter = ','
    )]
    pub allowed_registries: Vec<String>,
    /// Let registries be on loopback, link-local, private (RFC 1918, fc00::/7), CGNAT or
    /// unspecified addresses (refused by default: the API server, nodes, cloud metadata).
    #[arg(
        long = "policy-allow-private-addresses",
        env = "QUARKS_JOB_POLICY_ALLOW_PRIVATE_ADDRESSES",
        default_value_t = false
    )]
    pub allow_private_addresses: bool,
    /// A registry (`host:port`) spoken to over plain HTTP instead of TLS; repeat for more. Only
    /// for local registries; it must be allowed with --policy-allow-registry too.
    #[arg(
        long = "policy-insecure-registry",
        env = "QUARKS_JOB_POLICY_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// The largest policy component pulled from a registry, in KiB.
    #[arg(long, default_value_t = 50 * 1024, env = "QUARKS_JOB_POLICY_MAX_MODULE_KIB")]
    pub policy_max_module_kib: u64,
    /// Directory where compiled policies are kept across restarts (the operator's own: nobody
    /// else may write there). Without it, compiled policies live in memory only.
    #[arg(long, env = "QUARKS_JOB_POLICY_CACHE_DIR")]
    pub policy_cache_dir: Option<PathBuf>,
}

/// Limits of every policy call (defaults are safe for untrusted policies).
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// CPU time budget of one policy call, in milliseconds.
    #[arg(long, default_value_t = 100, env = "QUARKS_JOB_POLICY_CPU_MS")]
    pub policy_cpu_ms: u64,
    /// Linear memory a policy call may use, in MiB.
    #[arg(long, default_value_t = 64, env = "QUARKS_JOB_POLICY_MEMORY_MIB")]
    pub policy_memory_mib: usize,
    /// Size of what a policy call may return, in KiB.
    #[arg(long, default_value_t = 2048, env = "QUARKS_JOB_POLICY_RESULT_KIB")]
    pub policy_result_kib: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            cpu: Duration::from_millis(self.policy_cpu_ms),
            memory_bytes: self.policy_memory_mib << 20,
            result_bytes: self.policy_result_kib << 10,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.operator);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        return run_operator(cli.operator);
    };
    match command {
        Command::Crd => print_stdout(&crate::crd::crd_yaml()?),
        Command::PersistOutputClusterRole { name } => print_stdout(&serde_yaml::to_string(
            &crate::output::write::helper_cluster_role(&name),
        )?),
        Command::Version => print_stdout(&format!(
            "quarks-job {} (policy contract quarks:policy@{})\n",
            crate::VERSION,
            crate::policy::CONTRACT_VERSION
        )),
        Command::Policy(PolicyCommand::Run(args)) => policy_run(args),
        Command::Policy(PolicyCommand::Test(args)) => policy_test(args),
        Command::Policy(PolicyCommand::New(args)) => policy_new(args),
        Command::Policy(PolicyCommand::Push(args)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(policy_push(args)),
        Command::PersistOutput(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(crate::output::persist::run(args)),
    }
}

fn init_logging(args: &OperatorArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for people: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    let config = crate::runtime::OperatorConfig {
        kubeconfig: args.kubeconfig,
        monitored_id: args.monitored_id,
        apply_crd: args.apply_crd,
        max_workers: args.max_workers,
        listen: args.listen,
        leader_election: args.leader_election,
        operator_namespace: args.operator_namespace,
        namespace_cluster_role: args.namespace_cluster_role,
        persist_output_cluster_role: args.persist_output_cluster_role,
        service_account: args.service_account,
        limits: args.limits.limits(),
        oci: crate::policy::resolver::OciSettings {
            allowed_registries: args.oci.allowed_registries,
            insecure_registries: args.oci.insecure_registries,
            allow_private_addresses: args.oci.allow_private_addresses,
            max_module_bytes: args.oci.policy_max_module_kib.saturating_mul(1024),
            cache_dir: args.oci.policy_cache_dir,
        },
        trust_unsealed_versions: args.trust_unsealed_versions,
        helper: crate::output::pod::HelperSpec {
            image: args.persist_output_image,
            deadline_seconds: args.persist_output_deadline_seconds,
            image_pull_policy: args.persist_output_image_pull_policy,
            image_pull_secrets: args.persist_output_image_pull_secrets,
        },
    };
    // A malformed registry is a start-up error, not a refusal of every tenant's pull.
    config.oci.rules().map_err(anyhow::Error::msg)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(crate::runtime::run(config))
}

/// Where a policy's bytes come from.
enum PolicySource {
    Builtin(&'static builtin::Builtin),
    File(PathBuf),
}

fn parse_policy_source(text: &str) -> anyhow::Result<PolicySource> {
    if let Some(name) = text.strip_prefix("builtin:") {
        let found = builtin::builtin(name).with_context(|| {
            let known: Vec<&str> = builtin::all().iter().map(|b| b.name).collect();
            format!(
                "no built-in policy named {name:?}; known: {}",
                known.join(", ")
            )
        })?;
        return Ok(PolicySource::Builtin(found));
    }
    Ok(PolicySource::File(PathBuf::from(text)))
}

fn read_input(path: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the input from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the input file {}", path.display()))?
    };
    serde_json::from_str(&text).context("the input is not valid JSON")
}

fn infer_world(input: &serde_json::Value) -> anyhow::Result<World> {
    match (input.get("event"), input.get("file-name")) {
        (Some(_), None) => Ok(World::Trigger),
        (None, Some(_)) => Ok(World::Output),
        _ => bail!(
            "cannot tell whether the input is for a trigger policy (it has `event`) or an output policy (it has `file-name`); pass --world trigger|output"
        ),
    }
}

/// The bytes of a policy named on the command line.
fn policy_bytes(source: &PolicySource) -> anyhow::Result<std::borrow::Cow<'static, [u8]>> {
    Ok(match source {
        PolicySource::Builtin(b) => b.bytes.into(),
        PolicySource::File(path) => std::fs::read(path)
            .with_context(|| format!("reading the policy {}", path.display()))?
            .into(),
    })
}

fn policy_test(args: PolicyTestArgs) -> anyhow::Result<()> {
    use crate::authoring::table;
    let source = parse_policy_source(&args.policy)?;
    let table = table::read_table(&args.table)?;
    let world = match &source {
        PolicySource::Builtin(b) => b.world,
        PolicySource::File(_) => table::table_world(&table).context(
            "cannot tell the world of the table's inputs; add `world: trigger` or `world: output`",
        )?,
    };
    let engine = PolicyEngine::new(args.limits.limits())?;
    let policy = engine.load(&policy_bytes(&source)?, world)?;
    let results = table::run_table(&engine, &policy, &table);
    let mut report = String::new();
    for result in &results {
        match &result.failure {
            None => report.push_str(&format!("ok    {}\n", result.name)),
            Some(why) => report.push_str(&format!("FAIL  {}: {why}\n", result.name)),
        }
    }
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    report.push_str(&format!(
        "{} cases: {} passed, {failed} failed ({} {})\n",
        results.len(),
        results.len() - failed,
        world,
        policy.digest()
    ));
    print_stdout(&report)?;
    if failed > 0 {
        bail!("{failed} of {} cases failed", results.len());
    }
    Ok(())
}

async fn policy_push(args: PolicyPushArgs) -> anyhow::Result<()> {
    use crate::policy::oci;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading the policy {}", args.file.display()))?;
    // Refuse to publish what no operator would load.
    let engine = PolicyEngine::new(Limits::default())?;
    let world = [World::Trigger, World::Output]
        .into_iter()
        .find(|w| engine.load(&bytes, *w).is_ok())
        .with_context(|| {
            let why = engine
                .load(&bytes, World::Trigger)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            format!(
                "{} is not a trigger or output policy component: {why}",
                args.file.display()
            )
        })?;
    let reference = args
        .reference
        .strip_prefix("oci://")
        .unwrap_or(&args.reference)
        .to_owned();
    let registry = reference.split('/').next().unwrap_or_default().to_owned();
    let insecure = if args.insecure {
        vec![registry]
    } else {
        vec![]
    };
    let auth = match (args.username, args.password) {
        (Some(user), Some(password)) => oci_client::secrets::RegistryAuth::Basic(user, password),
        (None, None) => oci_client::secrets::RegistryAuth::Anonymous,
        _ => bail!("give both --username and --password, or neither"),
    };
    let client = oci::client(&insecure);
    let digest = oci::push(&client, &reference, bytes, &auth)
        .await
        .with_context(|| format!("pushing to {reference}"))?;
    let repository = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(reference.as_str(), |(repository, _)| repository);
    print_stdout(&format!("oci://{repository}@{digest}\n"))?;
    eprintln!("pushed a {world} policy; select it with the line above");
    Ok(())
}

fn policy_new(args: PolicyNewArgs) -> anyhow::Result<()> {
    use crate::authoring::template;
    let sdk = match args.sdk {
        Some(sdk) => sdk,
        None => template::default_sdk_path().context(
            "the SDK this binary was built from is not on this machine; pass --sdk <path to policies/sdk of the quarks-job sources>",
        )?,
    };
    let world = World::from(args.world);
    let name = template::create(&args.dir, world, &sdk)?;
    print_stdout(&format!(
        "created {world} policy {name} in {dir}\nnext: cd {dir} && cargo build --target wasm32-wasip2 --release && \
quarks-job policy test --policy target/wasm32-wasip2/release/{file}.wasm cases.yaml\n",
        dir = args.dir.display(),
        file = name.replace('-', "_"),
    ))
}

fn policy_run(args: PolicyRunArgs) -> anyhow::Result<()> {
    let source = parse_policy_source(&args.policy)?;
    let input = read_input(&args.input)?;
    let world = match (&args.world, &source) {
        (Some(w), _) => World::from(*w),
        (None, PolicySource::Builtin(b)) => b.world,
        (None, PolicySource::File(_)) => infer_world(&input)?,
    };
    let bytes = policy_bytes(&source)?;
    let engine = PolicyEngine::new(args.limits.limits())?;
    let policy = engine.load(&bytes, world)?;
    let result = match world {
        World::Trigger => {
            let input: TriggerInput = serde_json::from_value(input)
                .context("the input is not a trigger-input (see wit/policy.wit)")?;
            serde_json::to_value(engine.decide(&policy, input)?)?
        }
        World::Output => {
            let input: OutputInput = serde_json::from_value(input)
                .context("the input is not an output-input (see wit/policy.wit)")?;
            serde_json::to_value(engine.transform(&policy, input)?)?
        }
    };
    print_stdout(&format!("{}\n", serde_json::to_string_pretty(&result)?))
}

/// Writes a command's result; a closed pipe (`quarks-job crd | head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
