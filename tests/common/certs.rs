//! A private CA made with the `openssl` CLI for the TLS tests: a server certificate for
//! `localhost` and `127.0.0.1`, and a client certificate, all signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a private CA and the certificates it signed, in one dir.
pub struct Pki {
    /// The CA certificate: what clients trust and what the server checks client certs with.
    pub ca: PathBuf,
    /// Server certificate (SAN `localhost`, `127.0.0.1`; serverAuth) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (clientAuth) and its key, for mTLS.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Whether the `openssl` CLI can be run here.
pub fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

/// Makes a CA, a server and a client certificate in `dir` (valid for a day, P-256 keys).
///
/// # Panics
/// If openssl is missing or fails, with its output.
pub fn make(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let p = |name: &str| dir.join(name);
    let pki = Pki {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server-key.pem"),
        client_cert: p("client.pem"),
        client_key: p("client-key.pem"),
    };
    let ca_key = p("ca-key.pem");
    openssl(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-nodes", "-days", "1", "-subj", "/CN=nats-authd test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&pki.ca),
    );
    let leaf = |name: &str, cert: &Path, key: &Path, extensions: &str| {
        let csr = p(&format!("{name}.csr"));
        let ext = p(&format!("{name}.ext"));
        std::fs::write(&ext, extensions).unwrap();
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
                .args(["-nodes", "-subj", &format!("/CN={name}")])
                .arg("-keyout")
                .arg(key)
                .arg("-out")
                .arg(&csr),
        );
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "1", "-set_serial"])
                .arg(format!("{}", rand_serial()))
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&pki.ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(cert),
        );
    };
    leaf(
        "localhost",
        &pki.server_cert,
        &pki.server_key,
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    leaf(
        "nats-authd-client",
        &pki.client_cert,
        &pki.client_key,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    pki
}

/// A serial number that differs between runs (the CA is new each time anyway).
fn rand_serial() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    (nanos as u64 & 0x7fff_ffff_ffff) | 1
}

fn openssl(command: &mut Command) {
    let out = command.output().expect("the openssl CLI is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl failed: {:?}\n{}",
        command,
        String::from_utf8_lossy(&out.stderr)
    );
}
