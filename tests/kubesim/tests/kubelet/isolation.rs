//! Container isolation, for real: processes started from mount plans in their own mount
//! namespace. Every test checks what the container saw and what the host kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubesim::kubelet::mounts::{MountRequest, plan};
use kubesim::kubelet::process::{ContainerProcess, ProcessSpec};

/// A unique path directly under `/` that does not exist on the host.
fn absent_top_level(tag: &str) -> PathBuf {
    let p = PathBuf::from(format!("/kubesim-test-{tag}-{}", std::process::id()));
    assert!(!p.exists());
    p
}

/// Runs `sh -c script` with the given mounts, hiding `hide`, and returns (exit code, log).
async fn run(
    script: &str,
    mounts: &[MountRequest],
    workdir: &Path,
    hide: &[PathBuf],
    scratch: &Path,
) -> (i32, String) {
    let plan = plan(mounts, workdir, hide, &scratch.join("staging")).expect("plan");
    let log_path = scratch.join("log");
    let spec = ProcessSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )],
        mounts: plan,
        log_path: log_path.clone(),
    };
    let mut process = ContainerProcess::spawn(spec).expect("spawn");
    let exit = tokio::time::timeout(Duration::from_secs(20), process.wait())
        .await
        .expect("exits")
        .expect("wait");
    (exit.code, fs::read_to_string(&log_path).unwrap_or_default())
}

#[tokio::test]
async fn a_volume_at_a_path_missing_on_the_host_is_visible_only_inside() {
    let scratch = tempfile::tempdir().expect("tmp");
    let volume = scratch.path().join("vol");
    fs::create_dir(&volume).expect("mkdir");
    let mounts = [MountRequest {
        source: volume.clone(),
        target: "/mnt/quarks".into(),
        read_only: false,
    }];
    let before: Vec<_> = fs::read_dir("/mnt")
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let (code, log) = run(
        "echo out > /mnt/quarks/file && ls /mnt && pwd",
        &mounts,
        Path::new("/mnt/quarks"),
        &[],
        scratch.path(),
    )
    .await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        fs::read_to_string(volume.join("file")).expect("written through"),
        "out\n"
    );
    assert!(
        !Path::new("/mnt/quarks").exists(),
        "the host never gets /mnt/quarks"
    );
    // The rest of /mnt stayed visible inside, and the working directory was entered.
    for entry in before {
        assert!(log.contains(entry.to_str().expect("utf8")), "{log}");
    }
    assert!(log.trim_end().ends_with("/mnt/quarks"), "{log}");
}

#[tokio::test]
async fn a_top_level_mount_path_is_made_in_a_private_root() {
    let scratch = tempfile::tempdir().expect("tmp");
    let volume = scratch.path().join("vol");
    fs::create_dir(&volume).expect("mkdir");
    fs::write(volume.join("data"), "hello").expect("write");
    let target = absent_top_level("root");
    let mounts = [MountRequest {
        source: volume,
        target: target.join("nested"),
        read_only: true,
    }];
    let script = format!(
        "cat {t}/nested/data && ls /usr/bin/env && ! touch {t}/nested/x",
        t = target.display()
    );
    let (code, log) = run(&script, &mounts, Path::new("/"), &[], scratch.path()).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.starts_with("hello"), "{log}");
    assert!(!target.exists(), "the host root is untouched");
}

#[tokio::test]
async fn read_only_volumes_cannot_be_written() {
    let scratch = tempfile::tempdir().expect("tmp");
    let volume = scratch.path().join("secret");
    fs::create_dir(&volume).expect("mkdir");
    let mounts = [MountRequest {
        source: volume.clone(),
        target: "/mnt/quarks-secret".into(),
        read_only: true,
    }];
    let (code, log) = run(
        "echo x > /mnt/quarks-secret/f",
        &mounts,
        Path::new("/"),
        &[],
        scratch.path(),
    )
    .await;
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("Read-only"), "{log}");
    assert!(!volume.join("f").exists());
}

#[tokio::test]
async fn the_state_directory_is_hidden_from_containers() {
    let scratch = tempfile::tempdir().expect("tmp");
    let state = fs::canonicalize(scratch.path())
        .expect("canon")
        .join("state");
    let other_volume = state.join("pods/other/volumes/private");
    fs::create_dir_all(&other_volume).expect("mkdir");
    fs::write(other_volume.join("secret.txt"), "do not read").expect("write");
    let own = state.join("pods/me/volumes/mine");
    fs::create_dir_all(&own).expect("mkdir");
    let mounts = [MountRequest {
        source: own,
        target: "/mnt/mine".into(),
        read_only: false,
    }];
    let script = format!(
        "test -d /mnt/mine && ! cat {}/secret.txt && ls -A {}",
        other_volume.display(),
        state.display()
    );
    let (code, log) = run(
        &script,
        &mounts,
        Path::new("/"),
        std::slice::from_ref(&state),
        scratch.path(),
    )
    .await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("do not read"), "{log}");
}

#[tokio::test]
async fn a_missing_program_fails_to_start_and_a_kill_reaches_the_group() {
    let scratch = tempfile::tempdir().expect("tmp");
    let no_program = ProcessSpec {
        argv: vec!["kubesim-no-such-program".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        mounts: plan(&[], Path::new("/"), &[], &scratch.path().join("s1")).expect("plan"),
        log_path: scratch.path().join("log1"),
    };
    assert!(ContainerProcess::spawn(no_program).is_err());

    // A shell that ignores SIGTERM in a child: the grace period ends with SIGKILL.
    let marker = scratch.path().join("started");
    let spec = ProcessSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "(trap '' TERM; exec sh -c 'echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 60') & wait",
                marker.display()
            ),
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        mounts: plan(&[], Path::new("/"), &[], &scratch.path().join("s2")).expect("plan"),
        log_path: scratch.path().join("log2"),
    };
    let mut process = ContainerProcess::spawn(spec).expect("spawn");
    for _ in 0..100 {
        if marker.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivor: i32 = fs::read_to_string(&marker)
        .expect("marker")
        .trim()
        .parse()
        .expect("pid");
    let exit = tokio::time::timeout(
        Duration::from_secs(10),
        process.terminate(Duration::from_millis(300)),
    )
    .await
    .expect("terminates")
    .expect("exit");
    assert!(exit.code >= 128, "{exit:?}");
    // The TERM-ignoring grandchild was killed too (gone, or a zombie awaiting its reaper).
    let mut alive = true;
    for _ in 0..50 {
        let stat = fs::read_to_string(format!("/proc/{survivor}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("");
        if stat.is_empty() || state == "Z" {
            alive = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "process {survivor} survived the kill");
}
