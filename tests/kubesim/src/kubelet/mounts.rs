//! Mount planning and execution: how a container's volumes appear at their `mountPath`s
//! inside its own mount namespace.
//!
//! Planning ([`plan`]) runs in the kubelet: it inspects the host filesystem, creates the
//! staging directories it needs under the pod's state directory, and turns the container's
//! mounts into a list of precomputed operations. Execution ([`MountPlan::apply`]) runs in the
//! forked child before `exec`: `unshare(CLONE_NEWNS)`, make every mount private, then plain
//! `mount(2)`/`mkdir(2)`/`chroot(2)` calls on prepared C strings — no allocation, no
//! filesystem walks, because the child of a multi-threaded process must stay minimal.
//!
//! The host filesystem is never modified: a `mountPath` whose directory does not exist is
//! made by "shadowing" its deepest existing ancestor inside the namespace — a tmpfs that
//! mirrors the ancestor's entries with bind mounts, in which the missing directories are then
//! created. When that ancestor is `/`, the whole root is mirrored into a staging tmpfs and
//! the container is `chroot`ed into it. The kubelet's state directory is covered by an empty
//! tmpfs, so a container cannot reach other pods' or containers' volumes through it.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// One volume mount of a container, in host terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// The host file or directory to show (a volume directory, or a file in it for `subPath`).
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

/// Why a container's mounts cannot be planned (the container fails to start).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountPath {0:?} is not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("mount source {0:?} does not exist")]
    SourceMissing(PathBuf),
    #[error("preparing mount of {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("path contains a NUL byte: {0:?}")]
    Nul(PathBuf),
}

/// A primitive executed in the child. Paths are final (already prefixed with the staging
/// root when the container is chrooted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// `mount --make-rprivate /`: nothing we do leaks back to the host.
    MakePrivate,
    Tmpfs {
        target: PathBuf,
    },
    Mkdir {
        path: PathBuf,
    },
    Touch {
        path: PathBuf,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
    RemountReadOnly {
        target: PathBuf,
    },
    Chroot {
        new_root: PathBuf,
    },
    Chdir {
        path: PathBuf,
    },
}

impl MountOp {
    fn describe(&self) -> String {
        match self {
            MountOp::MakePrivate => "make / private".to_string(),
            MountOp::Tmpfs { target } => format!("mount tmpfs on {}", target.display()),
            MountOp::Mkdir { path } => format!("mkdir {}", path.display()),
            MountOp::Touch { path } => format!("create {}", path.display()),
            MountOp::Symlink { target, link } => {
                format!("symlink {} -> {}", link.display(), target.display())
            }
            MountOp::Bind { source, target } => {
                format!("bind {} on {}", source.display(), target.display())
            }
            MountOp::RemountReadOnly { target } => {
                format!("remount {} read-only", target.display())
            }
            MountOp::Chroot { new_root } => format!("chroot {}", new_root.display()),
            MountOp::Chdir { path } => format!("chdir {}", path.display()),
        }
    }
}

/// The prepared form of a [`MountOp`]: C strings built before `fork`.
#[derive(Debug)]
struct PreparedOp {
    kind: OpKind,
    a: CString,
    b: CString,
    /// "kubesim: mount setup failed: <op>\n", written to the container's stderr (its log).
    failure: CString,
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    MakePrivate,
    Tmpfs,
    Mkdir,
    Touch,
    Symlink,
    Bind,
    RemountReadOnly,
    Chroot,
    Chdir,
}

/// Everything the child does to build its filesystem view.
#[derive(Debug)]
pub struct MountPlan {
    ops: Vec<MountOp>,
    prepared: Vec<PreparedOp>,
}

impl MountPlan {
    pub fn ops(&self) -> &[MountOp] {
        &self.ops
    }

    /// Runs the plan in the current process: a new mount namespace, then every operation.
    ///
    /// # Safety
    /// Meant for `pre_exec`: it only issues system calls on data prepared in advance, and
    /// writes a failure line to fd 2. It changes the process's mount namespace, root and
    /// working directory.
    pub unsafe fn apply(&self) -> io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings owned by `self`.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            for op in &self.prepared {
                if let Err(err) = op.run() {
                    let msg = op.failure.as_bytes();
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

impl PreparedOp {
    unsafe fn run(&self) -> io::Result<()> {
        let a = self.a.as_ptr();
        let b = self.b.as_ptr();
        let null = std::ptr::null();
        // SAFETY: pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            match self.kind {
                OpKind::MakePrivate => {
                    libc::mount(null, a, null, libc::MS_REC | libc::MS_PRIVATE, null.cast())
                }
                OpKind::Tmpfs => {
                    let fstype = c"tmpfs".as_ptr();
                    libc::mount(
                        fstype,
                        a,
                        fstype,
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"mode=0755".as_ptr().cast(),
                    )
                }
                OpKind::Mkdir => {
                    let rc = libc::mkdir(a, 0o755);
                    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                        0
                    } else {
                        rc
                    }
                }
                OpKind::Touch => {
                    let fd = libc::open(a, libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    if fd >= 0 {
                        libc::close(fd);
                        0
                    } else {
                        -1
                    }
                }
                OpKind::Symlink => libc::symlink(a, b),
                OpKind::Bind => libc::mount(a, b, null, libc::MS_BIND | libc::MS_REC, null.cast()),
                OpKind::RemountReadOnly => libc::mount(
                    null,
                    a,
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    null.cast(),
                ),
                OpKind::Chroot => {
                    if libc::chdir(a) != 0 {
                        -1
                    } else {
                        libc::chroot(c".".as_ptr())
                    }
                }
                OpKind::Chdir => libc::chdir(a),
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn cstring(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::Nul(path.to_path_buf()))
}

fn prepare(op: &MountOp) -> Result<PreparedOp, MountError> {
    let empty = PathBuf::new();
    let (kind, a, b) = match op {
        MountOp::MakePrivate => (OpKind::MakePrivate, Path::new("/"), &empty),
        MountOp::Tmpfs { target } => (OpKind::Tmpfs, target.as_path(), &empty),
        MountOp::Mkdir { path } => (OpKind::Mkdir, path.as_path(), &empty),
        MountOp::Touch { path } => (OpKind::Touch, path.as_path(), &empty),
        MountOp::Symlink { target, link } => (OpKind::Symlink, target.as_path(), link),
        MountOp::Bind { source, target } => (OpKind::Bind, source.as_path(), target),
        MountOp::RemountReadOnly { target } => (OpKind::RemountReadOnly, target.as_path(), &empty),
        MountOp::Chroot { new_root } => (OpKind::Chroot, new_root.as_path(), &empty),
        MountOp::Chdir { path } => (OpKind::Chdir, path.as_path(), &empty),
    };
    let failure = CString::new(
        format!("kubesim: container setup failed: {}\n", op.describe()).replace('\0', ""),
    )
    .map_err(|_| MountError::Nul(a.to_path_buf()))?;
    Ok(PreparedOp {
        kind,
        a: cstring(a)?,
        b: cstring(b)?,
        failure,
    })
}

/// Lexically normalises an absolute path (`.` and `..` resolved without touching the disk).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Plans the mounts of one container.
///
/// * `requests`: the container's volume mounts (any order; mounted shallowest first, as
///   container runtimes do).
/// * `working_dir`: created inside the namespace if it does not exist, then entered.
/// * `hide`: host directories covered with an empty tmpfs (the kubelet's state directory).
/// * `staging`: a host directory this container may use for its staging mounts.
pub fn plan(
    requests: &[MountRequest],
    working_dir: &Path,
    hide: &[PathBuf],
    staging: &Path,
) -> Result<MountPlan, MountError> {
    let mut planner = Planner {
        ops: vec![MountOp::MakePrivate],
        mounted: Vec::new(),
        shadowed: BTreeSet::new(),
        created: BTreeSet::new(),
        root: None,
        staging: staging.to_path_buf(),
        next_stage: 0,
    };
    let mut sorted: Vec<MountRequest> = Vec::with_capacity(requests.len());
    for r in requests {
        if !r.target.is_absolute() {
            return Err(MountError::NotAbsolute(r.target.clone()));
        }
        if !r.source.exists() {
            return Err(MountError::SourceMissing(r.source.clone()));
        }
        let target = planner.canonical_target(&normalize(&r.target));
        sorted.push(MountRequest {
            source: r.source.clone(),
            target,
            read_only: r.read_only,
        });
    }
    sorted.sort_by_key(|r| r.target.components().count());
    let working_dir = planner.canonical_target(&normalize(working_dir));

    // Mirroring `/` must come first: every later path is then taken inside the mirror.
    let needs_root = sorted
        .iter()
        .map(|r| &r.target)
        .chain(std::iter::once(&working_dir))
        .filter(|t| {
            !sorted
                .iter()
                .any(|m| *t != &m.target && t.starts_with(&m.target))
        })
        .any(|t| !t.exists() && deepest_existing(t) == Path::new("/"));
    if needs_root {
        let root = planner.stage_dir()?;
        planner.mirror(Path::new("/"), &root)?;
        planner.root = Some(root);
        planner.shadowed.insert(PathBuf::from("/"));
    }

    for r in &sorted {
        let is_dir = r.source.is_dir();
        planner.ensure(&r.target, is_dir)?;
        let target = planner.exec_path(&r.target);
        planner.ops.push(MountOp::Bind {
            source: r.source.clone(),
            target: target.clone(),
        });
        if r.read_only {
            planner.ops.push(MountOp::RemountReadOnly { target });
        }
        planner.mounted.push((r.target.clone(), r.source.clone()));
    }
    planner.ensure(&working_dir, true)?;
    for h in hide {
        let h = normalize(h);
        if h.exists() && planner.mount_of(&h).is_none() {
            let h = fs::canonicalize(&h).unwrap_or(h);
            let target = planner.exec_path(&h);
            planner.ops.push(MountOp::Tmpfs {
                target: target.clone(),
            });
            planner.ops.push(MountOp::RemountReadOnly { target });
        }
    }
    if let Some(root) = planner.root.clone() {
        planner.ops.push(MountOp::Chroot { new_root: root });
    }
    planner.ops.push(MountOp::Chdir { path: working_dir });
    let prepared = planner
        .ops
        .iter()
        .map(prepare)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MountPlan {
        ops: planner.ops,
        prepared,
    })
}

/// The deepest ancestor of `path` (or `path` itself) that exists on the host.
fn deepest_existing(path: &Path) -> PathBuf {
    let mut cur = path.to_path_buf();
    while !cur.exists() {
        if !cur.pop() {
            return PathBuf::from("/");
        }
    }
    cur
}

struct Planner {
    ops: Vec<MountOp>,
    /// (container path, host source) of volume mounts already planned.
    mounted: Vec<(PathBuf, PathBuf)>,
    /// Container directories replaced by a tmpfs mirror: directories may be made in them.
    shadowed: BTreeSet<PathBuf>,
    /// Container directories created inside a shadow.
    created: BTreeSet<PathBuf>,
    /// The staging root the container is chrooted into, when `/` itself is shadowed.
    root: Option<PathBuf>,
    staging: PathBuf,
    next_stage: usize,
}

impl Planner {
    /// Resolves host symlinks in the existing part of `target` (e.g. `/var/run` → `/run`),
    /// so that mounts land where the container will look after a chroot.
    fn canonical_target(&self, target: &Path) -> PathBuf {
        let existing = deepest_existing(target);
        let rest = target
            .strip_prefix(&existing)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let canonical = fs::canonicalize(&existing).unwrap_or(existing);
        if rest.as_os_str().is_empty() {
            canonical
        } else {
            canonical.join(rest)
        }
    }

    /// The path the child uses for container path `p` (inside the staging root if any).
    fn exec_path(&self, p: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(p.strip_prefix("/").unwrap_or(p)),
            None => p.to_path_buf(),
        }
    }

    /// The deepest planned volume mount containing `p`.
    fn mount_of(&self, p: &Path) -> Option<&(PathBuf, PathBuf)> {
        self.mounted
            .iter()
            .filter(|(t, _)| p.starts_with(t))
            .max_by_key(|(t, _)| t.components().count())
    }

    /// Whether `p` exists in the container's view as planned so far.
    fn exists(&self, p: &Path) -> bool {
        if self.created.contains(p) {
            return true;
        }
        match self.mount_of(p) {
            Some((t, source)) => source
                .join(p.strip_prefix(t).unwrap_or(Path::new("")))
                .exists(),
            None => p.exists(),
        }
    }

    fn stage_dir(&mut self) -> Result<PathBuf, MountError> {
        let dir = self.staging.join(format!("stage-{}", self.next_stage));
        self.next_stage += 1;
        fs::create_dir_all(&dir).map_err(|source| MountError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Makes `target` exist in the container view (directory or empty file).
    fn ensure(&mut self, target: &Path, is_dir: bool) -> Result<(), MountError> {
        if self.exists(target) {
            return Ok(());
        }
        let mut ancestor = target.to_path_buf();
        while !self.exists(&ancestor) {
            ancestor.pop();
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MountError::Io { path, source }
        };
        // Inside a volume: the mount point is made in the volume's directory, as runtimes do.
        if let Some((t, source)) = self.mount_of(&ancestor).cloned() {
            let host = source.join(target.strip_prefix(&t).unwrap_or(Path::new("")));
            if is_dir {
                fs::create_dir_all(&host).map_err(io(&host))?;
            } else {
                if let Some(parent) = host.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                fs::write(&host, b"").map_err(io(&host))?;
            }
            return Ok(());
        }
        if !self.shadowed.contains(&ancestor) && !self.created.contains(&ancestor) {
            let stage = self.stage_dir()?;
            self.mirror(&ancestor, &stage)?;
            self.ops.push(MountOp::Bind {
                source: stage,
                target: self.exec_path(&ancestor),
            });
            self.shadowed.insert(ancestor.clone());
        }
        let rest: Vec<_> = target
            .strip_prefix(&ancestor)
            .unwrap_or(Path::new(""))
            .components()
            .collect();
        let mut cur = ancestor;
        for (i, c) in rest.iter().enumerate() {
            cur.push(c);
            let last = i + 1 == rest.len();
            let path = self.exec_path(&cur);
            self.ops.push(if last && !is_dir {
                MountOp::Touch { path }
            } else {
                MountOp::Mkdir { path }
            });
            self.created.insert(cur.clone());
        }
        Ok(())
    }

    /// Fills a tmpfs at `stage` with bind mounts of every entry of host directory `dir`.
    fn mirror(&mut self, dir: &Path, stage: &Path) -> Result<(), MountError> {
        self.ops.push(MountOp::Tmpfs {
            target: stage.to_path_buf(),
        });
        let io = |source| MountError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let from = entry.path();
            let to = stage.join(entry.file_name());
            let file_type = entry.file_type().map_err(io)?;
            if file_type.is_symlink() {
                let target = fs::read_link(&from).map_err(io)?;
                self.ops.push(MountOp::Symlink { target, link: to });
            } else if file_type.is_dir() {
                self.ops.push(MountOp::Mkdir { path: to.clone() });
                self.ops.push(MountOp::Bind {
                    source: from,
                    target: to,
                });
            } else if file_type.is_file()
                || file_type.is_socket()
                || file_type.is_fifo()
                || file_type.is_char_device()
                || file_type.is_block_device()
            {
                self.ops.push(MountOp::Touch { path: to.clone() });
                self.ops.push(MountOp::Bind {
                    source: from,
                    target: to,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(source: &Path, target: &str, read_only: bool) -> MountRequest {
        MountRequest {
            source: source.to_path_buf(),
            target: PathBuf::from(target),
            read_only,
        }
    }

    #[test]
    fn existing_targets_are_bound_directly() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("vol");
        fs::create_dir(&src).expect("mkdir");
        let target = tmp.path().join("existing");
        fs::create_dir(&target).expect("mkdir");
        let plan = plan(
            &[req(&src, target.to_str().expect("utf8"), true)],
            Path::new("/"),
            &[],
            &tmp.path().join("stage"),
        )
        .expect("plan");
        let target = fs::canonicalize(&target).expect("canon");
        assert_eq!(
            plan.ops(),
            &[
                MountOp::MakePrivate,
                MountOp::Bind {
                    source: src,
                    target: target.clone()
                },
                MountOp::RemountReadOnly { target },
                MountOp::Chdir {
                    path: PathBuf::from("/")
                },
            ]
        );
    }

    #[test]
    fn missing_targets_shadow_their_deepest_existing_ancestor() {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = fs::canonicalize(tmp.path()).expect("canon");
        let src = base.join("vol");
        fs::create_dir(&src).expect("mkdir");
        fs::write(base.join("sibling"), "x").expect("write");
        let target = base.join("a/b");
        let stage = base.join("stage");
        let plan = plan(
            &[req(&src, target.to_str().expect("utf8"), false)],
            Path::new("/"),
            &[],
            &stage,
        )
        .expect("plan");
        let stage0 = stage.join("stage-0");
        let ops = plan.ops();
        assert!(ops.contains(&MountOp::Tmpfs {
            target: stage0.clone()
        }));
        // Existing entries of the ancestor stay visible through the mirror...
        assert!(ops.contains(&MountOp::Bind {
            source: base.join("sibling"),
            target: stage0.join("sibling")
        }));
        // ...the mirror replaces the ancestor, and the missing directories are made in it.
        let bind_mirror = ops.iter().position(|o| {
            *o == MountOp::Bind {
                source: stage0.clone(),
                target: base.clone(),
            }
        });
        let mkdir_a = ops.iter().position(|o| {
            *o == MountOp::Mkdir {
                path: base.join("a"),
            }
        });
        let mkdir_b = ops.iter().position(|o| {
            *o == MountOp::Mkdir {
                path: target.clone(),
            }
        });
        assert!(bind_mirror < mkdir_a && mkdir_a < mkdir_b, "{ops:#?}");
        assert!(ops.contains(&MountOp::Bind {
            source: src,
            target: target.clone()
        }));
        // Planning never touches the host outside the staging directory.
        assert!(!base.join("a").exists());
    }

    #[test]
    fn a_missing_top_level_directory_chroots_into_a_mirror_of_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("vol");
        fs::create_dir(&src).expect("mkdir");
        let stage = fs::canonicalize(tmp.path()).expect("canon").join("stage");
        let target = "/kubesim-test-does-not-exist/data";
        let plan = plan(
            &[req(&src, target, false)],
            Path::new("/kubesim-test-does-not-exist"),
            &[],
            &stage,
        )
        .expect("plan");
        let root = stage.join("stage-0");
        let ops = plan.ops();
        assert!(ops.contains(&MountOp::Mkdir {
            path: root.join("kubesim-test-does-not-exist")
        }));
        assert!(ops.contains(&MountOp::Bind {
            source: src,
            target: root.join("kubesim-test-does-not-exist/data")
        }));
        assert_eq!(
            &ops[ops.len() - 2..],
            &[
                MountOp::Chroot { new_root: root },
                MountOp::Chdir {
                    path: PathBuf::from("/kubesim-test-does-not-exist")
                }
            ]
        );
    }

    #[test]
    fn nested_mounts_are_made_inside_the_outer_volume() {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = fs::canonicalize(tmp.path()).expect("canon");
        let outer = base.join("outer");
        let inner = base.join("inner");
        fs::create_dir(&outer).expect("mkdir");
        fs::create_dir(&inner).expect("mkdir");
        fs::create_dir(base.join("mnt")).expect("mkdir");
        let plan = plan(
            &[
                req(
                    &inner,
                    base.join("mnt/data/sub").to_str().expect("utf8"),
                    false,
                ),
                req(&outer, base.join("mnt/data").to_str().expect("utf8"), false),
            ],
            Path::new("/"),
            &[base.join("outer")],
            &base.join("stage"),
        )
        .expect("plan");
        let ops = plan.ops();
        let outer_pos = ops
            .iter()
            .position(|o| matches!(o, MountOp::Bind { source, .. } if *source == outer));
        let inner_pos = ops
            .iter()
            .position(|o| matches!(o, MountOp::Bind { source, .. } if *source == inner));
        assert!(outer_pos < inner_pos, "shallowest first: {ops:#?}");
        assert!(
            outer.join("sub").is_dir(),
            "mount point made inside the outer volume"
        );
        // Hidden paths are covered after the volumes were bound from them.
        let hide_pos = ops.iter().position(|o| {
            *o == MountOp::Tmpfs {
                target: outer.clone(),
            }
        });
        assert!(hide_pos > inner_pos, "{ops:#?}");
    }

    #[test]
    fn relative_mount_paths_are_rejected() {
        let tmp = tempfile::tempdir().expect("tmp");
        let err = plan(
            &[req(tmp.path(), "relative/path", false)],
            Path::new("/"),
            &[],
            tmp.path(),
        )
        .expect_err("relative");
        assert!(matches!(err, MountError::NotAbsolute(_)));
    }
}
