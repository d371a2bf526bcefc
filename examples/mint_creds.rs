//! Builds a throw-away trust chain in memory and prints a creds file, offline: the library's
//! claims, keys and sealing without a store or a server.
//!
//! `cargo run --example mint_creds`

use anyhow::Result;
use nats_authd::claims::{self, Permission, Permissions, UserPermissionLimits, Validation};
use nats_authd::keys::{KeyRole, SealedKey};
use nats_authd::model::{
    self, AccountKind, AccountName, AccountRecord, OperatorRecord, UserKind, UserName, UserRecord,
};
use nats_authd::trust;
use nats_authd::vault::MasterKey;

fn main() -> Result<()> {
    let master = MasterKey::generate();
    let now = model::now();
    let acme = AccountRecord::new(AccountName::new("acme")?, AccountKind::Tenant, &master, now);
    let operator = OperatorRecord {
        name: "example".into(),
        identity: SealedKey::generate(KeyRole::Operator, &master),
        signing_key: SealedKey::generate(KeyRole::OperatorSigning, &master),
        system_account: acme.public_key().to_string(),
        created_at: now,
        updated_at: now,
    };

    let account_jwt = trust::account_jwt(&operator, &acme, None, &master, now)?;
    let verified = trust::verify_account_jwt(&operator, &account_jwt, now)?;
    println!(
        "account {} ({}) signed by {}",
        verified.name.unwrap_or_default(),
        verified.subject,
        verified.issuer
    );

    let user =
        UserRecord::new(acme.name.clone(), UserName::new("dev1")?, UserKind::Member, &master, now);
    let permissions = UserPermissionLimits {
        permissions: Permissions {
            publish: Permission { allow: vec!["sensors.*.telemetry".into()], deny: vec![] },
            subscribe: Permission { allow: vec!["_INBOX.>".into()], deny: vec![] },
            response: None,
        },
        ..UserPermissionLimits::default()
    };
    let creds = trust::user_creds(&acme, &user, permissions, &master, now)?;
    let parsed = claims::creds::parse(&creds)?;
    let user_claims = claims::decode::<claims::User>(&parsed.jwt, &Validation::at(now))?;
    println!(
        "user {} may publish to {:?}; issuer_account {}",
        user_claims.subject,
        user_claims.nats.permission_limits.permissions.publish.allow,
        user_claims.nats.issuer_account
    );
    println!("\n{creds}");
    Ok(())
}
