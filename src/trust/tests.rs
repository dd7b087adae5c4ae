//! Unit tests of device trust: chains with the real Key Attestation layout under a test root,
//! one broken property at a time, and malformed or hostile DER.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::testkit::{Attest, ChainSpec, TestRoot, chain, device_point, key_description, new_key, tlv};
use super::*;

const PACKAGE: &str = "net.traffix.node";
const DIGEST: [u8; 32] = [0x5a; 32];
/// 2027-01-01T00:00:00Z: inside every default test validity.
const NOW: i64 = 1_798_761_600;

struct Fixture {
    root: TestRoot,
    inter: rcgen::KeyPair,
    device: rcgen::KeyPair,
    challenge: [u8; 32],
    policy: Policy,
}

fn fixture() -> Fixture {
    let root = TestRoot::new("Test Attestation Root");
    let challenge = crate::identity::attestation_challenge(&[7; 32], "PAIRCODE");
    let policy = Policy {
        root_keys: root_keys_from_pem(&root.pem()).expect("test root"),
        revoked: BTreeMap::new(),
        packages: vec![PACKAGE.into()],
        signing_digests: [DIGEST.to_vec()].into_iter().collect(),
    };
    Fixture { root, inter: new_key(), device: new_key(), challenge, policy }
}

impl Fixture {
    fn good(&self) -> ChainSpec {
        ChainSpec::new(Attest::good(&self.challenge, PACKAGE, &DIGEST))
    }

    fn verify(&self, spec: &ChainSpec) -> Verdict {
        let c = chain(&self.root, &self.inter, &self.device, spec);
        verify(&c, &self.challenge, &device_point(&self.device), &self.policy, NOW)
    }

    /// The chain built from `spec` is `software` with exactly one reason containing `want`.
    fn one_reason(&self, spec: &ChainSpec, want: &str) {
        let v = self.verify(spec);
        assert_eq!(v.level, Level::Software, "{want}: {v:?}");
        assert_eq!(v.reasons.len(), 1, "{want}: {:?}", v.reasons);
        assert!(v.reasons[0].contains(want), "{want}: {:?}", v.reasons);
    }
}

#[test]
fn a_good_chain_is_hardware() {
    let f = fixture();
    let v = f.verify(&f.good());
    assert_eq!(v.level, Level::Hardware, "{:?}", v.reasons);
    assert!(v.reasons.is_empty());
    assert_eq!(v.security_level.as_deref(), Some("strongbox"));
    let c = chain(&f.root, &f.inter, &f.device, &f.good());
    let (_, inter) = X509Certificate::from_der(&c[1]).expect("intermediate");
    assert_eq!(v.attestation_key, Some(sha256_hex(inter.public_key().raw)));
    // A TEE key is hardware too.
    let mut tee = f.good();
    tee.attest.security_level = 1;
    let v = f.verify(&tee);
    assert_eq!((v.level, v.security_level.as_deref()), (Level::Hardware, Some("tee")));
    // Without its root (phones may send it or not) the chain still reaches the trusted key.
    let c = chain(&f.root, &f.inter, &f.device, &f.good());
    assert_eq!(verify(&c[..2], &f.challenge, &device_point(&f.device), &f.policy, NOW).level, Level::Hardware);
}

#[test]
fn no_chain_is_none() {
    let f = fixture();
    assert_eq!(verify(&[], &f.challenge, &device_point(&f.device), &f.policy, NOW), Verdict::default());
}

#[test]
fn each_broken_property_has_its_reason() {
    let f = fixture();
    let mut s = f.good();
    s.attest.security_level = 0;
    f.one_reason(&s, "attested by software");

    let mut s = f.good();
    s.attest.device_locked = false;
    f.one_reason(&s, "bootloader is unlocked");

    let mut s = f.good();
    s.attest.boot_state = 2;
    f.one_reason(&s, "verified boot state is unverified");

    let mut s = f.good();
    s.attest.root_of_trust_in_hardware = false;
    f.one_reason(&s, "no hardware-enforced root of trust");

    let mut s = f.good();
    s.attest.challenge = crate::identity::attestation_challenge(&[7; 32], "OTHERCODE").to_vec();
    f.one_reason(&s, "challenge is not this pairing's");

    let mut s = f.good();
    s.attest.packages = vec!["com.example.fake".into()];
    f.one_reason(&s, "package \"com.example.fake\"");

    let mut s = f.good();
    s.attest.signature_digests = vec![vec![0x11; 32]];
    f.one_reason(&s, "signing certificate");

    let mut s = f.good();
    s.attest.omit_extension = true;
    f.one_reason(&s, "no Key Attestation extension");

    let mut s = f.good();
    s.leaf_to = (2026, 6, 1);
    f.one_reason(&s, "certificate 0 expired");

    let mut s = f.good();
    s.intermediate_from = (2028, 1, 1);
    f.one_reason(&s, "certificate 1 is not valid before");
}

#[test]
fn revoked_certificates_are_named() {
    let mut f = fixture();
    let json = r#"{"entries": {"2C8CDDDF": {"status": "REVOKED", "reason": "KEY_COMPROMISE"},
                   "00ff": {"status": "SUSPENDED"}, "abc": {"status": "UNKNOWN_STATUS"}}}"#;
    f.policy.revoked = revocations_from_json(json, 100).expect("list");
    assert_eq!(f.policy.revoked.get("ff").map(String::as_str), Some("suspended"));
    assert!(!f.policy.revoked.contains_key("abc"));
    f.one_reason(&f.good(), "certificate 1 (serial 2c8cdddf) is on the revocation list: revoked (key_compromise)");
    assert!(revocations_from_json("{\"entries\": {\"zz\": {\"status\": \"REVOKED\"}}}", 10).is_err());
    assert!(revocations_from_json("[]", 10).is_err());
    let big = format!(
        "{{\"entries\": {{{}}}}}",
        (0..11).map(|i| format!("\"{i:x}\": {{\"status\": \"REVOKED\"}}")).collect::<Vec<_>>().join(",")
    );
    assert!(revocations_from_json(&big, 10).unwrap_err().to_string().contains("max_revocation_entries"));
}

#[test]
fn a_chain_that_misses_the_roots_says_how() {
    let f = fixture();
    // Another root, self-signed but not in the set (an emulator's software root).
    let other = TestRoot::new("Software Attestation Root");
    let c = chain(&other, &new_key(), &f.device, &f.good());
    let v = verify(&c, &f.challenge, &device_point(&f.device), &f.policy, NOW);
    assert_eq!(v.level, Level::Software);
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(v.reasons[0].contains("not in the trusted set"), "{:?}", v.reasons);

    // Cut short: the intermediate of another root, without that root.
    let v = verify(&c[..2], &f.challenge, &device_point(&f.device), &f.policy, NOW);
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(v.reasons[0].contains("does not reach a root"), "{:?}", v.reasons);

    // A chain whose links do not sign each other: our leaf, a stranger's intermediate.
    let good = chain(&f.root, &f.inter, &f.device, &f.good());
    let mixed = vec![good[0].clone(), c[1].clone(), good[2].clone()];
    let v = verify(&mixed, &f.challenge, &device_point(&f.device), &f.policy, NOW);
    assert!(v.reasons.iter().any(|r| r.contains("certificate 0 is not signed by certificate 1")), "{:?}", v.reasons);
    assert!(v.reasons.iter().any(|r| r.contains("certificate 1 is not signed by certificate 2")), "{:?}", v.reasons);
    assert_eq!(v.attestation_key, None, "a leaf the intermediate did not sign names no attestation key");

    // The Google default set does not trust the test root.
    let google = Policy { root_keys: root_keys_from_pem(GOOGLE_ROOTS_PEM).expect("bundled"), ..f.policy.clone() };
    assert_eq!(google.root_keys.len(), 2);
    let v = verify(&good, &f.challenge, &device_point(&f.device), &google, NOW);
    assert!(v.reasons.iter().any(|r| r.contains("not in the trusted set")), "{:?}", v.reasons);
}

#[test]
fn a_chain_extended_below_a_genuine_leaf_is_refused() {
    let f = fixture();
    // A real phone's hardware key (f.device) with a genuine chain made for another challenge…
    let mut old = f.good();
    old.attest.challenge = vec![0; 32];
    let genuine = chain(&f.root, &f.inter, &f.device, &old);
    // …signs a made-up leaf for an emulator's key, claiming this pairing's challenge.
    let emulator = new_key();
    let forged = super::testkit::forged_leaf(&f.device, "Android Keystore Key", &emulator, &f.good().attest);
    let c: Vec<Vec<u8>> = std::iter::once(forged).chain(genuine).collect();
    let v = verify(&c, &f.challenge, &device_point(&emulator), &f.policy, NOW);
    assert_eq!(v.level, Level::Software);
    // Every signature links and every claim holds: the extension in certificate 1 is all that
    // gives it away.
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(v.reasons[0].contains("certificate 1 is not the leaf"), "{:?}", v.reasons);
}

#[test]
fn an_intermediate_that_is_not_a_ca_is_refused() {
    let f = fixture();
    f.one_reason(&ChainSpec { intermediate_not_ca: true, ..f.good() }, "certificate 1 signs another but is not a CA");
}

#[test]
fn another_device_key_is_refused() {
    let f = fixture();
    let c = chain(&f.root, &f.inter, &f.device, &f.good());
    let v = verify(&c, &f.challenge, &device_point(&new_key()), &f.policy, NOW);
    assert_eq!(v.reasons, vec!["the attested key is not the device key sent in PAIR".to_string()]);
}

#[test]
fn app_checks_are_off_when_not_configured() {
    let mut f = fixture();
    f.policy.packages.clear();
    f.policy.signing_digests.clear();
    let mut s = f.good();
    s.attest.packages = vec!["anything".into()];
    s.attest.signature_digests.clear();
    assert_eq!(f.verify(&s).level, Level::Hardware);
}

#[test]
fn malformed_and_hostile_input_gives_reasons_not_panics() {
    let f = fixture();
    let key = device_point(&f.device);
    let good = chain(&f.root, &f.inter, &f.device, &f.good());
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![vec![]], "not valid DER"),
        (vec![vec![0x30, 0x80, 0, 0]], "not valid DER"),
        (vec![good[0][..good[0].len() / 2].to_vec()], "not valid DER"),
        (vec![[good[0].clone(), vec![0]].concat()], "trailing bytes"),
        (vec![vec![0x30; MAX_CERT_BYTES + 1]], "more than"),
        (vec![good[0].clone(); MAX_CHAIN + 1], "more than 8"),
    ];
    for (c, want) in cases {
        let v = verify(&c, &f.challenge, &key, &f.policy, NOW);
        assert_eq!(v.level, Level::Software);
        assert!(v.reasons.iter().any(|r| r.contains(want)), "{want}: {:?}", v.reasons);
    }
    // Every truncation and every single-byte flip of a real chain's leaf: never a panic, never
    // hardware.
    for cut in (0..good[0].len()).step_by(7) {
        let c = vec![good[0][..cut].to_vec(), good[1].clone(), good[2].clone()];
        assert_ne!(verify(&c, &f.challenge, &key, &f.policy, NOW).level, Level::Hardware);
    }
    // Flips inside the signed part (the TBSCertificate): a lenient reader of the unsigned outer
    // framing is harmless, a change to what is signed never passes.
    let (_, leaf) = X509Certificate::from_der(&good[0]).expect("leaf");
    let tbs_len = leaf.tbs_certificate.as_ref().len();
    let tbs_at = good[0].windows(tbs_len).position(|w| w == leaf.tbs_certificate.as_ref()).expect("tbs");
    for at in (tbs_at..tbs_at + tbs_len).step_by(3) {
        let mut leaf = good[0].clone();
        leaf[at] ^= 0x41;
        let c = vec![leaf, good[1].clone(), good[2].clone()];
        let v = verify(&c, &f.challenge, &key, &f.policy, NOW);
        assert_ne!(v.level, Level::Hardware, "flip at {at}");
    }
}

#[test]
fn key_descriptions_parse_strictly() {
    let challenge = [9u8; 32];
    let good = key_description(&Attest::good(&challenge, PACKAGE, &DIGEST));
    let d = key_description::parse(&good).expect("valid");
    assert_eq!(d.attestation_version, 300);
    assert_eq!(d.attestation_security_level, key_description::SecurityLevel::StrongBox);
    assert_eq!(d.challenge, challenge);
    assert_eq!(
        d.root_of_trust,
        Some(key_description::RootOfTrust { device_locked: true, boot_state: key_description::BootState::Verified })
    );
    let app = d.application.expect("app id");
    assert_eq!((app.packages, app.signature_digests), (vec![PACKAGE.to_string()], vec![DIGEST.to_vec()]));
    // Truncations and trailing bytes are refused with the field they broke in.
    for cut in 0..good.len() {
        assert!(key_description::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
    let e = key_description::parse(&[good.clone(), vec![0]].concat()).unwrap_err();
    assert!(e.to_string().starts_with("KeyDescription"), "{e}");
    // An unknown security level, out-of-order tags.
    let mut a = Attest::good(&challenge, PACKAGE, &DIGEST);
    a.security_level = 7;
    assert!(key_description::parse(&key_description(&a)).unwrap_err().to_string().contains("unknown security level"));
    let twice = [tlv(&[0xbf, 0x85, 0x41], &[0x02, 0x01, 0x00]), tlv(&[0xbf, 0x85, 0x41], &[0x02, 0x01, 0x00])];
    let rot_twice = tlv(&[0x30], &twice.concat());
    let list = [
        tlv(&[0x02], &[3]),
        tlv(&[0x0a], &[1]),
        tlv(&[0x02], &[3]),
        tlv(&[0x0a], &[1]),
        tlv(&[0x04], &[]),
        tlv(&[0x04], &[]),
        tlv(&[0x30], &[]),
        rot_twice,
    ]
    .concat();
    let e = key_description::parse(&tlv(&[0x30], &list)).unwrap_err();
    assert!(e.to_string().contains("out of order or repeated"), "{e}");
}

#[test]
fn root_sets_load_from_pem() {
    assert!(root_keys_from_pem("").is_err());
    assert!(root_keys_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    let keys = root_keys_from_pem(GOOGLE_ROOTS_PEM).expect("bundled roots");
    assert_eq!(keys.len(), 2, "the RSA root and Key Attestation CA1");
}

#[test]
fn the_fuzz_seed_key_description_is_a_valid_one() {
    // fuzz/make_seeds.py writes it by hand, byte for byte like `testkit::key_description`.
    let seed = include_bytes!("../../fuzz/seeds/attestation/key_description");
    let d = key_description::parse(&seed[1..]).expect("seed parses");
    assert_eq!(d, key_description::parse(&key_description(&Attest::good(&[7; 32], PACKAGE, &DIGEST))).expect("kit"));
}

#[test]
fn sha1_signatures_are_refused() {
    // Made once with openssl: an RSA root (SHA-256, the anchor) and a certificate it signed
    // with SHA-1 (`openssl x509 -req … -sha1`).
    let leaf = include_bytes!("../../tests/fixtures/trust/sha1-signed-leaf.der").to_vec();
    let root = include_bytes!("../../tests/fixtures/trust/sha1-test-root.der").to_vec();
    let (_, r) = X509Certificate::from_der(&root).expect("root");
    let policy = Policy { root_keys: vec![r.public_key().raw.to_vec()], ..Policy::default() };
    let v = verify(&[leaf, root], &[0; 32], &[4; 65], &policy, NOW);
    assert!(v.reasons.iter().any(|r| r == "certificate 0 is signed with SHA-1"), "{:?}", v.reasons);
    assert!(!v.reasons.iter().any(|r| r.contains("certificate 1")), "the anchor's own signature is not judged");
}
