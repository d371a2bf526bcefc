//! Roles: named permission sets within an account. Changing a role changes what its users'
//! next JWTs carry; no server restart, no account push.

use super::{
    check_len, check_limit, ManageError, Manager, Noun, PageSpec, Revoked, MAX_DESCRIPTION_LEN,
};
use crate::api::role::{
    CreateRole, PermissionInput, ResponseInput, RoleLimitsInput, RoleListRef, RoleRef, RoleView,
    UpdateRole,
};
use crate::api::Page;
use crate::claims::{Permission, Permissions, ResponsePermission};
use crate::model::{
    AccountKind, AccountName, AccountRecord, RoleName, RoleRecord, Subject, UnixTime, UserRecord,
};
use crate::policy;
use crate::store::Batch;

/// Most subjects in one allow or deny list.
pub const MAX_SUBJECTS: usize = 256;

fn subjects(direction: &str, list: &str, input: &[String]) -> Result<Vec<String>, ManageError> {
    if input.len() > MAX_SUBJECTS {
        return Err(ManageError::Invalid(format!(
            "{direction}.{list} has more than {MAX_SUBJECTS} subjects"
        )));
    }
    input
        .iter()
        .map(|s| {
            Subject::new(s)
                .map(String::from)
                .map_err(|e| ManageError::Invalid(format!("{direction}.{list}: {e}")))
        })
        .collect()
}

/// `current` with the lists `input` gives replaced (validated); the others kept.
fn permission(
    direction: &str,
    input: &PermissionInput,
    current: &Permission,
) -> Result<Permission, ManageError> {
    // Replaced if given, then edited: what nsc's --allow-pub / --rm users expect.
    let list = |name: &str,
                given: &Option<Vec<String>>,
                add: &Option<Vec<String>>,
                remove: &Option<Vec<String>>,
                kept: &Vec<String>| {
        let mut list = match given {
            Some(list) => subjects(direction, name, list)?,
            None => kept.clone(),
        };
        if let Some(remove) = remove {
            list.retain(|s| !remove.contains(s));
        }
        for subject in subjects(direction, name, add.as_deref().unwrap_or_default())? {
            if !list.contains(&subject) {
                list.push(subject);
            }
        }
        if list.len() > MAX_SUBJECTS {
            return Err(ManageError::Invalid(format!(
                "{direction}.{name} has more than {MAX_SUBJECTS} subjects"
            )));
        }
        Ok(list)
    };
    Ok(Permission {
        allow: list("allow", &input.allow, &input.add_allow, &input.remove_allow, &current.allow)?,
        deny: list("deny", &input.deny, &input.add_deny, &input.remove_deny, &current.deny)?,
    })
}

fn response(input: ResponseInput) -> Result<Option<ResponsePermission>, ManageError> {
    if input.max < 0 || input.ttl_ms < 0 {
        return Err(ManageError::Invalid("response.max and response.ttl_ms must be >= 0".into()));
    }
    if input.max == 0 {
        return Ok(None);
    }
    Ok(Some(ResponsePermission {
        max_msgs: input.max,
        ttl_nanos: input.ttl_ms.saturating_mul(1_000_000),
    }))
}

fn apply_limits(role: &mut RoleRecord, input: &RoleLimitsInput) -> Result<(), ManageError> {
    for (name, value, slot) in [
        ("subs", input.subs, &mut role.subs),
        ("data", input.data, &mut role.data),
        ("payload", input.payload, &mut role.payload),
    ] {
        check_limit(name, value)?;
        if let Some(v) = value {
            *slot = v;
        }
    }
    Ok(())
}

impl Manager {
    async fn role_account(&self, name: &AccountName) -> Result<AccountRecord, ManageError> {
        let account = self.authority.account(name).await?;
        Self::open_for_changes(&account)?;
        if account.kind != AccountKind::Tenant {
            return Err(ManageError::Invalid(format!(
                "roles belong to tenant accounts; {:?} is built in",
                account.name.as_str()
            )));
        }
        Ok(account)
    }

    async fn role_record(
        &self,
        account: &AccountRecord,
        name: &RoleName,
    ) -> Result<RoleRecord, ManageError> {
        let key = RoleRecord::key_of(&account.name, name);
        self.authority
            .db()
            .get(&key)
            .await?
            .ok_or(ManageError::NotFound { what: Noun::Role, name: key })
    }

    /// Adds `account`'s new default role to `batch` if it changes.
    fn set_default(
        batch: &mut Batch,
        account: &AccountRecord,
        role: &RoleName,
        default: bool,
        now: UnixTime,
    ) {
        let is_default = account.default_role.as_ref() == Some(role);
        if default == is_default {
            return;
        }
        let mut changed = account.clone();
        changed.default_role = if default { Some(role.clone()) } else { None };
        changed.updated_at = now;
        batch.replace(account, &changed);
    }

    /// Creates a role.
    ///
    /// # Errors
    /// 400 for invalid subjects or limits (naming the pattern), 409 for a taken name.
    pub async fn create_role(
        &self,
        req: CreateRole,
        now: UnixTime,
    ) -> Result<RoleView, ManageError> {
        let account = self.role_account(&req.account).await?;
        let name = req.name.clone();
        let description = req.description.unwrap_or_default();
        check_len("description", &description, MAX_DESCRIPTION_LEN)?;
        let permissions = Permissions {
            publish: permission("publish", &req.publish, &Permission::default())?,
            subscribe: permission("subscribe", &req.subscribe, &Permission::default())?,
            response: req.response.map(response).transpose()?.flatten(),
        };
        let mut role = RoleRecord {
            description,
            self_service: req.self_service,
            ..RoleRecord::new(account.name.clone(), name, permissions, now)
        };
        if let Some(limits) = &req.limits {
            apply_limits(&mut role, limits)?;
        }
        let mut batch = Batch::new();
        batch.create(&role);
        batch.require(&account);
        Self::set_default(&mut batch, &account, &role.name, req.default, now);
        self.commit(batch).await?;
        let account = self.authority.account(&account.name).await?;
        Ok(RoleView::of(&role, &account))
    }

    /// One role.
    ///
    /// # Errors
    /// 404 for unknown records.
    pub async fn get_role(&self, req: RoleRef) -> Result<RoleView, ManageError> {
        let account = self.role_account(&req.account).await?;
        Ok(RoleView::of(&self.role_record(&account, &req.name).await?, &account))
    }

    /// One page of the roles of an account.
    ///
    /// # Errors
    /// 404 for an unknown account.
    pub async fn list_roles(
        &self,
        req: RoleListRef,
        max_payload: usize,
    ) -> Result<Page<RoleView>, ManageError> {
        let account = self.role_account(&req.account).await?;
        let prefix = format!("{}/", account.name);
        let spec = PageSpec::new(req.limit, req.cursor, &prefix, max_payload)?;
        let rows = self
            .authority
            .db()
            .list_page::<RoleRecord>(&prefix, spec.after.as_deref(), spec.limit + 1)
            .await?;
        spec.page(rows.into_iter().map(|(k, r)| (k, RoleView::of(&r, &account))).collect())
    }

    /// Changes a role; its users' next JWTs carry the change.
    ///
    /// # Errors
    /// 400 for invalid input, 404 for unknown records, 409 on a concurrent change.
    pub async fn update_role(
        &self,
        req: UpdateRole,
        now: UnixTime,
    ) -> Result<RoleView, ManageError> {
        let account = self.role_account(&req.account).await?;
        let current = self.role_record(&account, &req.name).await?;
        let mut role = current.clone();
        if let Some(description) = req.description {
            check_len("description", &description, MAX_DESCRIPTION_LEN)?;
            role.description = description;
        }
        if let Some(publish) = &req.publish {
            role.permissions.publish =
                permission("publish", publish, &current.permissions.publish)?;
        }
        if let Some(subscribe) = &req.subscribe {
            role.permissions.subscribe =
                permission("subscribe", subscribe, &current.permissions.subscribe)?;
        }
        if let Some(input) = req.response {
            role.permissions.response = response(input)?;
        }
        if let Some(limits) = &req.limits {
            apply_limits(&mut role, limits)?;
        }
        // Rights equal to what the role has now (the defaults, if never set) change nothing:
        // a `get` sent back must leave the record as it is.
        if let Some(rights) = req.self_service.filter(|r| *r != current.self_service()) {
            role.self_service = Some(rights);
        }
        let mut batch = Batch::new();
        if role != current {
            role.updated_at = now;
            batch.replace(&current, &role);
        }
        if let Some(default) = req.default {
            Self::set_default(&mut batch, &account, &role.name, default, now);
        }
        if !batch.ops().is_empty() {
            self.commit(batch).await?;
        }
        if policy::narrows(&current, &role) {
            // Live callout connections carry the old role in their JWT until it expires:
            // end them, and they log in again with the new one.
            let prefix = format!("{}/", account.name);
            let users = self.authority.db().list::<UserRecord>(&prefix).await?;
            for user in users.into_iter().filter(|u| u.role.as_ref() == Some(&role.name)) {
                self.revoke(Revoked::User {
                    account: user.account.to_string(),
                    user: user.name.to_string(),
                });
            }
        }
        let account = self.authority.account(&account.name).await?;
        Ok(RoleView::of(&role, &account))
    }

    /// Deletes a role no user holds (and that is not being assigned right now).
    ///
    /// Two steps, as for accounts, because "no user holds it" is a scan no batch can require:
    /// first mark the role deleting (every write that assigns a role requires it unchanged,
    /// so from here on they fail), then count holders under the mark and remove the role, or
    /// lift the mark if someone holds it.
    ///
    /// # Errors
    /// 409 if users hold it.
    pub async fn delete_role(&self, req: RoleRef, now: UnixTime) -> Result<RoleView, ManageError> {
        let account = self.role_account(&req.account).await?;
        let current = self.role_record(&account, &req.name).await?;
        let mut marked = current.clone();
        marked.deleting = true;
        if !current.deleting {
            let mut mark = Batch::new();
            mark.replace(&current, &marked);
            self.commit(mark).await?;
        }
        let holders = self
            .authority
            .db()
            .list::<UserRecord>(&format!("{}/", account.name))
            .await?
            .into_iter()
            .filter(|u| u.role.as_ref() == Some(&current.name))
            .count();
        let mut batch = Batch::new();
        if holders > 0 {
            let mut lifted = marked.clone();
            lifted.deleting = false;
            batch.replace(&marked, &lifted);
            self.commit(batch).await?;
            return Err(ManageError::InUse {
                what: Noun::Role,
                name: current.name.to_string(),
                detail: format!("{holders} user(s) hold it; give them another role first"),
            });
        }
        batch.delete_unchanged(&marked);
        // The account's default may not name it either; and a default set meanwhile fails
        // on the mark, so the account read now is the one to change.
        let account = self.authority.account(&account.name).await?;
        Self::set_default(&mut batch, &account, &current.name, false, now);
        self.commit(batch).await?;
        Ok(RoleView::of(&current, &account))
    }
}
