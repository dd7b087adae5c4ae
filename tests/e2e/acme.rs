//! ACME with the real binary and Debian's real ACME server, `pebble` (with
//! `pebble-challtestsrv` as its DNS: every name resolves to 127.0.0.1, so validation stays on
//! loopback). Pebble validates HTTP-01 on its `httpPort` and TLS-ALPN-01 on its `tlsPort`:
//! each test points them at the server's own listeners. Pebble's directory is served over
//! HTTPS with a certificate from a CA the test makes (`tls.acme_ca_roots`); the issued chain
//! is checked against pebble's root (its management interface, `/roots/0`).
//!
//! Pebble is started only after the server, so the first attempt fails (the self-signed
//! certificate stays, with a warning) and `traffix tls renew` then asks for the certificate at
//! a moment the test chooses: nothing waits for a timer (automatic retries are an hour away).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::Value;

use crate::common::*;

const DOMAIN: &str = "acme-e2e.traffix.test";

/// `None` (after saying why) when pebble is not installed; in CI, where tests/run-all.sh
/// installs it, its absence is a failure.
fn pebble_installed() -> bool {
    let found = ["pebble", "pebble-challtestsrv"]
        .iter()
        .all(|b| Command::new(b).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "pebble is not installed: tests/run-all.sh installs it (apt-get install pebble)"
        );
        eprintln!("SKIPPED: pebble is not installed (apt-get install pebble); the ACME tests against it did not run");
    }
    found
}

/// A CA of the test's own and a certificate from it for pebble's HTTPS (127.0.0.1, localhost).
struct TestCa {
    ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    fn new(dir: &Path) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "traffix e2e CA for pebble's HTTPS");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let leaf = leaf.signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca, &ca_key)).unwrap();
        let t =
            TestCa { ca_pem: dir.join("ca.pem"), cert: dir.join("pebble-cert.pem"), key: dir.join("pebble-key.pem") };
        std::fs::write(&t.ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&t.cert, leaf.pem()).unwrap();
        std::fs::write(&t.key, leaf_key.serialize_pem()).unwrap();
        t
    }
}

/// The ports of one pebble, chosen before the server starts (its directory URL is config).
struct PebblePorts {
    acme: u16,
    management: u16,
    dns: u16,
    dns_management: u16,
}

impl PebblePorts {
    fn new() -> PebblePorts {
        // challtestsrv answers DNS over UDP as well: the port must be free for both.
        let dns = wait_for("a port free for TCP and UDP", || {
            let port = free_port();
            std::net::UdpSocket::bind(("127.0.0.1", port)).ok().map(|_| port)
        });
        PebblePorts { acme: free_port(), management: free_port(), dns, dns_management: free_port() }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme)
    }
}

/// A running pebble and its DNS.
struct Pebble {
    children: Vec<Child>,
    management: u16,
    ca_pem: PathBuf,
    log: PathBuf,
}

impl Pebble {
    /// Starts pebble-challtestsrv (DNS only) and pebble validating on `http_port` (HTTP-01)
    /// and `tls_port` (TLS-ALPN-01); waits until both answer.
    fn start(dir: &Path, ca: &TestCa, p: &PebblePorts, http_port: u16, tls_port: u16) -> Pebble {
        let log = dir.join("pebble.log");
        let out = || std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{}", p.dns_management)])
            .args(["-dns01", &format!("127.0.0.1:{}", p.dns)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap();
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", p.acme),
            "managementListenAddress": format!("127.0.0.1:{}", p.management),
            "certificate": ca.cert, "privateKey": ca.key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", p.dns)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap();
        let mut pb = Pebble { children: vec![dns, pebble], management: p.management, ca_pem: ca.ca_pem.clone(), log };
        for port in [p.acme, p.management, p.dns_management] {
            wait_for("pebble listening", || {
                // A pebble that exited (a port taken meanwhile) will never listen: say why now.
                if let Some(status) = pb.children.iter_mut().find_map(|c| c.try_wait().ok().flatten()) {
                    panic!("pebble or its DNS exited ({status}):\n{}", pb.log());
                }
                TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
            });
        }
        pb
    }

    /// Pebble's root (new at every start), from its management interface.
    fn root_pem(&self) -> String {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let out = curl(&["--cacert", self.ca_pem.to_str().unwrap(), &url]);
        assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server's ACME settings as environment overrides. Retries are an hour apart: the test
/// asks for every attempt itself.
fn acme_env(p: &PebblePorts, ca: &TestCa, challenge: &str, http_listen: Option<SocketAddr>) -> Vec<(String, String)> {
    let mut env = vec![
        ("ACME_DOMAIN", DOMAIN.to_owned()),
        ("ACME_CONTACT", "ops@traffix.test".to_owned()),
        ("ACME_DIRECTORY", p.directory()),
        ("ACME_CA_ROOTS", ca.ca_pem.display().to_string()),
        ("ACME_CHALLENGE", challenge.to_owned()),
        ("ACME_RETRY_SECS", "3600".to_owned()),
        ("ACME_RETRY_MAX_SECS", "3600".to_owned()),
    ];
    if let Some(a) = http_listen {
        env.push(("ACME_HTTP_LISTEN", a.to_string()));
    }
    env.into_iter().map(|(k, v)| (format!("TRAFFIX_TLS__{k}"), v)).collect()
}

/// The chain the web listener serves to a client that asks for `name`, unverified.
fn served_chain(s: &Server, name: &str) -> Vec<Vec<u8>> {
    traffix::tls::install_provider();
    let pin = traffix::tls::parse_pin(&s.pin).unwrap();
    let cfg = Arc::new(traffix::tls::pinned_client_config(pin).unwrap());
    let mut conn = rustls::ClientConnection::new(cfg, name.to_owned().try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(s.web).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap().iter().map(|c| c.to_vec()).collect()
}

/// A TLS handshake with the web listener that trusts only `root_pem` and checks `DOMAIN`:
/// `Ok` when the served chain leads to that root and names the domain.
fn verified_by(s: &Server, root_pem: &str) -> Result<Vec<u8>, rustls::Error> {
    traffix::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), DOMAIN.try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(s.web).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(e
                .into_inner()
                .and_then(|e| e.downcast::<rustls::Error>().ok())
                .map_or(rustls::Error::General("handshake failed".into()), |e| *e));
        }
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

fn status(s: &Server) -> Value {
    s.cli_json(&["tls", "status"])
}

fn renew(s: &Server) -> Value {
    let out = s.cli(&["tls", "renew", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("tls renew: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "tls renew failed: {v}\n{}", String::from_utf8_lossy(&out.stderr));
    v
}

/// A download through the node (SOCKS5), which must work whatever certificate is served.
fn through_node(s: &Server, pass: &str) {
    let url = format!("http://{}/hello", origin().addr);
    let out = curl(&["--proxy", &s.socks_url("rita", pass), &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from origin\n");
}

fn tunnels_up(node: &Node) -> usize {
    node.log().matches("tunnel up").count()
}

/// The self-signed certificate is served while ACME has none, with a loud warning and the
/// error where the operator looks (`tls status`, metrics).
fn assert_self_signed_fallback(s: &Server) {
    wait_for("the first ACME attempt to fail", || s.log().contains("ACME issuance failed").then_some(()));
    assert!(s.log().contains("SELF-SIGNED"), "the warning says what is served: {}", s.log());
    let leaf = &served_chain(s, "localhost")[0];
    assert_eq!(traffix::tls::pin_of_cert(leaf).unwrap(), s.pin);
    let names = traffix::tls::names_of_cert(leaf).unwrap();
    assert_eq!(names.issuer, names.subject, "self-signed");
    let st = status(s);
    assert_eq!(st["source"], "self_signed", "{st}");
    assert_eq!(st["acme"]["failures"], 1, "{st}");
    assert!(st["acme"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
    assert_eq!(s.metric("traffix_tls_certificate_acme"), 0.0);
    assert_eq!(s.metric("traffix_acme_failures_total"), 1.0);
    // The self-signed certificate of `init` runs for decades.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
    assert!(s.metric("traffix_tls_cert_expiry_timestamp_seconds") > now + 10.0 * 365.0 * 86400.0);
}

#[test]
fn http01_certificate_for_the_pinned_key_a_node_stays_connected_and_reconnects_after_a_renewal() {
    if !pebble_installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let ports = PebblePorts::new();
    let http01: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: acme_env(&ports, &ca, "http-01", Some(http01)),
        ..ServerOpts::default()
    });
    assert_self_signed_fallback(&s);

    // A node and a client at work before any certificate is issued.
    let pass = s.add_user("rita", Some("20"));
    s.add_user("otto", None);
    let mut node = s.start_node("otto", "127.0.0.2");
    through_node(&s, &pass);
    assert_eq!(tunnels_up(&node), 1);

    // The HTTP-01 responder answers challenges only, and sends everything else to https.
    let (code, _) = http_get(http01, "/.well-known/acme-challenge/nope").unwrap();
    assert_eq!(code, 404);
    let (code, _) = http_get(http01, "/").unwrap();
    assert_eq!(code, 301);

    let pebble = Pebble::start(work.path(), &ca, &ports, http01.port(), s.web.port());
    let v = renew(&s);
    assert_eq!(v["source"], "acme", "{v}\npebble:\n{}\nserver:\n{}", pebble.log(), s.log());
    assert_eq!(v["dns_names"], serde_json::json!([DOMAIN]));
    assert_eq!(v["pin"], s.pin.as_str(), "the pin never changes");
    assert_eq!(v["acme"]["failures"], 0);
    assert_eq!(v["acme"]["last_error"], Value::Null);
    let root = pebble.root_pem();
    let first = verified_by(&s, &root).expect("the served chain leads to pebble's root");
    assert_eq!(traffix::tls::pin_of_cert(&first).unwrap(), s.pin, "the CA certified the appliance's own key");
    assert_eq!(s.metric("traffix_tls_certificate_acme"), 1.0);
    // The expiry metric follows the swap.
    let not_after = traffix::units::parse_instant(v["not_after"].as_str().unwrap(), 0).unwrap();
    assert_eq!(s.metric("traffix_tls_cert_expiry_timestamp_seconds"), not_after as f64, "{v}");
    let on_disk = std::fs::read(s.data_dir().join("tls/acme-cert.pem")).unwrap();
    assert!(String::from_utf8_lossy(&on_disk).matches("BEGIN CERTIFICATE").count() >= 2, "leaf and intermediate");
    let account = s.data_dir().join("acme/account.json");
    assert_eq!(std::fs::metadata(&account).unwrap().permissions().mode() & 0o777, 0o600);

    // The node's tunnel was not touched by the swap; traffic still flows.
    assert_eq!(tunnels_up(&node), 1, "{}", node.log());
    through_node(&s, &pass);

    // A renewal: a new certificate for the same key, again without touching the tunnel.
    let v = renew(&s);
    assert_eq!(v["source"], "acme", "{v}");
    let second = verified_by(&s, &root).unwrap();
    assert_ne!(second, first, "a new certificate is served");
    assert_eq!(traffix::tls::pin_of_cert(&second).unwrap(), s.pin);
    assert_eq!(tunnels_up(&node), 1, "{}", node.log());

    // The node reconnects (a new TLS handshake, the renewed certificate) and carries traffic.
    node.kill9();
    wait_for("the node offline", || (s.online_count() == 0).then_some(()));
    node.spawn(None);
    s.wait_node_online(&node);
    assert_eq!(tunnels_up(&node), 2, "{}", node.log());
    through_node(&s, &pass);

    // A restart serves the stored certificate at once, without asking the CA.
    let attempts = status(&s)["acme"]["attempts"].clone();
    assert_eq!(s.terminate().code(), Some(0));
    drop(pebble);
    s.spawn();
    assert_eq!(verified_by(&s, &root).unwrap(), second);
    let st = status(&s);
    assert_eq!((st["source"].as_str(), &st["acme"]["attempts"]), (Some("acme"), &attempts), "{st}");
    s.wait_node_online(&node);
}

#[test]
fn tls_alpn01_is_answered_on_the_web_listener_which_goes_on_serving_https() {
    if !pebble_installed() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let ports = PebblePorts::new();
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: acme_env(&ports, &ca, "tls-alpn-01", None),
        ..ServerOpts::default()
    });
    assert_self_signed_fallback(&s);
    // Without an open challenge, a client asking for acme-tls/1 gets no certificate at all.
    traffix::tls::install_provider();
    let mut alpn = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(traffix::tls::PinVerifier::new([0; 32])))
        .with_no_client_auth();
    alpn.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let mut conn = rustls::ClientConnection::new(Arc::new(alpn), DOMAIN.try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(s.web).unwrap();
    let mut failed = false;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "no challenge is open: the acme-tls/1 handshake must fail");

    // pebble's tlsPort is the web listener: TLS-ALPN-01 validation happens there.
    let pebble = Pebble::start(work.path(), &ca, &ports, free_port(), s.web.port());
    let v = renew(&s);
    assert_eq!(v["source"], "acme", "{v}\npebble:\n{}\nserver:\n{}", pebble.log(), s.log());
    assert_eq!(v["acme"]["challenge"], "tls-alpn-01");
    let leaf = verified_by(&s, &pebble.root_pem()).expect("the served chain leads to pebble's root");
    assert_eq!(traffix::tls::pin_of_cert(&leaf).unwrap(), s.pin);
    // Browsers and API clients (ALPN http/1.1) are served as before.
    let url = format!("https://{DOMAIN}:{}/healthz", s.web.port());
    let resolve = format!("{DOMAIN}:{}:127.0.0.1", s.web.port());
    let roots = work.path().join("pebble-root.pem");
    std::fs::write(&roots, pebble.root_pem()).unwrap();
    let out = curl(&["--cacert", roots.to_str().unwrap(), "--resolve", &resolve, &url]);
    assert!(out.status.success(), "curl trusts the issued chain: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
}

#[test]
fn an_unreachable_ca_leaves_the_self_signed_certificate_with_a_warning_and_the_error_shown() {
    // No pebble needed: nothing listens on the directory's port.
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let ports = PebblePorts::new();
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: acme_env(&ports, &ca, "tls-alpn-01", None),
        ..ServerOpts::default()
    });
    assert_self_signed_fallback(&s);
    let st = status(&s);
    let err = st["acme"]["last_error"].as_str().unwrap();
    assert!(err.contains(&ports.directory()), "the error names the directory: {err}");
    // The dashboard keeps working over the self-signed certificate (nodes never noticed).
    let out = curl(&["-k", &format!("https://127.0.0.1:{}/healthz", s.web.port())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The dashboard's settings show it; its "Renew now" (the API) tries again and says why not.
    let base = format!("https://127.0.0.1:{}/api/v1", s.web.port());
    let call = |method: &str, path: &str, token: Option<&str>, body: &str| -> Value {
        let auth = token.map(|t| format!("Authorization: Bearer {t}")).unwrap_or_else(|| "X-None: 1".into());
        let url = format!("{base}{path}");
        let out = curl(&["-k", "-X", method, "-H", "Content-Type: application/json", "-H", &auth, "-d", body, &url]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{method} {path}: {out:?}"))
    };
    let login = serde_json::json!({"username": "admin", "password": s.admin_password}).to_string();
    let token = call("POST", "/auth/login", None, &login)["access_token"].as_str().unwrap().to_owned();
    let cert = &call("GET", "/admin/settings", Some(&token), "")["certificate"];
    assert_eq!((cert["source"].as_str(), cert["pin"].as_str()), (Some("self_signed"), Some(s.pin.as_str())), "{cert}");
    assert_eq!(cert["acme"]["domain"], DOMAIN, "{cert}");
    let again = call("POST", "/admin/tls/renew", Some(&token), "{}");
    assert_eq!(
        (again["source"].as_str(), again["acme"]["failures"].as_u64()),
        (Some("self_signed"), Some(2)),
        "{again}"
    );

    // A renewal asked for by hand fails the same way, and says so.
    let out = s.cli(&["tls", "renew"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the ACME attempt failed"), "{out:?}");
    // doctor names the state (it reads the files the server keeps, with the same config).
    let out = Command::new(BIN)
        .args(["doctor", "--json", "--data-dir"])
        .arg(s.data_dir())
        .envs(acme_env(&ports, &ca, "tls-alpn-01", None))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let acme = report["checks"].as_array().unwrap().iter().find(|c| c["check"] == "acme").cloned();
    let acme = acme.unwrap_or_else(|| panic!("doctor has an acme check: {report}"));
    assert_eq!(acme["status"], "warning", "{acme}");
    assert!(acme["message"].as_str().unwrap().contains("self-signed"), "{acme}");
}

use std::os::unix::fs::PermissionsExt;
