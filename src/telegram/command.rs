//! Parsing what a Telegram user sent: a command line (`/name@bot args`) and the data of an
//! inline button. Pure functions over untrusted text: anything unexpected is `None`.

/// The longest command text looked at; the rest is ignored.
pub const MAX_TEXT: usize = 1024;

/// A bot command with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start(Option<String>),
    Help,
    Balance,
    Usage,
    Proxy,
    Pair,
    Devices,
    TopUp(Option<String>),
    Withdraw(Option<String>, Option<String>),
    Login,
    Notify(Vec<String>),
    Inbox,
    // Admin commands.
    Today,
    Withdrawals,
    /// A charge id, and `force`: refund all the Stars even when part of the credit is spent.
    Refund(Option<String>, bool),
    Invite,
    Unknown(String),
}

/// The command in `text`, if it is one. `bot` is the bot's user name: a command addressed to
/// another bot (`/help@other_bot`) is not ours.
pub fn parse(text: &str, bot: Option<&str>) -> Option<Command> {
    let text = text.trim_start();
    let text = match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => &text[..i],
        None => text,
    };
    let rest = text.strip_prefix('/').filter(|r| !r.starts_with(char::is_whitespace))?;
    let mut words = rest.split_whitespace();
    let head = words.next()?;
    let (name, to) = match head.split_once('@') {
        Some((n, b)) => (n, Some(b)),
        None => (head, None),
    };
    if let (Some(to), Some(me)) = (to, bot)
        && !to.eq_ignore_ascii_case(me)
    {
        return None;
    }
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let args: Vec<String> = words.take(16).map(|w| w.chars().take(256).collect()).collect();
    let first = args.first().cloned();
    Some(match name.to_ascii_lowercase().as_str() {
        "start" => Command::Start(first),
        "help" => Command::Help,
        "balance" => Command::Balance,
        "usage" => Command::Usage,
        "proxy" => Command::Proxy,
        "pair" => Command::Pair,
        "devices" => Command::Devices,
        "topup" => Command::TopUp(first),
        "withdraw" => {
            let dest = (args.len() > 1).then(|| args[1..].join(" "));
            Command::Withdraw(first, dest)
        }
        "login" => Command::Login,
        "notify" => Command::Notify(args),
        "inbox" => Command::Inbox,
        "today" => Command::Today,
        "withdrawals" => Command::Withdrawals,
        "refund" => Command::Refund(first, args.get(1).is_some_and(|a| a.eq_ignore_ascii_case("force"))),
        "invite" => Command::Invite,
        other => Command::Unknown(other.to_owned()),
    })
}

/// What an inline button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    RotateProxy,
    PauseDevice(String),
    ResumeDevice(String),
    ApproveWithdrawal(u64),
    RejectWithdrawal(u64),
    TopUpStars(u64),
}

impl Callback {
    /// The button's data (at most 64 bytes, Telegram's limit).
    pub fn data(&self) -> String {
        match self {
            Callback::RotateProxy => "proxy:rotate".into(),
            Callback::PauseDevice(id) => format!("dev:pause:{id}"),
            Callback::ResumeDevice(id) => format!("dev:resume:{id}"),
            Callback::ApproveWithdrawal(id) => format!("wd:approve:{id}"),
            Callback::RejectWithdrawal(id) => format!("wd:reject:{id}"),
            Callback::TopUpStars(micros) => format!("topup:stars:{micros}"),
        }
    }

    pub fn parse(data: &str) -> Option<Callback> {
        if data.len() > 64 {
            return None;
        }
        let hex_id = |s: &str| (6..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        let mut p = data.splitn(3, ':');
        match (p.next()?, p.next()?, p.next()) {
            ("proxy", "rotate", None) => Some(Callback::RotateProxy),
            ("dev", "pause", Some(id)) if hex_id(id) => Some(Callback::PauseDevice(id.to_owned())),
            ("dev", "resume", Some(id)) if hex_id(id) => Some(Callback::ResumeDevice(id.to_owned())),
            ("wd", "approve", Some(id)) => id.parse().ok().map(Callback::ApproveWithdrawal),
            ("wd", "reject", Some(id)) => id.parse().ok().map(Callback::RejectWithdrawal),
            ("topup", "stars", Some(m)) => m.parse().ok().filter(|m| *m > 0).map(Callback::TopUpStars),
            _ => None,
        }
    }
}

/// A Stars invoice's payload: `topup:USER:MICROS:STARS`, checked again at pre-checkout and
/// payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarsPayload {
    pub user: String,
    pub micros: u64,
    pub stars: u32,
}

impl StarsPayload {
    pub fn encode(&self) -> String {
        format!("topup:{}:{}:{}", self.user, self.micros, self.stars)
    }

    pub fn parse(s: &str) -> Option<StarsPayload> {
        if s.len() > 128 {
            return None;
        }
        let mut p = s.split(':');
        let (tag, user, micros, stars) = (p.next()?, p.next()?, p.next()?, p.next()?);
        if tag != "topup" || p.next().is_some() || !crate::admin::valid_name(user) {
            return None;
        }
        let micros: u64 = micros.parse().ok().filter(|m| *m > 0)?;
        let stars: u32 = stars.parse().ok().filter(|s| *s > 0)?;
        Some(StarsPayload { user: user.to_owned(), micros, stars })
    }
}

/// Stars for `micros` at `per_unit` Stars a currency unit, rounded up (at least 1); `None`
/// beyond what one invoice can ask.
pub fn stars_for(micros: u64, per_unit: u32) -> Option<u32> {
    let s = (u128::from(micros) * u128::from(per_unit)).div_ceil(1_000_000).max(1);
    u32::try_from(s).ok().filter(|s| *s <= 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("/start", None), Some(Command::Start(None)));
        assert_eq!(parse("/start abc_1", None), Some(Command::Start(Some("abc_1".into()))));
        assert_eq!(parse("/help@traffix_bot", Some("Traffix_Bot")), Some(Command::Help));
        assert_eq!(parse("/help@other_bot", Some("traffix_bot")), None);
        assert_eq!(parse("/TopUp 5", None), Some(Command::TopUp(Some("5".into()))));
        assert_eq!(
            parse("/withdraw 5.00 IBAN DE00 1", None),
            Some(Command::Withdraw(Some("5.00".into()), Some("IBAN DE00 1".into())))
        );
        assert_eq!(parse("/frobnicate", None), Some(Command::Unknown("frobnicate".into())));
        for bad in ["hello", "", "/", "/ x", "/a-b", "/\u{0}", "//help", &format!("/{}", "a".repeat(40))] {
            assert_eq!(parse(bad, None), None, "{bad:?}");
        }
        let long = format!("/start {}", "x".repeat(100_000));
        assert!(matches!(parse(&long, None), Some(Command::Start(Some(p))) if p.len() == 256));
    }

    #[test]
    fn callbacks_round_trip_and_refuse_junk() {
        for c in [
            Callback::RotateProxy,
            Callback::PauseDevice("a1b2c3d4".into()),
            Callback::ResumeDevice("a1b2c3d4".into()),
            Callback::ApproveWithdrawal(7),
            Callback::RejectWithdrawal(8),
            Callback::TopUpStars(5_000_000),
        ] {
            assert_eq!(Callback::parse(&c.data()), Some(c.clone()));
            assert!(c.data().len() <= 64);
        }
        for bad in ["", "proxy", "proxy:rotate:x", "dev:pause:zz", "dev:pause:../x", "wd:approve:-1", "topup:stars:0"] {
            assert_eq!(Callback::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stars_payloads_and_prices() {
        let p = StarsPayload { user: "tg_42".into(), micros: 5_000_000, stars: 250 };
        assert_eq!(StarsPayload::parse(&p.encode()), Some(p));
        for bad in ["", "topup:tg_42:5", "topup:BAD:1:1", "topup:tg_42:0:1", "topup:tg_42:1:1:1", "x:tg_42:1:1"] {
            assert_eq!(StarsPayload::parse(bad), None, "{bad:?}");
        }
        assert_eq!(stars_for(5_000_000, 50), Some(250));
        assert_eq!(stars_for(1, 50), Some(1));
        assert_eq!(stars_for(10_000_000_000_000, 50), None);
    }
}
