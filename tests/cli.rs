//! The binary as a user runs it: `up`, `status`, and the errors a user meets first.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, nats_server_bin};

const BIN: &str = env!("CARGO_BIN_EXE_nats-authd");

fn nats_authd(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env("NATS_SERVER_BIN", nats_server_bin());
    // Only what each test sets: a NATS_AUTHD_* variable of the machine must not leak in.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NATS_AUTHD_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `nats-authd up`; on drop (a failed assertion included) it gets SIGTERM, so it
/// stops its nats-server instead of leaving it behind.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            signal(&self.0, nix::sys::signal::Signal::SIGTERM);
            let _ = wait_exit(&mut self.0, Duration::from_secs(20));
        }
    }
}

/// Starts `nats-authd up` in `dir` and waits until it says the server is up.
fn up(dir: &Path, port: u16) -> Up {
    let mut child = nats_authd(dir)
        .args(["up", "--port", &port.to_string(), "--http-port", &free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("nats-server is up") {
            // Keep reading, or `up` dies of a closed pipe at its next line of output.
            std::thread::spawn(move || lines.for_each(drop));
            return Up(child);
        }
    }
    panic!("`up` exited before the server was up: {:?}", child.wait());
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_brings_up_a_working_stack_and_ctrl_c_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut up = up(dir.path(), port);

    // The defaults `up` printed: admin creds in ./authd, the service answering.
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let out =
            nats_authd(dir.path()).args(["status", "--json", "--nats-url", &url]).output().unwrap();
        if out.status.success() {
            break out;
        }
        assert!(Instant::now() < deadline, "status never answered: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    };
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["accounts"], 3, "{status}");
    assert_eq!(status["server_name"], "authd-local");

    signal(&up.0, nix::sys::signal::Signal::SIGINT);
    assert!(wait_exit(&mut up.0, Duration::from_secs(20)).success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server still running"
    );
}

#[test]
fn a_second_process_on_the_same_data_dir_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = up(dir.path(), free_port());
    for args in [&["serve", "--require-nats"][..], &["init"][..]] {
        let out = nats_authd(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains("in use by another nats-authd process"), "{}", stderr(&out));
    }
    signal(&first.0, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_exit(&mut first.0, Duration::from_secs(20)).success());
}

#[test]
fn serve_without_init_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = nats_authd(dir.path()).args(["serve", "--data-dir", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run `nats-authd init --data-dir nowhere` first"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("nowhere").exists(), "serve must not create a data dir");
}

#[test]
fn require_nats_fails_fast_with_one_line_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    assert!(nats_authd(dir.path()).arg("init").output().unwrap().status.success());
    let url = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = nats_authd(dir.path())
        .args([
            "--log",
            "off",
            "serve",
            "--require-nats",
            "--connect-timeout",
            "1",
            "--nats-url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = stderr(&out);
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(text.contains(&url), "{text}");
}

#[test]
fn wrong_master_key_in_the_environment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    assert!(nats_authd(dir.path()).arg("init").output().unwrap().status.success());
    let wrong = nats_authd_key();
    let out = nats_authd(dir.path())
        .env("NATS_AUTHD_MASTER_KEY", wrong)
        .args(["serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the master key does not open this data dir"),
        "{}",
        stderr(&out)
    );
}

fn nats_authd_key() -> String {
    nats_authd::vault::MasterKey::generate().to_text().to_string()
}
