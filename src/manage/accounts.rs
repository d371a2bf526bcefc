//! Tenant accounts: create, read, update, delete.

use std::collections::HashMap;

use super::{
    check_len, check_limit, ManageError, Manager, Noun, PageSpec, Revoked, MAX_DESCRIPTION_LEN,
};
use crate::api::account::{
    AccountRef, AccountView, CreateAccount, DeleteAccount, Deleted, ExportInput, ImportInput,
    LimitsInput, ListAccounts, UpdateAccount,
};
use crate::api::Page;
use crate::claims::{Export, Import, OperatorLimits};
use crate::model::{
    AccountKind, AccountName, AccountRecord, RoleName, RoleRecord, Subject, UnixTime, UserRecord,
};
use crate::names::{API_PREFIX, AUTH_ACCOUNT, RESERVED_SUBJECTS};
use crate::store::Batch;

/// Most writes in one batch of a cascading account delete: well under the JetStream store's
/// 1,000 messages a batch, whatever else (checks, a push) rides along.
pub const CASCADE_BATCH: usize = 400;

fn apply_limits(limits: &mut OperatorLimits, input: &LimitsInput) -> Result<(), ManageError> {
    let fields: [(&str, Option<i64>, &mut i64); 11] = [
        ("connections", input.connections, &mut limits.conn),
        ("subscriptions", input.subscriptions, &mut limits.subs),
        ("data", input.data, &mut limits.data),
        ("payload", input.payload, &mut limits.payload),
        ("imports", input.imports, &mut limits.imports),
        ("exports", input.exports, &mut limits.exports),
        ("leaf_nodes", input.leaf_nodes, &mut limits.leaf_node_conn),
        ("mem_storage", input.mem_storage, &mut limits.memory_storage),
        ("disk_storage", input.disk_storage, &mut limits.disk_storage),
        ("streams", input.streams, &mut limits.streams),
        ("consumers", input.consumers, &mut limits.consumer),
    ];
    for (name, value, slot) in fields {
        check_limit(name, value)?;
        if let Some(v) = value {
            *slot = v;
        }
    }
    Ok(())
}

/// Refuses a subject that shares anything with [`RESERVED_SUBJECTS`].
fn check_not_reserved(field: &str, subject: &Subject) -> Result<(), ManageError> {
    for reserved in RESERVED_SUBJECTS {
        let reserved = Subject::new(reserved).expect("reserved subjects are valid");
        if subject.intersects(&reserved) {
            return Err(ManageError::Invalid(format!(
                "{field} {subject} overlaps {reserved}, which is reserved for nats-server and nats-authd"
            )));
        }
    }
    Ok(())
}

fn exports_from(input: &[ExportInput]) -> Result<Vec<Export>, ManageError> {
    input
        .iter()
        .map(|e| {
            let subject = Subject::new(&e.subject)?;
            check_not_reserved("export", &subject)?;
            let name = e.name.clone().unwrap_or_else(|| subject.to_string());
            Ok(Export { kind: e.kind, ..Export::service(&name, subject.as_str()) })
        })
        .collect()
}

/// Self-service endpoints every tenant reaches (its users' identity shared with the service).
fn self_service_import(auth: &AccountRecord) -> Import {
    let subject = format!("{API_PREFIX}.self.>");
    Import {
        share: true,
        ..Import::service("nats-authd self-service", &subject, auth.public_key())
    }
}

impl Manager {
    /// Tenant account names by public key: imports name their exporter by key in the JWT
    /// and by name in the API.
    async fn tenant_names(&self) -> Result<HashMap<String, AccountName>, ManageError> {
        let accounts = self.authority.db().list::<AccountRecord>("").await?;
        Ok(accounts
            .into_iter()
            .filter(|a| a.kind == AccountKind::Tenant)
            .map(|a| (a.public_key().to_string(), a.name))
            .collect())
    }

    /// The API view of `account` (its imports by exporter name).
    pub(crate) async fn account_view(
        &self,
        account: &AccountRecord,
    ) -> Result<AccountView, ManageError> {
        let names = self.tenant_names().await?;
        Ok(AccountView::of(account, |key| names.get(key).cloned()))
    }

    async fn tenant(&self, name: &AccountName) -> Result<AccountRecord, ManageError> {
        let account = self.authority.account(name).await?;
        if account.kind != AccountKind::Tenant {
            return Err(ManageError::Invalid(format!(
                "account {name:?} is built in and cannot be changed through the API"
            )));
        }
        Ok(account)
    }

    /// An account things may be added to: it exists and no delete has begun.
    pub(crate) fn open_for_changes(account: &AccountRecord) -> Result<(), ManageError> {
        if account.deleting {
            return Err(ManageError::Refused(format!(
                "account {:?} is being deleted",
                account.name.as_str()
            )));
        }
        Ok(())
    }

    /// Resolves imports by account name and checks each fits an export of its exporter.
    async fn imports_from(
        &self,
        own: &AccountName,
        input: &[ImportInput],
    ) -> Result<Vec<Import>, ManageError> {
        let mut out = Vec::with_capacity(input.len());
        for i in input {
            let subject = Subject::new(&i.subject)?;
            check_not_reserved("import", &subject)?;
            let local = i.local_subject.as_deref().map(Subject::new).transpose()?;
            if let Some(local) = &local {
                check_not_reserved("import local_subject", local)?;
            }
            let from = i.account.clone();
            if from == *own {
                return Err(ManageError::Invalid(format!(
                    "account {own} cannot import from itself"
                )));
            }
            let exporter = self.authority.account(&from).await?;
            if exporter.kind != AccountKind::Tenant {
                return Err(ManageError::Invalid(format!(
                    "imports can come only from tenant accounts, not {from:?}"
                )));
            }
            let fits = exporter.exports.iter().any(|e| {
                e.kind == i.kind && Subject::new(&e.subject).is_ok_and(|s| s.covers(&subject))
            });
            if !fits {
                return Err(ManageError::Invalid(format!(
                    "account {from} exports no {:?} covering {subject}",
                    i.kind
                )));
            }
            let mut import = Import::service(
                i.name.as_deref().unwrap_or(subject.as_str()),
                subject.as_str(),
                exporter.public_key(),
            );
            import.kind = i.kind;
            if let Some(local) = local {
                import.local_subject = local.to_string();
            }
            out.push(import);
        }
        Ok(out)
    }

    /// Creates a tenant account and queues its JWT (and AUTH's, whose allowed accounts grow).
    ///
    /// # Errors
    /// 400 for invalid input, 409 if the name is taken.
    pub async fn create_account(
        &self,
        req: CreateAccount,
        now: UnixTime,
    ) -> Result<AccountView, ManageError> {
        let name = req.name.clone();
        let description = req.description.unwrap_or_default();
        check_len("description", &description, MAX_DESCRIPTION_LEN)?;
        let mut limits = OperatorLimits::unlimited();
        if let Some(input) = &req.limits {
            apply_limits(&mut limits, input)?;
        }
        let exports = exports_from(&req.exports)?;
        let mut imports = self.imports_from(&name, &req.imports).await?;
        let auth = self.authority.account(&AccountName::new(AUTH_ACCOUNT).expect("valid")).await?;
        imports.push(self_service_import(&auth));

        let mut account =
            AccountRecord::new(name, AccountKind::Tenant, self.authority.master(), now);
        account.description = description;
        account.limits = limits;
        account.exports = exports;
        account.imports = imports;

        // AUTH's JWT does not change: its allowed accounts are "*" (see `authority`), so a new
        // tenant costs one push, and no reply in flight from AUTH's exports is dropped.
        let mut batch = Batch::new();
        batch.create(&account);
        self.enqueue(&mut batch, &account, false, now);
        self.commit(batch).await?;
        self.await_pushed(&account).await;
        self.account_view(&account).await
    }

    /// One account.
    ///
    /// # Errors
    /// 400 for a bad name, 404 if absent.
    pub async fn get_account(&self, req: AccountRef) -> Result<AccountView, ManageError> {
        let name = req.name;
        self.account_view(&self.authority.account(&name).await?).await
    }

    /// One page of every account, built-in ones included.
    ///
    /// # Errors
    /// Store failures.
    pub async fn list_accounts(
        &self,
        req: ListAccounts,
        max_payload: usize,
    ) -> Result<Page<AccountView>, ManageError> {
        let spec = PageSpec::new(req.limit, req.cursor, "", max_payload)?;
        let rows = self
            .authority
            .db()
            .list_page::<AccountRecord>("", spec.after.as_deref(), spec.limit + 1)
            .await?;
        let names = self.tenant_names().await?;
        let views = rows
            .into_iter()
            .map(|(k, a)| (k, AccountView::of(&a, |key| names.get(key).cloned())))
            .collect();
        spec.page(views)
    }

    /// Changes a tenant account and queues its JWT.
    ///
    /// # Errors
    /// 400 for invalid input or a built-in account, 404 if absent, 409 on a concurrent change.
    pub async fn update_account(
        &self,
        req: UpdateAccount,
        now: UnixTime,
    ) -> Result<AccountView, ManageError> {
        let current = self.tenant(&req.name).await?;
        Self::open_for_changes(&current)?;
        let mut account = current.clone();
        if let Some(description) = req.description {
            check_len("description", &description, MAX_DESCRIPTION_LEN)?;
            account.description = description;
        }
        if let Some(input) = &req.limits {
            apply_limits(&mut account.limits, input)?;
        }
        if let Some(exports) = &req.exports {
            account.exports = exports_from(exports)?;
        }
        if let Some(imports) = &req.imports {
            let auth =
                self.authority.account(&AccountName::new(AUTH_ACCOUNT).expect("valid")).await?;
            let mut resolved = self.imports_from(&account.name, imports).await?;
            resolved.push(self_service_import(&auth));
            account.imports = resolved;
        }
        let mut default_role = None;
        if let Some(role) = req.default_role {
            account.default_role = if role.is_empty() {
                None
            } else {
                let role = RoleName::new(&role)?;
                let key = RoleRecord::key_of(&account.name, &role);
                match self.authority.db().get::<RoleRecord>(&key).await? {
                    Some(record) if !record.deleting => default_role = Some(record),
                    _ => return Err(ManageError::NotFound { what: Noun::Role, name: key }),
                }
                Some(role)
            };
        }
        let activity_changed = req.active.is_some_and(|a| a != account.active);
        if let Some(active) = req.active {
            account.active = active;
        }
        if account == current {
            return self.account_view(&account).await;
        }
        account.updated_at = now;

        let mut batch = Batch::new();
        batch.replace(&current, &account);
        // A role deleted meanwhile must not become the default by name.
        if let Some(role) = &default_role {
            batch.require(role);
        }
        self.enqueue(&mut batch, &account, false, now);
        self.commit(batch).await?;
        if activity_changed && !account.active {
            self.revoke(Revoked::Account { account: account.name.to_string() });
        }
        // No wait for the push here: the servers hold the account already, and a client
        // sending a hundred updates in a row gets them coalesced into a few pushes.
        self.account_view(&account).await
    }

    /// Commits `batch`, requiring `marked` unchanged, once it holds [`CASCADE_BATCH`] writes,
    /// and starts it over.
    async fn commit_full(
        &self,
        batch: &mut Batch,
        marked: &AccountRecord,
    ) -> Result<(), ManageError> {
        if batch.ops().len() >= CASCADE_BATCH {
            let mut full = std::mem::take(batch);
            full.require(marked);
            self.commit(full).await?;
        }
        Ok(())
    }

    /// Deletes a tenant account (and with `cascade` its users and roles), and queues its
    /// removal from the servers.
    ///
    /// # Errors
    /// 409 if it still has users and `cascade` is not set.
    pub async fn delete_account(
        &self,
        req: DeleteAccount,
        now: UnixTime,
    ) -> Result<Deleted, ManageError> {
        let current = self.tenant(&req.name).await?;
        let prefix = format!("{}/", current.name);
        let users = self.authority.db().list::<UserRecord>(&prefix).await?;
        if !users.is_empty() && !req.cascade {
            return Err(ManageError::InUse {
                what: Noun::Account,
                name: current.name.to_string(),
                detail: format!(
                    "it has {} user(s); delete them first or set \"cascade\": true",
                    users.len()
                ),
            });
        }
        // Two steps, so nothing added meanwhile survives: first mark it deleting (creates in
        // it require the account unchanged, so from here on they fail), then list and remove
        // everything under the mark. A crash in between leaves an inactive account that a
        // second delete finishes.
        let mut account = current.clone();
        if !account.deleting {
            account.deleting = true;
            account.active = false;
            account.updated_at = now;
            let mut mark = Batch::new();
            mark.replace(&current, &account);
            // Pushed as inactive now, as a deactivation is: creds connections end too.
            self.enqueue(&mut mark, &account, false, now);
            self.commit(mark).await?;
        }
        // Its live connections end now, not when the last batch below commits: a delete cut
        // short leaves no deleted user connected.
        self.revoke(Revoked::Account { account: account.name.to_string() });
        let users = self.authority.db().list::<UserRecord>(&prefix).await?;
        let roles = self.authority.db().list::<RoleRecord>(&prefix).await?;
        let tokens = self.tokens_of(&account.name, None).await?;
        // In batches of at most `CASCADE_BATCH` writes (the JetStream store takes 1,000
        // messages a batch), each requiring the account still as marked; the account goes
        // last, with its push, so a delete cut short leaves the mark for the next one.
        let mut batch = Batch::new();
        for token in &tokens {
            batch.delete::<crate::model::TokenRecord>(&token.id);
            self.commit_full(&mut batch, &account).await?;
        }
        for user in &users {
            // As listed: a password given meanwhile fails the batch instead of leaving its
            // login record behind.
            batch.delete_unchanged(user);
            if user.password_hash.is_some() {
                self.release_login(&account, user, &mut batch).await?;
            }
            self.commit_full(&mut batch, &account).await?;
        }
        for role in &roles {
            batch.delete::<RoleRecord>(&RoleRecord::key_of(&role.account, &role.name));
            self.commit_full(&mut batch, &account).await?;
        }
        batch.delete_unchanged(&account);
        self.enqueue(&mut batch, &account, true, now);
        self.commit(batch).await?;
        self.revoke(Revoked::Account { account: account.name.to_string() });
        Ok(Deleted { name: account.name.to_string(), users: users.len(), roles: roles.len() })
    }
}
