//! Device trust end to end (docs/trust.md): phones pairing over the real tunnel with Key
//! Attestation chains under a test root get the level their chain deserves, the CLI and API
//! show it, `trust.require` refuses weaker pairings (leaving the code usable) and filters
//! routing, and the `trust` username option asks for a level.

use traffix::identity::{KeyAlg, attestation_challenge, challenge_message, device_id};
use traffix::node::state::PairLink;
use traffix::tunnel::protocol::{ErrorCode, Frame, Hello, Pair};

use crate::common::attest::{Attest, ChainSpec, TestRoot, chain, device_point, new_key};
use crate::common::*;

const PACKAGE: &str = "net.traffix.node";
const DIGEST: [u8; 32] = [0x5a; 32];

/// A phone: a P-256 device key in "secure hardware" and the attestation chain it sends.
struct Phone {
    key: rcgen::KeyPair,
}

impl Phone {
    fn new() -> Phone {
        Phone { key: new_key() }
    }

    /// Pairs over a raw tunnel with `link`, sending the chain `make` builds for the attestation
    /// challenge; returns the server's answer (WELCOME or ERROR).
    fn pair(&self, s: &Server, link: &str, make: impl FnOnce(&[u8; 32], &rcgen::KeyPair) -> Vec<Vec<u8>>) -> Frame {
        let link = PairLink::parse(link).unwrap();
        let mut ws = Ws::tunnel(s, "127.0.0.1");
        ws.send_frame(&Frame::Hello(Hello { min_version: 1, max_version: 1, ..Hello::default() })).unwrap();
        let Some(Frame::Challenge(c)) = ws.next_frame() else { panic!("no CHALLENGE") };
        let public_key = device_point(&self.key);
        let id = device_id(KeyAlg::EcdsaP256, &public_key);
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key.serialize_der(),
            &rng,
        )
        .unwrap();
        let signature = signer.sign(&rng, &challenge_message(&link.pin, &id, &c.nonce)).unwrap().as_ref().to_vec();
        let attestation = make(&attestation_challenge(&link.pin, &link.code), &self.key);
        ws.send_frame(&Frame::Pair(Box::new(Pair {
            code: link.code.clone(),
            key_alg: KeyAlg::EcdsaP256,
            public_key,
            nonce: c.nonce,
            signature,
            model: Some("Pixel Test".into()),
            os: Some("Android 16".into()),
            app_version: Some("1.0".into()),
            attestation,
            hints: vec!["test-hint".into()],
        })))
        .unwrap();
        ws.next_frame().expect("an answer to PAIR")
    }

    fn hex_id(&self) -> String {
        hex::encode(device_id(KeyAlg::EcdsaP256, &device_point(&self.key)))
    }
}

fn device(s: &Server, id: &str) -> serde_json::Value {
    s.devices().into_iter().find(|d| d["id"] == id).unwrap_or_else(|| panic!("no device {id}"))
}

/// Fetches the origin through the HTTP proxy as `user`: (status, body).
fn fetch(s: &Server, user: &str, pass: &str) -> (String, String) {
    let out =
        curl(&["-x", &s.http_proxy_url(user, pass), "-w", "\n%{http_code}", &format!("http://{}/ip", origin().addr)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[test]
fn phones_get_the_trust_their_chain_deserves_and_require_refuses_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let root = TestRoot::new("Test Attestation Root");
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, root.pem()).unwrap();
    let mut s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_TRUST__ROOTS".into(), roots.display().to_string()),
            ("TRAFFIX_TRUST__SIGNING_DIGESTS".into(), format!("[\"{}\"]", hex::encode(DIGEST))),
            ("TRAFFIX_TRUST__SHARED_KEY_ACCOUNTS".into(), "1".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("alice", Some("10"));
    s.add_user("bob", None);
    s.add_user("carol", None);
    let factory = new_key();
    let good = |challenge: &[u8; 32], key: &rcgen::KeyPair| {
        chain(&root, &factory, key, &ChainSpec::new(Attest::good(challenge, PACKAGE, &DIGEST)))
    };

    // A StrongBox phone with a good chain: hardware.
    let hw = Phone::new();
    assert!(matches!(hw.pair(&s, &s.pair_link("bob"), good), Frame::Welcome(_)));
    let d = device(&s, &hw.hex_id());
    assert_eq!((d["trust"].as_str(), d["security_level"].as_str()), (Some("hardware"), Some("strongbox")), "{d}");
    assert_eq!(d["trust_reasons"], serde_json::json!([]));
    assert_eq!(d["emulator_hints"], serde_json::json!(["test-hint"]), "the admin sees the app's hints");

    // A software-level key: paired (nothing is required yet), software with its reason.
    let sw = Phone::new();
    let software = |challenge: &[u8; 32], key: &rcgen::KeyPair| {
        let mut a = Attest::good(challenge, PACKAGE, &DIGEST);
        a.security_level = 0;
        chain(&root, &new_key(), key, &ChainSpec::new(a))
    };
    assert!(matches!(sw.pair(&s, &s.pair_link("bob"), software), Frame::Welcome(_)));
    let d = device(&s, &sw.hex_id());
    assert_eq!(d["trust"], "software", "{d}");
    assert!(d["trust_reasons"][0].as_str().unwrap().contains("attested by software"), "{d}");

    // A chain made for another pairing code (a replayed chain): software, and it says so.
    let replay = Phone::new();
    let other_code = attestation_challenge(&PairLink::parse(&s.pair_link("bob")).unwrap().pin, "SOMEOTHERCODE");
    let replayed = |_: &[u8; 32], key: &rcgen::KeyPair| good(&other_code, key);
    assert!(matches!(replay.pair(&s, &s.pair_link("bob"), replayed), Frame::Welcome(_)));
    let d = device(&s, &replay.hex_id());
    assert!(d["trust_reasons"][0].as_str().unwrap().contains("not this pairing's"), "{d}");

    // The same factory key on a second account is flagged, for the admin only.
    let hw2 = Phone::new();
    assert!(matches!(hw2.pair(&s, &s.pair_link("carol"), good), Frame::Welcome(_)));
    let d = device(&s, &hw2.hex_id());
    assert_eq!((d["attestation_key_accounts"].as_u64(), d["shared_attestation_key"].as_bool()), (Some(2), Some(true)));
    let table = String::from_utf8(s.cli(&["device", "list"]).stdout).unwrap();
    assert!(table.contains("hardware (shared key)"), "{table}");

    // A Linux node has no chain: none. It carries traffic until a level is asked for.
    let node = s.start_node("bob", "127.0.0.2");
    let d = s.devices().into_iter().find(|d| d["vip"] == node.vip.as_str()).unwrap();
    assert_eq!((d["trust"].as_str(), d["trust_reasons"].clone()), (Some("none"), serde_json::json!([])));
    assert_eq!(fetch(&s, "alice", &pass).0, "200");
    let (code, body) = fetch(&s, "alice-trust-hardware", &pass);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("device trust hardware"), "{body}");
    assert!(s.metrics_text().contains("traffix_trust_verdicts_total{level=\"hardware\"} 2"));

    // The operator now requires hardware: the old node reconnects but carries nothing.
    s.terminate();
    s.opts.env.push(("TRAFFIX_TRUST__REQUIRE".into(), "hardware".into()));
    s.spawn();
    wait_for("the none-level node back online", || {
        s.devices().iter().any(|d| d["vip"] == node.vip.as_str() && d["online"] == true).then_some(())
    });
    let (code, body) = fetch(&s, "alice", &pass);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("device trust hardware"), "{body}");

    // Weaker pairings are refused with the reason; the code stays usable for a good phone.
    let link = s.pair_link("bob");
    match Phone::new().pair(&s, &link, software) {
        Frame::Error { code: ErrorCode::AuthFailed, message } => {
            assert!(message.contains("requires device trust hardware") && message.contains("software"), "{message}")
        }
        other => panic!("expected ERROR auth_failed, got {other:?}"),
    }
    let late = Phone::new();
    assert!(matches!(late.pair(&s, &link, good), Frame::Welcome(_)), "the code survived the refusal");
    assert_eq!(device(&s, &late.hex_id())["trust"], "hardware");
    let mut linux = Node {
        child: None,
        state: s.data_dir().join("node-refused.json"),
        bind: "127.0.0.3".into(),
        vip: String::new(),
        log: s.data_dir().join("node-refused.log"),
    };
    linux.spawn(Some(&s.pair_link("bob")));
    wait_for("the Linux node refused", || linux.log().contains("requires device trust hardware").then_some(()));
}
