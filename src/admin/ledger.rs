//! The ledger and the database as a whole (`traffix ledger …`, `traffix backup`): transfers,
//! reversals, verification of every ledger invariant, and consistent backups.

use serde::{Deserialize, Serialize};

use super::views::{BackupView, CorrectionView, TransferView};
use super::{AdminCtx, AdminError, Audit, Command, Window, checked_reason};
use crate::store::{Account, TransferRef, VerifyParams, VerifyReport, now_secs};

/// Ledger transfers made inside `window`, newest first; with `user`, only that user's (an unknown
/// user is `not_found`). The window's `before` is a transfer's `seq`: the next page of a list
/// continues before the smallest `seq` of the one before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LedgerList {
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Reverses a deposit or an adjustment once: the exact opposite transfer, with a reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerReverse {
    /// The transfer's sequence number (as `ledger list` shows it) or its id.
    pub id: String,
    pub reason: String,
}

/// Checks every ledger invariant (SECURITY.md §4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerVerify {}

/// Writes a consistent copy of the database to `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub path: String,
}

impl Command for LedgerList {
    type Output = Vec<TransferView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<TransferView>, AdminError> {
        if let Some(u) = &self.user {
            ctx.require_user(u)?;
        }
        let acct = self.user.map(Account::User);
        let list = self.window.apply_keyed(ctx.store.list_transfers(acct.as_ref())?, |t| t.seq, |t| t.time);
        Ok(list.iter().map(TransferView::from).collect())
    }
}

impl Command for LedgerReverse {
    type Output = CorrectionView;

    fn audit(&self) -> Option<Audit> {
        Some(
            Audit::new("ledger.reverse", format!("transfer {}", self.id.trim()))
                .reason(Some(self.reason.trim().to_owned())),
        )
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<CorrectionView, AdminError> {
        let reason = checked_reason(&self.reason)?;
        let which = TransferRef::parse(&self.id);
        if matches!(&which, TransferRef::Id(id) if id.is_empty() || id.len() > 256) {
            return Err(AdminError::new("invalid", "give a transfer's sequence number or id"));
        }
        let c = ctx.store.reverse(&which, &reason, now_secs())?;
        ctx.after_correction(&c);
        tracing::info!(user = %c.user, transfer = c.transfer.seq, reverses = %which, "reversal");
        Ok(CorrectionView::from(&c))
    }
}

impl Command for LedgerVerify {
    type Output = VerifyReport;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<VerifyReport, AdminError> {
        let m = ctx.money();
        let params = VerifyParams {
            max_overdraft: m.max_overdraft(),
            overdraft_bytes: crate::billing::meter::Billing::overdraft_bound_bytes(m.client_max_streams),
        };
        Ok(ctx.store.verify(&params)?)
    }
}

impl Command for Backup {
    type Output = BackupView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("store.backup", &self.path))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<BackupView, AdminError> {
        ctx.store.backup(std::path::Path::new(&self.path))?;
        Ok(BackupView { backup: self.path })
    }
}
