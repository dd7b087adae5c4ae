//! One issuance: the account (created once, kept in `acme/account.json`), an order for the
//! domain, the challenge answered while the CA validates, and the CSR for the appliance's own
//! key (so the pin stays the same).

use std::path::Path;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use serde::{Deserialize, Serialize};

use super::client::AcmeHttp;
use super::http01::Tokens;
use super::resolver::{CertResolver, challenge_cert};
use super::{AcmeError, Settings, write_atomic};
use crate::config::Challenge;

/// How long the CA may take to validate, then to issue. Let's Encrypt takes seconds.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);

/// What `acme/account.json` holds: the directory the account belongs to and its credentials
/// (with its private key: the file is 0600).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The open challenges of an issuance, removed when it ends however it ends.
struct OpenChallenges<'a> {
    tokens: &'a Tokens,
    resolver: &'a CertResolver,
    http: Vec<String>,
    alpn: Vec<String>,
}

impl Drop for OpenChallenges<'_> {
    fn drop(&mut self) {
        for t in &self.http {
            self.tokens.remove(t);
        }
        for d in &self.alpn {
            self.resolver.clear_challenge(d);
        }
    }
}

async fn account(s: &Settings, http: &AcmeHttp, file: &Path) -> Result<Account, AcmeError> {
    if let Ok(text) = std::fs::read(file) {
        match serde_json::from_slice::<StoredAccount>(&text) {
            Ok(stored) if stored.directory == s.directory => {
                return Ok(Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(stored.credentials)
                    .await?);
            }
            Ok(_) => {
                tracing::info!(directory = %s.directory, "tls.acme_directory changed: registering a new ACME account")
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %file.display(), "unreadable ACME account file: registering a new account")
            }
        }
    }
    let contact = format!("mailto:{}", s.contact);
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount { contact: &[&contact], terms_of_service_agreed: true, only_return_existing: false },
            s.directory.clone(),
            None,
        )
        .await?;
    let stored = StoredAccount { directory: s.directory.clone(), credentials };
    let json = serde_json::to_vec_pretty(&stored).map_err(|e| AcmeError::Other(e.to_string()))?;
    write_atomic(file, &json, 0o600)?;
    tracing::info!(id = account.id(), "ACME account registered");
    Ok(account)
}

/// A CSR for `domain` signed with the appliance's key (PEM): the CA certifies that key.
pub fn csr_der(domain: &str, key_pem: &str) -> Result<Vec<u8>, AcmeError> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| AcmeError::Other(format!("the TLS key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .map_err(|e| AcmeError::Other(format!("CSR for {domain}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| AcmeError::Other(format!("CSR for {domain}: {e}")))?;
    Ok(csr.der().to_vec())
}

/// Runs one order to its certificate chain (PEM).
pub(super) async fn issue(
    s: &Settings,
    http: &AcmeHttp,
    account_file: &Path,
    key_pem: &str,
    tokens: &Tokens,
    resolver: &CertResolver,
) -> Result<String, AcmeError> {
    let account = account(s, http, account_file).await?;
    let ids = [Identifier::Dns(s.domain.clone())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut open = OpenChallenges { tokens, resolver, http: Vec::new(), alpn: Vec::new() };
    let wanted = match s.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut auths = order.authorizations();
    while let Some(authz) = auths.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Other(format!("the CA's authorization is {other:?}"))),
        }
        let mut ch = authz.challenge(wanted.clone()).ok_or_else(|| {
            AcmeError::Other(format!("the CA offers no {} challenge for {}", s.challenge.as_str(), s.domain))
        })?;
        let ka = ch.key_authorization();
        match s.challenge {
            Challenge::Http01 => {
                tokens.insert(&ch.token, ka.as_str());
                open.http.push(ch.token.clone());
            }
            Challenge::TlsAlpn01 => {
                let cert = challenge_cert(&s.domain, ka.digest().as_ref()).map_err(AcmeError::Other)?;
                resolver.set_challenge(&s.domain, cert);
                open.alpn.push(s.domain.clone());
            }
        }
        ch.set_ready().await?;
    }
    let retry = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(VALIDATION_TIMEOUT);
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Other(why_invalid(&mut order, s).await));
    }
    drop(open);
    order.finalize_csr(&csr_der(&s.domain, key_pem)?).await?;
    Ok(order.poll_certificate(&retry).await?)
}

/// What the CA said about a failed validation, with the usual fix.
async fn why_invalid(order: &mut instant_acme::Order, s: &Settings) -> String {
    let mut said = Vec::new();
    let mut auths = order.authorizations();
    while let Some(Ok(a)) = auths.next().await {
        for c in &a.challenges {
            if let Some(e) = &c.error {
                said.push(e.to_string());
            }
        }
    }
    let reach = match s.challenge {
        Challenge::Http01 => "port 80 must reach tls.acme_http_listen",
        Challenge::TlsAlpn01 => "port 443 must reach the web listener",
    };
    format!(
        "the CA could not validate {} ({}): {} resolves to this server and {reach}",
        s.domain,
        if said.is_empty() { "no reason given".to_owned() } else { said.join("; ") },
        s.domain
    )
}
