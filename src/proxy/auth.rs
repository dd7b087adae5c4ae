//! Proxy authentication and per-client limits: checks `username`/`password` against a cached
//! copy of the account (constant-time, never argon2 on this path), throttles failures per IP,
//! and enforces each client's stream cap, dial cap and new-stream rate (SECURITY.md §2).
//! Money is not checked here: that is the billing meter's job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::username::{self, Targeting, UsernameError};
use crate::config::Limits;
use crate::store::Store;

/// How long a cached account is trusted before it is read from the store again.
const ACCOUNT_TTL: Duration = Duration::from_secs(2);

/// A client account as the proxy sees it.
#[derive(Debug)]
pub struct ProxyAccount {
    pub name: String,
    password: String,
    pub disabled: Option<String>,
    pub client: Arc<ClientState>,
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
    }
}

/// The proxy's account service.
pub struct Accounts {
    store: Arc<Store>,
    limits: Limits,
    cache: moka::sync::Cache<String, Arc<ProxyAccount>>,
    clients: Mutex<HashMap<String, Arc<ClientState>>>,
    failures: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
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
            failures: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }

    /// Forgets the cached copy of an account (after an admin change).
    pub fn invalidate(&self, name: &str) {
        self.cache.invalidate(name);
    }

    fn client_state(&self, name: &str) -> Arc<ClientState> {
        let mut m = match self.clients.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(ClientState {
                    streams: AtomicU32::new(0),
                    dials: Arc::new(Semaphore::new(self.limits.client_max_dials as usize)),
                    bucket: Mutex::new((f64::from(self.limits.client_new_streams_burst), Instant::now())),
                })
            })
            .clone()
    }

    fn load(&self, name: &str) -> Result<Option<Arc<ProxyAccount>>, AuthFailure> {
        if let Some(a) = self.cache.get(name) {
            return Ok(Some(a));
        }
        let Some(user) = self.store.get_user(name).map_err(|_| AuthFailure::Store)? else { return Ok(None) };
        let acct = Arc::new(ProxyAccount {
            name: user.name.clone(),
            password: user.proxy_password,
            disabled: user
                .disabled
                .then(|| user.disabled_reason.unwrap_or_else(|| "disabled by an administrator".into())),
            client: self.client_state(&user.name),
        });
        self.cache.insert(user.name, acct.clone());
        Ok(Some(acct))
    }

    /// Checks credentials. The username carries the targeting options (SPEC.md grammar).
    pub fn authenticate(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(Arc<ProxyAccount>, Targeting), AuthFailure> {
        let counter = self.failures.get_with(from, || Arc::new(AtomicU32::new(0)));
        if counter.load(Ordering::Relaxed) >= self.limits.auth_failures_per_minute_per_ip {
            return Err(AuthFailure::Throttled);
        }
        let fail = |e: AuthFailure| {
            counter.fetch_add(1, Ordering::Relaxed);
            e
        };
        let targeting = username::parse(username).map_err(|e| fail(e.into()))?;
        let acct = self.load(&targeting.name)?.ok_or_else(|| fail(AuthFailure::BadCredentials))?;
        if !crate::auth::ct_eq(&acct.password, password) {
            return Err(fail(AuthFailure::BadCredentials));
        }
        Ok((acct, targeting))
    }

    /// Admits one new stream for an authenticated client: account state, stream cap, rate.
    /// Past the rate it waits up to one second for a token, then refuses.
    pub async fn admit(&self, acct: &ProxyAccount) -> Result<StreamSlot, Denied> {
        if let Some(why) = &acct.disabled {
            return Err(Denied::Disabled(why.clone()));
        }
        let c = &acct.client;
        let cap = self.limits.client_max_streams;
        if c.streams.fetch_add(1, Ordering::AcqRel) >= cap {
            c.streams.fetch_sub(1, Ordering::AcqRel);
            return Err(Denied::TooManyStreams(cap));
        }
        let slot = StreamSlot { client: c.clone(), dial: None };
        let rate = f64::from(self.limits.client_new_streams_per_s.max(1));
        let burst = f64::from(self.limits.client_new_streams_burst);
        let wait = {
            let mut b = match c.bucket.lock() {
                Ok(b) => b,
                Err(p) => p.into_inner(),
            };
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
            b.1 = now;
            b.0 -= 1.0;
            if b.0 >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.0 / rate) }
        };
        if wait > Duration::from_secs(1) {
            if let Ok(mut b) = c.bucket.lock() {
                b.0 += 1.0;
            }
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
