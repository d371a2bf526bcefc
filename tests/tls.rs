//! TLS with a private CA made here: nats-server with TLS from `init`'s flags, `serve` and a
//! client command with the CA (server TLS) and with a client certificate (mTLS), `up` doing
//! both, and the clear failures without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::{self, Pki};
use common::{free_port, nats_authd, nats_server_bin};
use nats_authd::nats_server::{self, NatsServer};

/// Exit code of client commands when no server can be reached (`nats-authd --help`).
const EXIT_UNREACHABLE: i32 = 5;

/// A temp dir with a private CA, and the ports of the server the test configures.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    port: u16,
    http_port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = certs::make(&dir.path().join("pki"));
        Setup { dir, pki, port: free_port(), http_port: free_port() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    fn creds(&self) -> PathBuf {
        self.path().join("out/admin.creds")
    }

    /// `--data-dir`, `--out-dir` and the ports, as `init` and `up` take them.
    fn layout_args(&self) -> Vec<String> {
        ["--data-dir", "data", "--out-dir", "out"]
            .map(String::from)
            .into_iter()
            .chain(["--port".into(), self.port.to_string()])
            .chain(["--http-port".into(), self.http_port.to_string()])
            .collect()
    }

    /// `--server-tls-*` for this CA: the server certificate, and with `verify` the CA and mTLS.
    fn server_tls_args(&self, verify: bool) -> Vec<String> {
        let mut args = vec![
            "--server-tls-cert".to_string(),
            path_arg(&self.pki.server_cert),
            "--server-tls-key".into(),
            path_arg(&self.pki.server_key),
        ];
        if verify {
            args.extend(["--server-tls-ca".into(), path_arg(&self.pki.ca)]);
            args.push("--server-tls-verify".into());
        }
        args
    }

    /// `--tlsca`, and `--tlscert`/`--tlskey` if `client_cert`.
    fn client_tls_args(&self, client_cert: bool) -> Vec<String> {
        let mut args = vec!["--tlsca".to_string(), path_arg(&self.pki.ca)];
        if client_cert {
            args.extend(["--tlscert".into(), path_arg(&self.pki.client_cert)]);
            args.extend(["--tlskey".into(), path_arg(&self.pki.client_key)]);
        }
        args
    }

    /// `nats-authd init` with the layout and `extra` flags.
    async fn init(&self, extra: &[String]) -> Output {
        run(self.path(), &[&["init".to_string()], &self.layout_args()[..], extra].concat()).await
    }

    /// nats-server with the config `init` wrote.
    async fn start_server(&self) -> NatsServer {
        let config = self.path().join("out/nats-server.conf");
        nats_server::check_config(&nats_server_bin(), &config).await.unwrap();
        NatsServer::start(
            &nats_server_bin(),
            &config,
            &self.path().join("nats-server.log"),
            &format!("127.0.0.1:{}", self.port),
            &[],
            Duration::from_secs(15),
        )
        .await
        .unwrap()
    }

    /// A client command against this server as the admin, with `tls` flags.
    async fn client(&self, command: &[&str], tls: &[String]) -> Output {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(["--json".into(), "--timeout".into(), "2".into()]);
        args.extend(["--server".into(), self.url(), "--creds".into(), path_arg(&self.creds())]);
        args.extend(tls.iter().cloned());
        run(self.path(), &args).await
    }

    /// Waits (30 s at most) until `status` with `tls` succeeds.
    async fn await_service(&self, tls: &[String]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.client(&["status"], tls).await;
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).unwrap();
            }
            assert!(Instant::now() < deadline, "the service never answered: {}", stderr(&out));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `nats-authd --log off <args>` in `dir`, to completion.
async fn run(dir: &Path, args: &[String]) -> Output {
    command(dir, args).output().await.unwrap()
}

fn command(dir: &Path, args: &[String]) -> tokio::process::Command {
    let mut cmd = nats_authd(dir);
    cmd.args(["--log", "off"]).args(args);
    tokio::process::Command::from(cmd)
}

/// A long-running `nats-authd` (`serve`, `up`); on drop (a failed assertion included) it gets
/// SIGTERM and is waited for, so `up` stops its nats-server instead of leaving it behind.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(dir: &Path, name: &str, args: &[String]) -> Running {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = nats_authd(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Running { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A failed client command: the exit code for "unreachable" and a line that says TLS.
fn assert_tls_refused(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(EXIT_UNREACHABLE), "{what}: {}", stderr(out));
    let err: serde_json::Value = serde_json::from_str(stderr(out).trim())
        .unwrap_or_else(|e| panic!("{what}: stderr is not one JSON error ({e}): {}", stderr(out)));
    assert_eq!(err["error"]["kind"], "unreachable", "{what}: {err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("TLS"), "{what}: {message}");
}

#[tokio::test]
async fn serve_and_a_client_command_use_the_ca_of_a_tls_server() {
    let s = Setup::new();
    let mut flags = s.server_tls_args(false);
    flags.extend(["--server-tls-ca".into(), path_arg(&s.pki.ca)]);
    let out = s.init(&flags).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The serve line to paste names the TLS URL and the CA.
    let printed = stdout(&out);
    let url = s.url();
    assert!(
        printed.contains(&format!("--nats-url {url} --tlsca {}", s.pki.ca.display())),
        "{printed}"
    );
    let config = std::fs::read_to_string(s.path().join("out/nats-server.conf")).unwrap();
    assert!(config.contains("verify: false"), "{config}");
    let _server = s.start_server().await;

    // Without the CA, the service cannot verify the server: a clear error, at once.
    let data =
        ["serve", "--data-dir", "data", "--require-nats", "--nats-url", &url].map(String::from);
    let out = run(s.path(), &data).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("cannot connect to NATS at {url}")), "{}", stderr(&out));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));

    let mut serve_args = data.to_vec();
    serve_args.extend(s.client_tls_args(false));
    let serve = Running::spawn(s.path(), "serve", &serve_args);
    let status = s.await_service(&s.client_tls_args(false)).await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["server_url"], url.as_str(), "{status}");

    // A change that goes out to the server (an account push) works over TLS.
    let out = s.client(&["account", "create", "acme"], &s.client_tls_args(false)).await;
    assert!(out.status.success(), "{}\n{}", stderr(&out), serve.output());
    let out = s.client(&["account", "list"], &s.client_tls_args(false)).await;
    assert!(stdout(&out).contains("\"acme\""), "{}", stdout(&out));

    // Without the CA the client command fails clearly, as unreachable.
    let out = s.client(&["status"], &[]).await;
    assert_tls_refused(&out, "no --tlsca");

    // The CA from the NATS CLI's variable, and from a NATS CLI context.
    let mut cmd = command(s.path(), &["status".into(), "--server".into(), url.clone()]);
    let out = cmd.env("NATS_CREDS", s.creds()).env("NATS_CA", &s.pki.ca).output().await.unwrap();
    assert!(out.status.success(), "NATS_CA: {}", stderr(&out));
    let contexts = s.path().join("config/nats/context");
    std::fs::create_dir_all(&contexts).unwrap();
    let context = serde_json::json!({
        "description": "", "url": url, "creds": s.creds(), "ca": s.pki.ca, "cert": "", "key": "",
    });
    std::fs::write(contexts.join("tlsctx.json"), context.to_string()).unwrap();
    let mut cmd = command(s.path(), &["status".into(), "--context".into(), "tlsctx".into()]);
    let out = cmd.env("XDG_CONFIG_HOME", s.path().join("config")).output().await.unwrap();
    assert!(out.status.success(), "context: {}", stderr(&out));
    drop(serve);
}

#[tokio::test]
async fn mtls_needs_the_client_certificate_for_serve_and_client_commands() {
    let s = Setup::new();
    let out = s.init(&s.server_tls_args(true)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("--tlscert CLIENT-CERT.pem --tlskey CLIENT-KEY.pem"));
    let config = std::fs::read_to_string(s.path().join("out/nats-server.conf")).unwrap();
    assert!(config.contains("verify: true"), "{config}");
    let _server = s.start_server().await;
    let url = s.url();
    let data =
        ["serve", "--data-dir", "data", "--require-nats", "--nats-url", &url].map(String::from);

    // The CA alone is not enough for the service.
    let out = run(s.path(), &[&data[..], &s.client_tls_args(false)].concat()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("cannot connect to NATS at {url}")), "{}", stderr(&out));

    let serve = Running::spawn(s.path(), "serve", &[&data[..], &s.client_tls_args(true)].concat());
    let status = s.await_service(&s.client_tls_args(true)).await;
    assert_eq!(status["connected"], true, "{status}");
    let out = s.client(&["account", "create", "acme"], &s.client_tls_args(true)).await;
    assert!(out.status.success(), "{}\n{}", stderr(&out), serve.output());

    // A client command with the CA but no certificate is refused, and says TLS.
    let out = s.client(&["status"], &s.client_tls_args(false)).await;
    assert_tls_refused(&out, "no client certificate");
    // A certificate without its key is a usage error.
    let half = [s.client_tls_args(false), vec!["--tlscert".into(), path_arg(&s.pki.client_cert)]];
    let out = s.client(&["status"], &half.concat()).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    drop(serve);
}

#[tokio::test]
async fn up_with_mtls_connects_its_service_with_the_client_certificate() {
    let s = Setup::new();
    let up = [&["up".to_string()][..], &s.layout_args(), &s.server_tls_args(true)].concat();

    // Verify on and no certificate for the service: refused before anything is written.
    let out = run(s.path(), &up).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("give --tlscert and --tlskey"), "{}", stderr(&out));
    assert!(!s.path().join("out").exists(), "nothing may be written");

    // --tlsca defaults to --server-tls-ca.
    let client_cert = ["--tlscert", "--tlskey"]
        .iter()
        .zip([&s.pki.client_cert, &s.pki.client_key])
        .flat_map(|(flag, path)| [flag.to_string(), path_arg(path)])
        .collect::<Vec<_>>();
    let running = Running::spawn(s.path(), "up", &[&up[..], &client_cert].concat());
    let status = s.await_service(&s.client_tls_args(true)).await;
    assert_eq!(status["connected"], true, "{status}");
    let printed = running.output();
    let hint = format!("--nats-url {} --tlsca {}", s.url(), s.pki.ca.display());
    assert!(printed.contains(&hint), "{printed}");
    let out = s.client(&["status"], &s.client_tls_args(false)).await;
    assert_tls_refused(&out, "no client certificate");
    drop(running);
}

#[tokio::test]
async fn init_refuses_tls_flags_when_local_conf_sets_tls_too() {
    let s = Setup::new();
    let out = s.init(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let config_file = s.path().join("out/nats-server.conf");
    let before = std::fs::read_to_string(&config_file).unwrap();
    // What nats-server does with two blocks: the last one replaces the first whole, and a
    // partial one leaves the server without certificates though `-t` calls it valid.
    let local = s.path().join("out/local.conf");
    std::fs::write(&local, "# mine\ntls {\n  timeout: 3\n}\n").unwrap();
    let out = s.init(&s.server_tls_args(false)).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has its own top-level tls block"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&config_file).unwrap(), before, "nothing rewritten");

    // A tls block elsewhere (a cluster's) is no conflict; a missing file is named.
    std::fs::write(&local, "cluster { name: c, listen: \"127.0.0.1:-1\", tls { timeout: 3 } }\n")
        .unwrap();
    let out = s.init(&s.server_tls_args(false)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let missing = ["--server-tls-cert", "nope.pem", "--server-tls-key", "nope-key.pem"];
    let out = s.init(&missing.map(String::from)).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot use TLS file nope.pem"), "{}", stderr(&out));
}
