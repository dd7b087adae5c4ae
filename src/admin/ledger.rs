//! The ledger and the database as a whole (`traffix ledger …`, `traffix backup`): transfers,
//! verification of every ledger invariant, and consistent backups.

use serde::{Deserialize, Serialize};

use super::views::{BackupView, TransferView};
use super::{AdminCtx, AdminError, Audit, Command};
use crate::store::{Account, VerifyParams, VerifyReport, Window};

/// Ledger transfers, oldest first; with `user`, only that user's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerList {
    pub user: Option<String>,
}

/// One page of ledger transfers, newest first: with `user` only that user's, inside `window`
/// (`before` is a transfer's `seq`; times are when the transfer was made), at most `limit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerPage {
    pub user: Option<String>,
    #[serde(default)]
    pub window: Window,
    pub limit: usize,
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
        let acct = self.user.map(Account::User);
        let list = ctx.store.list_transfers(acct.as_ref())?;
        Ok(list.iter().map(TransferView::from).collect())
    }
}

impl Command for LedgerPage {
    type Output = Vec<TransferView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<TransferView>, AdminError> {
        let acct = self.user.map(Account::User);
        let list = ctx.store.list_transfers(acct.as_ref())?;
        Ok(list
            .iter()
            .rev()
            .filter(|t| self.window.admits(t.seq, t.time))
            .take(self.limit)
            .map(TransferView::from)
            .collect())
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
