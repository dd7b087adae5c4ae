//! Sub-users (`traffix subuser …`): extra proxy credentials billed to a parent account, each
//! with its own byte cap, stream cap and expiry.

use serde::{Deserialize, Serialize};

use super::views::{DeletedView, SubUserView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, Window, valid_name};
use crate::relay::live::Cut;
use crate::store::{SubUser, now_secs};

/// Adds sub-user `name` under `parent`; its proxy password is generated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubUserAdd {
    pub parent: String,
    pub name: String,
    pub byte_cap: Option<u64>,
    pub max_streams: Option<u32>,
    pub valid_days: Option<u32>,
}

/// Sub-users of `parent`, or all, created inside `window`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubUserList {
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Disables or re-enables a sub-user; with `parent`, only one of that account's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubUserDisable {
    pub name: String,
    pub parent: Option<String>,
    pub disabled: bool,
}

/// Deletes a sub-user (its history stays); with `parent`, only one of that account's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubUserDelete {
    pub name: String,
    pub parent: Option<String>,
}

/// Rotates a sub-user's proxy password; with `parent`, only one of that account's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubUserPassword {
    pub name: String,
    pub parent: Option<String>,
}

impl Command for SubUserAdd {
    type Output = SubUserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("subuser.add", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<SubUserView, AdminError> {
        let SubUserAdd { parent, name, byte_cap, max_streams, valid_days } = self;
        if !valid_name(&name) {
            return Err(AdminError::new(
                "invalid",
                format!("sub-user name {name:?} must be 3-32 characters of a-z, 0-9 and _"),
            ));
        }
        if max_streams == Some(0) || byte_cap == Some(0) || valid_days == Some(0) {
            return Err(AdminError::new("invalid", "caps and validity must be greater than zero"));
        }
        let now = now_secs();
        let sub = SubUser {
            name: name.clone(),
            parent: parent.clone(),
            proxy_password: crate::auth::new_proxy_password()
                .map_err(|e| AdminError::new("internal", e.to_string()))?,
            byte_cap,
            max_streams,
            expires_at: valid_days.map(|d| now + u64::from(d) * 86_400),
            disabled: false,
            created_at: now,
        };
        ctx.store.create_subuser(&sub)?;
        ctx.invalidate(&name);
        tracing::info!(parent = %parent, sub = %name, "sub-user added");
        ctx.subuser_view(&sub)
    }
}

impl Command for SubUserList {
    type Output = Vec<SubUserView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<SubUserView>, AdminError> {
        if let Some(p) = &self.parent {
            ctx.require_user(p)?;
        }
        let mut list = ctx.store.list_subusers(self.parent.as_deref())?;
        list.sort_by_key(|s| (s.created_at, s.name.clone()));
        let list = self.window.apply(list, |s| s.created_at);
        list.iter().map(|s| ctx.subuser_view(s)).collect()
    }
}

impl Command for SubUserDisable {
    type Output = SubUserView;

    fn audit(&self) -> Option<Audit> {
        let action = if self.disabled { "subuser.disable" } else { "subuser.enable" };
        Some(Audit::new(action, &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<SubUserView, AdminError> {
        let SubUserDisable { name, parent, disabled } = self;
        let parent = ctx.subuser_parent(&name, parent)?;
        let sub = ctx.store.update_subuser(&parent, &name, |s| s.disabled = disabled)?;
        ctx.invalidate(&name);
        if disabled {
            ctx.cut(Cut::Sub(name.clone()), "sub_user_disabled");
        }
        ctx.subuser_view(&sub)
    }
}

impl Command for SubUserDelete {
    type Output = DeletedView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("subuser.delete", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeletedView, AdminError> {
        let SubUserDelete { name, parent } = self;
        let parent = ctx.subuser_parent(&name, parent)?;
        ctx.store.delete_subuser(&parent, &name)?;
        ctx.invalidate(&name);
        ctx.cut(Cut::Sub(name.clone()), "sub_user_deleted");
        Ok(DeletedView { deleted: name })
    }
}

impl Command for SubUserPassword {
    type Output = SubUserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("subuser.proxy_password", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<SubUserView, AdminError> {
        let SubUserPassword { name, parent } = self;
        let parent = ctx.subuser_parent(&name, parent)?;
        let pw = crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
        let sub = ctx.store.update_subuser(&parent, &name, |s| s.proxy_password = pw)?;
        ctx.invalidate(&name);
        ctx.subuser_view(&sub)
    }
}

impl AdminCtx {
    fn subuser_view(&self, s: &SubUser) -> Result<SubUserView, AdminError> {
        Ok(SubUserView {
            name: s.name.clone(),
            parent: s.parent.clone(),
            proxy_password: s.proxy_password.clone(),
            byte_cap: s.byte_cap,
            bytes_used: self.store.subuser_bytes(&s.name)?,
            max_streams: s.max_streams,
            expires_at: s.expires_at.map(rfc3339),
            disabled: s.disabled,
            created_at: rfc3339(s.created_at),
        })
    }

    /// The parent of sub-user `name`, which must be `parent` when one is given.
    fn subuser_parent(&self, name: &str, parent: Option<String>) -> Result<String, AdminError> {
        match (self.store.get_subuser(name)?, parent) {
            (Some(s), Some(p)) if s.parent == p => Ok(p),
            (Some(s), None) => Ok(s.parent),
            _ => Err(AdminError::new("not_found", format!("no sub-user {name:?}"))),
        }
    }
}
