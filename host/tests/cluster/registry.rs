//! A real OCI registry for the tests and benchmarks: Debian's `docker-registry` (the CNCF
//! distribution server), installed by scripts/test (`ensure_registry`), started on loopback.
//! Self-contained, so that benchmarks can include it with `#[path]`.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Debian's `docker-registry` (the CNCF distribution server) on a free loopback port, plain
/// HTTP, storage in a temporary directory.
pub struct Registry {
    child: Child,
    pub addr: String,
    _storage: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.is_file(),
            "this test needs Debian's docker-registry package; scripts/test installs it"
        );
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            addr,
            _storage: storage,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&registry.addr)
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {}",
                registry.addr
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        registry
    }

    /// `quarks-job policy push`; returns the `oci://…@sha256:…` reference it printed.
    pub fn push(&self, component: &Path, repository_and_tag: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_quarks-job"))
            .args(["policy", "push"])
            .arg(component)
            .arg(format!("{}/{repository_and_tag}", self.addr))
            .arg("--insecure")
            .output()
            .expect("run quarks-job policy push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Registry {
    /// Stops the registry (a registry that went down); also done on drop.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
