//! Logs in with only a username and password (no file: the server's `default_sentinel` takes
//! the login to nats-authd), fetches the user's own creds from `authd.self.creds` sealed to a
//! one-time curve key, saves them mode 0600 and reconnects with them directly: a connection
//! that keeps working while nats-authd is down.
//!
//! ```sh
//! nats-authd account create acme
//! nats-authd role create acme me --pub-allow 'authd.self.>' --sub-allow '_INBOX.>'
//! echo 'correct horse battery' | nats-authd user create acme dev1 --role me --password-stdin
//! cargo run --example self_creds -- dev1 'correct horse battery' dev1.creds
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};
use nats_authd::api::selfservice::{SelfCreds, SelfCredsReply};
use nats_authd::api::user::CredsView;
use nats_authd::client::AdminClient;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(user), Some(password), Some(out)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: self_creds USER PASSWORD OUT_FILE [NATS_URL]");
    };
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());

    let client = async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
        .connect(&url)
        .await
        .with_context(|| format!("logging in as {user} at {url}"))?;
    let api = AdminClient::new(client.clone(), "authd", std::time::Duration::from_secs(10));

    // The creds travel sealed to a key that exists only in this process.
    let key = nkeys::XKey::new();
    let reply = api.send(&SelfCreds { xkey: Some(key.public_key()) }).await?;
    let SelfCredsReply::Sealed(sealed) = reply else { bail!("the reply was not sealed") };
    let sender = nkeys::XKey::from_public_key(&sealed.sender)?;
    let bytes = data_encoding::BASE64.decode(sealed.sealed.as_bytes())?;
    let creds: CredsView = serde_json::from_slice(&key.open(&bytes, &sender)?)?;
    client.drain().await?;

    // Mode 0600 from the first byte; an existing file is not replaced.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .with_context(|| format!("creating {out}"))?;
    file.write_all(creds.creds.as_bytes())?;
    file.sync_all()?;

    let direct = async_nats::ConnectOptions::with_credentials_file(&out)
        .await?
        .connect(&url)
        .await
        .context("connecting with the saved creds")?;
    let me = AdminClient::new(direct, "authd", std::time::Duration::from_secs(10))
        .call("self.whoami", &serde_json::json!({}))
        .await?;
    println!("saved {out}; connected with it directly as:");
    println!("{}", serde_json::to_string_pretty(&me)?);
    Ok(())
}
