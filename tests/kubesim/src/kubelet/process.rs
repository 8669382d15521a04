//! Container processes: start one in its own mount namespace and process group, wait for
//! it, stop it (SIGTERM to the group, a grace period, then SIGKILL).
//!
//! Owns nothing but the OS process; what to run, with which environment and mounts, is
//! decided by the caller. Reaping is tokio's (SIGCHLD-driven), so waiting never polls.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::mounts::MountPlan;

/// What to start.
#[derive(Debug)]
pub struct ProcessSpec {
    /// `argv[0]` is looked up in the container's `PATH` when it has no `/`.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: MountPlan,
    /// stdout and stderr are appended here.
    pub log_path: PathBuf,
}

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit status, or 128 + signal number when killed by a signal (as runtimes report).
    pub code: i32,
    pub signal: Option<i32>,
}

/// A started container process.
#[derive(Debug)]
pub struct ContainerProcess {
    child: tokio::process::Child,
    pid: i32,
}

/// Opens (creating) a log file for appending.
pub fn open_log(path: &Path) -> io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl ContainerProcess {
    /// Starts the process. Errors are what a runtime reports as a failed start (`StartError`):
    /// the program is missing, or the mount namespace could not be built (details in the log).
    pub fn spawn(spec: ProcessSpec) -> io::Result<Self> {
        let Some(program) = spec.argv.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "container has no command",
            ));
        };
        let log = open_log(&spec.log_path)?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&spec.argv[1..])
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // Its own process group, so the whole container can be signalled at once.
            .process_group(0)
            .kill_on_drop(true);
        let mounts = Arc::new(spec.mounts);
        // SAFETY: `MountPlan::apply` only performs system calls on data prepared before the
        // fork (see its documentation), which is what a pre_exec hook may do.
        unsafe {
            cmd.pre_exec(move || mounts.apply());
        }
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| io::Error::other("spawned process has no pid"))?;
        Ok(Self { child, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the main process to exit, then kills what it left behind in its group.
    pub async fn wait(&mut self) -> io::Result<Exit> {
        let status = self.child.wait().await?;
        self.signal_group(libc::SIGKILL);
        Ok(exit_of(status))
    }

    /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<Exit> {
        self.signal_group(libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.signal_group(libc::SIGKILL);
                Ok(exit_of(status))
            }
            Err(_) => {
                self.signal_group(libc::SIGKILL);
                Ok(exit_of(self.child.wait().await?))
            }
        }
    }

    fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's process group; ESRCH (already gone) is fine.
        unsafe {
            libc::kill(-self.pid, signal);
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit { code, signal: None },
        (None, Some(sig)) => Exit {
            code: 128 + sig,
            signal: Some(sig),
        },
        (None, None) => Exit {
            code: 255,
            signal: None,
        },
    }
}
