//! `nats-authd up --cluster 3 --instances 2` as a process of the built binary: every server
//! answers `status` through an instance, and a SIGINT leaves no process of the run behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{await_status, nats_authd};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Whether a process with this id exists (a zombie counts: it has not been reaped).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

#[test]
fn up_cluster_serves_on_every_server_and_ctrl_c_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = nats_authd(dir.path())
        .args(["up", "--cluster", "3", "--instances", "2", "--port", "0"])
        .args(["--data-dir", "data", "--out-dir", "out"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("up.err")).unwrap())
        .spawn()
        .unwrap();
    // Whatever happens below, `up` does not outlive the test.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = up.stdout.take().unwrap();
    let up_pid = up.id() as i32;
    let mut up = Reap(up);

    // Its summary, read on a thread so that the wait for it is bounded.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut summary = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("Ctrl-C stops");
                summary.push(line);
                if done {
                    break;
                }
            }
            Err(_) => panic!(
                "no summary from up within 45 s; stdout: {summary:#?}\nstderr: {}",
                std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default()
            ),
        }
    }
    let urls: Vec<String> = summary
        .iter()
        .filter(|l| l.trim_start().starts_with("authd-"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let pids: Vec<i32> = summary
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.by_ref().find(|w| *w == "pid")?;
            words.next()?.parse().ok()
        })
        .collect();
    assert_eq!(urls.len(), 3, "{summary:#?}");
    assert_eq!(pids.len(), 5, "3 servers and 2 instances: {summary:#?}");
    assert!(pids.iter().all(|&p| alive(p)));

    // Every server reaches an instance (the callout and the API are served cluster-wide).
    let creds = dir.path().join("out/authd-1/admin.creds");
    for url in &urls {
        let status = await_status(dir.path(), url, &creds, Duration::from_secs(30));
        assert_eq!(status["connected"], true, "{status}");
    }
    // Both instances answer `$SRV.PING` once both serve (the second may still be starting).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = await_status(dir.path(), &urls[0], &creds, Duration::from_secs(30));
        let instances = status["instances"].as_array().map_or(0, Vec::len);
        if instances == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not 2 instances: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 1..=2 {
        assert!(dir.path().join(format!("data-{i}/store.json")).exists(), "instance {i}'s copy");
    }

    kill(Pid::from_raw(up_pid), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "up did not exit within 25 s of SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "up exited with {status}");
    let left: Vec<i32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running after up exited: {left:?}");
}

#[test]
fn up_cluster_refuses_a_sled_data_dir_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let init = nats_authd(dir.path())
        .args(["init", "--data-dir", "data", "--out-dir", "out", "--port", "0"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let up = nats_authd(dir.path())
        .args(["up", "--cluster", "3", "--port", "0", "--data-dir", "data", "--out-dir", "out"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success());
    assert!(stderr.contains("single-node sled store"), "{stderr}");
    assert!(!dir.path().join("out/authd-1").exists(), "nothing was written for the cluster");
}
