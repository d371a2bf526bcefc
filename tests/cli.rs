//! The binary as a user runs it: `up`, `status`, and the errors a user meets first.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{await_status, free_port, nats_authd};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `nats-authd up`; on drop (a failed assertion included) it gets SIGTERM, so it
/// stops its nats-server instead of leaving it behind.
struct Up {
    child: Child,
    /// Its client URL.
    url: String,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(&self.child, nix::sys::signal::Signal::SIGTERM);
            let _ = wait_exit(&mut self.child, Duration::from_secs(20));
        }
    }
}

/// Starts `nats-authd [global...] up` in `dir` on `port` and waits until the service answers
/// `status` with the admin creds `up` wrote.
fn up_with(dir: &Path, port: u16, global: &[&str]) -> Up {
    let log = dir.join(format!("up-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = nats_authd(dir)
        .args(global)
        .args(["up", "--port", &port.to_string(), "--http-port", &free_port().to_string()])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let up = Up { child, url: format!("nats://127.0.0.1:{port}"), log };
    await_status(dir, &up.url, Path::new("authd/admin.creds"), Duration::from_secs(30));
    up
}

fn up(dir: &Path, port: u16) -> Up {
    up_with(dir, port, &[])
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
    let out = nats_authd(dir.path()).args(["status", "--json", "--nats-url", &up.url]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["accounts"], 3, "{status}");
    assert_eq!(status["server_name"], "authd-local");

    signal(&up.child, nix::sys::signal::Signal::SIGINT);
    assert!(wait_exit(&mut up.child, Duration::from_secs(20)).success());
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
    signal(&first.child, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_exit(&mut first.child, Duration::from_secs(20)).success());
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

#[test]
fn init_on_a_jetstream_store_keeps_the_admin_creds_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let init = || nats_authd(dir.path()).args(["init", "--store", "jetstream"]).output().unwrap();
    let out = init();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.path().join("authd/admin.creds");
    let first = std::fs::read_to_string(&path).unwrap();
    // A JWT signed a second later would differ (its iat).
    std::thread::sleep(Duration::from_millis(1100));
    let out = init();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "re-signed from the seed");
    std::fs::remove_file(&path).unwrap();
    assert!(init().status.success());
    assert!(std::fs::read_to_string(&path).unwrap().contains("NATS USER JWT"), "none written");
}

fn nats_authd_key() -> String {
    nats_authd::vault::MasterKey::generate().to_text().to_string()
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = common::files_under(dir)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn init_and_up_refuse_a_store_whose_db_file_is_gone_and_serve_calls_it_damaged() {
    let dir = tempfile::tempdir().unwrap();
    assert!(nats_authd(dir.path()).arg("init").output().unwrap().status.success());
    std::fs::remove_file(dir.path().join("authd/data/store/db")).unwrap();
    let before = snapshot(dir.path());

    let port = free_port().to_string();
    for args in [&["init"][..], &["up", "--port", &port][..], &["serve", "--require-nats"][..]] {
        let out = nats_authd(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted a damaged store");
        let text = stderr(&out);
        assert!(text.contains("damaged or incomplete"), "{args:?}: {text}");
        assert!(text.contains("from a backup"), "{args:?} must say how to recover: {text}");
        assert!(!text.contains("no nats-authd store in"), "{args:?} says run init: {text}");
        assert!(snapshot(dir.path()) == before, "{args:?} changed a file");
    }
}

#[test]
fn the_serve_line_init_prints_names_the_server_url() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = nats_authd(dir.path())
        .args(["init", "--port", &port.to_string(), "--data-dir", "d", "--out-dir", "o"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Then the service:"))
        .unwrap_or_else(|| panic!("no serve line in {stdout}"));
    // Pasted as it is, it parses into a serve on this data dir and this server.
    let cli =
        <nats_authd::cli::Cli as clap::Parser>::try_parse_from(line.split_whitespace()).unwrap();
    let nats_authd::cli::Command::Serve(serve) = cli.command else { panic!("not serve: {line}") };
    assert_eq!(serve.store.data_dir, Path::new("d"));
    assert_eq!(serve.nats_urls, [format!("nats://127.0.0.1:{port}")]);
}

/// The seed of a creds file: the line after its seed header.
fn seed_of(creds: &str) -> String {
    let mut lines = creds.lines();
    lines.find(|l| l.contains("BEGIN USER NKEY SEED")).expect("a seed section");
    lines.next().unwrap().trim().to_string()
}

#[test]
fn trace_logs_never_show_a_password_or_a_seed() {
    const PASSWORD: &str = "correct-horse-battery-staple-7f3a";
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(dir.path(), free_port(), &["--log", "trace"]);

    // The client at trace too: what it sends and what it receives are logged as well.
    let client = |args: &[&str]| {
        let mut cmd = nats_authd(dir.path());
        cmd.args(["--log", "trace"]).args(args).args(["--nats-url", &up.url]);
        cmd
    };
    let mut outputs = Vec::new();
    let out = client(&["account", "create", "acme"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    outputs.push(out);
    let mut create = client(&["user", "create", "acme", "dev1", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(create.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    outputs.push(out);
    let out = client(&["user", "creds", "acme", "dev1", "--out", "dev1.creds"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    outputs.push(out);
    let seed = seed_of(&std::fs::read_to_string(dir.path().join("dev1.creds")).unwrap());
    let admin_seed =
        seed_of(&std::fs::read_to_string(dir.path().join("authd/admin.creds")).unwrap());
    let log = up.log.clone();
    drop(up);

    let mut logs = std::fs::read(log).unwrap();
    assert!(logs.windows(5).any(|w| w == b"TRACE"), "the service did not log at trace");
    for out in &outputs {
        logs.extend_from_slice(&out.stdout);
        logs.extend_from_slice(&out.stderr);
    }
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.contains("user.create"), "the request itself went unlogged: not a real test");
    assert!(!logs.contains(PASSWORD), "the password is in the logs");
    assert!(!logs.contains(&seed), "the user's seed is in the logs");
    assert!(!logs.contains(&admin_seed), "the admin's seed is in the logs");
}

#[cfg(unix)]
#[test]
fn creds_out_onto_an_existing_file_is_refused_without_force_and_private_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let up = up(dir.path(), free_port());
    let admin = |args: &[&str]| {
        nats_authd(dir.path()).args(args).args(["--nats-url", &up.url]).output().unwrap()
    };
    assert!(admin(&["account", "create", "acme"]).status.success());
    assert!(admin(&["user", "create", "acme", "dev1"]).status.success());

    let target = dir.path().join("shared.creds");
    std::fs::write(&target, "old, world-readable").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out_arg = target.to_str().unwrap();
    for verb in ["creds", "regenerate"] {
        let out = admin(&["user", verb, "acme", "dev1", "--out", out_arg]);
        assert!(!out.status.success(), "{verb} --out overwrote an existing file");
        assert!(stderr(&out).contains("--force"), "{verb}: {}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old, world-readable");
    }

    let out = admin(&["user", "creds", "acme", "dev1", "--out", out_arg, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(!seed_of(&text).is_empty());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a seed landed in a file others can read");
}

/// Runs `nats-authd args...` in `dir` with `env` on top of the scrubbed environment.
fn run_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = nats_authd(dir);
    cmd.envs(env.iter().copied()).args(args);
    cmd.output().unwrap()
}

#[test]
fn client_errors_say_what_happened_once_with_an_exit_code_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let up = up(dir.path(), free_port());
    let url = up.url.as_str();
    let admin = |args: &[&str]| run_env(dir.path(), &[], &[args, &["-s", url]].concat());
    assert!(admin(&["account", "create", "acme"]).status.success());
    assert!(admin(&["user", "create", "acme", "dev1"]).status.success());
    assert!(admin(&["user", "creds", "acme", "dev1", "--out", "dev1.creds"]).status.success());

    // A tenant's creds: refused at once, not after the 10 s time-out.
    let started = Instant::now();
    let out = admin(&["account", "list", "--creds", "dev1.creds"]);
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "nats-authd: not allowed: these creds may not publish to authd.account.list \
         (is this an admin's creds file?)"
    );

    let out = admin(&["role", "delete", "acme", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = admin(&["account", "delete", "acme"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--cascade"), "{}", stderr(&out));

    // --json: the error as the service's error body, on stderr, and nothing else there.
    let out = admin(&["account", "create", "acme", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let body: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(body["error"]["code"], 409, "{body}");
    assert_eq!(body["error"]["kind"], "already_exists", "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());

    // Nothing listening: one line, the cause once, no log line before it.
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let out = run_env(dir.path(), &[], &["status", "-s", &nowhere]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert_eq!(text.matches("refused").count(), 1, "{text}");
    assert!(text.contains(&nowhere), "{text}");

    // A reader that has gone away is not a failure, and not a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = nats_authd(dir.path())
        .args(["account", "list", "-s", url])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn nats_url_nats_creds_and_a_nats_cli_context_select_the_server_and_creds() {
    let dir = tempfile::tempdir().unwrap();
    let up = up(dir.path(), free_port());
    let creds = dir.path().join("authd/admin.creds");
    let creds = creds.to_str().unwrap();
    // Run from elsewhere, so the default ./authd/admin.creds is not what answers.
    let elsewhere = tempfile::tempdir().unwrap();

    let out = run_env(
        elsewhere.path(),
        &[("NATS_URL", &up.url), ("NATS_CREDS", creds)],
        &["status", "--json"],
    );
    assert!(out.status.success(), "NATS_URL/NATS_CREDS: {}", stderr(&out));

    let config = elsewhere.path().join("config");
    std::fs::create_dir_all(config.join("nats/context")).unwrap();
    let context = serde_json::json!({"description": "", "url": up.url, "creds": creds, "nkey": ""});
    std::fs::write(config.join("nats/context/local.json"), context.to_string()).unwrap();
    std::fs::write(config.join("nats/context.txt"), "local\n").unwrap();
    let xdg = [("XDG_CONFIG_HOME", config.to_str().unwrap())];
    let out = run_env(elsewhere.path(), &xdg, &["status", "--json"]);
    assert!(out.status.success(), "selected context: {}", stderr(&out));

    // Explicit settings still win over the context.
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let out = run_env(elsewhere.path(), &[xdg[0], ("NATS_AUTHD_URL", &nowhere)], &["status"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = run_env(elsewhere.path(), &xdg, &["status", "--context", "missing"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn sys_creds_gives_an_operator_a_private_system_account_creds_file() {
    let dir = tempfile::tempdir().unwrap();
    let up = up(dir.path(), free_port());
    let out = nats_authd(dir.path())
        .args(["sys-creds", "--out", "sys.creds", "--nats-url", &up.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.path().join("sys.creds");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&path).unwrap().contains("BEGIN NATS USER JWT"));
}
