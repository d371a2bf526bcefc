//! A tenant admin creates a user in its own account through `authd.self.admin.user.create`,
//! logging in with only its username and password, then lists the account's users through
//! `authd.self.admin.user.list`, following its pages. The account is never named: it is the
//! admin's own, as nats-server reports it.
//!
//! ```sh
//! nats-authd account create acme
//! nats req authd.role.create '{"account":"acme","name":"lead","publish":{"allow":["authd.self.>"]},"subscribe":{"allow":["_INBOX.>"]},"self_service":{"admin":true}}' --creds authd/admin.creds
//! echo 'boss password 1' | nats-authd user create acme boss --role lead --password-stdin
//! cargo run --example tenant_admin -- boss 'boss password 1' dev3 'dev3 password 1' [ROLE]
//! ```

use anyhow::{bail, Context, Result};
use nats_authd::api::selfservice::{TenantCreateUser, TenantListUsers};
use nats_authd::api::user::Password;
use nats_authd::client::AdminClient;
use nats_authd::model::UserName;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(admin), Some(password), Some(name), Some(new_password)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        bail!("usage: tenant_admin ADMIN PASSWORD NEW_USER NEW_PASSWORD [ROLE] [NATS_URL]");
    };
    let role = args.next();
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());

    let client = async_nats::ConnectOptions::with_user_and_password(admin.clone(), password)
        .connect(&url)
        .await
        .with_context(|| format!("logging in as {admin} at {url}"))?;
    let api = AdminClient::new(client, "authd", std::time::Duration::from_secs(10));
    let created = api
        .send(&TenantCreateUser {
            name: UserName::new(&name)?,
            role,
            description: Some(format!("created by tenant admin {admin}")),
            password: Some(Password::new(new_password)),
            jwt_ttl_secs: None,
            bearer_token: None,
            tags: None,
        })
        .await?;
    println!("created {}/{} (role {:?})", created.account, created.name, created.role);
    // The list comes in pages (500 users each by default); `list_all` asks for them all.
    let users = api.list_all(&TenantListUsers::default()).await?;
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    println!("{} has {} users: {}", created.account, users.len(), names.join(", "));
    Ok(())
}
