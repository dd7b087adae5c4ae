//! Node owners' payouts (`traffix withdrawal …`): a request holds the amount until an admin
//! approves (pays out) or rejects it (the money goes back).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::WithdrawalView;
use super::{AdminCtx, AdminError, Audit, Command, Window};
use crate::money::Micros;
use crate::store::{WithdrawalStatus, now_secs};

/// Asks for a payout of `amount` (currency units) to `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalRequest {
    pub name: String,
    pub amount: String,
    /// Where to pay (free text for the operator).
    pub destination: Option<String>,
}

/// Withdrawals requested inside `window`, newest first, optionally of one user or in one status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WithdrawalList {
    pub user: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Approves (pays out) a pending withdrawal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalApprove {
    pub id: u64,
    pub reason: Option<String>,
}

/// Rejects a pending withdrawal: the money goes back to the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalReject {
    pub id: u64,
    pub reason: String,
}

impl Command for WithdrawalRequest {
    type Output = WithdrawalView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("withdrawal.request", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<WithdrawalView, AdminError> {
        let WithdrawalRequest { name, amount, destination } = self;
        let amount = Micros::parse(&amount).map_err(|e| AdminError::new("invalid", e.to_string()))?;
        let w = ctx.store.request_withdrawal(&name, amount, ctx.money().min_payout, destination, now_secs())?;
        tracing::info!(user = %name, amount = %amount, withdrawal = w.id, "withdrawal requested");
        ctx.notify(crate::notify::Event::AdminAlert {
            text: format!("withdrawal #{} of {} requested by {}", w.id, w.amount, w.user),
        });
        Ok(WithdrawalView::from(&w))
    }
}

impl Command for WithdrawalList {
    type Output = Vec<WithdrawalView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<WithdrawalView>, AdminError> {
        let status = match self.status.as_deref() {
            None => None,
            Some("pending") => Some(WithdrawalStatus::Pending),
            Some("approved") => Some(WithdrawalStatus::Approved),
            Some("rejected") => Some(WithdrawalStatus::Rejected),
            Some(other) => {
                return Err(AdminError::new(
                    "invalid",
                    format!("status {other:?} must be pending, approved or rejected"),
                ));
            }
        };
        if let Some(u) = &self.user {
            ctx.require_user(u)?;
        }
        let mut list = ctx.store.list_withdrawals(self.user.as_deref(), status)?;
        list.reverse();
        let list = self.window.apply(list, |w| w.requested_at);
        Ok(list.iter().map(WithdrawalView::from).collect())
    }
}

impl Command for WithdrawalApprove {
    type Output = WithdrawalView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("withdrawal.approve", self.id.to_string()).reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.withdrawal_before(self.id)
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<WithdrawalView, AdminError> {
        let WithdrawalApprove { id, reason } = self;
        let w = ctx.store.decide_withdrawal(id, true, actor, reason, now_secs())?;
        tracing::info!(withdrawal = id, user = %w.user, amount = %w.amount, "withdrawal approved");
        ctx.notify(crate::notify::Event::Withdrawal {
            user: w.user.clone(),
            id,
            amount: w.amount,
            outcome: crate::notify::WithdrawalOutcome::Approved,
            reason: w.reason.clone(),
        });
        Ok(WithdrawalView::from(&w))
    }
}

impl Command for WithdrawalReject {
    type Output = WithdrawalView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("withdrawal.reject", self.id.to_string()).reason(Some(self.reason.clone())))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.withdrawal_before(self.id)
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<WithdrawalView, AdminError> {
        let WithdrawalReject { id, reason } = self;
        if reason.trim().is_empty() {
            return Err(AdminError::new("invalid", "a rejection needs a reason"));
        }
        let w = ctx.store.decide_withdrawal(id, false, actor, Some(reason), now_secs())?;
        ctx.invalidate(&w.user);
        ctx.notify(crate::notify::Event::Withdrawal {
            user: w.user.clone(),
            id,
            amount: w.amount,
            outcome: crate::notify::WithdrawalOutcome::Rejected,
            reason: w.reason.clone(),
        });
        if let Some(l) = &ctx.live {
            (l.credited)(&w.user);
        }
        tracing::info!(withdrawal = id, user = %w.user, amount = %w.amount, "withdrawal rejected");
        Ok(WithdrawalView::from(&w))
    }
}

impl AdminCtx {
    /// A withdrawal as it was before a decision, for the audit log.
    fn withdrawal_before(&self, id: u64) -> Option<Value> {
        let all = self.store.list_withdrawals(None, None).ok()?;
        let w = all.into_iter().find(|w| w.id == id)?;
        serde_json::to_value(WithdrawalView::from(&w)).ok()
    }
}
