//! Invoices created at a payment provider for a user's top-up (Crypto Pay): what was asked,
//! whom it is for, and where it stands. A paid invoice is credited in the same write
//! transaction that marks it (the deposit's receipt is the dedup key), so whichever path sees
//! the payment first — the provider's webhook or the poller — credits it, and the other finds
//! it done.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::deposits::{DepositOutcome, DepositRequest, deposit_in};
use super::tables::{INVOICES, USERS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// An invoice is watched this long past its expiry (a provider's clock, a payment in flight),
/// then given up locally (a late webhook still credits it).
pub const INVOICE_GRACE_SECS: u64 = 3600;

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Waiting to be paid.
    Active,
    /// Paid and credited.
    Credited,
    /// Expired unpaid (the provider said so, or it is past expiry and grace).
    Expired,
    /// The provider reported a payment that does not match the invoice (amount, currency): not
    /// credited, an operator looks at it.
    Disputed,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Active => "active",
            InvoiceStatus::Credited => "credited",
            InvoiceStatus::Expired => "expired",
            InvoiceStatus::Disputed => "disputed",
        }
    }
}

/// One provider invoice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invoice {
    pub provider: String,
    /// The provider's invoice id.
    pub invoice_id: String,
    pub user: String,
    pub amount: Micros,
    pub currency: String,
    pub status: InvoiceStatus,
    /// Where the payer pays.
    pub pay_url: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// The deposit that credited it.
    #[serde(default)]
    pub transfer_id: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub updated_at: Option<u64>,
}

impl Invoice {
    pub fn key(&self) -> String {
        invoice_key(&self.provider, &self.invoice_id)
    }

    /// Whether it is still watched at `now`.
    pub fn open(&self, now: u64) -> bool {
        self.status == InvoiceStatus::Active && now <= self.expires_at.saturating_add(INVOICE_GRACE_SECS)
    }
}

pub fn invoice_key(provider: &str, invoice_id: &str) -> String {
    format!("{provider}:{invoice_id}")
}

/// What settling an invoice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Deposit(Box<DepositOutcome>),
    /// Marked expired or disputed (or already so).
    Marked(InvoiceStatus),
}

impl Store {
    /// How many open invoices `user` has, and all users together.
    pub fn open_invoice_counts(&self, user: &str, now: u64) -> Result<(usize, usize), StoreError> {
        let rtx = self.db.begin_read()?;
        let (mut mine, mut all) = (0, 0);
        for row in rtx.open_table(INVOICES)?.iter()? {
            let inv: Invoice = from_json(row?.1.value())?;
            if inv.open(now) {
                all += 1;
                mine += usize::from(inv.user == user);
            }
        }
        Ok((mine, all))
    }

    /// Stores a new invoice, unless `user` already has `per_user` open ones or everyone
    /// `total` (checked again here, in the write transaction).
    pub fn add_invoice(&self, inv: &Invoice, per_user: usize, total: usize) -> Result<(), StoreError> {
        let txn = self.write()?;
        if txn.open_table(USERS)?.get(inv.user.as_str())?.is_none() {
            return Err(StoreError::NotFound(format!("user {:?}", inv.user)));
        }
        {
            let mut t = txn.open_table(INVOICES)?;
            let key = inv.key();
            if t.get(key.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("invoice {key}")));
            }
            let (mut mine, mut all) = (0, 0);
            for row in t.iter()? {
                let other: Invoice = from_json(row?.1.value())?;
                if other.open(inv.created_at) {
                    all += 1;
                    mine += usize::from(other.user == inv.user);
                }
            }
            if mine >= per_user || all >= total {
                return Err(StoreError::Invalid(format!(
                    "too many open invoices ({mine} of yours, {all} in all; at most {per_user} and {total}): pay or \
                     wait for one to expire"
                )));
            }
            t.insert(key.as_str(), to_json(inv)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_invoice(&self, provider: &str, invoice_id: &str) -> Result<Option<Invoice>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(INVOICES)?
            .get(invoice_key(provider, invoice_id).as_str())?
            .map(|v| from_json(v.value()))
            .transpose()
    }

    /// Invoices of `provider` (or all), oldest first; with `user`, only that user's.
    pub fn list_invoices(&self, provider: Option<&str>, user: Option<&str>) -> Result<Vec<Invoice>, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in rtx.open_table(INVOICES)?.iter()? {
            let inv: Invoice = from_json(row?.1.value())?;
            if provider.is_none_or(|p| inv.provider == p) && user.is_none_or(|u| inv.user == u) {
                out.push(inv);
            }
        }
        out.sort_by_key(|i| (i.created_at, i.invoice_id.clone()));
        Ok(out)
    }

    /// Credits a paid invoice (its deposit and its new status in one write transaction). A
    /// payment seen before answers as a duplicate; the invoice need not be open (a late
    /// webhook still credits).
    pub fn credit_invoice(
        &self,
        provider: &str,
        invoice_id: &str,
        reference: &str,
        now: u64,
    ) -> Result<Settled, StoreError> {
        let txn = self.write()?;
        let key = invoice_key(provider, invoice_id);
        let mut inv = read_invoice(&txn, &key)?;
        let req = DepositRequest {
            transfer_id: None,
            provider: provider.to_owned(),
            external_id: invoice_id.to_owned(),
            user: inv.user.clone(),
            amount: inv.amount,
            currency: Some(inv.currency.clone()),
            reference: reference.to_owned(),
            time: now,
        };
        let out = deposit_in(&txn, &req)?;
        if inv.status != InvoiceStatus::Credited {
            inv.status = InvoiceStatus::Credited;
            inv.transfer_id = Some(out.deposit().transfer_id.clone());
            inv.updated_at = Some(now);
            txn.open_table(INVOICES)?.insert(key.as_str(), to_json(&inv)?.as_slice())?;
        }
        txn.commit()?;
        Ok(Settled::Deposit(Box::new(out)))
    }

    /// Deletes invoices that expired unpaid and were created before `before` (paid and disputed
    /// ones stay: they are records); how many.
    pub fn prune_expired_invoices(&self, before: u64) -> Result<usize, StoreError> {
        let txn = self.write()?;
        let n = {
            let mut t = txn.open_table(INVOICES)?;
            let mut gone = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let inv: Invoice = from_json(v.value())?;
                if inv.status == InvoiceStatus::Expired && inv.created_at < before {
                    gone.push(k.value().to_owned());
                }
            }
            for k in &gone {
                t.remove(k.as_str())?;
            }
            gone.len()
        };
        if n > 0 {
            txn.commit()?;
        }
        Ok(n)
    }

    /// Marks an active invoice expired or disputed (with a note); a settled one stays as it is.
    pub fn mark_invoice(
        &self,
        provider: &str,
        invoice_id: &str,
        status: InvoiceStatus,
        note: Option<String>,
        now: u64,
    ) -> Result<Settled, StoreError> {
        let txn = self.write()?;
        let key = invoice_key(provider, invoice_id);
        let mut inv = read_invoice(&txn, &key)?;
        if inv.status != InvoiceStatus::Active {
            return Ok(Settled::Marked(inv.status));
        }
        inv.status = status;
        inv.note = note;
        inv.updated_at = Some(now);
        txn.open_table(INVOICES)?.insert(key.as_str(), to_json(&inv)?.as_slice())?;
        txn.commit()?;
        Ok(Settled::Marked(status))
    }
}

/// The invoice under `key`, read inside the write transaction that changes it.
fn read_invoice(txn: &redb::WriteTransaction, key: &str) -> Result<Invoice, StoreError> {
    txn.open_table(INVOICES)?
        .get(key)?
        .map(|v| from_json(v.value()))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("invoice {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;

    fn inv(id: &str, user: &str, created_at: u64) -> Invoice {
        Invoice {
            provider: "cryptopay".into(),
            invoice_id: id.into(),
            user: user.into(),
            amount: Micros(5_000_000),
            currency: "USD".into(),
            status: InvoiceStatus::Active,
            pay_url: "https://t.me/CryptoBot?start=x".into(),
            created_at,
            expires_at: created_at + 600,
            transfer_id: None,
            note: None,
            updated_at: None,
        }
    }

    #[test]
    fn open_invoices_are_bounded_and_a_paid_one_is_credited_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("i.redb")).unwrap();
        s.create_user(&UserRecord::new("alice", "x", 0)).unwrap();
        s.create_user(&UserRecord::new("bob", "x", 0)).unwrap();
        s.add_invoice(&inv("1", "alice", 100), 2, 3).unwrap();
        s.add_invoice(&inv("2", "alice", 100), 2, 3).unwrap();
        assert!(matches!(s.add_invoice(&inv("3", "alice", 100), 2, 3), Err(StoreError::Invalid(_))), "per user");
        assert!(matches!(s.add_invoice(&inv("1", "bob", 100), 2, 3), Err(StoreError::AlreadyExists(_))));
        s.add_invoice(&inv("4", "bob", 100), 2, 3).unwrap();
        assert!(matches!(s.add_invoice(&inv("5", "bob", 100), 2, 3), Err(StoreError::Invalid(_))), "in all");
        assert!(matches!(s.add_invoice(&inv("6", "carol", 100), 2, 3), Err(StoreError::NotFound(_))));
        assert_eq!(s.open_invoice_counts("alice", 100).unwrap(), (2, 3));
        // Past expiry and grace, an invoice no longer counts.
        assert_eq!(s.open_invoice_counts("alice", 100 + 600 + INVOICE_GRACE_SECS + 1).unwrap(), (0, 0));

        let first = s.credit_invoice("cryptopay", "1", "Crypto Pay invoice 1", 200).unwrap();
        let Settled::Deposit(out) = first else { panic!("{first:?}") };
        let DepositOutcome::Credited(d) = *out else { panic!("{out:?}") };
        assert_eq!(d.transfer_id, "deposit:cryptopay:1");
        let again = s.credit_invoice("cryptopay", "1", "Crypto Pay invoice 1", 201).unwrap();
        assert!(matches!(again, Settled::Deposit(ref o) if !o.is_new()), "{again:?}");
        assert_eq!(s.balance(&crate::store::Account::User("alice".into())).unwrap(), 5_000_000);
        let i = s.get_invoice("cryptopay", "1").unwrap().unwrap();
        assert_eq!((i.status, i.transfer_id.as_deref()), (InvoiceStatus::Credited, Some("deposit:cryptopay:1")));
        // A credited invoice is not expired afterwards; an expired one can still be credited.
        assert_eq!(
            s.mark_invoice("cryptopay", "1", InvoiceStatus::Expired, None, 300).unwrap(),
            Settled::Marked(InvoiceStatus::Credited)
        );
        s.mark_invoice("cryptopay", "2", InvoiceStatus::Expired, None, 300).unwrap();
        assert!(matches!(s.credit_invoice("cryptopay", "2", "late", 400).unwrap(), Settled::Deposit(_)));
        assert!(matches!(s.credit_invoice("cryptopay", "9", "x", 400), Err(StoreError::NotFound(_))));
        assert_eq!(s.list_invoices(Some("cryptopay"), Some("alice")).unwrap().len(), 2);
        // Expired unpaid ones go after their retention; credited ones stay.
        s.mark_invoice("cryptopay", "4", InvoiceStatus::Expired, None, 300).unwrap();
        assert_eq!(s.prune_expired_invoices(100).unwrap(), 0, "created at 100, not before");
        assert_eq!(s.prune_expired_invoices(101).unwrap(), 1);
        let left: Vec<String> = s.list_invoices(None, None).unwrap().into_iter().map(|i| i.invoice_id).collect();
        assert_eq!(left, ["1", "2"]);
    }
}
