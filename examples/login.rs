//! Logs in through the callout with a username and password, against the stack `scripts/up`
//! brings up, and prints where the connection landed.
//!
//! ```sh
//! nats-authd account create acme
//! nats-authd role create acme me --pub-allow '$SYS.REQ.USER.INFO' --sub-allow '_INBOX.>'
//! echo 'correct horse battery' | nats-authd user create acme dev1 --role me --password-stdin
//! cargo run --example login -- dev1 'correct horse battery'
//! ```

use anyhow::{Context, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(user), Some(password)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: login USER PASSWORD [NATS_URL] [SENTINEL_CREDS]");
    };
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let sentinel = args.next().unwrap_or_else(|| "authd/sentinel.creds".into());

    let client = async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
        .credentials_file(&sentinel)
        .await
        .with_context(|| format!("reading {sentinel}"))?
        .connect(&url)
        .await
        .with_context(|| format!("logging in as {user} at {url}"))?;
    let reply = client.request("$SYS.REQ.USER.INFO", "".into()).await.context(
        "asking the server who we are (the role must allow publishing to $SYS.REQ.USER.INFO)",
    )?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    println!("logged in as {user}:");
    println!("{}", serde_json::to_string_pretty(&info["data"])?);
    Ok(())
}
