//! The Linux node's owner controls (issue 20 item 7), the same the Android app offers: daily and
//! monthly data caps with a monthly reset day, bandwidth limits up and down, a weekly schedule,
//! a stream cap, and pause/resume — from `traffix node` flags and a TOML settings file
//! (`--settings FILE`; flags override the file). The file is re-read when it changes (checked
//! every [`RELOAD_EVERY`]) and on SIGHUP, so `traffix node pause|resume --settings FILE` (or an
//! edit) takes effect on a running node.
//!
//! Days, months and the schedule are in the settings' `utc_offset` (default UTC): the daily
//! counter starts at that offset's midnight and the monthly one at midnight of
//! `monthly_reset_day` (the last day in shorter months). There is no time-zone database, so a
//! daylight-saving change means changing `utc_offset`.
//!
//! Counters (bytes today and this month) are kept next to the node's identity
//! (`<state>.usage.json`) so a restart does not reset them. A cap counts both legs of every
//! relayed byte (the target connection and the tunnel), which is what the machine's link
//! moves — as the Android app counts its radio's bytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tunnel::copy::Meter;
use crate::tunnel::protocol::PauseReason;
use crate::units::{civil_from_days, days_from_civil, days_in_month, parse_bytes};

/// How often a running node looks at its settings file for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// The largest settings file read (hostile or mistaken input stays small).
pub const MAX_SETTINGS_BYTES: u64 = 64 * 1024;
/// The most schedule rules.
pub const MAX_SCHEDULE_RULES: usize = 32;
/// The lowest bandwidth limit accepted, in bytes a second: below it a single full frame would
/// hold a stream for seconds.
pub const MIN_RATE: u64 = 16 * 1024;
/// How often counters are written while they change.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// The settings file as written (every key optional; unknown keys are refused).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub paused: Option<bool>,
    pub daily_cap: Option<Size>,
    pub monthly_cap: Option<Size>,
    pub monthly_reset_day: Option<u8>,
    pub max_up: Option<Size>,
    pub max_down: Option<Size>,
    pub max_streams: Option<u32>,
    pub schedule: Option<Vec<String>>,
    pub utc_offset: Option<String>,
}

/// A byte size in the file: `"5GB"`, `"1.5GiB"` or a plain integer of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, key: &str) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_bytes(t).map_err(|e| format!("{key}: {e}")),
        }
    }
}

/// What the command line says; `None` leaves the file's value (or the default).
#[derive(Debug, Default, Clone)]
pub struct SettingsFlags {
    pub daily_cap: Option<String>,
    pub monthly_cap: Option<String>,
    pub monthly_reset_day: Option<u8>,
    pub max_up: Option<String>,
    pub max_down: Option<String>,
    pub max_streams: Option<u32>,
    pub schedule: Vec<String>,
    pub utc_offset: Option<String>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub paused: bool,
    pub daily_cap: Option<u64>,
    pub monthly_cap: Option<u64>,
    /// 1–31; the last day of shorter months.
    pub monthly_reset_day: u8,
    /// Bytes a second this node sends into the tunnel (what clients download through it).
    pub max_up: Option<u64>,
    /// Bytes a second it takes from the tunnel (what clients upload through it).
    pub max_down: Option<u64>,
    pub max_streams: u32,
    pub schedule: Option<Schedule>,
    /// Seconds east of UTC for days, months and the schedule.
    pub utc_offset: i32,
}

impl Settings {
    /// The defaults with `max_streams` streams and nothing limited.
    pub fn unlimited(max_streams: u32) -> Settings {
        Settings {
            paused: false,
            daily_cap: None,
            monthly_cap: None,
            monthly_reset_day: 1,
            max_up: None,
            max_down: None,
            max_streams,
            schedule: None,
            utc_offset: 0,
        }
    }

    /// The file's settings with the flags on top; `default_streams` when neither sets a cap.
    pub fn resolve(file: &SettingsFile, flags: &SettingsFlags, default_streams: u32) -> Result<Settings, String> {
        let size = |flag: &Option<String>, file: &Option<Size>, key: &str| -> Result<Option<u64>, String> {
            match (flag, file) {
                (Some(f), _) => parse_bytes(f).map(Some).map_err(|e| format!("--{}: {e}", key.replace('_', "-"))),
                (None, Some(s)) => s.bytes(key).map(Some),
                (None, None) => Ok(None),
            }
        };
        let rate = |v: Option<u64>, key: &str| match v {
            Some(r) if r < MIN_RATE => Err(format!("{key} must be at least {MIN_RATE} bytes a second (16KiB)")),
            v => Ok(v),
        };
        let reset = flags.monthly_reset_day.or(file.monthly_reset_day).unwrap_or(1);
        if !(1..=31).contains(&reset) {
            return Err(format!("monthly_reset_day must be 1-31, not {reset}"));
        }
        let max_streams = flags.max_streams.or(file.max_streams).unwrap_or(default_streams);
        if max_streams == 0 {
            return Err("max_streams must be at least 1 (use paused = true to stop sharing)".into());
        }
        let rules = if flags.schedule.is_empty() { file.schedule.clone() } else { Some(flags.schedule.clone()) };
        let schedule = rules.map(|r| Schedule::parse(&r)).transpose()?;
        let offset = flags.utc_offset.as_deref().or(file.utc_offset.as_deref()).map(parse_offset).transpose()?;
        Ok(Settings {
            paused: file.paused.unwrap_or(false),
            daily_cap: size(&flags.daily_cap, &file.daily_cap, "daily_cap")?,
            monthly_cap: size(&flags.monthly_cap, &file.monthly_cap, "monthly_cap")?,
            monthly_reset_day: reset,
            max_up: rate(size(&flags.max_up, &file.max_up, "max_up")?, "max_up")?,
            max_down: rate(size(&flags.max_down, &file.max_down, "max_down")?, "max_down")?,
            max_streams,
            schedule,
            utc_offset: offset.unwrap_or(0),
        })
    }

    /// Why the node must not serve at `now` (Unix seconds) with `usage`, the first that
    /// applies: paused by its owner, a data cap, outside the schedule. `None`: serve.
    pub fn pause_reason(&self, usage: &Usage, now: u64) -> Option<PauseReason> {
        if self.paused {
            return Some(PauseReason::ByOwner);
        }
        let u = usage.rolled(self, now);
        if self.daily_cap.is_some_and(|cap| u.bytes_today >= cap) {
            return Some(PauseReason::DailyCap);
        }
        if self.monthly_cap.is_some_and(|cap| u.bytes_month >= cap) {
            return Some(PauseReason::MonthlyCap);
        }
        if self.schedule.as_ref().is_some_and(|s| !s.allows(local_secs(now, self.utc_offset))) {
            return Some(PauseReason::OutsideSchedule);
        }
        None
    }
}

/// Reads and parses a settings file (at most [`MAX_SETTINGS_BYTES`]).
pub fn read_file(path: &Path) -> Result<SettingsFile, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_SETTINGS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(format!("{} is larger than {MAX_SETTINGS_BYTES} bytes", path.display()));
    }
    parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses settings file text.
pub fn parse_file(text: &str) -> Result<SettingsFile, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
}

/// Sets `paused` in the settings file at `path`, keeping every other line (comments too);
/// creates the file when missing. The result is parsed before it replaces the file.
pub fn set_paused(path: &Path, paused: bool) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = with_paused(&text, paused);
    parse_file(&new).map_err(|e| format!("{}: {e}", path.display()))?;
    // A name of its own (not `FILE.tmp`, which the identity file next to it may use), with the
    // file's owner and mode kept: the node that reads it may run as another user.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, new.as_bytes()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let kept = std::fs::set_permissions(&tmp, meta.permissions())
            .and_then(|()| std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())));
        if let Err(e) = kept {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot keep the owner and mode of {}: {e}", path.display()));
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `text` with its top-level `paused` key set (replaced in place, or added as the first line).
pub fn with_paused(text: &str, paused: bool) -> String {
    let line = format!("paused = {paused}");
    let mut out = Vec::new();
    let mut done = false;
    let mut top = true;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            top = false;
        }
        let key = t.split('=').next().unwrap_or("").trim();
        if top && !done && key == "paused" && t.contains('=') {
            out.push(line.clone());
            done = true;
        } else {
            out.push(l.to_owned());
        }
    }
    if !done {
        out.insert(0, line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// `+02:00`, `-05:30`, `Z` or `UTC` as seconds east of UTC (at most ±14:00).
pub fn parse_offset(text: &str) -> Result<i32, String> {
    let t = text.trim();
    let bad = || format!("utc_offset {text:?}: use +HH:MM or -HH:MM (e.g. +02:00), or UTC");
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let sign = match t.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let (h, m) = t[1..].split_once(':').ok_or_else(bad)?;
    let num =
        |v: &str| (v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse::<i32>().ok()).flatten();
    let (Some(h), Some(m)) = (num(h), num(m)) else { return Err(bad()) };
    if m > 59 || h * 60 + m > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Seconds since 1970-01-01 00:00 local time.
fn local_secs(now: u64, offset: i32) -> i64 {
    now as i64 + i64::from(offset)
}

/// The local day number of `now`.
fn local_day(now: u64, offset: i32) -> i64 {
    local_secs(now, offset).div_euclid(86_400)
}

/// The first day (a day number) of the monthly period containing `day` when periods start on
/// `reset_day` (the last day of months shorter than that).
pub fn month_period_start(day: i64, reset_day: u8) -> i64 {
    let (y, m, d) = civil_from_days(day);
    let start_in = |y: i64, m: u32| days_from_civil(y, m, u32::from(reset_day).min(days_in_month(y, m)));
    let this = start_in(y, m);
    if d >= u32::from(reset_day).min(days_in_month(y, m)) {
        return this;
    }
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    start_in(py, pm)
}

/// A weekly schedule: serving is allowed inside any rule's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Bit 0 = Monday … bit 6 = Sunday.
    days: u8,
    /// Minutes after midnight; `end <= start` runs over midnight into the next day, and
    /// `end == start` is a full 24 hours.
    start: u16,
    end: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    /// Rules like `mon-fri 18:00-23:30`, `sat,sun 00:00-24:00`, `daily 22:00-07:00` (over
    /// midnight). At least one rule, at most [`MAX_SCHEDULE_RULES`].
    pub fn parse(rules: &[String]) -> Result<Schedule, String> {
        if rules.is_empty() {
            return Err("schedule has no rules: leave it out to share at any time".into());
        }
        if rules.len() > MAX_SCHEDULE_RULES {
            return Err(format!("schedule has more than {MAX_SCHEDULE_RULES} rules"));
        }
        rules.iter().map(|r| Rule::parse(r)).collect::<Result<_, _>>().map(|rules| Schedule { rules })
    }

    /// Whether `local` (seconds since 1970-01-01 local time) is inside the schedule.
    pub fn allows(&self, local: i64) -> bool {
        let day = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        // 1970-01-01 was a Thursday (index 3, Monday = 0).
        let wd = (day + 3).rem_euclid(7) as u8;
        let yesterday = (wd + 6) % 7;
        self.rules.iter().any(|r| {
            let on = |d: u8| r.days & (1 << d) != 0;
            if r.end > r.start {
                on(wd) && minute >= r.start && minute < r.end
            } else {
                (on(wd) && minute >= r.start) || (on(yesterday) && minute < r.end)
            }
        })
    }
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let bad = |why: &str| {
            format!(
                "schedule rule {:?}: {why} (e.g. \"mon-fri 18:00-23:30\" or \"daily 22:00-07:00\")",
                text.chars().take(80).collect::<String>()
            )
        };
        if text.len() > 100 {
            return Err(bad("too long"));
        }
        let mut parts = text.split_whitespace();
        let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("want DAYS and HH:MM-HH:MM"));
        };
        let day = |n: &str| DAY_NAMES.iter().position(|d| n.eq_ignore_ascii_case(d)).map(|i| i as u8);
        let mut mask = 0u8;
        if days.eq_ignore_ascii_case("daily") {
            mask = 0x7f;
        } else {
            for part in days.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (Some(a), Some(b)) = (day(a), day(b)) else { return Err(bad("unknown day")) };
                        let mut d = a;
                        loop {
                            mask |= 1 << d;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => mask |= 1 << day(part).ok_or_else(|| bad("unknown day"))?,
                }
            }
        }
        let (s, e) = times.split_once('-').ok_or_else(|| bad("want HH:MM-HH:MM"))?;
        let clock = |t: &str, allow_24: bool| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            match (h, m) {
                (24, 0) if allow_24 => Some(0),
                (h, m) if h < 24 && m < 60 => Some(h * 60 + m),
                _ => None,
            }
        };
        let start = clock(s, false).ok_or_else(|| bad("bad start time"))?;
        let end = clock(e, true).ok_or_else(|| bad("bad end time"))?;
        Ok(Rule { days: mask, start, end })
    }
}

/// Bytes counted in the current local day and monthly period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The local day number the daily count belongs to.
    pub day: i64,
    /// The first day of the monthly period the monthly count belongs to.
    pub period: i64,
    pub bytes_today: u64,
    pub bytes_month: u64,
}

impl Usage {
    /// The counts as of `now`: today's restart on a new day, the month's in a new period.
    pub fn rolled(&self, s: &Settings, now: u64) -> Usage {
        let day = local_day(now, s.utc_offset);
        let period = month_period_start(day, s.monthly_reset_day);
        Usage {
            day,
            period,
            bytes_today: if day == self.day { self.bytes_today } else { 0 },
            bytes_month: if period == self.period { self.bytes_month } else { 0 },
        }
    }

    /// The saved counters; none when the file is missing. A file that does not parse is kept
    /// aside as `FILE.corrupt` and the counters start again, loudly (the caps count from zero).
    pub fn load(path: &Path) -> Usage {
        let Ok(bytes) = std::fs::read(path) else { return Usage::default() };
        match serde_json::from_slice(&bytes) {
            Ok(u) => u,
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(path, &aside);
                tracing::warn!(file = %path.display(), kept_as = %aside.display(), error = %e,
                    "the data counters could not be read: they start again from zero");
                Usage::default()
            }
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// The longest a token bucket makes a read wait (its debt's bound, in seconds of rate).
const MAX_DEBT_SECS: f64 = 2.0;

/// A token bucket shared by every stream of the node for one direction: `take(n)` spends `n`
/// bytes and says how long to wait so the rate holds (debt is allowed, so a frame is never
/// split; waits are bounded by the bytes in flight over the rate).
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl TokenBucket {
    /// `rate` bytes a second, a burst of a quarter second (at least 64 KiB).
    pub fn new(rate: u64) -> TokenBucket {
        let rate = rate.max(1);
        let full = (rate as f64 / 4.0).max(64.0 * 1024.0);
        TokenBucket { rate, state: Mutex::new((full, tokio::time::Instant::now())) }
    }

    fn burst(&self) -> f64 {
        (self.rate as f64 / 4.0).max(64.0 * 1024.0)
    }

    /// Spends `n` bytes now; the wait before they may move.
    pub fn take(&self, n: u64) -> Duration {
        let now = tokio::time::Instant::now();
        let mut st = crate::sync::lock(&self.state);
        let (tokens, last) = *st;
        let refilled =
            (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate as f64).min(self.burst());
        // Debt is bounded (streams that took bytes and died never pay theirs back): no wait is
        // longer than MAX_DEBT_SECS.
        let left = (refilled - n as f64).max(-(self.rate as f64) * MAX_DEBT_SECS);
        *st = (left, now);
        if left >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-left / self.rate as f64) }
    }
}

/// The clock the controls read (Unix seconds); injected in tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock in Unix seconds.
pub fn system_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The node's controls while it runs: settings, counters, limits. Shared by the agent loop and
/// every stream's meter.
pub struct Controls {
    settings: Mutex<Settings>,
    usage: Mutex<Usage>,
    dirty: std::sync::atomic::AtomicBool,
    up: Mutex<Option<Arc<TokenBucket>>>,
    down: Mutex<Option<Arc<TokenBucket>>>,
    usage_path: PathBuf,
    clock: Clock,
    /// Told whenever the settings change.
    pub changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls").field("settings", &*crate::sync::lock(&self.settings)).finish_non_exhaustive()
    }
}

impl Controls {
    pub fn new(settings: Settings, usage_path: PathBuf, clock: Clock) -> Controls {
        let usage = Usage::load(&usage_path);
        let c = Controls {
            settings: Mutex::new(settings.clone()),
            usage: Mutex::new(usage),
            dirty: std::sync::atomic::AtomicBool::new(false),
            up: Mutex::new(None),
            down: Mutex::new(None),
            usage_path,
            clock,
            changed: tokio::sync::Notify::new(),
        };
        c.set_limits(&settings);
        c
    }

    /// No limits but `max_streams`, on the system clock, counting next to `state` (the demo,
    /// benchmarks, in-process nodes).
    pub fn unlimited(state: &Path, max_streams: u32) -> Arc<Controls> {
        Arc::new(Controls::new(Settings::unlimited(max_streams), Controls::usage_path(state), Arc::new(system_secs)))
    }

    /// The counters file next to the identity file `state`.
    pub fn usage_path(state: &Path) -> PathBuf {
        state.with_extension("usage.json")
    }

    fn set_limits(&self, s: &Settings) {
        let same = |b: &Option<Arc<TokenBucket>>, r: Option<u64>| b.as_ref().map(|b| b.rate) == r;
        let mut up = crate::sync::lock(&self.up);
        if !same(&up, s.max_up) {
            *up = s.max_up.map(|r| Arc::new(TokenBucket::new(r)));
        }
        let mut down = crate::sync::lock(&self.down);
        if !same(&down, s.max_down) {
            *down = s.max_down.map(|r| Arc::new(TokenBucket::new(r)));
        }
    }

    pub fn settings(&self) -> Settings {
        crate::sync::lock(&self.settings).clone()
    }

    /// Puts new settings in force; true when they differ.
    pub fn replace(&self, s: Settings) -> bool {
        let mut cur = crate::sync::lock(&self.settings);
        if *cur == s {
            return false;
        }
        self.set_limits(&s);
        *cur = s;
        drop(cur);
        self.changed.notify_waiters();
        true
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The counters as of now.
    pub fn usage(&self) -> Usage {
        let s = self.settings();
        crate::sync::lock(&self.usage).rolled(&s, self.now())
    }

    /// Why the node must not serve now, if it must not.
    pub fn pause_reason(&self) -> Option<PauseReason> {
        let s = self.settings();
        let u = *crate::sync::lock(&self.usage);
        s.pause_reason(&u, self.now())
    }

    /// Counts `n` bytes the node's link moved.
    pub fn count(&self, n: u64) {
        let s = self.settings();
        let now = self.now();
        let mut u = crate::sync::lock(&self.usage);
        let mut r = u.rolled(&s, now);
        r.bytes_today = r.bytes_today.saturating_add(n);
        r.bytes_month = r.bytes_month.saturating_add(n);
        *u = r;
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the counters when they changed since the last save.
    pub fn save(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let u = *crate::sync::lock(&self.usage);
        if let Err(e) = u.save(&self.usage_path) {
            tracing::warn!(error = %e, "could not save the node's data counters");
        }
    }
}

/// The meter of the node's relayed streams: counts both legs of every byte against the caps
/// and paces them by the bandwidth limits.
pub struct NodeMeter(pub Arc<Controls>);

impl Meter for NodeMeter {
    fn record(&self, up: u64, down: u64) {
        // Each relayed byte crosses the node's link twice: from the target and into the
        // tunnel (a client's download), or from the tunnel and to the target (an upload).
        self.0.count(up.saturating_add(down).saturating_mul(2));
    }

    fn pace(&self, client_to_target: bool, n: u64) -> Duration {
        // A client's upload is what the node takes from the tunnel (max_down); a download is
        // what it sends into the tunnel (max_up).
        let bucket = if client_to_target { &self.0.down } else { &self.0.up };
        let b = crate::sync::lock(bucket).clone();
        b.map(|b| b.take(n)).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// 2026-12-03 (a Thursday) 12:00 UTC.
    const T0: u64 = 1_796_299_200;

    fn flags() -> SettingsFlags {
        SettingsFlags::default()
    }

    fn file(text: &str) -> SettingsFile {
        parse_file(text).unwrap()
    }

    #[test]
    fn the_clock_constant_is_what_it_says() {
        assert_eq!(crate::units::rfc3339(T0), "2026-12-03T12:00:00Z");
        let day = local_day(T0, 0);
        assert_eq!((day + 3).rem_euclid(7), 3, "Thursday");
    }

    #[test]
    fn a_full_settings_file_parses_and_flags_override_it() {
        let f = file(
            "# owner settings\npaused = false\ndaily_cap = \"500MB\"\nmonthly_cap = 10737418240\nmonthly_reset_day = 15\n\
             max_up = \"1MiB\"\nmax_down = \"2MB\"\nmax_streams = 32\nschedule = [\"mon-fri 18:00-23:30\", \"sat,sun 00:00-24:00\"]\n\
             utc_offset = \"+02:00\"\n",
        );
        let s = Settings::resolve(&f, &flags(), 1024).unwrap();
        assert_eq!(s.daily_cap, Some(500_000_000));
        assert_eq!(s.monthly_cap, Some(10 * 1024 * 1024 * 1024));
        assert_eq!(
            (s.monthly_reset_day, s.max_up, s.max_down, s.max_streams),
            (15, Some(1 << 20), Some(2_000_000), 32)
        );
        assert_eq!(s.utc_offset, 7200);
        assert!(s.schedule.is_some());
        let fl = SettingsFlags {
            daily_cap: Some("1GB".into()),
            max_streams: Some(8),
            schedule: vec!["daily 00:00-24:00".into()],
            utc_offset: Some("UTC".into()),
            ..flags()
        };
        let s = Settings::resolve(&f, &fl, 1024).unwrap();
        assert_eq!((s.daily_cap, s.max_streams, s.utc_offset), (Some(1_000_000_000), 8, 0));
        assert_eq!(s.monthly_cap, Some(10 * 1024 * 1024 * 1024), "the file's value where no flag is given");
        assert_eq!(Settings::resolve(&SettingsFile::default(), &flags(), 77).unwrap(), Settings::unlimited(77));
    }

    #[test]
    fn malformed_and_hostile_settings_are_refused_with_the_key() {
        let bad = |text: &str| {
            let f = parse_file(text).and_then(|f| Settings::resolve(&f, &flags(), 10).map(|_| ()));
            f.expect_err(text)
        };
        assert!(bad("paused = \"yes\"").contains("paused"));
        assert!(bad("nope = 1").contains("nope"), "unknown keys are refused");
        assert!(bad("daily_cap = \"5 parsecs\"").contains("daily_cap"));
        assert!(bad("daily_cap = -1").contains("daily_cap"));
        assert!(bad("monthly_cap = \"99999999999999999999999TB\"").contains("monthly_cap"));
        assert!(bad("monthly_reset_day = 0").contains("monthly_reset_day"));
        assert!(bad("monthly_reset_day = 32").contains("monthly_reset_day"));
        assert!(bad("monthly_reset_day = 300").contains("monthly_reset_day"));
        assert!(bad("max_up = 100").contains("max_up"), "below the lowest rate");
        assert!(bad("max_streams = 0").contains("max_streams"));
        assert!(bad("max_streams = 5000000000").contains("max_streams"));
        assert!(bad("schedule = []").contains("schedule"));
        assert!(bad("schedule = \"mon 10:00-11:00\"").contains("schedule"));
        for rule in [
            "mon",
            "mon 10:00",
            "xyz 10:00-11:00",
            "mon 25:00-26:00",
            "mon 10:60-11:00",
            "mon 24:00-10:00",
            "mon 1:00-2:00",
            "mon 10:00-11:00 extra",
            "mon-- 10:00-11:00",
            "mon ١٠:00-11:00",
        ] {
            assert!(bad(&format!("schedule = [\"{rule}\"]")).contains("schedule rule"), "{rule}");
        }
        let many = (0..33).map(|_| "\"daily 00:00-01:00\"").collect::<Vec<_>>().join(",");
        assert!(bad(&format!("schedule = [{many}]")).contains("32"));
        assert!(bad(&format!("schedule = [\"{}\"]", "a".repeat(5000))).contains("too long"));
        for off in ["+2", "02:00", "+15:00", "+02:60", "+aa:bb", "", "+02:00:00"] {
            assert!(bad(&format!("utc_offset = \"{off}\"")).contains("utc_offset"), "{off}");
        }
        assert!(bad("[section]\nx = 1").contains("section"));
        assert!(bad("paused = true\npaused = false").contains("paused"), "a repeated key");
        assert!(bad("\u{0}").len() > 3);
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_SETTINGS_BYTES as usize + 10)).unwrap();
        assert!(read_file(&big).unwrap_err().contains("larger than"));
        assert!(read_file(&dir.path().join("missing.toml")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn the_schedule_covers_ranges_lists_and_midnight() {
        let s = Schedule::parse(&["mon-fri 18:00-23:30".into(), "sat,sun 22:00-02:00".into()]).unwrap();
        // T0 is Thursday 12:00 UTC.
        let at = |day_off: i64, h: i64, m: i64| (T0 as i64 - 12 * 3600) + day_off * 86_400 + h * 3600 + m * 60;
        assert!(!s.allows(at(0, 12, 0)));
        assert!(s.allows(at(0, 18, 0)));
        assert!(s.allows(at(0, 23, 29)));
        assert!(!s.allows(at(0, 23, 30)), "the end is exclusive");
        assert!(s.allows(at(2, 23, 0)), "Saturday night");
        assert!(s.allows(at(3, 1, 59)), "into Sunday morning");
        assert!(s.allows(at(4, 1, 0)), "Sunday night into Monday");
        assert!(!s.allows(at(4, 2, 0)));
        assert!(!s.allows(at(2, 21, 59)));
        let wrap = Schedule::parse(&["fri-mon 10:00-10:00".into()]).unwrap();
        assert!(wrap.allows(at(1, 10, 0)) && wrap.allows(at(4, 9, 59)), "a full day, Friday to Monday");
        assert!(!wrap.allows(at(5, 10, 0)), "not Tuesday");
        let all = Schedule::parse(&["daily 00:00-24:00".into()]).unwrap();
        assert!((0..7 * 24).all(|h| all.allows(at(0, h, 0))));
    }

    #[test]
    fn the_schedule_is_read_at_the_settings_offset() {
        let f = file("schedule = [\"thu 13:00-14:00\"]\nutc_offset = \"+01:30\"");
        let s = Settings::resolve(&f, &flags(), 10).unwrap();
        let u = Usage::default();
        // 12:00 UTC is 13:30 at +01:30.
        assert_eq!(s.pause_reason(&u, T0), None);
        assert_eq!(s.pause_reason(&u, T0 + 1800), Some(PauseReason::OutsideSchedule));
        assert_eq!(s.pause_reason(&u, T0 - 3600), Some(PauseReason::OutsideSchedule));
    }

    #[test]
    fn monthly_periods_start_on_the_reset_day_clamped_to_short_months() {
        let d = |y, m, d| days_from_civil(y, m, d);
        assert_eq!(month_period_start(d(2026, 12, 3), 1), d(2026, 12, 1));
        assert_eq!(month_period_start(d(2026, 12, 3), 15), d(2026, 11, 15));
        assert_eq!(month_period_start(d(2026, 12, 15), 15), d(2026, 12, 15));
        assert_eq!(month_period_start(d(2027, 1, 10), 15), d(2026, 12, 15), "across the year");
        assert_eq!(month_period_start(d(2027, 2, 28), 31), d(2027, 2, 28), "the last day of February");
        assert_eq!(month_period_start(d(2027, 2, 27), 31), d(2027, 1, 31));
        assert_eq!(month_period_start(d(2028, 2, 29), 30), d(2028, 2, 29), "leap year");
        assert_eq!(month_period_start(d(2027, 3, 30), 31), d(2027, 2, 28));
    }

    #[test]
    fn caps_count_per_local_day_and_period_with_an_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(T0));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let f = file("daily_cap = 1000\nmonthly_cap = 2500\nmonthly_reset_day = 6\nutc_offset = \"-05:00\"");
        let path = dir.path().join("n.usage.json");
        let c = Controls::new(Settings::resolve(&f, &flags(), 10).unwrap(), path.clone(), clock.clone());
        assert_eq!(c.pause_reason(), None);
        c.count(999);
        assert_eq!(c.pause_reason(), None);
        c.count(1);
        assert_eq!(c.pause_reason(), Some(PauseReason::DailyCap));
        // 12:00 UTC is 07:00 at -05:00: local midnight is 17 hours on.
        now.store(T0 + 17 * 3600 - 1, Ordering::Relaxed);
        assert_eq!(c.pause_reason(), Some(PauseReason::DailyCap), "still the same local day");
        now.store(T0 + 17 * 3600, Ordering::Relaxed);
        assert_eq!(c.pause_reason(), None, "a new local day");
        assert_eq!(c.usage().bytes_today, 0);
        assert_eq!(c.usage().bytes_month, 1000);
        c.count(1000);
        assert_eq!(c.pause_reason(), Some(PauseReason::DailyCap));
        now.store(T0 + 17 * 3600 + 86_400, Ordering::Relaxed);
        c.count(500);
        assert_eq!(c.pause_reason(), Some(PauseReason::MonthlyCap), "2,500 this period, 500 today");
        // Saved and loaded again (a restart) the counts carry on.
        c.save();
        let again = Controls::new(c.settings(), path.clone(), clock.clone());
        assert_eq!(again.usage(), c.usage());
        assert_eq!(again.pause_reason(), Some(PauseReason::MonthlyCap));
        // Local Dec 6 is the reset day: the month starts again (the daily count too).
        now.store(T0 + 17 * 3600 + 2 * 86_400 - 1, Ordering::Relaxed);
        assert_eq!(c.pause_reason(), Some(PauseReason::MonthlyCap), "Dec 5, 23:59:59 local");
        now.store(T0 + 17 * 3600 + 2 * 86_400, Ordering::Relaxed);
        assert_eq!(c.pause_reason(), None, "Dec 6, 00:00 local: a new period");
        assert_eq!((c.usage().bytes_today, c.usage().bytes_month), (0, 0));
        let s = c.settings();
        // Paused by the owner comes first.
        let mut p = s.clone();
        p.paused = true;
        assert!(c.replace(p.clone()));
        assert!(!c.replace(p));
        assert_eq!(c.pause_reason(), Some(PauseReason::ByOwner));
        // A garbled counters file starts from zero rather than failing.
        std::fs::write(&path, b"{nope").unwrap();
        assert_eq!(Usage::load(&path), Usage::default());
    }

    #[test]
    fn pause_and_resume_edit_only_the_paused_line() {
        let text = "# my node\ndaily_cap = \"1GB\" # comment\npaused = false\nschedule = [\"daily 00:00-24:00\"]\n";
        let p = with_paused(text, true);
        assert_eq!(p, "# my node\ndaily_cap = \"1GB\" # comment\npaused = true\nschedule = [\"daily 00:00-24:00\"]\n");
        assert_eq!(with_paused(&p, false), text);
        assert_eq!(with_paused("", true), "paused = true\n");
        assert_eq!(with_paused("daily_cap = 5\n", true), "paused = true\ndaily_cap = 5\n");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.toml");
        set_paused(&f, true).unwrap();
        assert_eq!(read_file(&f).unwrap().paused, Some(true));
        set_paused(&f, false).unwrap();
        assert_eq!(read_file(&f).unwrap().paused, Some(false));
        std::fs::write(&f, "nope = 1\n").unwrap();
        assert!(set_paused(&f, true).is_err(), "a broken file is not made worse");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "nope = 1\n");
    }

    #[tokio::test(start_paused = true)]
    async fn the_meter_counts_both_legs_and_paces_each_direction_by_its_own_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = file("max_up = \"100KB\"\nmax_down = \"1MB\"");
        let c = Arc::new(Controls::new(
            Settings::resolve(&f, &flags(), 10).unwrap(),
            dir.path().join("u.json"),
            Arc::new(|| T0),
        ));
        let m = NodeMeter(c.clone());
        m.record(1_000, 500);
        assert_eq!(c.usage().bytes_today, 3_000, "each relayed byte crosses the link twice");
        // What clients download goes into the tunnel: max_up (100 kB/s, a 64 KiB burst).
        assert_eq!(m.pace(false, 65_536), Duration::ZERO);
        assert_eq!(m.pace(false, 50_000), Duration::from_millis(500));
        // What they upload comes from the tunnel: max_down, a bucket of its own.
        assert_eq!(m.pace(true, 250_000), Duration::ZERO);
        assert_eq!(m.pace(true, 100_000), Duration::from_millis(100));
        // Limits lifted at run time (the settings file changed): no more waiting.
        assert!(c.replace(Settings::resolve(&SettingsFile::default(), &flags(), 10).unwrap()));
        assert_eq!(m.pace(false, 10_000_000), Duration::ZERO);
        assert_eq!(m.pace(true, 10_000_000), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_holds_its_rate_across_streams() {
        let b = TokenBucket::new(100_000);
        // The burst (64 KiB here) goes at once; then every byte waits its share.
        assert_eq!(b.take(65_536), Duration::ZERO);
        let w = b.take(50_000);
        assert_eq!(w, Duration::from_millis(500));
        // A second stream asking at the same instant waits behind the first.
        assert_eq!(b.take(50_000), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.take(0), Duration::ZERO);
        // Over 10 s of steady asking the bytes moved stay at the rate.
        let mut moved = 0u64;
        let start = tokio::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let w = b.take(16_384);
            moved += 16_384;
            tokio::time::advance(w.max(Duration::from_millis(1))).await;
        }
        assert!((1_000_000..=1_100_000).contains(&moved), "{moved}");
        // Streams that took bytes and died leave at most MAX_DEBT_SECS of debt behind.
        for _ in 0..100 {
            let _ = b.take(1_000_000);
        }
        assert_eq!(b.take(0), Duration::from_secs(2));
    }

    #[test]
    fn a_corrupt_counter_file_is_kept_aside_and_counting_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.usage.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Usage::load(&path), Usage::default());
        assert!(!path.exists());
        assert_eq!(std::fs::read(dir.path().join("node.usage.json.corrupt")).unwrap(), b"{not json");
    }

    #[test]
    fn pausing_keeps_the_settings_files_mode_and_never_touches_a_neighbours_tmp() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "daily_cap = \"1GB\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(dir.path().join("node.tmp"), b"the identity's").unwrap();
        set_paused(&path, true).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("paused = true"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(dir.path().join("node.tmp")).unwrap(), b"the identity's");
    }
}
