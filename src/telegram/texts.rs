//! Every text the bot sends, in one place so it can be translated: one function per message,
//! taking the values it shows. Plain text (no parse mode), so user data needs no escaping.

use crate::money::Micros;
use crate::notify::{Event, WithdrawalOutcome};

pub fn welcome_created(user: &str) -> String {
    format!("Welcome! Your account {user} is ready.\n\n{}", help(false))
}

pub fn welcome_linked(user: &str) -> String {
    format!("This Telegram account is now linked to {user}.\n\n{}", help(false))
}

pub fn welcome_back(user: &str) -> String {
    format!("You are signed in as {user}. /help lists what I can do.")
}

pub fn not_linked() -> String {
    "This Telegram account has no Traffix account yet: send /start (or /start CODE with the code \
     from the dashboard's Telegram panel)."
        .into()
}

pub fn help(admin: bool) -> String {
    let mut s = String::from(
        "/balance – your balance\n\
         /usage – traffic and cost today and in the last 7 days\n\
         /proxy – proxy credentials and a curl line (rotate the password)\n\
         /pair – a one-time link and QR code to pair a phone or a Linux node\n\
         /devices – your nodes: status, today's traffic and earnings; pause or resume\n\
         /topup AMOUNT – add money (Telegram Stars, or Crypto Pay when enabled)\n\
         /withdraw AMOUNT DESTINATION – ask for a payout of your earnings\n\
         /login – a one-time link that signs you in to the dashboard\n\
         /notify – your notification settings\n\
         /inbox – your latest notifications\n\
         /help – this list",
    );
    if admin {
        s.push_str(
            "\n\nAdmin:\n/today – today's figures\n/withdrawals – pending withdrawals (approve or reject)\n\
             /refund CHARGE_ID – refund a Stars payment (the unspent part is taken back)\n\
             /invite – an invitation code for sign-up",
        );
    }
    s
}

pub fn unknown_command() -> String {
    "I do not know that command. /help lists what I can do.".into()
}

pub fn admin_only() -> String {
    "That command is for admins.".into()
}

pub fn failed(reason: &str) -> String {
    format!("Sorry, that did not work: {reason}")
}

pub fn balance(b: &str, available: &str, currency: &str, pending: &str) -> String {
    format!("Balance: {b} {currency}\nAvailable: {available} {currency}\nPending withdrawals: {pending} {currency}")
}

pub fn usage(
    today_bytes: u64,
    today_cost: Micros,
    week_bytes: u64,
    week_cost: Micros,
    earned_week: Micros,
    currency: &str,
) -> String {
    format!(
        "Today: {} used, {today_cost} {currency}\nLast 7 days: {} used, {week_cost} {currency}\nYour nodes earned {earned_week} {currency} in the last 7 days",
        bytes(today_bytes),
        bytes(week_bytes)
    )
}

pub fn bytes(b: u64) -> String {
    crate::units::format_bytes(b)
}

pub fn proxy(user: &str, password: &str, socks: &str, http: &str) -> String {
    format!(
        "User: {user}\nPassword: {password}\nSOCKS5: {socks}\nHTTP: {http}\n\n\
         curl --socks5-hostname '{user}:{password}@{socks}' https://example.com/\n\
         curl -x 'http://{user}:{password}@{http}' https://example.com/\n\n\
         Targeting: {user}-country-de, {user}-session-job1-ttl-30"
    )
}

pub fn rotate_button() -> String {
    "Rotate password".into()
}

pub fn rotated() -> String {
    "New proxy password:".into()
}

pub fn pair(link: &str, expires: &str) -> String {
    format!(
        "Scan this with the Traffix app, or run on a Linux box:\ntraffix node --pair '{link}' --state ~/.traffix-node.json\n\nValid once, until {expires}."
    )
}

pub fn no_devices() -> String {
    "You have no nodes yet: /pair makes a pairing link.".into()
}

pub fn device_line(
    vip: &str,
    state: &str,
    today: u64,
    earned: Micros,
    currency: &str,
    country: Option<&str>,
) -> String {
    format!("{vip} ({}) – {state}; today {} carried, earned {earned} {currency}", country.unwrap_or("??"), bytes(today))
}

pub fn device_state(online: bool, paused: bool, banned: bool) -> &'static str {
    match (banned, paused, online) {
        (true, _, _) => "banned",
        (_, true, true) => "online, paused",
        (_, true, false) => "offline, paused",
        (_, false, true) => "online",
        (_, false, false) => "offline",
    }
}

pub fn pause_button(vip: &str) -> String {
    format!("Pause {vip}")
}

pub fn resume_button(vip: &str) -> String {
    format!("Resume {vip}")
}

pub fn paused(vip: &str, paused: bool) -> String {
    if paused {
        format!("{vip} is paused: no new traffic is routed to it.")
    } else {
        format!("{vip} is serving again.")
    }
}

pub fn topup_usage(min: Micros, currency: &str, stars: bool, cryptopay: bool) -> String {
    let mut ways = Vec::new();
    if stars {
        ways.push("Telegram Stars");
    }
    if cryptopay {
        ways.push("Crypto Pay");
    }
    if ways.is_empty() {
        return "Top-ups are not enabled on this server; ask the operator.".into();
    }
    format!("Send /topup AMOUNT, e.g. /topup 5 (at least {min} {currency}). Pay with: {}.", ways.join(", "))
}

pub fn invoice_title() -> String {
    "Traffix top-up".into()
}

pub fn invoice_description(amount: Micros, currency: &str, user: &str) -> String {
    format!("{amount} {currency} for {user}")
}

pub fn cryptopay_link(amount: Micros, currency: &str, url: &str) -> String {
    format!("Pay {amount} {currency} with Crypto Pay: {url}\nYour balance is credited once it is paid.")
}

pub fn precheckout_refused() -> String {
    "This invoice is no longer valid; send /topup again.".into()
}

pub fn credited(amount: Micros, currency: &str, balance: &str) -> String {
    format!("Received {amount} {currency}. Balance: {balance} {currency}.")
}

pub fn payment_duplicate() -> String {
    "This payment was already credited.".into()
}

pub fn payment_disputed() -> String {
    "This payment does not match its invoice; the operator has been told and will sort it out.".into()
}

pub fn withdraw_usage(min: Micros, currency: &str) -> String {
    format!("Send /withdraw AMOUNT DESTINATION, e.g. /withdraw 10 IBAN DE00 1234 (at least {min} {currency}).")
}

pub fn withdrawal_requested(id: u64, amount: &str, currency: &str) -> String {
    format!("Withdrawal #{id} of {amount} {currency} requested; the amount is held until an admin decides.")
}

pub fn login_link(link: &str, expires: &str) -> String {
    format!("Your one-time dashboard link (valid until {expires}, once):\n{link}")
}

pub fn notify_prefs(muted: &[String], quiet: (u8, u8), low: &str, offline_minutes: u32) -> String {
    let quiet =
        if quiet.0 == quiet.1 { "none".to_owned() } else { format!("{:02}:00–{:02}:00 UTC", quiet.0, quiet.1) };
    let muted = if muted.is_empty() { "none".to_owned() } else { muted.join(", ") };
    format!(
        "Muted: {muted}\nQuiet hours: {quiet}\nLow-balance alert below: {low}\nNode offline alert after: {offline_minutes} min\n\n\
         Change: /notify quiet 22 7 · /notify quiet off · /notify low 2.00 · /notify offline 10 · /notify mute KIND · /notify unmute KIND"
    )
}

pub fn inbox_empty() -> String {
    "No notifications.".into()
}

#[allow(clippy::too_many_arguments)] // one text, its figures
pub fn today(
    users: usize,
    online: usize,
    nodes: usize,
    bytes_: u64,
    revenue: Micros,
    fees: Micros,
    pending: usize,
    currency: &str,
) -> String {
    format!(
        "Today (UTC): {} carried, clients paid {revenue} {currency}, platform kept {fees} {currency}\n\
         Nodes online: {online} of {nodes}\nUsers: {users}\nPending withdrawals: {pending}",
        bytes(bytes_)
    )
}

pub fn no_pending_withdrawals() -> String {
    "No pending withdrawals.".into()
}

pub fn withdrawal_line(id: u64, user: &str, amount: &str, currency: &str, dest: Option<&str>) -> String {
    format!("#{id} {user}: {amount} {currency} → {}", dest.unwrap_or("(no destination)"))
}

pub fn approve_button() -> String {
    "Approve".into()
}

pub fn reject_button() -> String {
    "Reject".into()
}

pub fn rejected_in_telegram(admin: &str) -> String {
    format!("rejected in Telegram by {admin}")
}

pub fn decided(id: u64, status: &str) -> String {
    format!("Withdrawal #{id}: {status}.")
}

pub fn refund_usage() -> String {
    "Send /refund CHARGE_ID (the Telegram charge id of a Stars payment).".into()
}

pub fn refund_partly_spent(charge: &str, available: &str, amount: &str, currency: &str) -> String {
    format!(
        "Not refunded: Telegram pays back every Star of {charge}, but only {available} of its {amount} {currency} \
         is still unspent, so the rest would be lost. Send /refund {charge} force to refund it anyway."
    )
}

pub fn refunded(charge: &str, taken: &str, currency: &str) -> String {
    format!("Refunded the Stars payment {charge}; {taken} {currency} taken back from the balance.")
}

pub fn invite(code: &str, expires: &str) -> String {
    format!("Invitation (once, until {expires}): /start {code}")
}

/// The text of a notification, for the bot and the inbox alike.
pub fn notice(e: &Event, currency: &str) -> String {
    match e {
        Event::NodeOffline { vip, minutes, .. } => format!("Your node {vip} has been offline for {minutes} min."),
        Event::NodeBack { vip, .. } => format!("Your node {vip} is back online."),
        Event::NodeFlagged { vip, banned: true, reason, .. } => format!("Your node {vip} was banned: {reason}"),
        Event::NodeFlagged { vip, reason, .. } => format!("Your node {vip} was flagged: {reason}"),
        Event::CapReached { what, .. } => format!("Data cap reached: {what}."),
        Event::LowBalance { balance, threshold, .. } => format!(
            "Your balance is {} {currency}, below your alert level of {threshold} {currency}. /topup adds money.",
            crate::money::format_signed(*balance)
        ),
        Event::Deposit { amount, provider, .. } => format!("Received {amount} {currency} ({provider})."),
        Event::Withdrawal { id, amount, outcome, reason, .. } => {
            let what = match outcome {
                WithdrawalOutcome::Approved => "approved",
                WithdrawalOutcome::Rejected => "rejected",
                WithdrawalOutcome::Paid => "paid",
            };
            let why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            format!("Withdrawal #{id} of {amount} {currency} was {what}{why}.")
        }
        Event::AdminAlert { text } => format!("Admin alert: {text}"),
    }
}
