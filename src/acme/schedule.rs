//! When to renew and when to try again: pure functions of the time, the certificate's validity
//! and the failures so far. The clock is injected ([`Clock`]), so tests decide "now".

/// Seconds since the Unix epoch, as the scheduler sees them.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::store::now_secs()
    }
}

const DAY_SECS: u64 = 86_400;

/// When a certificate valid from `not_before` to `not_after` is renewed: `window_days` before
/// it expires, but never earlier than a third of its lifetime before (a CA whose certificates
/// live shorter than the window would otherwise be asked again the moment one arrives).
pub fn renew_at(not_before: u64, not_after: u64, window_days: u32) -> u64 {
    let lifetime = not_after.saturating_sub(not_before);
    let before = (u64::from(window_days) * DAY_SECS).min(lifetime / 3);
    not_after.saturating_sub(before)
}

/// The wait after the `failures`-th failure in a row (1 for the first): `retry_secs`,
/// doubling each time, at most `retry_max_secs`.
pub fn retry_delay(failures: u32, retry_secs: u64, retry_max_secs: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(40);
    retry_secs.saturating_mul(1u64 << doublings).min(retry_max_secs)
}

/// What the scheduler knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The validity (notBefore, notAfter) of the ACME certificate in use; `None` while the
    /// self-signed one is served.
    pub cert: Option<(u64, u64)>,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// When the last attempt ended.
    pub last_attempt: Option<u64>,
}

/// The settings the scheduler follows (`tls.acme_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub renew_before_days: u32,
    pub retry_secs: u64,
    pub retry_max_secs: u64,
}

/// When the next attempt is due (Unix seconds; at or before `now` means now): without a
/// certificate at once, with one at [`renew_at`]; after failures not before the backoff.
pub fn next_attempt(now: u64, f: &Facts, p: &Policy) -> u64 {
    let due = match f.cert {
        Some((nb, na)) => renew_at(nb, na, p.renew_before_days),
        None => now,
    };
    match (f.failures, f.last_attempt) {
        (0, _) | (_, None) => due,
        (n, Some(last)) => due.max(last.saturating_add(retry_delay(n, p.retry_secs, p.retry_max_secs))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that says what the test says.
    struct FakeClock(std::sync::atomic::AtomicU64);
    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    const POLICY: Policy = Policy { renew_before_days: 30, retry_secs: 60, retry_max_secs: 6 * 3600 };
    const T0: u64 = 1_900_000_000;

    fn renew_now(clock: &dyn Clock, f: &Facts) -> bool {
        next_attempt(clock.now(), f, &POLICY) <= clock.now()
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_it_expires() {
        let cert = Some((T0, T0 + 90 * DAY_SECS));
        let f = Facts { cert, ..Facts::default() };
        let clock = FakeClock(T0.into());
        for (day, expect) in [(0, false), (59, false), (60, true), (89, true), (200, true)] {
            clock.0.store(T0 + day * DAY_SECS, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(renew_now(&clock, &f), expect, "day {day}");
        }
        // A second before the window opens: not yet.
        clock.0.store(T0 + 60 * DAY_SECS - 1, std::sync::atomic::Ordering::Relaxed);
        assert!(!renew_now(&clock, &f));
    }

    #[test]
    fn short_lived_certificates_are_renewed_at_two_thirds_of_their_life_not_at_once() {
        // A 6-day certificate with a 30-day window: renewing "when fewer than 30 days are left"
        // would ask the CA again the moment it arrives.
        assert_eq!(renew_at(T0, T0 + 6 * DAY_SECS, 30), T0 + 4 * DAY_SECS);
        assert_eq!(renew_at(T0, T0, 30), T0, "a zero-length validity is due at once");
        assert_eq!(renew_at(T0 + 5, T0, 30), T0, "a reversed validity does not underflow");
    }

    #[test]
    fn without_a_certificate_an_attempt_is_due_at_once_and_failures_back_off() {
        let clock = FakeClock(T0.into());
        assert!(renew_now(&clock, &Facts::default()));
        let failed = |n, at| Facts { cert: None, failures: n, last_attempt: Some(at) };
        assert_eq!(next_attempt(T0, &failed(1, T0), &POLICY), T0 + 60);
        assert_eq!(next_attempt(T0, &failed(2, T0), &POLICY), T0 + 120);
        assert_eq!(next_attempt(T0, &failed(3, T0), &POLICY), T0 + 240);
        assert_eq!(next_attempt(T0, &failed(200, T0), &POLICY), T0 + 6 * 3600, "capped");
        // A failed renewal of a certificate that is due waits for the backoff too.
        let cert = Some((T0 - 80 * DAY_SECS, T0 + 10 * DAY_SECS));
        let f = Facts { cert, failures: 1, last_attempt: Some(T0) };
        assert_eq!(next_attempt(T0, &f, &POLICY), T0 + 60);
        assert!(!renew_now(&clock, &f));
        clock.0.store(T0 + 60, std::sync::atomic::Ordering::Relaxed);
        assert!(renew_now(&clock, &f));
    }

    #[test]
    fn retry_delay_never_overflows() {
        assert_eq!(retry_delay(0, 60, 3600), 60);
        assert_eq!(retry_delay(u32::MAX, u64::MAX / 2, u64::MAX), u64::MAX);
    }
}
