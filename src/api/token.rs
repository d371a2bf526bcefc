//! `token.*`: API tokens for callout logins.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::requests;
use crate::model::{AccountName, TokenRecord, UnixTime, UserName};

/// `token.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub account: AccountName,
    pub user: UserName,
    pub description: Option<String>,
}

/// `token.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    pub account: AccountName,
    pub user: Option<UserName>,
    /// Most items in the answer (default 500, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page; absent: from the start.
    pub cursor: Option<String>,
}

impl ListTokens {
    /// The first page of `account`'s tokens (of `user` only, if given).
    pub fn new(account: AccountName, user: Option<UserName>) -> Self {
        ListTokens { account, user, limit: None, cursor: None }
    }
}

/// `token.revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    pub id: String,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub account: String,
    pub user: String,
    pub description: String,
    pub created_at: UnixTime,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id.clone(),
            account: t.account.to_string(),
            user: t.user.to_string(),
            description: t.description.clone(),
            created_at: t.created_at,
        }
    }
}

/// A new token: the only time its secret is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub view: TokenView,
    /// The whole token, `authd_<id>_<secret>`: give it to the client now; it cannot be shown again.
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCreated")
            .field("view", &self.view)
            .field("token", &"<redacted>")
            .finish()
    }
}

requests! {
    CreateToken => TokenCreate, TokenCreated;
    ListTokens => TokenList, super::Page<TokenView>;
    RevokeToken => TokenRevoke, TokenView;
}

super::paged! {
    ListTokens => TokenView;
}
