//! `traffix payment …` and `traffix payout …`: deposit receipts, refunds and chargebacks,
//! provider invoices and payment settings; payout profiles, the batch export of approved
//! payouts and marking them paid.

use clap::Subcommand;

use super::output::outln;
use super::{Admin, Cell, CliError, Column, Rows, WITHDRAWAL_COLUMNS, print_json, table};
use crate::admin;
use crate::admin::payments::{DepositView, InvoiceView, PaymentSettingsView, PayoutProfileView};

#[derive(Debug, Subcommand)]
pub enum PaymentCmd {
    /// Deposit receipts (admin credits and payments), newest first.
    List {
        /// Only this user's deposits.
        #[arg(long)]
        user: Option<String>,
        /// Only this provider's: admin, generic, cryptopay, stars.
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        window: super::WindowArgs,
        /// Print a JSON array of receipts.
        #[arg(long)]
        json: bool,
    },
    /// Record a refund of a deposit: the amount goes back from the user as far as it is unspent;
    /// the rest stays on the receipt for the operator to decide.
    Refund(ReturnArgs),
    /// Record a chargeback of a deposit (the payer's bank or wallet took the money back), taken
    /// back from the user as far as it is unspent.
    Chargeback(ReturnArgs),
    /// Provider invoices (Crypto Pay top-ups), newest first.
    Invoices {
        /// Only this user's invoices.
        #[arg(long)]
        user: Option<String>,
        /// Print a JSON array of invoices.
        #[arg(long)]
        json: bool,
    },
    /// Payment settings in force (secrets only as set / not set), and changing them at run time.
    Settings {
        /// Enable exactly these providers (comma-separated: stars,cryptopay,generic; "none" for none).
        #[arg(long, value_name = "LIST")]
        enable: Option<String>,
        /// Read a new generic webhook secret from standard input (one line).
        #[arg(long)]
        generic_secret_stdin: bool,
        /// Read a new Crypto Pay API token from standard input (one line).
        #[arg(long, conflicts_with = "generic_secret_stdin")]
        cryptopay_token_stdin: bool,
        /// Telegram Stars for one currency unit.
        #[arg(long, value_name = "N")]
        stars_per_unit: Option<u32>,
        /// The smallest top-up from the portal, in currency units.
        #[arg(long, value_name = "AMOUNT")]
        min_topup: Option<String>,
        /// Why (for the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReturnArgs {
    /// The deposit: its transfer id (deposit:generic:ord-1), PROVIDER:ID or its sequence number.
    pub deposit: String,
    /// What is claimed back, in currency units (default: everything not claimed yet).
    #[arg(long)]
    pub amount: Option<String>,
    /// The provider's id of the refund or chargeback (a replay changes nothing).
    #[arg(long)]
    pub id: Option<String>,
    /// Why (for the audit log and the receipt).
    #[arg(long)]
    pub reason: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PayoutCmd {
    /// Show or set where a user is paid out, and the automatic withdrawal threshold.
    Profile {
        /// The user.
        name: String,
        /// How to pay: bank, usdt-trc20, paypal, … (your words).
        #[arg(long)]
        method: Option<String>,
        /// Where to pay: an IBAN, a wallet address, an e-mail.
        #[arg(long)]
        details: Option<String>,
        /// Request a withdrawal of everything available once it reaches this (currency units,
        /// at least the minimum payout); "off" turns it off.
        #[arg(long, value_name = "AMOUNT")]
        auto_threshold: Option<String>,
        /// Forget the profile.
        #[arg(long)]
        clear: bool,
        /// Print the profile as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The payout batch: approved withdrawals not yet marked paid, as CSV (or JSON), to pay outside.
    Export {
        /// Include payouts already marked paid.
        #[arg(long)]
        include_paid: bool,
        /// Print a JSON array instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// Mark approved withdrawals as paid outside, all or none.
    MarkPaid {
        /// The withdrawals' numbers.
        #[arg(required = true)]
        ids: Vec<u64>,
        /// The payment's reference (a bank batch, a transaction id).
        #[arg(long)]
        reference: String,
        /// Print the withdrawals as JSON.
        #[arg(long)]
        json: bool,
    },
}

const DEPOSIT_COLUMNS: &[Column<DepositView>] = &[
    ("SEQ", 6, |d| d.seq.cell()),
    ("TIME", -20, |d| d.time.cell()),
    ("PROVIDER", -10, |d| d.provider.cell()),
    ("PAYMENT ID", -24, |d| d.external_id.cell()),
    ("USER", -16, |d| d.user.cell()),
    ("AMOUNT", 12, |d| d.amount.cell()),
    ("STATUS", -18, |d| d.status.cell()),
    ("REFERENCE", 0, |d| d.reference.cell()),
];

const INVOICE_COLUMNS: &[Column<InvoiceView>] = &[
    ("PROVIDER", -10, |i| i.provider.cell()),
    ("INVOICE", -12, |i| i.invoice_id.cell()),
    ("USER", -16, |i| i.user.cell()),
    ("AMOUNT", 12, |i| i.amount.cell()),
    ("STATUS", -9, |i| i.status.cell()),
    ("CREATED", -20, |i| i.created_at.cell()),
    ("NOTE", 0, |i| i.note.cell()),
];

fn print_settings(s: &PaymentSettingsView) {
    let set = |b: bool| if b { "set" } else { "not set" };
    outln!("{:>16}: {}", "enabled", if s.enabled.is_empty() { "none".into() } else { s.enabled.join(", ") });
    outln!("{:>16}: {}", "generic secret", set(s.generic_secret_set));
    outln!("{:>16}: {}", "cryptopay token", set(s.cryptopay_token_set));
    outln!("{:>16}: {}", "stars per unit", s.stars_per_unit);
    outln!("{:>16}: {}", "min top-up", s.min_topup);
    outln!("{:>16}: {}", "generic webhook", s.generic_webhook_path);
    outln!("{:>16}: {}", "cryptopay hook", s.cryptopay_webhook_path);
    outln!("{:>16}: {}", "changed", s.updated_at.cell());
}

fn print_profile(p: &PayoutProfileView) {
    outln!("{:>16}: {}", "user", p.user);
    outln!("{:>16}: {}", "method", p.method.cell());
    outln!("{:>16}: {}", "details", p.details.cell());
    outln!("{:>16}: {}", "auto threshold", p.auto_threshold.clone().unwrap_or_else(|| "off".into()));
    outln!("{:>16}: {}", "min payout", p.min_payout);
}

fn read_secret_line(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| CliError::fail(format!("cannot read {what}: {e}")))?;
    let s = line.trim().to_owned();
    if s.is_empty() {
        return Err(CliError::fail(format!("no {what} on standard input")));
    }
    Ok(s)
}

pub async fn payment(admin_cmds: &Admin<'_>, cmd: PaymentCmd) -> Result<(), CliError> {
    match cmd {
        PaymentCmd::List { user, provider, window, json } => {
            let list = admin_cmds.run(admin::DepositList { user, provider, window: window.window(None) }).await?;
            if json { print_json(&list) } else { table(&list, DEPOSIT_COLUMNS) }
        }
        PaymentCmd::Refund(a) => return_deposit(admin_cmds, "refund", a).await?,
        PaymentCmd::Chargeback(a) => return_deposit(admin_cmds, "chargeback", a).await?,
        PaymentCmd::Invoices { user, json } => {
            let list = admin_cmds.run(admin::InvoiceList { user }).await?;
            if json { print_json(&list) } else { table(&list, INVOICE_COLUMNS) }
        }
        PaymentCmd::Settings {
            enable,
            generic_secret_stdin,
            cryptopay_token_stdin,
            stars_per_unit,
            min_topup,
            reason,
            json,
        } => {
            let enabled = enable.map(|e| match e.trim() {
                "none" | "" => Vec::new(),
                list => list.split(',').map(|p| p.trim().to_owned()).collect(),
            });
            let generic_secret = generic_secret_stdin.then(|| read_secret_line("generic secret")).transpose()?;
            let cryptopay_token = cryptopay_token_stdin.then(|| read_secret_line("Crypto Pay token")).transpose()?;
            let change = enabled.is_some()
                || generic_secret.is_some()
                || cryptopay_token.is_some()
                || stars_per_unit.is_some()
                || min_topup.is_some();
            let s = if change {
                let cmd = admin::PaymentSettingsSet {
                    enabled,
                    generic_secret,
                    cryptopay_token,
                    stars_per_unit,
                    min_topup,
                    reason,
                };
                admin_cmds.run(cmd).await?
            } else {
                admin_cmds.run(admin::PaymentSettingsShow {}).await?
            };
            if json { print_json(&s) } else { print_settings(&s) }
        }
    }
    Ok(())
}

async fn return_deposit(admin_cmds: &Admin<'_>, kind: &str, a: ReturnArgs) -> Result<(), CliError> {
    let cmd =
        admin::DepositReturnCmd { deposit: a.deposit, kind: kind.into(), amount: a.amount, id: a.id, reason: a.reason };
    let r = admin_cmds.run(cmd).await?;
    if a.json {
        print_json(&r);
    } else if !r.new {
        outln!("{} {} of {} was recorded before; nothing changed", r.ret.kind, r.ret.id, r.deposit.transfer_id);
    } else {
        outln!(
            "{} of {} recorded: {} claimed, {} taken back from {}; balance now {}",
            r.ret.kind,
            r.deposit.transfer_id,
            r.ret.claimed,
            r.ret.recovered,
            r.deposit.user,
            r.balance
        );
        if r.ret.recovered_micros < r.ret.claimed_micros {
            outln!(
                "{} could not be taken back (already spent): it is yours to decide (traffix user adjust)",
                crate::money::Micros(r.ret.claimed_micros - r.ret.recovered_micros)
            );
        }
    }
    Ok(())
}

pub async fn payout(admin_cmds: &Admin<'_>, cmd: PayoutCmd) -> Result<(), CliError> {
    match cmd {
        PayoutCmd::Profile { name, method, details, auto_threshold, clear, json } => {
            let p = if method.is_some() || details.is_some() || auto_threshold.is_some() || clear {
                admin_cmds.run(admin::PayoutProfileSet { name, method, details, auto_threshold, clear }).await?
            } else {
                admin_cmds.run(admin::PayoutProfileShow { name }).await?
            };
            if json { print_json(&p) } else { print_profile(&p) }
        }
        PayoutCmd::Export { include_paid, json } => {
            let rows = admin_cmds.run(admin::PayoutExport { include_paid }).await?;
            if json {
                print_json(&rows);
            } else {
                super::output::write(format_args!("{}", crate::api::payouts_to_csv(&rows)));
            }
        }
        PayoutCmd::MarkPaid { ids, reference, json } => {
            let list = admin_cmds.run(admin::PayoutMarkPaid { ids, reference }).await?;
            if json { print_json(&Rows::Many(list)) } else { table(&list, WITHDRAWAL_COLUMNS) }
        }
    }
    Ok(())
}
