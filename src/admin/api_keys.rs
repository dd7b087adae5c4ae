//! API keys (`/me/api-keys`): a user's keys for scripts, created with a scope, shown once,
//! stored only as a hash, listed without the key and deleted by id.

use serde::{Deserialize, Serialize};

use super::views::{ApiKeyView, DeletedView};
use super::{API_KEY_PREFIX, AdminCtx, AdminError, Audit, Command};
use crate::store::{KeyScope, now_secs};

/// A user's API keys (never the keys themselves).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyList {
    pub user: String,
}

/// Creates an API key for `user`; the answer carries the key, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyCreate {
    pub user: String,
    pub name: String,
    pub scope: KeyScope,
}

/// Deletes one of `user`'s API keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyDelete {
    pub user: String,
    pub id: String,
}

impl Command for ApiKeyList {
    type Output = Vec<ApiKeyView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<ApiKeyView>, AdminError> {
        Ok(ctx.store.list_api_keys(&self.user)?.iter().map(ApiKeyView::from).collect())
    }
}

impl Command for ApiKeyCreate {
    type Output = ApiKeyView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("api_key.create", &self.user))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<ApiKeyView, AdminError> {
        let ApiKeyCreate { user, name, scope } = self;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(AdminError::new("invalid", "the key's name is 1-64 characters"));
        }
        let internal = |e: crate::auth::AuthError| AdminError::new("internal", e.to_string());
        let id = hex::encode(crate::auth::random_bytes::<6>().map_err(internal)?);
        let key = format!("{}{}", API_KEY_PREFIX, hex::encode(crate::auth::random_bytes::<24>().map_err(internal)?));
        let rec = crate::store::ApiKey { id, user, name: name.to_owned(), scope, created_at: now_secs() };
        ctx.store.add_api_key(&crate::auth::secret_hash(&key), &rec)?;
        Ok(ApiKeyView { key: Some(key), ..ApiKeyView::from(&rec) })
    }
}

impl Command for ApiKeyDelete {
    type Output = DeletedView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("api_key.delete", &self.id))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeletedView, AdminError> {
        ctx.store.delete_api_key(&self.user, &self.id)?;
        Ok(DeletedView { deleted: self.id })
    }
}
