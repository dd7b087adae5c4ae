//! GeoIP updates: `traffix geoip update` against a local web server that serves generated
//! databases in each source's real file formats and URL shapes (DB-IP Lite's monthly
//! `.mmdb.gz`, MaxMind's `.tar.gz` with its `.sha256` and a redirect to storage), a running
//! server that swaps them in without a restart, and every broken download leaving the old
//! database in place with the problem named.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::*;

/// What the test web server answers.
#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    /// A body of this many bytes sent in chunks, with no Content-Length.
    Chunked(usize),
    Redirect(String),
    Status(u16),
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;
/// Each request's path and query, and its Authorization header.
type Requests = Vec<(String, Option<String>)>;

/// A web server on 127.0.0.1 whose answers each test sets, recording every request (its path
/// and query, and its Authorization header).
struct Web {
    addr: std::net::SocketAddr,
    handler: Arc<Mutex<Handler>>,
    log: Arc<Mutex<Requests>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Web {
    fn start() -> Web {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Arc::new(|_: &str| Reply::Status(404))));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (h, lg) = (handler.clone(), log.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                use axum::body::{Body, Bytes};
                use axum::http::{StatusCode, header};
                use axum::response::{IntoResponse, Response};
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let (h, lg) = (h.clone(), lg.clone());
                    async move {
                        let pq = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                        let auth =
                            req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        lg.lock().unwrap().push((pq.clone(), auth));
                        let f = h.lock().unwrap().clone();
                        let r: Response = match f(&pq) {
                            Reply::Ok(b) => b.into_response(),
                            Reply::Chunked(n) => {
                                let chunks = (0..n.div_ceil(16 * 1024)).map(move |i| {
                                    Ok::<_, std::io::Error>(Bytes::from(vec![0u8; (n - i * 16 * 1024).min(16 * 1024)]))
                                });
                                Body::from_stream(futures_util::stream::iter(chunks)).into_response()
                            }
                            Reply::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
                            Reply::Status(s) => (StatusCode::from_u16(s).unwrap(), "an error page").into_response(),
                        };
                        r
                    }
                });
                let _ = axum::serve(l, app).with_graceful_shutdown(async move { drop(stopped.await) }).await;
            });
        });
        Web { addr, handler, log, stop: Some(stop) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, f: impl Fn(&str) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(f);
    }

    /// The requests since the last call.
    fn take(&self) -> Requests {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A `.tar.gz` as MaxMind packs an edition: `EDITION_DATE/` with the database and its texts.
fn maxmind_tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

fn mmdb(dir: &Path, name: &str, args: &[(&str, &str)]) -> Vec<u8> {
    let p = dir.join(name);
    make_geoip(&p, args);
    std::fs::read(p).unwrap()
}

/// `traffix geoip update ARGS --json` on `dir` with `env`: exit code, the report (stdout) and
/// stderr.
fn update(dir: &Path, env: &[(String, String)], args: &[&str]) -> (Option<i32>, Value, String) {
    let out: Output = Command::new(BIN)
        .args(["geoip", "update", "--json"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn status_of(report: &Value, db: &str) -> String {
    report["databases"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["database"] == db))
        .map(|d| d["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn error_of(report: &Value, db: &str) -> String {
    report["databases"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["database"] == db))
        .map(|d| d["error"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// The status line and body of a request through the HTTP proxy.
fn via_proxy(s: &Server, user: &str, pass: &str) -> (String, String) {
    let out = curl(&["-i", "-x", &s.http_proxy_url(user, pass), &format!("http://{}/ip", origin().addr)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text.lines().next().unwrap_or_default().to_owned(), text)
}

#[test]
fn an_update_swaps_the_databases_into_the_running_server_and_country_targeting_starts_working() {
    let tmp = tempfile::tempdir().unwrap();
    let country = gzip(&mmdb(tmp.path(), "c.mmdb", &[("--type=DBIP-Country-Lite", ""), ("127.0.0.2", "DE")]));
    let asn = gzip(&mmdb(
        tmp.path(),
        "a.mmdb",
        &[("--asn", ""), ("--type=DBIP-ASN-Lite (compat=GeoLite2-ASN)", ""), ("127.0.0.2", "3320:Deutsche Telekom AG")],
    ));
    let web = Web::start();
    web.set(move |path| {
        let month = |p: &str, stem: &str| {
            p.strip_prefix(stem).and_then(|m| m.strip_suffix(".mmdb.gz")).is_some_and(|m| m.len() == 7)
        };
        if month(path, "/free/dbip-country-lite-") {
            Reply::Ok(country.clone())
        } else if month(path, "/free/dbip-asn-lite-") {
            Reply::Ok(asn.clone())
        } else {
            Reply::Status(404)
        }
    });
    let geo = env(&[("TRAFFIX_GEOIP__SOURCE", "dbip"), ("TRAFFIX_GEOIP__DBIP_URL", &format!("{}/free", web.url()))]);
    let mut s =
        Server::start_with(ServerOpts { allow_private_targets: true, env: geo.clone(), ..ServerOpts::default() });
    let pass = s.add_user("gina", Some("10"));
    let node = s.start_node("gina", "127.0.0.2");
    let pid = s.pid();

    // No database yet: country targeting is refused, and says how to fix it.
    let (st, text) = via_proxy(&s, "gina-country-de", &pass);
    assert!(st.contains(" 503") && text.contains("traffix geoip update"), "{text}");
    assert!(s.devices()[0]["country"].is_null());
    // A stream that is open while the databases change.
    let o = origin().addr;
    let (mut held, code) = socks5_connect("127.0.0.1", s.socks, "gina", &pass, o.ip().to_string().as_bytes(), o.port());
    assert_eq!(code, Some(0));

    let (code, report, err) = update(s.data_dir(), &geo, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!((status_of(&report, "country"), status_of(&report, "asn")), ("installed".into(), "installed".into()));
    assert_eq!(report["server"]["running"], true, "{report}");
    assert_eq!(report["server"]["reloaded"], serde_json::json!(["country", "asn"]), "{report}");
    let geoip_dir = s.data_dir().join("geoip");
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    assert_eq!((mode(&geoip_dir), mode(&geoip_dir.join("country.mmdb"))), (0o700, 0o600));

    // The same server process now routes by country, and the open stream still works.
    assert_eq!(s.pid(), pid);
    let (st, text) = via_proxy(&s, "gina-country-de", &pass);
    assert!(st.contains(" 200") && text.trim_end().ends_with("127.0.0.2"), "{text}");
    let (st, _) = via_proxy(&s, "gina-country-fr", &pass);
    assert!(st.contains(" 503"), "no node in FR: {st}");
    use std::io::{Read, Write};
    held.write_all(b"GET /hello HTTP/1.0\r\nHost: origin\r\n\r\n").unwrap();
    let mut got = String::new();
    held.read_to_string(&mut got).unwrap();
    assert!(got.contains("hello from origin"), "the stream opened before the swap: {got:?}");
    let d = &s.devices()[0];
    assert_eq!(
        (d["country"].as_str(), d["asn"].as_u64(), d["vip"].as_str()),
        (Some("DE"), Some(3320), Some(node.vip.as_str()))
    );
    assert!(!s.log().contains("node offline"), "the node stayed connected");

    // What is in use, from the running server: the dashboard's section.
    let status = s.cli_json(&["geoip", "status"]);
    assert_eq!(status["source"], "dbip");
    assert_eq!(status["country"]["database_type"], "DBIP-Country-Lite");
    assert_eq!(status["country"]["managed"], true);
    assert!(status["attribution"][0].as_str().unwrap().contains("DB-IP"), "{status}");
    assert!(status["last_update"].is_string() && status["next_update"].is_string(), "{status}");

    // Again: both are current, nothing is downloaded.
    web.take();
    let (code, report, err) = update(s.data_dir(), &geo, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!((status_of(&report, "country"), status_of(&report, "asn")), ("current".into(), "current".into()));
    assert_eq!(web.take(), vec![], "a current database is not fetched again");
    assert_eq!(report["server"]["reloaded"], serde_json::json!([]));
    assert!(s.terminate().success());

    // A restart loads them from the default location (geoip.country_db is still empty).
    s.spawn();
    s.wait_node_online(&node);
    let (st, text) = via_proxy(&s, "gina-country-de", &pass);
    assert!(st.contains(" 200") && text.trim_end().ends_with("127.0.0.2"), "{text}");
    assert!(s.log().contains("geoip=on (country"), "{}", s.log());
}

#[test]
fn dbip_falls_back_to_last_month_until_this_months_file_is_published() {
    let tmp = tempfile::tempdir().unwrap();
    let country = gzip(&mmdb(tmp.path(), "c.mmdb", &[("--type=DBIP-Country-Lite", ""), ("127.0.0.2", "DE")]));
    let asn = gzip(&mmdb(tmp.path(), "a.mmdb", &[("--asn", ""), ("127.0.0.2", "3320:DTAG")]));
    let web = Web::start();
    // Only the older of the two months asked for is published.
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let a = asked.clone();
    web.set(move |path| {
        let mut asked = a.lock().unwrap();
        asked.push(path.to_owned());
        let same: Vec<&String> = asked.iter().filter(|p| p[..p.len() - 15] == path[..path.len() - 15]).collect();
        match (same.len(), path.contains("country")) {
            (1, _) => Reply::Status(404),
            (_, true) => Reply::Ok(country.clone()),
            (_, false) => Reply::Ok(asn.clone()),
        }
    });
    let dir = init_dir();
    // Run as root on a data directory that belongs to someone else (the service user): the new
    // files are handed to that owner, so the service can read them and update them later.
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if root {
        std::os::unix::fs::chown(dir.path(), Some(65_534), Some(65_534)).unwrap();
    }
    let geo = env(&[("TRAFFIX_GEOIP__SOURCE", "dbip"), ("TRAFFIX_GEOIP__DBIP_URL", &format!("{}/free/", web.url()))]);
    let (code, report, err) = update(dir.path(), &geo, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(report["server"]["running"], false);
    if root {
        for f in ["geoip", "geoip/country.mmdb", "geoip/asn.mmdb", "geoip/state.json", "geoip/.lock"] {
            let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path().join(f)).unwrap());
            assert_eq!(uid, 65_534, "{f} belongs to the data directory's owner");
        }
    }
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 4, "{asked:?}");
    let month = |p: &str| p[p.len() - 15..p.len() - 8].to_owned();
    let (this, last) = (month(&asked[0]), month(&asked[1]));
    let (y, m): (i32, u32) = (this[..4].parse().unwrap(), this[5..].parse().unwrap());
    let before = if m == 1 { format!("{}-12", y - 1) } else { format!("{y}-{:02}", m - 1) };
    assert_eq!(last, before, "{asked:?}");
    assert!(
        asked[0].starts_with("/free/dbip-country-lite-") && asked[2].starts_with("/free/dbip-asn-lite-"),
        "{asked:?}"
    );
    let origin = report["databases"][0]["origin"].as_str().unwrap();
    assert_eq!(origin, format!("dbip-country-lite-{last}.mmdb.gz"));

    // Neither month published: the installed database stays, and the error names both files.
    let before_bytes = std::fs::read(dir.path().join("geoip/country.mmdb")).unwrap();
    web.set(|_| Reply::Status(404));
    let (code, report, err) = update(dir.path(), &geo, &["--force"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        error_of(&report, "country").contains("not published") && error_of(&report, "country").contains(&last),
        "{report}"
    );
    assert!(err.contains("failed") && err.contains("old database stays"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("geoip/country.mmdb")).unwrap(), before_bytes);

    // DB-IP publishes no checksum: a file cut short fails its gzip trailer, and is not installed.
    let cut = gzip(&mmdb(tmp.path(), "n.mmdb", &[("--type=DBIP-Country-Lite", ""), ("127.0.0.2", "AT")]));
    let cut = cut[..cut.len() - 9].to_vec();
    web.set(move |_| Reply::Ok(cut.clone()));
    let (code, report, _) = update(dir.path(), &geo, &["--force"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(error_of(&report, "country").contains("not a complete gzip file"), "{report}");
    assert_eq!(std::fs::read(dir.path().join("geoip/country.mmdb")).unwrap(), before_bytes);
}

/// A data directory from `traffix init` (no server).
fn init_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(dir.path())
        .args(["--web-listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn maxmind_downloads_are_checked_and_a_broken_one_leaves_the_old_database() {
    let tmp = tempfile::tempdir().unwrap();
    let country = mmdb(tmp.path(), "c.mmdb", &[("--type=GeoLite2-Country", ""), ("127.0.0.2", "DE")]);
    let newer = mmdb(tmp.path(), "n.mmdb", &[("--type=GeoLite2-Country", ""), ("127.0.0.2", "AT")]);
    let asn = mmdb(tmp.path(), "a.mmdb", &[("--asn", ""), ("127.0.0.2", "3320:DTAG")]);
    let good_country = maxmind_tgz(&[
        ("GeoLite2-Country_20260512/COPYRIGHT.txt", b"Database and Contents Copyright (c) MaxMind"),
        ("GeoLite2-Country_20260512/GeoLite2-Country.mmdb", &country),
    ]);
    let good_asn = maxmind_tgz(&[("GeoLite2-ASN_20260512/GeoLite2-ASN.mmdb", &asn)]);
    let web = Web::start();
    let storage = Web::start();
    let sum = |tgz: &[u8], name: &str| format!("{}  {name}\n", sha256_hex(tgz)).into_bytes();
    // MaxMind answers the archive with a redirect to presigned storage (another origin).
    let serve = |web: &Web, storage: &Web, country_tgz: Vec<u8>, country_sum: Vec<u8>| {
        let (asn_tgz, asn_sum) = (good_asn.clone(), sum(&good_asn, "GeoLite2-ASN_20260512.tar.gz"));
        let to = format!("http://localhost:{}", storage.addr.port());
        web.set(move |p| {
            let edition = if p.contains("GeoLite2-Country") { "GeoLite2-Country" } else { "GeoLite2-ASN" };
            if p.contains("suffix=tar.gz.sha256") {
                Reply::Ok(if edition == "GeoLite2-Country" { country_sum.clone() } else { asn_sum.clone() })
            } else if p.contains("suffix=tar.gz") {
                Reply::Redirect(format!("{to}/r2/{edition}.tar.gz?X-Amz-Signature=abc"))
            } else {
                Reply::Status(404)
            }
        });
        let asn_tgz2 = asn_tgz.clone();
        storage.set(move |p| match p {
            _ if p.starts_with("/r2/GeoLite2-Country.tar.gz") => Reply::Ok(country_tgz.clone()),
            _ if p.starts_with("/r2/GeoLite2-ASN.tar.gz") => Reply::Ok(asn_tgz2.clone()),
            _ => Reply::Status(404),
        });
    };
    let dir = init_dir();
    let d = dir.path();
    let geo = env(&[
        ("TRAFFIX_GEOIP__SOURCE", "maxmind"),
        ("TRAFFIX_GEOIP__MAXMIND_URL", &web.url()),
        ("TRAFFIX_GEOIP__MAXMIND_LICENSE_KEY", "k3y-s3cr3t"),
        ("TRAFFIX_GEOIP__MAX_DOWNLOAD_BYTES", "65536"),
    ]);

    // A key is needed.
    let (code, _, err) = update(d, &env(&[("TRAFFIX_GEOIP__SOURCE", "maxmind")]), &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("maxmind_license_key"), "{err}");

    serve(&web, &storage, good_country.clone(), sum(&good_country, "GeoLite2-Country_20260512.tar.gz"));
    let (code, report, err) = update(d, &geo, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(report["databases"][0]["origin"], "GeoLite2-Country_20260512.tar.gz");
    assert_eq!(std::fs::read(d.join("geoip/country.mmdb")).unwrap(), country);
    // The key went in MaxMind's URL only, never to storage, and never into the output.
    let asked = web.take();
    assert!(asked.iter().all(|(p, _)| p.contains("license_key=k3y-s3cr3t")), "{asked:?}");
    assert!(asked.iter().any(|(p, _)| p.starts_with("/app/geoip_download?edition_id=GeoLite2-Country&")), "{asked:?}");
    assert!(storage.take().iter().all(|(p, a)| !p.contains("k3y") && a.is_none()));
    assert!(!report.to_string().contains("k3y-s3cr3t") && !err.contains("k3y-s3cr3t"));

    // With an account id: HTTP Basic to MaxMind, nothing to storage.
    let with_id = [geo.clone(), env(&[("TRAFFIX_GEOIP__MAXMIND_ACCOUNT_ID", "42")])].concat();
    let (code, report, err) = update(d, &with_id, &["--force"]);
    assert_eq!(code, Some(0), "{report} {err}");
    let asked = web.take();
    assert!(
        asked
            .iter()
            .all(|(p, a)| p.starts_with("/geoip/databases/GeoLite2-")
                && a.as_deref() == Some("Basic NDI6azN5LXMzY3IzdA==")),
        "{asked:?}"
    );
    assert!(storage.take().iter().all(|(_, a)| a.is_none()), "credentials never follow the redirect");

    let old = std::fs::read(d.join("geoip/country.mmdb")).unwrap();
    let no_db = maxmind_tgz(&[("GeoLite2-Country_20260513/README.txt", b"nothing")]);
    let not_mmdb = maxmind_tgz(&[("GeoLite2-Country_20260513/GeoLite2-Country.mmdb", b"this is not a database")]);
    let wrong_type = maxmind_tgz(&[("GeoLite2-Country_20260513/GeoLite2-Country.mmdb", &asn)]);
    let newer_tgz = maxmind_tgz(&[("GeoLite2-Country_20260513/GeoLite2-Country.mmdb", &newer)]);
    let truncated = newer_tgz[..newer_tgz.len() * 2 / 3].to_vec();
    let name = "GeoLite2-Country_20260513.tar.gz";
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("a wrong checksum", newer_tgz.clone(), sum(&good_country, name), "SHA-256"),
        ("a truncated archive", truncated.clone(), sum(&truncated, name), "truncated or corrupt"),
        ("an archive without the database", no_db.clone(), sum(&no_db, name), "holds no GeoLite2-Country.mmdb"),
        ("a file that is not a MaxMind DB", not_mmdb.clone(), sum(&not_mmdb, name), "not a MaxMind DB"),
        ("an ASN database as the country one", wrong_type.clone(), sum(&wrong_type, name), "not a country database"),
        (
            "a malformed checksum file",
            newer_tgz.clone(),
            b"<html>Unauthorized</html>".to_vec(),
            "checksum file is malformed",
        ),
    ];
    for (what, tgz, sha, says) in cases {
        serve(&web, &storage, tgz, sha);
        let (code, report, err) = update(d, &geo, &["--force"]);
        assert_eq!(code, Some(1), "{what}: {report}");
        let e = error_of(&report, "country");
        assert!(e.contains(says), "{what}: {e}");
        assert!(
            e.contains("/app/geoip_download") && e.contains("license_key=***") && !e.contains("k3y"),
            "{what}: {e}"
        );
        assert!(err.contains("country update failed") && err.contains("old database stays"), "{what}: {err}");
        assert_eq!(status_of(&report, "asn"), "installed", "{what}: the other database is not held back");
        assert_eq!(std::fs::read(d.join("geoip/country.mmdb")).unwrap(), old, "{what}: the old database stays");
    }
    // Too large (sent in chunks, with no length to refuse early), and HTTP errors.
    let big_sum = sum(b"anything", name);
    storage.set(|_| Reply::Chunked(1 << 20));
    let big = format!("http://127.0.0.1:{}/big", storage.addr.port());
    web.set(move |p| if p.contains("sha256") { Reply::Ok(big_sum.clone()) } else { Reply::Redirect(big.clone()) });
    let (code, report, _) = update(d, &geo, &["--force"]);
    assert_eq!(code, Some(1));
    assert!(error_of(&report, "country").contains("more than 65536 bytes"), "{report}");
    web.set(|p| if p.contains("sha256") { Reply::Ok(vec![b'a'; 64]) } else { Reply::Chunked(1 << 20) });
    let (code, report, _) = update(d, &geo, &["--force"]);
    assert_eq!(code, Some(1));
    assert!(error_of(&report, "country").contains("more than 65536 bytes"), "{report}");
    for (status, says) in [(404, "HTTP 404"), (500, "HTTP 500"), (401, "licence key"), (429, "daily download limit")] {
        web.set(move |_| Reply::Status(status));
        let (code, report, _) = update(d, &geo, &["--force"]);
        assert_eq!(code, Some(1), "{status}");
        assert!(error_of(&report, "country").contains(says), "{status}: {report}");
        assert_eq!(std::fs::read(d.join("geoip/country.mmdb")).unwrap(), old);
    }
    web.set(|_| Reply::Redirect("/loop".into()));
    let (code, report, _) = update(d, &geo, &["--force"]);
    assert_eq!(code, Some(1));
    assert!(error_of(&report, "country").contains("more than 5 redirects"), "{report}");
    let left: Vec<_> = std::fs::read_dir(d.join("geoip")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "no temporary file is left: {left:?}");

    // doctor names the failed update, and a good one clears it.
    let out = Command::new(BIN).args(["doctor", "--json", "--data-dir"]).arg(d).envs(geo.clone()).output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = r["checks"].as_array().unwrap().iter().find(|c| c["check"] == "geoip" && c["status"] == "warning");
    assert!(failed.is_some_and(|c| c["message"].as_str().unwrap().contains("failed")), "{r:#}");
    serve(&web, &storage, newer_tgz.clone(), sum(&newer_tgz, name));
    let (code, report, err) = update(d, &geo, &[]);
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(std::fs::read(d.join("geoip/country.mmdb")).unwrap(), newer);
    let out = Command::new(BIN).args(["doctor", "--json", "--data-dir"]).arg(d).envs(geo).output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let geoip: Vec<&Value> = r["checks"].as_array().unwrap().iter().filter(|c| c["check"] == "geoip").collect();
    assert!(geoip.iter().all(|c| c["status"] == "ok"), "{geoip:#?}");
}

#[test]
fn the_shared_databases_reload_what_changed_and_keep_what_breaks() {
    use traffix::geoip::{Kind, SharedGeoIp};
    let dir = init_dir();
    let d = dir.path();
    let cfg = traffix::app::load_config(d, None).unwrap();
    let (g, problems) = SharedGeoIp::open(&cfg);
    assert!(problems.is_empty() && !g.has_country() && g.reload().errors.is_empty(), "nothing yet, nothing wrong");
    let ip = "127.0.0.2".parse().unwrap();
    let geoip = d.join("geoip");
    std::fs::create_dir(&geoip).unwrap();
    make_geoip(&geoip.join("country.mmdb"), &[("127.0.0.2", "DE")]);
    let r = g.reload();
    assert_eq!((r.changed, r.errors.len()), (vec![Kind::Country], 0));
    assert_eq!(g.country(ip), Some(*b"DE"));
    assert_eq!(g.reload(), traffix::geoip::Reloaded::default(), "unchanged: nothing to do");
    // A new file renamed over the old one is loaded; a broken one is not, and the old stays.
    make_geoip(&geoip.join("new.mmdb"), &[("127.0.0.2", "AT")]);
    std::fs::rename(geoip.join("new.mmdb"), geoip.join("country.mmdb")).unwrap();
    assert_eq!(g.reload().changed, vec![Kind::Country]);
    assert_eq!(g.country(ip), Some(*b"AT"));
    std::fs::write(geoip.join("new.mmdb"), b"garbage").unwrap();
    std::fs::rename(geoip.join("new.mmdb"), geoip.join("country.mmdb")).unwrap();
    let r = g.reload();
    assert!(r.changed.is_empty() && r.errors[0].contains("loaded database stays"), "{r:?}");
    assert_eq!(g.country(ip), Some(*b"AT"));
    // A broken file in the default location is skipped at start; one the config names fails it.
    let (_, problems) = SharedGeoIp::open(&cfg);
    assert_eq!(problems.len(), 1);
    assert!(SharedGeoIp::load(&cfg).is_ok());
    let mut named = cfg.clone();
    named.geoip.country_db = geoip.join("country.mmdb").display().to_string();
    let e = SharedGeoIp::load(&named).unwrap_err();
    assert!(e.contains("geoip.country_db"), "{e}");
}
