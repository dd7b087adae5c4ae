//! Test chains with the real Key Attestation layout: a test root, an intermediate (the
//! "attestation key") and a leaf carrying a hand-encoded `KeyDescription` for the device key.
//! Shared by the unit tests of `trust` and the end-to-end tests (`tests/common`, included by
//! path), so it names nothing of the crate: only rcgen.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    SerialNumber, date_time_ymd,
};

/// The Key Attestation extension's OID as rcgen wants it.
pub const ATTEST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

/// What the leaf's KeyDescription says.
#[derive(Debug, Clone)]
pub struct Attest {
    /// 0 Software, 1 TrustedEnvironment, 2 StrongBox.
    pub security_level: u8,
    pub challenge: Vec<u8>,
    pub device_locked: bool,
    /// 0 Verified, 1 SelfSigned, 2 Unverified, 3 Failed.
    pub boot_state: u8,
    pub packages: Vec<String>,
    pub signature_digests: Vec<Vec<u8>>,
    /// Put the root of trust in hardwareEnforced (else in softwareEnforced).
    pub root_of_trust_in_hardware: bool,
    /// Leave the extension out of the leaf altogether.
    pub omit_extension: bool,
}

impl Attest {
    /// A StrongBox key on a locked, verified phone, for `challenge` and the app `package`.
    pub fn good(challenge: &[u8], package: &str, digest: &[u8]) -> Attest {
        Attest {
            security_level: 2,
            challenge: challenge.to_vec(),
            device_locked: true,
            boot_state: 0,
            packages: vec![package.to_owned()],
            signature_digests: vec![digest.to_vec()],
            root_of_trust_in_hardware: true,
            omit_extension: false,
        }
    }
}

/// One DER element: `tag` (its identifier octets) and `content`.
pub fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int(v: u8) -> Vec<u8> {
    if v < 0x80 { tlv(&[0x02], &[v]) } else { tlv(&[0x02], &[0, v]) }
}

fn enumerated(v: u8) -> Vec<u8> {
    tlv(&[0x0a], &[v])
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(&[0x30], &parts.concat())
}

/// The DER of a KeyDescription (attestation version 300, KeyMint 300).
pub fn key_description(a: &Attest) -> Vec<u8> {
    let root_of_trust = seq(&[
        tlv(&[0x04], &[0xaa; 32]),
        tlv(&[0x01], &[if a.device_locked { 0xff } else { 0x00 }]),
        enumerated(a.boot_state),
        tlv(&[0x04], &[0xbb; 32]),
    ]);
    // [704] EXPLICIT: bf 85 40; [709] EXPLICIT: bf 85 45; [702] origin (an INTEGER) before them.
    let rot = tlv(&[0xbf, 0x85, 0x40], &root_of_trust);
    let infos: Vec<Vec<u8>> = a.packages.iter().map(|p| seq(&[tlv(&[0x04], p.as_bytes()), int(7)])).collect();
    let digests: Vec<Vec<u8>> = a.signature_digests.iter().map(|d| tlv(&[0x04], d)).collect();
    let app_id = seq(&[tlv(&[0x31], &infos.concat()), tlv(&[0x31], &digests.concat())]);
    let app = tlv(&[0xbf, 0x85, 0x45], &tlv(&[0x04], &app_id));
    let origin = tlv(&[0xbf, 0x85, 0x3e], &int(0));
    let (software, hardware) = if a.root_of_trust_in_hardware {
        (seq(&[app]), seq(&[origin, rot]))
    } else {
        (seq(&[rot, app]), seq(&[origin]))
    };
    seq(&[
        tlv(&[0x02], &[0x01, 0x2c]),
        enumerated(a.security_level),
        tlv(&[0x02], &[0x01, 0x2c]),
        enumerated(a.security_level),
        tlv(&[0x04], &a.challenge),
        tlv(&[0x04], &[]),
        software,
        hardware,
    ])
}

/// A test root CA (ECDSA P-256), standing in for Google's.
pub struct TestRoot {
    pub key: KeyPair,
    pub params: CertificateParams,
    pub der: Vec<u8>,
}

fn ca_params(name: &str, serial: &[u8], from: (i32, u8, u8), to: (i32, u8, u8)) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.serial_number = Some(SerialNumber::from(serial.to_vec()));
    p.not_before = date_time_ymd(from.0, from.1, from.2);
    p.not_after = date_time_ymd(to.0, to.1, to.2);
    p
}

impl TestRoot {
    pub fn new(name: &str) -> TestRoot {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = ca_params(name, &[0x01, 0x23], (2020, 1, 1), (2045, 1, 1));
        let der = params.self_signed(&key).expect("root").der().to_vec();
        TestRoot { key, params, der }
    }

    pub fn pem(&self) -> String {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.der);
        let lines: Vec<&str> =
            b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
    }
}

/// How the chain's certificates are dated and numbered.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub attest: Attest,
    pub leaf_from: (i32, u8, u8),
    pub leaf_to: (i32, u8, u8),
    pub intermediate_from: (i32, u8, u8),
    pub intermediate_to: (i32, u8, u8),
    pub intermediate_serial: Vec<u8>,
    /// The intermediate says it is not a CA (basicConstraints CA false).
    pub intermediate_not_ca: bool,
}

impl ChainSpec {
    pub fn new(attest: Attest) -> ChainSpec {
        ChainSpec {
            attest,
            leaf_from: (2026, 1, 1),
            leaf_to: (2036, 1, 1),
            intermediate_from: (2024, 1, 1),
            intermediate_to: (2034, 1, 1),
            intermediate_serial: vec![0x2c, 0x8c, 0xdd, 0xdf],
            intermediate_not_ca: false,
        }
    }
}

/// A fresh intermediate ("attestation") key; pass the same one to chains of many devices to
/// model a shared factory key.
pub fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

/// `[leaf, intermediate, root]` DER: the leaf certifies `device`'s public key.
pub fn chain(root: &TestRoot, intermediate: &KeyPair, device: &KeyPair, spec: &ChainSpec) -> Vec<Vec<u8>> {
    let root_issuer = Issuer::from_params(&root.params, &root.key);
    let mut ip =
        ca_params("Test Attestation Key", &spec.intermediate_serial, spec.intermediate_from, spec.intermediate_to);
    if spec.intermediate_not_ca {
        ip.is_ca = IsCa::ExplicitNoCa;
    }
    let inter_der = ip.signed_by(intermediate, &root_issuer).expect("intermediate").der().to_vec();
    let inter_issuer = Issuer::from_params(&ip, intermediate);
    let mut lp = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Android Keystore Key");
    lp.distinguished_name = dn;
    lp.serial_number = Some(SerialNumber::from(vec![0x01]));
    lp.not_before = date_time_ymd(spec.leaf_from.0, spec.leaf_from.1, spec.leaf_from.2);
    lp.not_after = date_time_ymd(spec.leaf_to.0, spec.leaf_to.1, spec.leaf_to.2);
    if !spec.attest.omit_extension {
        lp.custom_extensions.push(CustomExtension::from_oid_content(ATTEST_OID, key_description(&spec.attest)));
    }
    let leaf_der = lp.signed_by(device, &inter_issuer).expect("leaf").der().to_vec();
    vec![leaf_der, inter_der, root.der.clone()]
}

/// A made-up leaf for `device`, signed by the genuine leaf's key `signer` (an attested key
/// with PURPOSE_SIGN), carrying `attest`: prepended to a genuine chain it must not pass.
pub fn forged_leaf(signer: &KeyPair, genuine_leaf_params_name: &str, device: &KeyPair, attest: &Attest) -> Vec<u8> {
    let mut sp = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, genuine_leaf_params_name);
    sp.distinguished_name = dn;
    let issuer = Issuer::from_params(&sp, signer);
    let mut lp = CertificateParams::new(Vec::<String>::new()).expect("params");
    lp.not_before = date_time_ymd(2026, 1, 1);
    lp.not_after = date_time_ymd(2036, 1, 1);
    lp.custom_extensions.push(CustomExtension::from_oid_content(ATTEST_OID, key_description(attest)));
    lp.signed_by(device, &issuer).expect("forged leaf").der().to_vec()
}

/// The 65-byte uncompressed point of a P-256 key pair (PAIR's public key).
pub fn device_point(device: &KeyPair) -> Vec<u8> {
    device.public_key_raw().to_vec()
}
