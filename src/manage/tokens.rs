//! API tokens: per-user secrets for callout logins, shown once, stored as a SHA-256.

use super::PageSpec;
use super::{check_len, ManageError, Manager, Noun, Revoked, MAX_DESCRIPTION_LEN};
use crate::api::token::{CreateToken, ListTokens, RevokeToken, TokenCreated, TokenView};
use crate::api::Page;
use crate::model::{AccountKind, AccountName, TokenRecord, UnixTime, UserName};
use crate::store::Batch;

/// Most tokens one user may hold.
pub const MAX_TOKENS_PER_USER: usize = 100;

impl Manager {
    /// Every token record of `account` (and `user`, if given).
    pub(crate) async fn tokens_of(
        &self,
        account: &AccountName,
        user: Option<&UserName>,
    ) -> Result<Vec<TokenRecord>, ManageError> {
        let all = self.authority.db().list::<TokenRecord>("").await?;
        Ok(all
            .into_iter()
            .filter(|t| t.account == *account && user.is_none_or(|u| t.user == *u))
            .collect())
    }

    /// Makes an API token for a tenant user.
    ///
    /// # Errors
    /// 404 for an unknown user, 400 for a non-tenant account, 409 past the per-user maximum.
    pub async fn create_token(
        &self,
        req: CreateToken,
        now: UnixTime,
    ) -> Result<TokenCreated, ManageError> {
        let account = self.authority.account(&req.account).await?;
        if account.kind != AccountKind::Tenant {
            return Err(ManageError::Invalid("API tokens are for users of tenant accounts".into()));
        }
        // A cascading delete lists the tokens once, then deletes users over several batches.
        Self::open_for_changes(&account)?;
        let user = self.authority.user(&account.name, &req.user).await?;
        let description = req.description.unwrap_or_default();
        check_len("description", &description, MAX_DESCRIPTION_LEN)?;
        if self.tokens_of(&account.name, Some(&user.name)).await?.len() >= MAX_TOKENS_PER_USER {
            return Err(ManageError::Refused(format!(
                "user {:?} already has {MAX_TOKENS_PER_USER} tokens",
                user.name.as_str()
            )));
        }
        let (token, record) = crate::token::mint(&account.name, &user.name, description, now);
        let mut batch = Batch::new();
        batch.create(&record);
        // The user and its account must still be the ones read above.
        batch.require(&user).require(&account);
        self.commit(batch).await?;
        Ok(TokenCreated { view: TokenView::from(&record), token })
    }

    /// One page of tokens (never their secrets), in id order.
    ///
    /// # Errors
    /// 404 for an unknown account.
    pub async fn list_tokens(
        &self,
        req: ListTokens,
        max_payload: usize,
    ) -> Result<Page<TokenView>, ManageError> {
        let spec = PageSpec::new(req.limit, req.cursor.clone(), "", max_payload)?;
        // Tokens are keyed by id, not under their account: filtered in memory, then paged.
        let tokens = self.all_tokens(req).await?;
        spec.page_of_all(tokens.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    /// Every token of an account (of one user, if given), unpaged, in id order.
    pub(crate) async fn all_tokens(&self, req: ListTokens) -> Result<Vec<TokenView>, ManageError> {
        let account = self.authority.account(&req.account).await?;
        let user = req.user;
        Ok(self
            .tokens_of(&account.name, user.as_ref())
            .await?
            .iter()
            .map(TokenView::from)
            .collect())
    }

    /// Revokes a token; connections that logged in with it are ended.
    ///
    /// # Errors
    /// 404 for an unknown token.
    pub async fn revoke_token(&self, req: RevokeToken) -> Result<TokenView, ManageError> {
        let record = self
            .authority
            .db()
            .get::<TokenRecord>(&req.id)
            .await?
            .ok_or_else(|| ManageError::NotFound { what: Noun::Token, name: req.id.clone() })?;
        let mut batch = Batch::new();
        batch.delete::<TokenRecord>(&record.id);
        self.commit(batch).await?;
        self.revoke(Revoked::Token { id: record.id.clone() });
        Ok(TokenView::from(&record))
    }
}
