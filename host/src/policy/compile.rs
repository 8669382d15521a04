//! Bounded compilation of untrusted components: each is compiled in a child process of the
//! operator's own binary (`quarks-job policy compile`, hidden), on one core, under rlimits on
//! its address space and CPU time, and a wall-clock deadline after which it is killed. The child
//! writes the machine code on stdout; the operator loads it (`PolicyEngine::load_compiled`),
//! with an engine configured exactly like the child's.
//!
//! A compilation that runs into a limit is `PolicyCompileLimit` for the namespace that selected
//! the module; the operator's own memory and cores are never at stake. Dropping the future
//! kills the child (a superseded compilation is cancelled that way).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::PolicyError;

/// How untrusted components are compiled.
#[derive(Clone, Debug)]
pub struct CompileLimits {
    /// The compiler: the operator's own binary (`None`: the running executable).
    pub program: Option<PathBuf>,
    /// Wall-clock deadline of one compilation (also its CPU-time rlimit).
    pub wall: Duration,
    /// Address-space rlimit of the compiler process, in bytes.
    pub memory_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            program: None,
            wall: Duration::from_secs(60),
            memory_bytes: 1 << 30,
        }
    }
}

/// Sets a resource limit of the current process (in a child between fork and exec).
macro_rules! set_limit {
    ($resource:expr, $soft:expr, $hard:expr) => {{
        let limit = libc::rlimit {
            rlim_cur: $soft,
            rlim_max: $hard,
        };
        // SAFETY: setrlimit with a valid pointer to an initialised struct.
        if unsafe { libc::setrlimit($resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }};
}

impl CompileLimits {
    /// The defaults, changed by `QUARKS_JOB_POLICY_COMPILE_SECONDS` (at least 1) and
    /// `QUARKS_JOB_POLICY_COMPILE_MEMORY_MIB` (at least 64).
    pub fn from_env() -> Self {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
        let mut limits = CompileLimits::default();
        if let Some(seconds) = number("QUARKS_JOB_POLICY_COMPILE_SECONDS") {
            limits.wall = Duration::from_secs(u64::max(seconds, 1));
        }
        if let Some(mib) = number("QUARKS_JOB_POLICY_COMPILE_MEMORY_MIB") {
            limits.memory_bytes = u64::max(mib, 64) << 20;
        }
        limits
    }
}

/// The command line of the compiler child: `quarks-job policy compile` (hidden: dispatched
/// by the binary's `main` before the command line is parsed).
pub const CHILD_ARGS: [&str; 2] = ["policy", "compile"];

/// Whether this process was started as the compiler child.
pub fn is_child() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args == CHILD_ARGS
}

/// Runs the compiler child; its exit code.
pub fn run_child() -> std::process::ExitCode {
    match child_main() {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprint!("reading the component: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Exit codes of `quarks-job policy compile` for the errors it names.
pub const EXIT_NOT_WASM: i32 = 3;
pub const EXIT_NOT_A_COMPONENT: i32 = 4;
pub const EXIT_TOO_COMPLEX: i32 = 5;

/// The child's side: compiles the component on stdin and writes its machine code on stdout.
pub fn child_main() -> std::io::Result<i32> {
    use std::io::{Read as _, Write as _};
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    match super::engine::compile_serialized(&bytes) {
        Ok(code) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&code)?;
            out.flush()?;
            Ok(0)
        }
        Err(error) => {
            eprint!("{}", detail(&error));
            Ok(match error {
                PolicyError::NotWasm(_) => EXIT_NOT_WASM,
                PolicyError::NotAComponent(_) => EXIT_NOT_A_COMPONENT,
                PolicyError::TooComplex(_) => EXIT_TOO_COMPLEX,
                _ => 1,
            })
        }
    }
}

fn detail(error: &PolicyError) -> String {
    match error {
        PolicyError::NotWasm(d)
        | PolicyError::NotAComponent(d)
        | PolicyError::TooComplex(d)
        | PolicyError::Engine(d) => d.clone(),
        other => other.to_string(),
    }
}

/// Compiles `bytes` in a child process under `limits`; the machine code it wrote.
pub async fn compile_in_child(
    limits: &CompileLimits,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, PolicyError> {
    let program = match &limits.program {
        Some(program) => program.clone(),
        None => std::env::current_exe()
            .map_err(|e| PolicyError::Engine(format!("the operator's own binary: {e}")))?,
    };
    let memory = limits.memory_bytes;
    let cpu_seconds = limits.wall.as_secs().max(1);
    let mut command = tokio::process::Command::new(&program);
    command
        .args(CHILD_ARGS)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let limit_child = move || {
        set_limit!(libc::RLIMIT_AS, memory, memory);
        set_limit!(libc::RLIMIT_CPU, cpu_seconds, cpu_seconds + 1);
        set_limit!(libc::RLIMIT_CORE, 0, 0);
        // The lowest CPU priority: an untrusted compile takes what the operator's own work
        // leaves (one namespace's 40 MiB module must not slow the others' runs).
        // SAFETY: setpriority on this process with plain values.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, setpriority) on
    // plain values.
    unsafe {
        command.pre_exec(limit_child);
    }
    let mut child = command.spawn().map_err(|e| {
        PolicyError::Engine(format!(
            "starting the policy compiler {}: {e}",
            program.display()
        ))
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // The machine code is a few times the component at most; the rlimit bounds it anyway.
    let cap = memory;
    let run = async {
        let write = async {
            // A child that dies early closes its stdin: its exit status tells why.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        let read_out = async {
            let mut code = Vec::new();
            let read = (&mut stdout).take(cap).read_to_end(&mut code).await;
            read.map(|_| code)
        };
        let read_err = async {
            let mut text = Vec::new();
            let _ = (&mut stderr).take(4096).read_to_end(&mut text).await;
            String::from_utf8_lossy(&text).into_owned()
        };
        let ((), code, text) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (code, text, status)
    };
    let (code, text, status) = match tokio::time::timeout(limits.wall, run).await {
        Ok(done) => done,
        Err(_) => {
            return Err(PolicyError::CompileLimit(format!(
                "not done after {:?} (the limit)",
                limits.wall
            )));
        }
    };
    let status = status.map_err(|e| PolicyError::Engine(format!("the policy compiler: {e}")))?;
    let text = text.trim().to_owned();
    match status.code() {
        Some(0) => code.map_err(|e| PolicyError::Engine(format!("reading the compiled code: {e}"))),
        Some(EXIT_NOT_WASM) => Err(PolicyError::NotWasm(text)),
        Some(EXIT_NOT_A_COMPONENT) => Err(PolicyError::NotAComponent(text)),
        Some(EXIT_TOO_COMPLEX) => Err(PolicyError::TooComplex(text)),
        Some(_) if text.contains("memory allocation") || text.contains("out of memory") => {
            Err(out_of_memory(memory))
        }
        Some(code) => Err(PolicyError::Engine(format!(
            "the policy compiler failed ({code}): {}",
            cut(&text)
        ))),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            match status.signal() {
                Some(libc::SIGXCPU) | Some(libc::SIGKILL) => Err(PolicyError::CompileLimit(
                    format!("more than {cpu_seconds} s of CPU time (the limit)"),
                )),
                // An allocation the address-space limit refused aborts the compiler.
                Some(libc::SIGABRT) | Some(libc::SIGSEGV) => Err(out_of_memory(memory)),
                other => Err(PolicyError::Engine(format!(
                    "the policy compiler ended by signal {other:?}: {}",
                    cut(&text)
                ))),
            }
        }
    }
}

fn out_of_memory(limit: u64) -> PolicyError {
    PolicyError::CompileLimit(format!(
        "more than {} MiB of memory (the limit)",
        limit >> 20
    ))
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
