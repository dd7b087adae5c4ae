//! TLS: the appliance's self-signed certificate, its pin, the TLS 1.3-only server config, and
//! the node's pin-checking client config.
//!
//! The pin is the lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo, so
//! renewing the certificate with the same key keeps every paired node working. The node trusts
//! exactly the pinned key: a self-signed certificate never passes a platform trust store.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds no {what}")]
    Missing { path: String, what: &'static str },
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(&'static str),
    #[error("generating the certificate failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The process-wide crypto provider: ring, with its cipher suites in the order this project
/// prefers. Installed first thing in `main` and in tests.
///
/// ring lists AES-256-GCM first; here AES-128-GCM comes first in each protocol version, as in
/// Go's and BoringSSL's defaults: 128-bit security, and 10 AES rounds per block instead of 14,
/// which a tunnel pays on every byte twice (docs/benchmarks.md). ChaCha20-Poly1305 stays last:
/// a server follows the client's order, so a phone without AES instructions that lists ChaCha20
/// first gets it.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// Installs [`provider`] as the process default; harmless if one is installed already.
pub fn install_provider() {
    let _ = Arc::unwrap_or_clone(provider()).install_default();
}

/// A client config for HTTPS to public services (ACME CAs, GeoIP sources, payment APIs): the
/// web PKI roots plus `extra` (a test CA), HTTP/1.1 over ALPN, the one crypto provider.
pub fn public_client_config(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in extra {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A freshly generated certificate and key, PEM-encoded, with its pin.
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
    pub pin: String,
}

/// Generates a self-signed ECDSA P-256 certificate for `names` (DNS names or IP literals).
pub fn generate_self_signed(names: &[String]) -> Result<Generated, TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_else(|| "traffix".into()));
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
    let pin = pin_of_cert(cert.der())?;
    Ok(Generated { cert_pem: cert.pem(), key_pem: key.serialize_pem(), pin })
}

/// Reads one DER TLV at the start of `b`: (tag, whole TLV length, content range start).
fn der_tlv(b: &[u8]) -> Result<(u8, usize, usize), TlsError> {
    let bad = TlsError::BadCertificate;
    let tag = *b.first().ok_or(bad("empty"))?;
    let l0 = *b.get(1).ok_or(bad("truncated length"))?;
    let (len, hdr) = if l0 < 0x80 {
        (l0 as usize, 2)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(bad("unsupported length form"));
        }
        let bytes = b.get(2..2 + n).ok_or(bad("truncated length"))?;
        (bytes.iter().fold(0usize, |acc, &x| (acc << 8) | x as usize), 2 + n)
    };
    let total = hdr.checked_add(len).ok_or(bad("length overflow"))?;
    if total > b.len() {
        return Err(bad("truncated value"));
    }
    Ok((tag, total, hdr))
}

/// The tbsCertificate's fields from the `skip`-th one on (after the optional version [0]:
/// serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …).
fn tbs_fields_from(cert: &[u8], skip: usize) -> Result<&[u8], TlsError> {
    let bad = TlsError::BadCertificate;
    let (tag, total, hdr) = der_tlv(cert)?;
    if tag != 0x30 {
        return Err(bad("certificate is not a SEQUENCE"));
    }
    let cert = &cert[hdr..total];
    let (tag, total, hdr) = der_tlv(cert)?;
    if tag != 0x30 {
        return Err(bad("tbsCertificate is not a SEQUENCE"));
    }
    let mut tbs = &cert[hdr..total];
    let (tag, total, _) = der_tlv(tbs)?;
    if tag == 0xa0 {
        tbs = &tbs[total..];
    }
    for _ in 0..skip {
        let (_, total, _) = der_tlv(tbs)?;
        tbs = &tbs[total..];
    }
    Ok(tbs)
}

/// Extracts the DER SubjectPublicKeyInfo of an X.509 certificate.
pub fn spki_of_cert(cert: &[u8]) -> Result<&[u8], TlsError> {
    // serial, signature, issuer, validity, subject, then the SPKI.
    let tbs = tbs_fields_from(cert, 5)?;
    let (tag, total, _) = der_tlv(tbs)?;
    if tag != 0x30 {
        return Err(TlsError::BadCertificate("subjectPublicKeyInfo is not a SEQUENCE"));
    }
    Ok(&tbs[..total])
}

/// A certificate's validity period as Unix seconds: (notBefore, notAfter).
pub fn validity_of_cert(cert: &[u8]) -> Result<(u64, u64), TlsError> {
    let bad = TlsError::BadCertificate;
    // serial, signature, issuer, then the validity.
    let tbs = tbs_fields_from(cert, 3)?;
    let (tag, total, hdr) = der_tlv(tbs)?;
    if tag != 0x30 {
        return Err(bad("validity is not a SEQUENCE"));
    }
    let validity = &tbs[hdr..total];
    let (_, first, _) = der_tlv(validity)?;
    let not_before = der_time(&validity[..first])?;
    let not_after = der_time(&validity[first..])?;
    Ok((not_before, not_after))
}

/// An X.509 Time (UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`) as Unix seconds.
fn der_time(b: &[u8]) -> Result<u64, TlsError> {
    let bad = TlsError::BadCertificate;
    let (tag, total, hdr) = der_tlv(b)?;
    let text = std::str::from_utf8(&b[hdr..total]).map_err(|_| bad("time is not text"))?;
    let digits = text.strip_suffix('Z').ok_or(bad("time is not UTC"))?;
    let full = match (tag, digits.len()) {
        // RFC 5280 §4.1.2.5.1: two-digit years 50-99 are 19xx, 00-49 are 20xx.
        (0x17, 12) => format!("{}{digits}", if digits < "50" { "20" } else { "19" }),
        (0x18, 14) => digits.to_owned(),
        _ => return Err(bad("unsupported time form")),
    };
    if !full.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("time is not digits"));
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    crate::units::parse_instant(&rfc3339, 0).map_err(|_| bad("time out of range"))
}

/// The TLVs inside a DER content region: (tag, content) each.
fn der_children(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, TlsError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (tag, total, hdr) = der_tlv(b)?;
        out.push((tag, &b[hdr..total]));
        b = &b[total..];
    }
    Ok(out)
}

/// OID 2.5.4.3 (commonName), 2.5.4.10 (organizationName), 2.5.29.17 (subjectAltName).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// A Name's commonName, or its organizationName, as text ("" when it has neither).
fn name_text(name: &[u8]) -> Result<String, TlsError> {
    let (mut cn, mut o) = (None, None);
    for (tag, rdn) in der_children(name)? {
        if tag != 0x31 {
            return Err(TlsError::BadCertificate("name part is not a SET"));
        }
        for (_, atv) in der_children(rdn)? {
            let parts = der_children(atv)?;
            let (Some((0x06, oid)), Some((_, value))) = (parts.first(), parts.get(1)) else { continue };
            let text = String::from_utf8_lossy(value).into_owned();
            if *oid == OID_CN {
                cn = Some(text);
            } else if *oid == OID_O {
                o = Some(text);
            }
        }
    }
    Ok(cn.or(o).unwrap_or_default())
}

/// What a certificate says about itself, for people and for the ACME checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The issuer's common name (or organization).
    pub issuer: String,
    /// The subject's common name (or organization); may be empty (ACME certificates).
    pub subject: String,
    /// The DNS names of the subjectAltName extension, lower case.
    pub dns_names: Vec<String>,
}

/// Reads the issuer, the subject and the subjectAltName DNS names of a certificate.
pub fn names_of_cert(cert: &[u8]) -> Result<CertNames, TlsError> {
    let bad = TlsError::BadCertificate;
    // serial, signature, then issuer, validity, subject, subjectPublicKeyInfo, then optional
    // issuerUniqueID [1], subjectUniqueID [2] and extensions [3].
    let fields = der_children(tbs_fields_from(cert, 2)?)?;
    let name = |i: usize| match fields.get(i) {
        Some((0x30, n)) => name_text(n),
        _ => Err(bad("issuer or subject is not a SEQUENCE")),
    };
    let (issuer, subject) = (name(0)?, name(2)?);
    let mut dns_names = Vec::new();
    if let Some((_, exts)) = fields.iter().skip(4).find(|(tag, _)| *tag == 0xa3) {
        let [(0x30, list)] = der_children(exts)?[..] else { return Err(bad("extensions are not a SEQUENCE")) };
        for (_, ext) in der_children(list)? {
            let parts = der_children(ext)?;
            if parts.first() != Some(&(0x06, OID_SAN)) {
                continue;
            }
            let Some((0x04, value)) = parts.last() else { return Err(bad("subjectAltName has no value")) };
            let [(0x30, names)] = der_children(value)?[..] else {
                return Err(bad("subjectAltName is not a SEQUENCE"));
            };
            for (tag, n) in der_children(names)? {
                if tag == 0x82 {
                    dns_names.push(String::from_utf8_lossy(n).to_ascii_lowercase());
                }
            }
        }
    }
    Ok(CertNames { issuer, subject, dns_names })
}

/// The raw 32-byte pin of a certificate.
pub fn pin_bytes_of_cert(cert: &[u8]) -> Result<[u8; 32], TlsError> {
    let d = ring::digest::digest(&ring::digest::SHA256, spki_of_cert(cert)?);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

/// The pin of a certificate as lowercase hex.
pub fn pin_of_cert(cert: &[u8]) -> Result<String, TlsError> {
    Ok(hex::encode(pin_bytes_of_cert(cert)?))
}

/// Reads the certificate chain and key from PEM files.
pub fn load_cert_and_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source });
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(cert)?.as_slice()).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Missing { path: cert.display().to_string(), what: "PEM certificate" });
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Missing { path: key.display().to_string(), what: "PEM private key" })?;
    Ok((certs, key))
}

/// The web listener's TLS config: TLS 1.3 only, HTTP/1.1 (the tunnel is a WebSocket upgrade).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate chain and its key, ready for a resolver.
pub fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let signer = provider().key_provider.load_private_key(key)?;
    let ck = rustls::sign::CertifiedKey::new(certs, signer);
    ck.keys_match()?;
    Ok(Arc::new(ck))
}

/// The web listener's TLS config with a certificate resolver (one whose certificate can be
/// swapped while serving: `crate::acme::CertResolver`). `acme_alpn` also offers `acme-tls/1`,
/// which only TLS-ALPN-01 validators ask for.
pub fn server_config_with_resolver(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    acme_alpn: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme_alpn {
        cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(cfg)
}

/// A certificate verifier that accepts exactly the pinned public key.
#[derive(Debug)]
pub struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub fn new(pin: [u8; 32]) -> Self {
        PinVerifier { pin, provider: provider() }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = pin_bytes_of_cert(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The node's TLS client config: TLS 1.3, trusting only `pin`.
pub fn pinned_client_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier::new(pin)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Parses a 64-hex-digit pin.
pub fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s.trim()).ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_is_sha256_of_the_spki_and_survives_any_truncation() {
        let g = generate_self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let der = rustls_pemfile::certs(&mut g.cert_pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(pin_of_cert(&der).unwrap(), g.pin);
        use rcgen::PublicKeyData;
        let key = rcgen::KeyPair::from_pem(&g.key_pem).unwrap();
        let expect = hex::encode(ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info()));
        assert_eq!(g.pin, expect);
        for n in 0..der.len() {
            let _ = spki_of_cert(&der[..n]);
        }
        assert!(spki_of_cert(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn validity_is_read_from_the_certificate_and_survives_any_truncation() {
        let g = generate_self_signed(&["localhost".into()]).unwrap();
        let der = rustls_pemfile::certs(&mut g.cert_pem.as_bytes()).next().unwrap().unwrap();
        let (from, until) = validity_of_cert(&der).unwrap();
        let now = crate::store::now_secs();
        assert!(from <= now + 60 && until > now + 365 * 86_400, "{from} {until} {now}");
        for n in 0..der.len() {
            let _ = validity_of_cert(&der[..n]);
        }
        // UTCTime 491231235959Z is 2049, 500101000000Z is 1950.
        assert_eq!(der_time(b"\x17\x0d491231235959Z").unwrap(), 2_524_607_999);
        assert_eq!(der_time(b"\x18\x0f20300101000000Z").unwrap(), 1_893_456_000);
        assert!(der_time(b"\x18\x0f2030010100000xZ").is_err());
    }

    #[test]
    fn names_are_read_from_the_certificate_and_survive_any_truncation() {
        let g = generate_self_signed(&["Proxy.Example.com".into(), "127.0.0.1".into()]).unwrap();
        let der = rustls_pemfile::certs(&mut g.cert_pem.as_bytes()).next().unwrap().unwrap();
        let n = names_of_cert(&der).unwrap();
        assert_eq!(n.issuer, "Proxy.Example.com");
        assert_eq!(n.subject, "Proxy.Example.com");
        assert_eq!(n.dns_names, ["proxy.example.com"], "IP addresses are not DNS names");
        for len in 0..der.len() {
            let _ = names_of_cert(&der[..len]);
        }
    }

    /// Runs a TLS handshake between two in-memory connections.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        for _ in 0..10 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            server.read_tls(&mut to_server.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            client.read_tls(&mut to_client.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn the_tunnel_negotiates_aes_128_gcm_the_server_keeps_the_client_s_order_and_no_suite_is_dropped() {
        let g = generate_self_signed(&["localhost".into()]).unwrap();
        let certs: Vec<_> = rustls_pemfile::certs(&mut g.cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = rustls_pemfile::private_key(&mut g.key_pem.as_bytes()).unwrap().unwrap();
        let server = Arc::new(server_config(certs, key).unwrap());
        assert!(!server.ignore_client_order, "a client without AES instructions may ask for ChaCha20 first");
        let pin: [u8; 32] = hex::decode(&g.pin).unwrap().try_into().unwrap();
        let client = Arc::new(pinned_client_config(pin).unwrap());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        handshake(&mut c, &mut s);
        let suite = s.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // Every suite ring offers is still offered.
        let ours: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        let mut ring: Vec<_> =
            rustls::crypto::ring::default_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours.len(), ring.len());
        ring.retain(|s| !ours.contains(s));
        assert!(ring.is_empty(), "dropped: {ring:?}");
    }
}
