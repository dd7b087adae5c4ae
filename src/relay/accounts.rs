//! Proxy authentication and per-client limits: checks `username`/`password` against a cached
//! copy of the account (constant-time, never argon2 on this path), throttles failures per IP
//! and per (account, IP),
//! and enforces each client's stream cap, dial cap and new-stream rate (SECURITY.md §2).
//! Money is not checked here: that is the billing meter's job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::username::{self, Targeting, UsernameError};
use crate::config::Limits;
use crate::store::Store;
use crate::sync::lock;

/// How long a cached account is trusted before it is read from the store again.
const ACCOUNT_TTL: Duration = Duration::from_secs(2);

/// A client account as the proxy sees it: an account, or a sub-user billed to one.
#[derive(Debug)]
pub struct ProxyAccount {
    /// The login name (an account's or a sub-user's).
    pub name: String,
    /// The account that pays (the same as `name` unless this is a sub-user).
    pub billed_to: String,
    password: String,
    /// Why it may not open streams (the account or sub-user is disabled or expired).
    pub disabled: Option<String>,
    /// The paying account's counters: its caps hold for all its sub-users together.
    pub client: Arc<ClientState>,
    pub sub: Option<SubLimits>,
}

/// A sub-user's own limits and live counters.
#[derive(Debug)]
pub struct SubLimits {
    pub max_streams: Option<u32>,
    pub byte_cap: Option<u64>,
    /// When it expires (Unix seconds): its live streams are cut then.
    pub expires_at: Option<u64>,
    pub usage: Arc<SubUsage>,
}

/// A sub-user's counters, kept while the process runs: open streams, and bytes moved in all
/// (seeded from the usage roll-up when first seen, then counted by the relay).
#[derive(Debug)]
pub struct SubUsage {
    streams: AtomicU32,
    used: AtomicU64,
    over: tokio::sync::watch::Sender<bool>,
}

impl SubUsage {
    /// Counts bytes; trips `over` once the cap is reached.
    pub fn record(&self, bytes: u64, cap: Option<u64>) {
        let used = self.used.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if cap.is_some_and(|c| used >= c) {
            self.over.send_replace(true);
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Resolves to `true` once the byte cap is reached.
    pub fn over(&self) -> tokio::sync::watch::Receiver<bool> {
        self.over.subscribe()
    }
}

/// Why authentication failed (RFC 1929 failure / HTTP 407).
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("malformed username: {0}")]
    Username(#[from] UsernameError),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed attempts from this address; wait a minute")]
    Throttled,
    #[error("account store unavailable")]
    Store,
}

/// Why an authenticated client may not open a stream.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("account disabled: {0}")]
    Disabled(String),
    #[error("balance exhausted: top up to continue")]
    BalanceExhausted,
    #[error("too many open streams (limit {0})")]
    TooManyStreams(u32),
    #[error("too many new streams per second (limit {0}/s)")]
    RateLimited(u32),
}

/// Live per-client counters, kept while the process runs.
#[derive(Debug)]
pub struct ClientState {
    streams: AtomicU32,
    dials: Arc<Semaphore>,
    bucket: Mutex<(f64, Instant)>,
}

/// A client's open-stream slot; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    client: Arc<ClientState>,
    sub: Option<Arc<SubUsage>>,
    dial: Option<OwnedSemaphorePermit>,
}

impl StreamSlot {
    /// The dial finished (either way): free the concurrent-dial slot, keep the stream slot.
    pub fn dialed(&mut self) {
        self.dial = None;
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.client.streams.fetch_sub(1, Ordering::AcqRel);
        if let Some(s) = &self.sub {
            s.streams.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The proxy's account service.
pub struct Accounts {
    store: Arc<Store>,
    limits: Limits,
    cache: moka::sync::Cache<String, Arc<ProxyAccount>>,
    clients: Mutex<HashMap<String, Arc<ClientState>>>,
    subs: Mutex<HashMap<String, Arc<SubUsage>>>,
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
    /// Failures per (account name, address).
    pair_failures: moka::sync::Cache<(String, IpAddr), Arc<AtomicU32>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accounts")
    }
}

impl Accounts {
    pub fn new(store: Arc<Store>, limits: Limits) -> Self {
        Accounts {
            store,
            limits,
            cache: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ACCOUNT_TTL).build(),
            clients: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            failures: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            pair_failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// Forgets the cached copy of an account (after an admin change).
    pub fn invalidate(&self, name: &str) {
        self.cache.invalidate(name);
    }

    fn client_state(&self, name: &str) -> Arc<ClientState> {
        lock(&self.clients)
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(ClientState {
                    streams: AtomicU32::new(0),
                    dials: Arc::new(Semaphore::new(self.limits.client_max_dials as usize)),
                    bucket: Mutex::new((f64::from(self.limits.client_new_streams_burst), Instant::now())),
                })
            })
            .clone()
    }

    fn sub_usage(&self, name: &str) -> Result<Arc<SubUsage>, AuthFailure> {
        if let Some(u) = lock(&self.subs).get(name) {
            return Ok(u.clone());
        }
        let used = self.store.subuser_bytes(name).map_err(|_| AuthFailure::Store)?;
        let fresh = Arc::new(SubUsage {
            streams: AtomicU32::new(0),
            used: AtomicU64::new(used),
            over: tokio::sync::watch::channel(false).0,
        });
        Ok(lock(&self.subs).entry(name.to_owned()).or_insert(fresh).clone())
    }

    fn load(&self, name: &str) -> Result<Option<Arc<ProxyAccount>>, AuthFailure> {
        if let Some(a) = self.cache.get(name) {
            return Ok(Some(a));
        }
        let why = |u: &crate::store::UserRecord| {
            u.disabled.then(|| u.disabled_reason.clone().unwrap_or_else(|| "disabled by an administrator".into()))
        };
        let acct = match self.store.get_user(name).map_err(|_| AuthFailure::Store)? {
            Some(user) => ProxyAccount {
                name: user.name.clone(),
                billed_to: user.name.clone(),
                disabled: why(&user),
                password: user.proxy_password,
                client: self.client_state(&user.name),
                sub: None,
            },
            None => {
                let Some(sub) = self.store.get_subuser(name).map_err(|_| AuthFailure::Store)? else { return Ok(None) };
                let parent = self.store.get_user(&sub.parent).map_err(|_| AuthFailure::Store)?;
                let disabled = match &parent {
                    None => Some(format!("account {} is gone", sub.parent)),
                    Some(p) => why(p),
                }
                .or_else(|| sub.refusal(crate::store::now_secs()));
                let usage = self.sub_usage(&sub.name)?;
                if let Some(cap) = sub.byte_cap {
                    usage.over.send_replace(usage.used() >= cap);
                }
                ProxyAccount {
                    name: sub.name.clone(),
                    billed_to: sub.parent.clone(),
                    disabled,
                    password: sub.proxy_password,
                    client: self.client_state(&sub.parent),
                    sub: Some(SubLimits {
                        max_streams: sub.max_streams,
                        byte_cap: sub.byte_cap,
                        expires_at: sub.expires_at,
                        usage,
                    }),
                }
            }
        };
        let acct = Arc::new(acct);
        self.cache.insert(acct.name.clone(), acct.clone());
        Ok(Some(acct))
    }

    /// Checks credentials. The username carries the targeting options (SPEC.md grammar).
    ///
    /// Failures are limited per address and per (account, address) (SECURITY.md §3). Proxy
    /// passwords carry 128 bits, so the limits cap work and log volume rather than guard the
    /// secret, and they never lock out a paying client: an account with no failure from this
    /// address (a clean source) is checked even when the address is over its limit — another
    /// client behind the same NAT cannot shut it out — while an account that failed here is
    /// refused unchecked once either limit is reached.
    pub fn authenticate(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(Arc<ProxyAccount>, Targeting), AuthFailure> {
        let from = crate::listener::source_key(from);
        let per_ip = self.failures.get_with(from, || Arc::new(AtomicU32::new(0)));
        let ip_over = per_ip.load(Ordering::Relaxed) >= self.limits.auth_failures_per_minute_per_ip;
        let targeting = match username::parse(username) {
            Ok(t) => t,
            Err(_) if ip_over => return Err(AuthFailure::Throttled),
            Err(e) => {
                per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let key = (targeting.name.clone(), from);
        let per_pair = self.pair_failures.get(&key);
        let pair_failed = per_pair.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        if pair_failed >= self.limits.auth_failures_per_minute_per_account_ip || (ip_over && pair_failed > 0) {
            return Err(AuthFailure::Throttled);
        }
        let fail = |e: AuthFailure| {
            per_ip.fetch_add(1, Ordering::Relaxed);
            self.pair_failures.get_with(key.clone(), || Arc::new(AtomicU32::new(0))).fetch_add(1, Ordering::Relaxed);
            e
        };
        let acct = self.load(&targeting.name)?.ok_or_else(|| fail(AuthFailure::BadCredentials))?;
        if !crate::auth::ct_eq(&acct.password, password) {
            return Err(fail(AuthFailure::BadCredentials));
        }
        Ok((acct, targeting))
    }

    /// Admits one new stream for an authenticated client: account state, stream cap, rate.
    /// Past the rate it waits up to one second for a token, then refuses.
    ///
    /// The account's state is read from its current record (the cached copy, which admin
    /// changes invalidate), not from the copy taken when the client authenticated: a disable
    /// that landed since then refuses the stream. (If the store cannot be read, that copy
    /// decides.)
    pub async fn admit(&self, acct: &ProxyAccount) -> Result<StreamSlot, Denied> {
        let disabled = match self.load(&acct.name) {
            Ok(Some(now)) => now.disabled.clone(),
            Ok(None) => Some(format!("{} no longer exists", acct.name)),
            Err(_) => acct.disabled.clone(),
        };
        if let Some(why) = disabled {
            return Err(Denied::Disabled(why));
        }
        if let Some(sub) = &acct.sub
            && let Some(cap) = sub.byte_cap
            && sub.usage.used() >= cap
        {
            return Err(Denied::Disabled(format!("sub-user {} has used its {cap} bytes", acct.name)));
        }
        let c = &acct.client;
        let cap = self.limits.client_max_streams;
        if c.streams.fetch_add(1, Ordering::AcqRel) >= cap {
            c.streams.fetch_sub(1, Ordering::AcqRel);
            return Err(Denied::TooManyStreams(cap));
        }
        let mut slot = StreamSlot { client: c.clone(), sub: None, dial: None };
        if let Some(sub) = &acct.sub {
            let n = sub.usage.streams.fetch_add(1, Ordering::AcqRel);
            slot.sub = Some(sub.usage.clone());
            if let Some(max) = sub.max_streams
                && n >= max
            {
                return Err(Denied::TooManyStreams(max));
            }
        }
        let rate = f64::from(self.limits.client_new_streams_per_s.max(1));
        let burst = f64::from(self.limits.client_new_streams_burst);
        let wait = {
            let mut b = lock(&c.bucket);
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
            b.1 = now;
            b.0 -= 1.0;
            if b.0 >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.0 / rate) }
        };
        if wait > Duration::from_secs(1) {
            lock(&c.bucket).0 += 1.0;
            return Err(Denied::RateLimited(self.limits.client_new_streams_per_s));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut slot = slot;
        slot.dial = c.dials.clone().acquire_owned().await.ok();
        Ok(slot)
    }
}
