//! Throttling of logins and pairing-code creation (SECURITY.md §3), in memory (moka): per
//! account at most `login_failures_per_hour` failures an hour, with exponential back-off after
//! 5; per IP at most `auth_failures_per_minute_per_ip` failures a minute. Successful logins
//! clear the account's count.
//!
//! A login attempt takes its slot before the password is hashed ([`Throttle::reserve_login`]):
//! the check and the count happen together under one lock, and the attempt counts as a failure
//! unless it is settled as a success. Checking first and counting after the hash let hundreds of
//! concurrent attempts past a limit of twenty.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Failures after which each further attempt must wait.
const BACKOFF_AFTER: u32 = 5;
/// Longest back-off between two attempts.
const MAX_BACKOFF_SECS: u64 = 60;
/// Pairing links one user may create per minute.
const PAIRS_PER_MINUTE: u32 = 20;

pub struct Throttle {
    per_account: Cache<String, (u32, Instant)>,
    per_ip: Cache<IpAddr, u32>,
    pairs: Cache<String, u32>,
    /// Makes a login's check and its count one step (held for two cache reads and writes).
    logins: Mutex<()>,
    account_limit: u32,
    ip_limit: u32,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("account_limit", &self.account_limit)
            .field("ip_limit", &self.ip_limit)
            .finish()
    }
}

impl Throttle {
    pub fn new(account_limit: u32, ip_limit: u32) -> Throttle {
        Throttle {
            per_account: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build(),
            per_ip: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            pairs: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            logins: Mutex::new(()),
            account_limit: account_limit.max(1),
            ip_limit: ip_limit.max(1),
        }
    }

    /// Takes a login attempt's slot for `user` from `ip`, or `Err(seconds to wait)` when it must
    /// be refused now. The attempt counts as a failure from here on; settle a correct password
    /// with [`LoginAttempt::succeeded`].
    pub fn reserve_login(&self, ip: IpAddr, user: &str) -> Result<LoginAttempt<'_>, u64> {
        let ip = crate::listener::source_key(ip);
        let _one_at_a_time = crate::sync::lock(&self.logins);
        self.check_login(ip, user)?;
        self.login_failed(ip, user);
        Ok(LoginAttempt { throttle: self, ip, user: user.to_owned(), ok: false })
    }

    /// `Err(seconds to wait)` when a login attempt for `user` from `ip` must be refused now.
    fn check_login(&self, ip: IpAddr, user: &str) -> Result<(), u64> {
        if self.per_ip.get(&ip).unwrap_or(0) >= self.ip_limit {
            return Err(60);
        }
        if let Some((n, last)) = self.per_account.get(user) {
            if n >= self.account_limit {
                return Err(3600);
            }
            if n >= BACKOFF_AFTER {
                let wait = (1u64 << (n - BACKOFF_AFTER).min(6)).min(MAX_BACKOFF_SECS);
                let since = last.elapsed().as_secs();
                if since < wait {
                    return Err(wait - since);
                }
            }
        }
        Ok(())
    }

    fn login_failed(&self, ip: IpAddr, user: &str) {
        let n = self.per_ip.get(&ip).unwrap_or(0);
        self.per_ip.insert(ip, n.saturating_add(1));
        let (n, _) = self.per_account.get(user).unwrap_or((0, Instant::now()));
        self.per_account.insert(user.to_owned(), (n.saturating_add(1), Instant::now()));
    }

    fn login_ok(&self, ip: IpAddr, user: &str) {
        let _one_at_a_time = crate::sync::lock(&self.logins);
        if let Some(n) = self.per_ip.get(&ip) {
            self.per_ip.insert(ip, n.saturating_sub(1));
        }
        self.per_account.invalidate(user);
    }

    /// Counts a pairing link of `user`; `Err(seconds)` over the per-minute limit.
    pub fn pair(&self, user: &str) -> Result<(), u64> {
        let n = self.pairs.get(user).unwrap_or(0);
        if n >= PAIRS_PER_MINUTE {
            return Err(60);
        }
        self.pairs.insert(user.to_owned(), n + 1);
        Ok(())
    }
}

/// A login attempt holding its slot: a failure unless settled as a success.
#[must_use = "an attempt counts as a failure unless it is settled with succeeded()"]
pub struct LoginAttempt<'a> {
    throttle: &'a Throttle,
    ip: IpAddr,
    user: String,
    ok: bool,
}

impl std::fmt::Debug for LoginAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt").field("ip", &self.ip).finish()
    }
}

impl LoginAttempt<'_> {
    /// The password was right: the attempt is not a failure, and its user's count is cleared.
    pub fn succeeded(mut self) {
        self.ok = true;
        self.throttle.login_ok(self.ip, &self.user);
    }
}

impl Drop for LoginAttempt<'_> {
    /// A failure's back-off runs from when it was answered, not from when its slot was taken
    /// before the hash: otherwise a slow hash used up the wait, and the next attempt, sent right
    /// after the refusal, passed.
    fn drop(&mut self) {
        if self.ok {
            return;
        }
        let _one_at_a_time = crate::sync::lock(&self.throttle.logins);
        if let Some((n, _)) = self.throttle.per_account.get(&self.user) {
            self.throttle.per_account.insert(self.user.clone(), (n, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_back_off_after_five_failures_and_ips_stop_at_the_limit() {
        let t = Throttle::new(100, 20);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..BACKOFF_AFTER {
            let _failed = t.reserve_login(ip, "ann").unwrap();
        }
        assert!(t.reserve_login(ip, "ann").is_err(), "back-off after five failures");
        t.reserve_login(ip, "bob").unwrap().succeeded();
        t.reserve_login(ip, "bob").unwrap().succeeded();
        assert_eq!(t.per_ip.get(&ip), Some(5), "successes are not failures");
        t.login_ok(ip, "ann");
        assert!(t.reserve_login(ip, "ann").is_ok(), "a success clears the count");
        for i in 0..20 {
            let _ = t.reserve_login(ip, &format!("u{i}"));
        }
        assert_eq!(t.reserve_login(ip, "carol").err(), Some(60), "the IP is over its limit");
        assert!(t.reserve_login([10, 0, 0, 2].into(), "carol").is_ok());
        let t = Throttle::new(3, 1000);
        for _ in 0..3 {
            t.login_failed(ip, "dan");
        }
        assert_eq!(t.reserve_login(ip, "dan").err(), Some(3600));
        for _ in 0..PAIRS_PER_MINUTE {
            assert!(t.pair("ann").is_ok());
        }
        assert!(t.pair("ann").is_err());
    }

    /// The back-off runs from the failure's answer: a slot held through a slow hash does not
    /// use up the wait.
    #[test]
    fn the_back_off_starts_when_the_failure_is_answered() {
        let t = Throttle::new(100, 20);
        let ip: IpAddr = [10, 0, 0, 3].into();
        let slow = t.reserve_login(ip, "eve").unwrap();
        let taken = t.per_account.get("eve").unwrap().1;
        let before_answer = Instant::now();
        drop(slow);
        let (n, last) = t.per_account.get("eve").unwrap();
        assert_eq!(n, 1, "still one failure");
        assert!(last >= before_answer && last >= taken, "the window restarts at the answer");
        t.reserve_login(ip, "eve").unwrap().succeeded();
        assert!(t.per_account.get("eve").is_none(), "a success leaves nothing to restart");
    }

    /// Many attempts at once from one IP: exactly the limit get a slot (and a hash), however
    /// they interleave.
    #[test]
    fn concurrent_attempts_cannot_pass_the_limit() {
        let t = std::sync::Arc::new(Throttle::new(1000, 20));
        let ip: IpAddr = [10, 0, 0, 9].into();
        let start = std::sync::Arc::new(std::sync::Barrier::new(16));
        let granted: u32 = (0..16)
            .map(|w| {
                let (t, start) = (t.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (0..20).filter(|i| t.reserve_login(ip, &format!("w{w}u{i}")).is_ok()).count() as u32
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(granted, 20);
    }
}
