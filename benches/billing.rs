//! The metering benchmark: how long one billing flush takes with 10,000 live sessions, and how
//! long `ledger verify` takes on the result. Library calls only (`traffix::billing`,
//! `traffix::store`) on a redb file in a temp dir, on a multi-threaded tokio runtime like the
//! server's.
//!
//! Setup: 100 funded clients and 50 node owners; 10,000 sessions opened through
//! `Billing::open` (client `i % 100`, owner `i % 50`, all at once, so holds are taken by group
//! commit). Then, as the server does, one flush a second: before each one every session records
//! new bytes (64 KiB up, 256 KiB down, one relay meter batch) and reservations settle, so the
//! timed call is the flush alone. Flushes are run for just over a minute, so the one where all
//! sessions come due for their periodic posting (every 60 s) is included; it is printed
//! separately. Then every session is ended and the flush that posts and closes them all is
//! timed. Last, the mass end: in each of three rounds, `n` new sessions are opened and flushed,
//! 1,000 concurrent 1 MiB loopback downloads are timed in the same runtime alone, then again
//! while all `n` sessions end and the flush that closes them runs (p99 completion, and its ratio
//! to the baseline). Timings are printed, never asserted.
//!
//! Run: `cargo bench --bench billing` (`TRAFFIX_BENCH_SESSIONS=1000` for a quick look;
//! `TRAFFIX_BENCH_FLUSH_SECS` bounds the steady flushes, two posting periods by default: the CI
//! smoke runs a few seconds of them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use traffix::billing::meter::{Billed, Billing, POST_EVERY_SECS, SessionInfo, overdraft_bound};
use traffix::billing::rules::{HoldPolicy, Tariff};
use traffix::money::Micros;
use traffix::store::{Account, Store, UserRecord, VerifyParams};

const CLIENTS: usize = 100;
const OWNERS: usize = 50;
/// Bytes each session records before every flush (one relay meter batch down, a quarter up).
const UP: u64 = 64 * 1024;
const DOWN: u64 = 256 * 1024;

fn sessions() -> usize {
    std::env::var("TRAFFIX_BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// How long the steady flushes run at most (`TRAFFIX_BENCH_FLUSH_SECS`).
fn flush_secs() -> u64 {
    std::env::var("TRAFFIX_BENCH_FLUSH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(2 * POST_EVERY_SECS)
}

fn user(name: &str) -> UserRecord {
    UserRecord::new(name, "x", 0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 / p99 / max of `v` in ms.
fn summary(v: &[Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let s = sorted_ms(v);
    let at = |p| at(&s, p);
    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} flushes)", at(0.5), at(0.99), at(1.0), s.len())
}

/// `v` in ms, sorted.
fn sorted_ms(v: &[Duration]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s
}

/// The `p` quantile of sorted, non-empty `s`.
fn at(s: &[f64], p: f64) -> f64 {
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there is nothing to list.
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let n = sessions();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.redb");
    // The server's page cache (`server.store_cache_mb`), or `TRAFFIX_BENCH_CACHE_MB`.
    let cache_mb = std::env::var("TRAFFIX_BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(traffix::config::DEFAULT_STORE_CACHE_MB);
    println!("database page cache: {cache_mb} MiB");
    let store = Arc::new(Store::open_with_cache(&path, cache_mb).unwrap());
    // The shipped defaults: 3.00 per GB, 30 % fee, holds of 1.00, the overdraft bound of
    // client_max_streams streams.
    let tariff = Tariff::new(Micros(3_000_000), 30).unwrap();
    let max_streams = traffix::config::Limits::default().client_max_streams;
    let policy = HoldPolicy { chunk: Micros(1_000_000), max_overdraft: overdraft_bound(&tariff, max_streams) };
    let params = VerifyParams {
        max_overdraft: policy.max_overdraft,
        overdraft_bytes: Billing::overdraft_bound_bytes(max_streams),
    };

    let t = Instant::now();
    for c in 0..CLIENTS {
        store.create_user(&user(&format!("client{c}"))).unwrap();
        store.deposit(&format!("client{c}"), Micros(1_000_000_000), &format!("dep:{c}"), "bench", 1).unwrap();
    }
    for o in 0..OWNERS {
        store.create_user(&user(&format!("owner{o}"))).unwrap();
    }
    let setup = t.elapsed();
    let billing = Arc::new(Billing::start(store.clone(), tariff, policy, Default::default()).unwrap());

    println!(
        "traffix billing benchmark — {n} sessions, {CLIENTS} clients, {OWNERS} owners — {}",
        std::env::consts::ARCH
    );
    println!(
        "tariff 3.00/GB, fee 30 %, hold chunk 1.00; per session and flush: {} KiB up, {} KiB down",
        UP / 1024,
        DOWN / 1024
    );
    println!("setup: {} users and {CLIENTS} deposits in {:.0} ms", CLIENTS + OWNERS, ms(setup));

    // Open every session at once (each client's first stream takes its hold).
    let t = Instant::now();
    let live = open_sessions(&billing, n).await;
    let open_time = t.elapsed();
    println!(
        "open: {n} sessions in {:.0} ms ({:.1} µs each), {} holds",
        ms(open_time),
        open_time.as_secs_f64() * 1e6 / n as f64,
        store.list_holds().unwrap().len()
    );

    let fees = || store.balance(&Account::PlatformFees).unwrap();
    let mut record_ns = Vec::new();
    let mut record_all = |live: &[Billed]| {
        let t = Instant::now();
        for s in live {
            s.record(UP, DOWN);
        }
        record_ns.push(t.elapsed().as_nanos() as f64 / live.len() as f64);
    };

    // Flush 1: every session row, accrual and roll-up bucket is new.
    record_all(&live);
    billing.settle().await;
    let t = Instant::now();
    billing.flush().await.unwrap();
    let first = t.elapsed();
    let first_at = Instant::now();

    let t = Instant::now();
    let report = store.verify(&params).unwrap();
    let verify_live = t.elapsed();
    assert!(report.ok, "{:#?}", report.problems);

    // One flush a second, bytes on every session before each; run until the periodic posting
    // (every POST_EVERY_SECS) has happened and a few more flushes after it.
    let mut steady = Vec::new();
    let mut posting = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut since_post = 0;
    let (mut walks, mut writes) = (Vec::new(), Vec::new());
    loop {
        tick.tick().await;
        record_all(&live);
        billing.settle().await;
        let before = fees();
        let t = Instant::now();
        let stats = billing.flush().await.unwrap();
        let d = t.elapsed();
        walks.push(ms(stats.walk));
        writes.push(ms(stats.write));
        if fees() != before {
            posting.push(d);
            since_post = 0;
        } else {
            steady.push(d);
            since_post += 1;
        }
        let secs = first_at.elapsed().as_secs();
        if (!posting.is_empty() && since_post >= 3) || secs > flush_secs() {
            break;
        }
    }

    // A flush with nothing new: no session changed and none is due.
    let t = Instant::now();
    billing.flush().await.unwrap();
    let idle = t.elapsed();

    // One session with new bytes: the fixed cost of a flush (a write transaction and its
    // commit, and the walk over every live session in memory).
    live[0].record(UP, DOWN);
    let t = Instant::now();
    billing.flush().await.unwrap();
    let one = t.elapsed();

    // Every session ends: the flush posts all of them, drops their accruals, releases the holds.
    record_all(&live);
    billing.settle().await;
    for s in live {
        s.end("closed");
    }
    let t = Instant::now();
    billing.flush().await.unwrap();
    let end_all = t.elapsed();
    assert!(store.list_holds().unwrap().is_empty(), "every hold released");

    let t = Instant::now();
    let report = store.verify(&params).unwrap();
    let verify_end = t.elapsed();
    assert!(report.ok, "{:#?}", report.problems);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    println!();
    println!("| flush ({n} live sessions) | time |");
    println!("|---|---|");
    println!("| first (every session row, accrual and roll-up bucket new) | {:.1} ms |", ms(first));
    // The server spreads each session's first posting over the first minute by id, so in the
    // steady state about 1/60 of the sessions post in each flush.
    let all: Vec<Duration> = steady.iter().chain(&posting).copied().collect();
    println!(
        "| steady: new bytes on every session, postings spread over each {POST_EVERY_SECS} s | {} |",
        summary(&all)
    );
    println!("| of which: flushes that posted nothing | {} |", summary(&steady));
    println!(
        "| steady, split: walk over the live sessions in memory / write transaction until committed | p50 {:.1} / {:.1} ms |",
        median(&walks),
        median(&writes)
    );
    println!("| idle: nothing new, nothing due (no write transaction) | {:.2} ms |", ms(idle));
    println!("| one session with new bytes (one small write transaction) | {:.2} ms |", ms(one));
    println!("| end: all {n} sessions ended, posted and closed, holds released | {:.1} ms |", ms(end_all));
    println!();
    let steady_p50 = median(&all.iter().map(|d| ms(*d)).collect::<Vec<_>>());
    let worst = [first, end_all].iter().chain(&all).map(|d| ms(*d)).fold(0.0, f64::max);
    println!(
        "against the 20 ms target: steady p50 {steady_p50:.1} ms ({:.2}× of it); worst flush of the run {worst:.1} ms ({:.2}×)",
        steady_p50 / 20.0,
        worst / 20.0
    );
    println!("record(): {:.0} ns per call (median over {} rounds of {n})", median(&record_ns), record_ns.len());
    println!(
        "ledger verify: {:.0} ms with {} live sessions; {:.0} ms at the end ({} sessions, {} transfers, {} accounts): ok",
        ms(verify_live),
        n,
        ms(verify_end),
        report.sessions,
        report.transfers,
        report.accounts
    );
    println!("database: {:.1} MiB", size as f64 / (1u64 << 20) as f64);

    mass_end(&billing, &store, &params, n).await;
}

/// Rounds of the mass-end measurement.
const MASS_END_ROUNDS: usize = 3;
/// Bytes each concurrent stream carries (the tunnel benchmark's 1 MiB).
const STREAM_BYTES: usize = 1 << 20;

/// While `n` sessions end in the same second, how much later do concurrent streams complete?
/// Each round opens `n` sessions and flushes them once, then times concurrent 1 MiB downloads
/// over loopback TCP in this runtime (the server's data path shares its runtime and its two
/// cores with the flusher): once alone (the baseline), and once with all `n` sessions ended and
/// the flush that posts and closes them started with the streams. Prints p99 completion of
/// each and their ratio; the target is within 2× of the baseline.
async fn mass_end(billing: &Arc<Billing>, store: &Store, params: &VerifyParams, n: usize) {
    let streams = (n / 10).clamp(10, 1000);
    let origin = origin().await;
    println!();
    println!(
        "| mass end: {n} sessions end in the same second, {streams} concurrent 1 MiB streams | p99 completion alone | p99 with the flush | ratio | that flush |"
    );
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 1..=MASS_END_ROUNDS {
        let live = open_sessions(billing, n).await;
        for s in &live {
            s.record(UP, DOWN);
        }
        billing.settle().await;
        billing.flush().await.unwrap();
        let alone = p99(&download(origin, streams).await);
        for s in &live {
            s.record(UP, DOWN);
        }
        billing.settle().await;
        for s in live {
            s.end("closed");
        }
        let (times, flush) = tokio::join!(download(origin, streams), async {
            let t = Instant::now();
            billing.flush().await.unwrap();
            t.elapsed()
        });
        let with = p99(&times);
        ratios.push(with / alone);
        println!("| round {round} | {alone:.1} ms | {with:.1} ms | {:.2}× | {:.1} ms |", with / alone, ms(flush));
    }
    println!("mass end: median ratio {:.2}× (target ≤ 2×)", median(&ratios));
    let report = store.verify(params).unwrap();
    assert!(report.ok, "{:#?}", report.problems);
}

/// Opens `n` sessions at once (client `i % CLIENTS`, owner `i % OWNERS`), in id order.
async fn open_sessions(billing: &Arc<Billing>, n: usize) -> Vec<Billed> {
    let mut opens = tokio::task::JoinSet::new();
    for i in 0..n {
        let billing = billing.clone();
        opens.spawn(async move {
            let info = SessionInfo {
                client: format!("client{}", i % CLIENTS),
                sub: None,
                device: format!("{:016x}", 0xd0_0000 + (i % OWNERS) as u64),
                owner: format!("owner{}", i % OWNERS),
                vip: format!("100.64.0.{}", 1 + i % OWNERS),
                node_ip: format!("203.0.113.{}", 1 + i % OWNERS),
                target: format!("example{}.com:443", i % 997),
            };
            billing.open(info).await.unwrap()
        });
    }
    let mut live: Vec<Billed> = opens.join_all().await;
    live.sort_by_key(|s| s.id);
    live
}

/// A loopback origin that sends [`STREAM_BYTES`] on every connection and closes it.
async fn origin() -> std::net::SocketAddr {
    // A deep accept queue: 1,000 connects at once overflow std's 128, and a connection whose
    // handshake the kernel dropped waits for bytes forever.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(8192).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let buf: Arc<[u8]> = vec![0x5a; 64 * 1024].into();
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            let buf = buf.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for _ in 0..STREAM_BYTES / buf.len() {
                    if s.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `k` concurrent downloads from `origin`: each one's completion time (connect to last byte).
async fn download(origin: std::net::SocketAddr, k: usize) -> Vec<Duration> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..k {
        set.spawn(async move {
            use tokio::io::AsyncReadExt;
            let t = Instant::now();
            let mut s = tokio::net::TcpStream::connect(origin).await.unwrap();
            let (mut buf, mut got) = (vec![0u8; 64 * 1024], 0);
            loop {
                match s.read(&mut buf).await.unwrap() {
                    0 => break,
                    k => got += k,
                }
            }
            assert_eq!(got, STREAM_BYTES, "every stream gets its bytes");
            t.elapsed()
        });
    }
    set.join_all().await
}

/// p99 of `v` in ms.
fn p99(v: &[Duration]) -> f64 {
    at(&sorted_ms(v), 0.99)
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}
