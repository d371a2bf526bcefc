//! The trust chain in use: turns records into signed operator, account and user JWTs.
//!
//! Everything here is a plain function of records, the master key and the time, so tokens can
//! be checked in unit tests without a server. Which key signs what is decided only here:
//! the operator identity signs the operator JWT; the operator signing key signs account JWTs and
//! claims deletes; an account's signing key signs its users (with `issuer_account`).

use crate::claims::{self, creds, Claims, ClaimsError, Generic, UserPermissionLimits, Validation};
use crate::keys::{KeyError, Seed};
use crate::model::{AccountRecord, OperatorRecord, UnixTime, UserRecord};
use crate::vault::MasterKey;

/// Why a token could not be issued or checked.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A sealed key did not open.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signing or verification failed.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// An account JWT not signed by this operator.
    #[error("account JWT is signed by {issuer}, which is not this operator's key")]
    ForeignIssuer { issuer: String },
}

/// Callout settings that live in the AUTH account's JWT and depend on other records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutSettings {
    /// Public keys of the service users (they bypass the callout).
    pub auth_users: Vec<String>,
    /// Public keys of the accounts the callout may place users in.
    pub allowed_accounts: Vec<String>,
}

/// Signs the operator JWT with the operator identity key.
///
/// # Errors
/// [`TrustError`] if a key does not open.
pub fn operator_jwt(
    op: &OperatorRecord,
    master: &MasterKey,
    now: UnixTime,
) -> Result<String, TrustError> {
    let body = claims::Operator {
        signing_keys: vec![op.signing_key.public.clone()],
        system_account: op.system_account.clone(),
        // The server then refuses accounts signed by the identity key, as we never sign them.
        strict_signing_key_usage: true,
        ..claims::Operator::default()
    };
    let claims = Claims::new(op.identity.public.clone(), body, now).with_name(&op.name);
    Ok(claims::encode(&claims, &op.identity.key_pair(master)?)?)
}

/// The account body of `account`, with `callout` filled in for the AUTH account.
pub fn account_body(account: &AccountRecord, callout: Option<&CalloutSettings>) -> claims::Account {
    let mut body = claims::Account {
        imports: account.imports.clone(),
        exports: account.exports.clone(),
        limits: account.limits.clone(),
        signing_keys: account
            .signing_keys
            .iter()
            .map(|k| claims::SigningKey::Plain(k.public.clone()))
            .collect(),
        revocations: account.revocations.clone(),
        description: account.description.clone(),
        ..claims::Account::default()
    };
    if !account.active {
        // Zero connections and leaf nodes: nobody new gets in. Existing callout users are
        // kicked by the service; creds users are disconnected by the server on the update.
        body.limits.conn = 0;
        body.limits.leaf_node_conn = 0;
    }
    if let Some(callout) = callout {
        body.authorization = claims::ExternalAuthorization {
            auth_users: callout.auth_users.clone(),
            allowed_accounts: callout.allowed_accounts.clone(),
            xkey: account.xkey.as_ref().map(|k| k.public.clone()).unwrap_or_default(),
        };
    }
    body
}

/// Signs `account`'s JWT with the operator signing key.
///
/// # Errors
/// [`TrustError`] if a key does not open.
pub fn account_jwt(
    op: &OperatorRecord,
    account: &AccountRecord,
    callout: Option<&CalloutSettings>,
    master: &MasterKey,
    now: UnixTime,
) -> Result<String, TrustError> {
    let claims = Claims::new(account.public_key(), account_body(account, callout), now)
        .with_name(account.name.as_str());
    Ok(claims::encode(&claims, &op.signing_key.key_pair(master)?)?)
}

/// Checks that `token` is an account JWT issued by this operator, before it is pushed:
/// the server accepts account JWTs from foreign keys, so this check is ours to make.
///
/// # Errors
/// [`TrustError::Claims`] if it does not verify, [`TrustError::ForeignIssuer`] if another
/// operator signed it.
pub fn verify_account_jwt(
    op: &OperatorRecord,
    token: &str,
    now: UnixTime,
) -> Result<Claims<claims::Account>, TrustError> {
    let claims = claims::decode::<claims::Account>(token, &Validation::at(now))?;
    if claims.issuer != op.signing_key.public {
        return Err(TrustError::ForeignIssuer { issuer: claims.issuer });
    }
    Ok(claims)
}

/// A user JWT for `subject` in `account`, signed by the account's signing key.
///
/// `subject` is the user's own public key for creds users, or the connection's `user_nkey`
/// for callout users.
///
/// # Errors
/// [`TrustError`] if the signing key does not open.
#[allow(clippy::too_many_arguments)]
pub fn user_jwt(
    account: &AccountRecord,
    subject: &str,
    name: &str,
    permissions: UserPermissionLimits,
    expires: Option<UnixTime>,
    master: &MasterKey,
    now: UnixTime,
) -> Result<String, TrustError> {
    let signer = account.user_signer();
    let issuer_account = if signer.public != account.public_key() {
        account.public_key().to_string()
    } else {
        String::new()
    };
    let body =
        claims::User { permission_limits: permissions, issuer_account, ..claims::User::default() };
    let mut claims = Claims::new(subject, body, now).with_name(name);
    claims.expires = expires;
    Ok(claims::encode(&claims, &signer.key_pair(master)?)?)
}

/// A creds file for `user`: a fresh JWT with `permissions` and the user's own seed.
///
/// # Errors
/// [`TrustError`] if a key does not open.
pub fn user_creds(
    account: &AccountRecord,
    user: &UserRecord,
    permissions: UserPermissionLimits,
    master: &MasterKey,
    now: UnixTime,
) -> Result<String, TrustError> {
    let expires = user.creds_expiry(now);
    let jwt = user_jwt(
        account,
        &user.identity.public,
        user.name.as_str(),
        permissions,
        expires,
        master,
        now,
    )?;
    let seed: Seed = user.identity.open_seed(master)?;
    Ok(creds::format(&jwt, &seed))
}

/// A `$SYS.REQ.CLAIMS.DELETE` request for `accounts`, signed by the operator signing key.
///
/// The server wants it self-signed (`sub` = `iss`) by the operator or one of its signing keys.
///
/// # Errors
/// [`TrustError`] if the key does not open.
pub fn delete_accounts_jwt(
    op: &OperatorRecord,
    accounts: Vec<String>,
    master: &MasterKey,
    now: UnixTime,
) -> Result<String, TrustError> {
    let claims =
        Claims::new(op.signing_key.public.clone(), Generic::delete_accounts(accounts), now);
    Ok(claims::encode(&claims, &op.signing_key.key_pair(master)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyRole, SealedKey};
    use crate::model::{AccountKind, AccountName};

    fn operator(master: &MasterKey) -> OperatorRecord {
        OperatorRecord {
            name: "op".into(),
            identity: SealedKey::generate(KeyRole::Operator, master),
            signing_key: SealedKey::generate(KeyRole::OperatorSigning, master),
            system_account: String::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_this_operators_signing_key_passes_the_pre_push_check() {
        let master = MasterKey::generate();
        let (ours, theirs) = (operator(&master), operator(&master));
        let acme = AccountRecord::new(
            AccountName::new("acme").unwrap(),
            AccountKind::Tenant,
            &master,
            1000,
        );
        let good = account_jwt(&ours, &acme, None, &master, 1000).unwrap();
        assert!(verify_account_jwt(&ours, &good, 1000).is_ok());

        let foreign = account_jwt(&theirs, &acme, None, &master, 1000).unwrap();
        assert!(matches!(
            verify_account_jwt(&ours, &foreign, 1000),
            Err(TrustError::ForeignIssuer { .. })
        ));

        // Signed by our identity key: valid, but identity keys sign only the operator JWT.
        let claims = Claims::new(acme.public_key(), account_body(&acme, None), 1000);
        let by_identity =
            claims::encode(&claims, &ours.identity.key_pair(&master).unwrap()).unwrap();
        assert!(matches!(
            verify_account_jwt(&ours, &by_identity, 1000),
            Err(TrustError::ForeignIssuer { .. })
        ));
    }

    #[test]
    fn users_are_signed_by_the_account_signing_key_with_issuer_account() {
        let master = MasterKey::generate();
        let acme = AccountRecord::new(
            AccountName::new("acme").unwrap(),
            AccountKind::Tenant,
            &master,
            1000,
        );
        let user = crate::keys::SealedKey::generate(KeyRole::User, &master);
        let token =
            user_jwt(&acme, &user.public, "dev1", Default::default(), Some(2000), &master, 1000)
                .unwrap();
        let claims = claims::decode::<claims::User>(&token, &Validation::at(1000)).unwrap();
        assert_eq!(claims.issuer, acme.signing_keys[0].public);
        assert_ne!(claims.issuer, acme.public_key());
        assert_eq!(claims.nats.issuer_account, acme.public_key());
        assert_eq!(claims.expires, Some(2000));
    }

    #[test]
    fn an_inactive_account_admits_no_connections() {
        let master = MasterKey::generate();
        let mut acme = AccountRecord::new(
            AccountName::new("acme").unwrap(),
            AccountKind::Tenant,
            &master,
            1000,
        );
        assert_eq!(account_body(&acme, None).limits.conn, -1);
        acme.active = false;
        assert_eq!(account_body(&acme, None).limits.conn, 0);
    }
}
