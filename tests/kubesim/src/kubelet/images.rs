//! The image table: which local program stands in for a container image.
//!
//! kubesim pulls nothing. An image reference is mapped to a program on this machine:
//! explicit `PATTERN=PROGRAM` entries first (in the order they were added), then the
//! defaults — busybox/alpine/debian-like base images run the host's own tools (the
//! container's `command[0]` looked up in `PATH`), and any image whose repository ends in
//! `quarks-job` runs the freshly built `quarks-job` binary. An image matching nothing
//! "cannot be pulled", and the kubelet reports it exactly as a cluster does (`ErrImagePull`).
//! This module only decides; it never starts processes.

use std::path::{Path, PathBuf};

/// Environment variable naming the quarks-job binary when none was configured.
pub const QUARKS_JOB_BIN_ENV: &str = "KUBESIM_QUARKS_JOB_BIN";

/// Last path segments of images that are "a Linux userland with a shell": they run the
/// host's tools. Kept short on purpose; `--image` extends the table.
const HOST_TOOL_IMAGES: &[&str] = &[
    "busybox",
    "alpine",
    "debian",
    "ubuntu",
    "bash",
    "centos",
    "fedora",
    "rockylinux",
    "almalinux",
    "amazonlinux",
    "ubi",
    "ubi8",
    "ubi9",
    "ubi-minimal",
    "kubectl",
    "curl",
];

/// What runs in place of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProgram {
    /// The image is a plain userland: the container's command is run with the host's tools.
    HostTools,
    /// The image's entrypoint is this program.
    Entrypoint(PathBuf),
}

/// The image cannot be mapped to anything local: the equivalent of a failed pull.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error(
        "failed to pull image \"{image}\": no local program is mapped to this image (kubesim --image PATTERN=PROGRAM adds one)"
    )]
    NotMapped { image: String },
    #[error(
        "failed to pull image \"{image}\": the quarks-job binary was not found (set {QUARKS_JOB_BIN_ENV} or build it next to kubesim)"
    )]
    QuarksJobBinaryMissing { image: String },
}

#[derive(Debug, Clone)]
enum Target {
    Program(PathBuf),
    HostTools,
}

/// Maps image references to local programs. See the module documentation.
#[derive(Debug, Clone)]
pub struct ImageTable {
    explicit: Vec<(String, Target)>,
    quarks_job_bin: Option<PathBuf>,
}

impl Default for ImageTable {
    fn default() -> Self {
        Self::with_defaults(None)
    }
}

impl ImageTable {
    /// The default table. `quarks_job_bin` overrides where the quarks-job binary is found;
    /// without it the kubelet looks at `$KUBESIM_QUARKS_JOB_BIN`, then `quarks-job` next to
    /// the current executable or in its parent directory (test binaries live in
    /// `target/debug/deps`, the binary in `target/debug`). The lookup happens at resolve time,
    /// so a binary built after the cluster started is found.
    pub fn with_defaults(quarks_job_bin: Option<PathBuf>) -> Self {
        Self {
            explicit: Vec::new(),
            quarks_job_bin,
        }
    }

    /// Adds an explicit entry, checked before the defaults and before entries added later.
    /// `pattern` is matched against the full reference and against the repository (without
    /// registry, tag and digest); `*` matches any run of characters. The program `sh` (or
    /// the literal `host`) means "the host's tools".
    pub fn add(&mut self, pattern: &str, program: PathBuf) {
        let target = if program.as_os_str() == "host" {
            Target::HostTools
        } else {
            Target::Program(program)
        };
        self.explicit.push((pattern.to_string(), target));
    }

    /// Parses a `PATTERN=PROGRAM` command-line entry and adds it.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), String> {
        match spec.split_once('=') {
            Some((pattern, program)) if !pattern.is_empty() && !program.is_empty() => {
                self.add(pattern, PathBuf::from(program));
                Ok(())
            }
            _ => Err(format!(
                "image mapping {spec:?} is not of the form PATTERN=PROGRAM"
            )),
        }
    }

    /// What to run for `image`, or the pull error a cluster would report.
    pub fn resolve(&self, image: &str) -> Result<ImageProgram, ImageError> {
        let reference = ImageReference::parse(image);
        for (pattern, target) in &self.explicit {
            if glob_match(pattern, image) || glob_match(pattern, &reference.repository) {
                return Ok(match target {
                    Target::HostTools => ImageProgram::HostTools,
                    Target::Program(p) => ImageProgram::Entrypoint(p.clone()),
                });
            }
        }
        let last = reference.repository.rsplit('/').next().unwrap_or_default();
        if reference.repository.ends_with("quarks-job") {
            return self
                .quarks_job_binary()
                .map(ImageProgram::Entrypoint)
                .ok_or_else(|| ImageError::QuarksJobBinaryMissing {
                    image: image.to_string(),
                });
        }
        if HOST_TOOL_IMAGES.contains(&last) {
            return Ok(ImageProgram::HostTools);
        }
        Err(ImageError::NotMapped {
            image: image.to_string(),
        })
    }

    fn quarks_job_binary(&self) -> Option<PathBuf> {
        if let Some(p) = &self.quarks_job_bin {
            return Some(p.clone());
        }
        if let Some(p) = std::env::var_os(QUARKS_JOB_BIN_ENV).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d: &Path| d.join("quarks-job"))
            .find(|p| p.is_file())
    }
}

/// The parts of an image reference the table matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Repository path without registry host, tag or digest; `library/` dropped
    /// (`docker.io/library/busybox:1.36` → `busybox`).
    pub repository: String,
}

impl ImageReference {
    pub fn parse(image: &str) -> Self {
        let without_digest = image.split('@').next().unwrap_or(image);
        // A tag is a ':' after the last '/'; a ':' before it belongs to a registry port.
        let without_tag = match without_digest.rfind(':') {
            Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
            _ => without_digest,
        };
        let mut parts: Vec<&str> = without_tag.split('/').collect();
        // Docker's rule: the first component is a registry if it has a '.' or ':' or is
        // "localhost", and there is more than one component.
        if parts.len() > 1 {
            let first = parts[0];
            if first.contains('.') || first.contains(':') || first == "localhost" {
                parts.remove(0);
            }
        }
        if parts.len() > 1 && parts[0] == "library" {
            parts.remove(0);
        }
        Self {
            repository: parts.join("/"),
        }
    }
}

/// `*` matches any (possibly empty) run of characters; everything else literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_reduced_to_their_repository() {
        let cases = [
            ("busybox", "busybox"),
            ("busybox:1.36", "busybox"),
            ("docker.io/library/busybox:1.36@sha256:abcd", "busybox"),
            ("localhost:5000/team/quarks-job:dev", "team/quarks-job"),
            (
                "ghcr.io/cloudfoundry-incubator/quarks-job:v1.0.0",
                "cloudfoundry-incubator/quarks-job",
            ),
            ("bitnami/kubectl", "bitnami/kubectl"),
        ];
        for (image, repo) in cases {
            assert_eq!(ImageReference::parse(image).repository, repo, "{image}");
        }
    }

    #[test]
    fn base_images_run_host_tools() {
        let table = ImageTable::with_defaults(None);
        for image in [
            "busybox",
            "alpine:3.20",
            "docker.io/library/debian:bookworm",
            "ubuntu@sha256:00",
        ] {
            assert_eq!(table.resolve(image), Ok(ImageProgram::HostTools), "{image}");
        }
    }

    #[test]
    fn quarks_job_images_run_the_configured_binary() {
        let table = ImageTable::with_defaults(Some(PathBuf::from("/opt/bin/quarks-job")));
        for image in [
            "quarks-job",
            "ghcr.io/x/quarks-job:v1",
            "localhost:5000/cf/quarks-job@sha256:1",
        ] {
            assert_eq!(
                table.resolve(image),
                Ok(ImageProgram::Entrypoint(PathBuf::from(
                    "/opt/bin/quarks-job"
                ))),
                "{image}"
            );
        }
        // "ends in" means the repository, not a tag.
        assert!(table.resolve("nginx:quarks-job").is_err());
    }

    #[test]
    fn unknown_images_cannot_be_pulled() {
        let table = ImageTable::with_defaults(None);
        assert_eq!(
            table.resolve("nginx:1.27"),
            Err(ImageError::NotMapped {
                image: "nginx:1.27".into()
            })
        );
    }

    #[test]
    fn explicit_entries_win_over_defaults() {
        let mut table = ImageTable::with_defaults(None);
        table.add("busybox*", PathBuf::from("/usr/bin/env"));
        table
            .add_spec("registry.example/*/tool:*=/bin/true")
            .expect("valid spec");
        table.add("nginx", PathBuf::from("host"));
        assert_eq!(
            table.resolve("busybox:1"),
            Ok(ImageProgram::Entrypoint(PathBuf::from("/usr/bin/env")))
        );
        assert_eq!(
            table.resolve("registry.example/a/tool:2"),
            Ok(ImageProgram::Entrypoint(PathBuf::from("/bin/true")))
        );
        assert_eq!(table.resolve("nginx:1.27"), Ok(ImageProgram::HostTools));
        assert!(table.add_spec("no-equals-sign").is_err());
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("*quarks-job", "x/quarks-job"));
        assert!(!glob_match("a*c", "abd"));
        assert!(!glob_match("abc", "abcd"));
    }
}
