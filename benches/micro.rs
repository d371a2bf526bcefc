//! Micro-benchmarks of what one login costs: mint, request decode+verify, xkey seal+open,
//! argon2id verify, a durable store write, a store read, and the rest of the callout's
//! per-login work. Prints the median time per operation (and p10/p90 over the samples).
//!
//! ```sh
//! cargo bench --bench micro            # all
//! cargo bench --bench micro -- argon2  # those whose name contains "argon2"
//! ```
//!
//! A plain harness (no criterion): every sample times a batch of operations, the batch sized
//! so that a sample takes ~10 ms; medians keep the noise of a shared machine out.

use std::hint::black_box;
use std::time::{Duration, Instant};

use nats_authd::bootstrap::{self, InitOptions, Layout, MasterKeyOptions};
use nats_authd::callout::audit::AuditEvent;
use nats_authd::callout::sealing::Sealing;
use nats_authd::callout::sessions::SessionRecord;
use nats_authd::callout::REQUEST_AUDIENCE;
use nats_authd::claims::{
    self, AuthorizationRequest, AuthorizationResponse, Claims, ServerId, Validation,
};
use nats_authd::model::{self, AccountName, AccountRecord, UserName};
use nats_authd::names::{AUTH_ACCOUNT, SERVICE_USER};
use nats_authd::password::PasswordHasher;
use nats_authd::policy;
use nats_authd::server_config::ServerSettings;
use nats_authd::store::Batch;
use nats_authd::trust;
use nkeys::{KeyPair, XKey};
use zeroize::Zeroizing;

/// Per-op times of `samples` batches, sorted.
fn measure(mut op: impl FnMut(), samples: usize) -> Vec<Duration> {
    // Size the batch: ~10 ms per sample, at least one op.
    let t = Instant::now();
    op();
    let one = t.elapsed().max(Duration::from_nanos(50));
    let batch = (Duration::from_millis(10).as_nanos() / one.as_nanos()).clamp(1, 100_000) as u32;
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed() / batch
        })
        .collect();
    times.sort();
    times
}

struct Bench {
    filter: Option<String>,
    rows: Vec<(String, Vec<Duration>)>,
}

impl Bench {
    fn run(&mut self, name: &str, samples: usize, op: impl FnMut()) {
        if self.filter.as_deref().is_some_and(|f| !name.contains(f)) {
            return;
        }
        let times = measure(op, samples);
        let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "| {name:<38} | {:>10} | {:>10} | {:>10} |",
            fmt(at(0.5)),
            fmt(at(0.1)),
            fmt(at(0.9))
        );
        self.rows.push((name.into(), times));
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; any other argument filters by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut bench = Bench { filter, rows: Vec::new() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    // A real data dir (sled on disk, so a commit's flush is a real fsync).
    let dir = tempfile::tempdir()?;
    let layout = Layout { data_dir: dir.path().join("data"), out_dir: dir.path().join("out") };
    let options = InitOptions {
        layout,
        master_key: MasterKeyOptions::default(),
        server: ServerSettings {
            host: "127.0.0.1".into(),
            port: 4222,
            http_port: 8222,
            server_name: "bench".into(),
        },
        operator_name: "bench".into(),
        xkey: true,
    };
    let authority = rt.block_on(bootstrap::init(&options, model::now()))?.authority;
    let auth = AccountName::new(AUTH_ACCOUNT)?;
    let account = rt.block_on(authority.account(&auth))?;
    let user = rt.block_on(authority.user(&auth, &UserName::new(SERVICE_USER)?))?;
    let master = authority.master();
    let now = model::now();

    println!("| operation                              |     median |        p10 |        p90 |");
    println!("|----------------------------------------|-----------:|-----------:|-----------:|");

    let user_key = KeyPair::new_user().public_key();
    bench.run("user JWT mint (open signer, sign)", 50, || {
        let permissions = policy::user_permissions(&user, None);
        black_box(
            trust::user_jwt(&account, &user_key, "u", permissions, None, master, now).unwrap(),
        );
    });

    let server = KeyPair::new_server();
    let mut request = AuthorizationRequest::new(
        ServerId {
            name: "s1".into(),
            host: "127.0.0.1".into(),
            id: server.public_key(),
            ..Default::default()
        },
        user_key.clone(),
    );
    request.connect_options.username = "u".into();
    request.connect_options.password = "a password".into();
    request.client_information.id = 42;
    request.client_information.host = "127.0.0.1".into();
    let mut claims = Claims::new(user_key.clone(), request, now);
    claims.audience = Some(REQUEST_AUDIENCE.into());
    claims.expires = Some(now + 2);
    let token = claims::encode(&claims, &server)?;
    let validation = Validation { now, skew: 2 };
    bench.run("request decode + verify (ed25519)", 50, || {
        black_box(claims::decode::<AuthorizationRequest>(&token, &validation).unwrap());
    });

    let signer = KeyPair::new_account();
    bench.run("response encode + sign", 50, || {
        let mut response =
            Claims::new(user_key.clone(), AuthorizationResponse::allow(token.clone()), now);
        response.audience = Some(server.public_key());
        black_box(claims::encode(&response, &signer).unwrap());
    });

    let (ours, theirs) = (XKey::new(), XKey::new());
    let theirs_public = XKey::from_public_key(&theirs.public_key())?;
    let ours_public = XKey::from_public_key(&ours.public_key())?;
    bench.run("xkey seal + open (request-sized)", 50, || {
        let sealed = theirs.seal(token.as_bytes(), &ours_public).unwrap();
        black_box(ours.open(&sealed, &theirs_public).unwrap());
    });
    // What the callout does: the box with this server opened once (`callout::sealing`).
    let sealing = Sealing::new(&ours)?;
    let server_key = theirs.public_key();
    let request = theirs.seal(token.as_bytes(), &ours_public).unwrap();
    bench.run("xkey open + seal, key agreement cached (callout)", 50, || {
        let opened = sealing.open(&request, &server_key).unwrap();
        black_box(sealing.seal(&opened, &server_key).unwrap());
    });

    let event = AuditEvent {
        decision: "allowed",
        category: None,
        login: "u",
        account: Some("acme"),
        user: Some("u"),
        client_host: "127.0.0.1",
        client_id: 42,
        server_name: "s1",
        latency_ms: 0.42,
        cached: false,
        at: now,
    };
    bench.run("audit event to JSON", 50, || {
        black_box(serde_json::to_vec(&event).unwrap());
    });

    let hasher = PasswordHasher::new(1);
    let phc = rt.block_on(hasher.hash(Zeroizing::new("correct horse battery".into())))?;
    bench.run("argon2id verify (m=19456,t=2,p=1)", 20, || {
        let pw = Zeroizing::new("correct horse battery".to_string());
        assert!(rt.block_on(hasher.verify(pw, phc.clone())).unwrap());
    });

    let db = authority.db().clone();
    let mut cid = 0u64;
    bench.run("store write + flush (session record)", 30, || {
        cid += 1;
        let session = SessionRecord {
            account: "acme".into(),
            user: "u".into(),
            server_id: server.public_key(),
            cid,
            token_id: None,
            expires: now + 3600,
        };
        let mut batch = Batch::new();
        batch.put(&session);
        rt.block_on(db.commit(batch)).unwrap();
    });
    bench.run("store read (account record)", 50, || {
        black_box(rt.block_on(authority.account(&auth)).unwrap());
    });
    bench.run("store read (user record)", 50, || {
        black_box(
            rt.block_on(authority.user(&auth, &UserName::new(SERVICE_USER).unwrap())).unwrap(),
        );
    });
    // What a callout login decoded (twice) when every removed user stayed revoked for good.
    let mut revoked = account.clone();
    for _ in 0..1000 {
        revoked.revocations.insert(KeyPair::new_user().public_key(), now);
    }
    let (plain, long) = (serde_json::to_vec(&account)?, serde_json::to_vec(&revoked)?);
    bench.run("account decode, no revocations", 50, || {
        black_box(serde_json::from_slice::<AccountRecord>(&plain).unwrap());
    });
    bench.run("account decode, 1,000 revocations", 50, || {
        black_box(serde_json::from_slice::<AccountRecord>(&long).unwrap());
    });
    if bench.rows.is_empty() {
        println!("(no benchmark matches the filter)");
    }
    Ok(())
}
