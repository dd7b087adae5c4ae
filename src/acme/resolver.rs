//! The web listener's certificate resolver: the certificate in use (swapped whole when a new
//! one arrives; connections already established keep theirs) and, while a TLS-ALPN-01
//! challenge is open, the challenge certificate for validators that ask for `acme-tls/1`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::ACME_TLS_ALPN;

/// Where the certificate in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    SelfSigned,
    Acme,
}

/// The certificate in use and where it came from.
#[derive(Debug, Clone)]
pub struct Current {
    pub key: Arc<CertifiedKey>,
    pub source: Source,
}

/// Swappable certificate plus open TLS-ALPN-01 challenges. A std `RwLock`: each section
/// clones an `Arc` and never waits on anything.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Current>,
    /// Challenge certificates by the domain they answer for.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>, source: Source) -> CertResolver {
        CertResolver { current: RwLock::new(Current { key, source }), challenges: RwLock::default() }
    }

    pub fn current(&self) -> Current {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Serves `key` to every handshake from now on.
    pub fn swap(&self, key: Arc<CertifiedKey>, source: Source) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Current { key, source };
    }

    pub fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(domain.to_owned(), key);
    }

    pub fn clear_challenge(&self, domain: &str) {
        self.challenges.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(domain);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: a validator offers only acme-tls/1 and names the domain; nobody else
            // gets a challenge certificate, and a validator never gets the real one.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&name).cloned();
        }
        Some(self.current().key)
    }
}

/// A TLS-ALPN-01 challenge certificate for `domain` (RFC 8737 §3): self-signed, with the
/// domain as its only name and the critical acmeIdentifier extension holding the SHA-256
/// digest of the key authorization. Its key is new and used for nothing else.
pub fn challenge_cert(domain: &str, key_auth_digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(key_auth_digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    // Not `tls::certified_key`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension (validators expect it critical).
    let signer = crate::tls::provider().key_provider.load_private_key(der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}
