//! Throttling of logins and pairing-code creation (SECURITY.md §3), in memory (moka): per
//! account at most `login_failures_per_hour` failures an hour, with exponential back-off after
//! 5; per IP at most `auth_failures_per_minute_per_ip` failures a minute. Successful logins
//! clear the account's count.

use std::net::IpAddr;
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
            account_limit: account_limit.max(1),
            ip_limit: ip_limit.max(1),
        }
    }

    /// `Err(seconds to wait)` when a login attempt for `user` from `ip` must be refused now.
    pub fn check_login(&self, ip: IpAddr, user: &str) -> Result<(), u64> {
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

    pub fn login_failed(&self, ip: IpAddr, user: &str) {
        let n = self.per_ip.get(&ip).unwrap_or(0);
        self.per_ip.insert(ip, n.saturating_add(1));
        let (n, _) = self.per_account.get(user).unwrap_or((0, Instant::now()));
        self.per_account.insert(user.to_owned(), (n.saturating_add(1), Instant::now()));
    }

    pub fn login_ok(&self, user: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_back_off_after_five_failures_and_ips_stop_at_the_limit() {
        let t = Throttle::new(100, 20);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..BACKOFF_AFTER {
            assert!(t.check_login(ip, "ann").is_ok());
            t.login_failed(ip, "ann");
        }
        assert!(t.check_login(ip, "ann").is_err(), "back-off after five failures");
        assert!(t.check_login(ip, "bob").is_ok(), "other accounts are not affected");
        t.login_ok("ann");
        assert!(t.check_login(ip, "ann").is_ok(), "a success clears the count");
        for i in 0..20 {
            t.login_failed(ip, &format!("u{i}"));
        }
        assert_eq!(t.check_login(ip, "carol"), Err(60), "the IP is over its limit");
        assert!(t.check_login([10, 0, 0, 2].into(), "carol").is_ok());
        let t = Throttle::new(3, 1000);
        for _ in 0..3 {
            t.login_failed(ip, "dan");
        }
        assert_eq!(t.check_login(ip, "dan"), Err(3600));
        for _ in 0..PAIRS_PER_MINUTE {
            assert!(t.pair("ann").is_ok());
        }
        assert!(t.pair("ann").is_err());
    }
}
