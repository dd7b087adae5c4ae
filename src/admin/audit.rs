//! The audit log: listing it (`traffix audit list`) and writing the entry of every change an
//! admin command makes — who, what, on what, why, and the state before and after, with
//! secrets redacted.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::views::AuditView;
use super::{AdminCtx, AdminError, Audit, Command};
use crate::store::now_secs;

/// The newest audit entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

impl Command for AuditList {
    type Output = Vec<AuditView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<AuditView>, AdminError> {
        let list = ctx.store.list_audit(self.limit.unwrap_or(100))?;
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
