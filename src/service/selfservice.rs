//! The `self.*` endpoints: who is asking comes from the `Nats-Request-Info` header only.
//!
//! Every tenant imports `authd.self.>` from AUTH with `share: true`, so nats-server writes
//! `Nats-Request-Info` into each request it forwards, replacing any the client sent: `acc`
//! (the account's public key), `user` (a callout login: its JWT's `name`, our user name; a
//! creds login: the connection's nkey, with `jwt` next to it), and connection details we do
//! not use (`name_tag` of a callout login is the sentinel's: never identity). A request
//! without the header (nothing crossed an import: it was published inside AUTH) or naming
//! anything nats-authd does not hold as an active tenant user is refused, as is ADMIN (it
//! imports `authd.>` too, but is no tenant).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dedup::{self, Dedup};
use super::reply::Reply;
use super::Context;
use crate::api::selfservice::{SealedReply, SelfCreds, SelfCredsReply};
use crate::api::user::CredsView;
use crate::api::Endpoint;
use crate::manage::selfservice::Caller;
use crate::manage::{parse, ManageError};
use crate::model;

/// The header nats-server adds to requests crossing a shared service import.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// The fields of `Nats-Request-Info` that identify the caller.
#[derive(Debug, Clone, Deserialize)]
struct RequestInfo {
    acc: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    jwt: Option<String>,
}

fn request_info(message: &async_nats::Message) -> Result<RequestInfo, ManageError> {
    let refused =
        || ManageError::Forbidden("self-service is for users of tenant accounts only".into());
    let header =
        message.headers.as_ref().and_then(|h| h.get(REQUEST_INFO_HEADER)).ok_or_else(refused)?;
    let info: RequestInfo = serde_json::from_str(header.as_str()).map_err(|_| refused())?;
    if info.acc.is_empty() || info.user.is_empty() {
        return Err(refused());
    }
    Ok(info)
}

/// Handles one `self.*` request. A change carrying a request id is applied once across
/// retries, the id scoped to the caller, so nobody is answered from another caller's record.
pub async fn serve(
    ctx: &Context,
    dedup: &Dedup,
    endpoint: Endpoint,
    message: &async_nats::Message,
) -> Reply {
    let info = match request_info(message) {
        Ok(info) => info,
        Err(e) => return Reply::from_result(endpoint.subject(), Err(e)),
    };
    let run = || async {
        Reply::from_result(endpoint.subject(), handle(ctx, endpoint, &info, &message.payload).await)
    };
    if !endpoint.is_change() {
        return run().await;
    }
    let id = message.headers.as_ref().and_then(|h| h.get(dedup::REQUEST_ID_HEADER)).map(|v| {
        let scoped = format!("{}\n{}\n{}", info.acc, info.user, v.as_str());
        data_encoding::HEXLOWER.encode(&Sha256::digest(scoped.as_bytes()))
    });
    dedup.run(id.as_deref(), run).await
}

fn json<T: Serialize>(value: &T) -> Result<Bytes, ManageError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(ManageError::internal)
}

/// The creds reply, sealed to `xkey` when the client sent one. The plain creds never appear
/// in a sealed reply: it is `{"sealed","sender"}` only.
fn creds_reply(creds: CredsView, xkey: Option<&str>) -> Result<Bytes, ManageError> {
    let Some(recipient) = xkey else { return json(&SelfCredsReply::Plain(creds)) };
    let recipient = nkeys::XKey::from_public_key(recipient)
        .map_err(|_| ManageError::Invalid("xkey is not a curve public key (X...)".into()))?;
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&creds).map_err(ManageError::internal)?);
    // A one-time sender: nothing else is ever sealed with it.
    let sender = nkeys::XKey::new();
    let sealed = sender.seal(&plain, &recipient).map_err(ManageError::internal)?;
    json(&SelfCredsReply::Sealed(SealedReply {
        sealed: data_encoding::BASE64.encode(&sealed),
        sender: sender.public_key(),
    }))
}

/// Checks the xkey before anything changes, so a bad key revokes nothing.
fn check_xkey(xkey: Option<&str>) -> Result<(), ManageError> {
    match xkey {
        Some(key) if nkeys::XKey::from_public_key(key).is_err() => {
            Err(ManageError::Invalid("xkey is not a curve public key (X...)".into()))
        }
        _ => Ok(()),
    }
}

async fn caller(ctx: &Context, info: &RequestInfo) -> Result<Caller, ManageError> {
    ctx.manager.caller(&info.acc, &info.user, info.jwt.as_deref(), model::now()).await
}

async fn handle(
    ctx: &Context,
    endpoint: Endpoint,
    info: &RequestInfo,
    body: &[u8],
) -> Result<Bytes, ManageError> {
    use crate::api::selfservice as s;
    let m = &ctx.manager;
    let now = model::now();
    // Lists page their replies to fit the payload the server takes, as the operator lists do.
    let max_payload = ctx.client.server_info().max_payload;
    // The body is read first: a malformed request is a 400 whoever sends it.
    match endpoint {
        Endpoint::SelfWhoami => {
            parse::<s::WhoAmI>(body)?;
            json(&m.whoami(&caller(ctx, info).await?)?)
        }
        Endpoint::SelfCredsGet => {
            let req = parse::<SelfCreds>(body)?;
            check_xkey(req.xkey.as_deref())?;
            let creds = m.own_creds(&caller(ctx, info).await?, now).await?;
            creds_reply(creds, req.xkey.as_deref())
        }
        Endpoint::SelfRegenerate => {
            let req = parse::<s::SelfRegenerate>(body)?.0;
            check_xkey(req.xkey.as_deref())?;
            let creds = m.regenerate_own(&caller(ctx, info).await?, now).await?;
            creds_reply(creds, req.xkey.as_deref())
        }
        Endpoint::SelfPassword => {
            let req = parse::<s::ChangePassword>(body)?;
            json(&m.change_own_password(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfTokenCreate => {
            let req = parse::<s::SelfCreateToken>(body)?;
            json(&m.create_own_token(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfTokenList => {
            let req = parse::<s::SelfListTokens>(body)?;
            json(&m.list_own_tokens(&caller(ctx, info).await?, req, max_payload).await?)
        }
        Endpoint::SelfTokenRevoke => {
            let req = parse::<s::SelfRevokeToken>(body)?;
            json(&m.revoke_own_token(&caller(ctx, info).await?, req.id).await?)
        }
        Endpoint::SelfAdminUserList => {
            let req = parse::<s::TenantListUsers>(body)?;
            json(&m.tenant_list_users(&caller(ctx, info).await?, req, max_payload).await?)
        }
        Endpoint::SelfAdminUserCreate => {
            let req = parse::<s::TenantCreateUser>(body)?;
            json(&m.tenant_create_user(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfAdminUserUpdate => {
            let req = parse::<s::TenantUpdateUser>(body)?;
            json(&m.tenant_update_user(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfAdminUserDelete => {
            let req = parse::<s::TenantUserRef>(body)?;
            json(&m.tenant_delete_user(&caller(ctx, info).await?, req.name, now).await?)
        }
        Endpoint::SelfAdminUserRegenerate => {
            let req = parse::<s::TenantUserRef>(body)?;
            json(&m.tenant_regenerate_user(&caller(ctx, info).await?, req.name, now).await?)
        }
        Endpoint::SelfAdminRoleList => {
            let req = parse::<s::TenantListRoles>(body)?;
            json(&m.tenant_list_roles(&caller(ctx, info).await?, req, max_payload).await?)
        }
        Endpoint::SelfAdminRoleCreate => {
            let req = parse::<s::TenantCreateRole>(body)?;
            json(&m.tenant_create_role(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfAdminRoleUpdate => {
            let req = parse::<s::TenantUpdateRole>(body)?;
            json(&m.tenant_update_role(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfAdminRoleDelete => {
            let req = parse::<s::TenantRoleRef>(body)?;
            json(&m.tenant_delete_role(&caller(ctx, info).await?, req.name, now).await?)
        }
        Endpoint::SelfAdminTokenCreate => {
            let req = parse::<s::TenantCreateToken>(body)?;
            json(&m.tenant_create_token(&caller(ctx, info).await?, req, now).await?)
        }
        Endpoint::SelfAdminTokenList => {
            let req = parse::<s::TenantListTokens>(body)?;
            json(&m.tenant_list_tokens(&caller(ctx, info).await?, req, max_payload).await?)
        }
        Endpoint::SelfAdminTokenRevoke => {
            let req = parse::<s::SelfRevokeToken>(body)?;
            json(&m.tenant_revoke_token(&caller(ctx, info).await?, req.id).await?)
        }
        _ => Err(ManageError::internal(format!("{endpoint:?} is not a self-service endpoint"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_creds_reply_opens_with_the_clients_key_and_holds_no_plain_creds() {
        let client = nkeys::XKey::new();
        let creds = CredsView {
            account: "acme".into(),
            name: "dev1".into(),
            public_key: "UABC".into(),
            creds: "-----BEGIN NATS USER JWT-----\nsecret-seed-text".into(),
        };
        let body = creds_reply(creds.clone(), Some(&client.public_key())).unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("secret-seed-text") && !text.contains("BEGIN NATS"));
        let SelfCredsReply::Sealed(sealed) = serde_json::from_str(&text).unwrap() else {
            panic!("not sealed: {text}")
        };
        let sender = nkeys::XKey::from_public_key(&sealed.sender).unwrap();
        let opened =
            client.open(&data_encoding::BASE64.decode(sealed.sealed.as_bytes()).unwrap(), &sender);
        let opened: CredsView = serde_json::from_slice(&opened.unwrap()).unwrap();
        assert_eq!(opened, creds);
    }

    #[test]
    fn a_bad_xkey_is_refused_as_invalid() {
        assert!(matches!(check_xkey(Some("Xnope")), Err(ManageError::Invalid(_))));
        assert!(check_xkey(None).is_ok());
    }
}
