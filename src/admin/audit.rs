//! The audit log: listing it (`traffix audit list`) and writing the entry of every change an
//! admin command makes — who, what, on what, why, and the state before and after, with
//! secrets redacted.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::views::AuditView;
use super::{AdminCtx, AdminError, Audit, Command, Window};
use crate::store::now_secs;

/// Audit entries inside `window`, newest first (at most 100 by default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditList {
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

impl Command for AuditList {
    type Output = Vec<AuditView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<AuditView>, AdminError> {
        let window = Window { limit: Some(self.window.limit.unwrap_or(100)), ..self.window };
        let list = ctx.store.list_audit(&window)?;
        Ok(list.into_iter().map(AuditView::from).collect())
    }
}

/// Secrets never reach the audit log.
fn redact(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["password", "proxy_password", "code", "link", "key"] {
            if o.contains_key(k) {
                o.insert(k.into(), json!("***"));
            }
        }
    }
    v
}

/// Writes the audit entry of a change that succeeded with answer `after`. A failure to write
/// it is logged, not returned: the change has happened.
pub(super) fn record<T: Serialize>(ctx: &AdminCtx, actor: &str, audit: Audit, before: Option<Value>, after: &T) {
    let entry = crate::store::AuditEntry {
        seq: 0,
        time: now_secs(),
        actor: actor.to_owned(),
        action: audit.action.to_owned(),
        target: audit.target,
        reason: audit.reason,
        before: before.map(redact),
        after: serde_json::to_value(after).ok().map(redact),
    };
    if let Err(e) = ctx.store.append_audit(entry) {
        tracing::error!(error = %e, action = audit.action, "could not write the audit entry");
    }
}
