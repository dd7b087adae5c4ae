//! The ACME client's HTTPS transport: one HTTP/1.1 request per connection over tokio-rustls,
//! with the process's one crypto provider (instant-acme's own client would bring a second
//! TLS stack). Trusts Mozilla's roots (`webpki-roots`) plus `tls.acme_ca_roots`. The CA is a
//! peer: every request has a deadline and every answer a size cap.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::ServerName;

/// One request, connection to last byte. The CA answers in well under a second; this only
/// bounds a CA (or a network) that hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read: a certificate chain is a few KiB.
const MAX_BODY: usize = 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// instant-acme's [`HttpClient`] over our rustls config.
#[derive(Clone)]
pub struct AcmeHttp {
    tls: Arc<rustls::ClientConfig>,
}

impl AcmeHttp {
    /// A client trusting Mozilla's roots and every certificate in the PEM file `extra_roots`.
    pub fn new(extra_roots: Option<&Path>) -> Result<AcmeHttp, String> {
        let mut extra = Vec::new();
        if let Some(path) = extra_roots {
            let pem =
                std::fs::read(path).map_err(|e| format!("tls.acme_ca_roots: cannot read {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                extra.push(cert.map_err(|e| format!("tls.acme_ca_roots {}: {e}", path.display()))?);
            }
            if extra.is_empty() {
                return Err(format!("tls.acme_ca_roots {} holds no PEM certificate", path.display()));
            }
        }
        let cfg = crate::tls::public_client_config(extra).map_err(|e| {
            format!("tls.acme_ca_roots {}: {e}", extra_roots.map(|p| p.display().to_string()).unwrap_or_default())
        })?;
        Ok(AcmeHttp { tls: Arc::new(cfg) })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let uri = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(instant_acme::Error::Other(format!("{uri}: {e}").into())),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("{uri}: no answer within {}s", REQUEST_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

async fn send(
    tls: Arc<rustls::ClientConfig>,
    mut req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err("the CA gave a URL that is not https".into());
    }
    let authority = uri.authority().ok_or("the CA gave a URL without a host")?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the response is read (or the deadline drops `send`).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // HTTP/1.1 wants the origin form and a Host header.
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    *req.uri_mut() = path;
    req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_str(authority.as_str())?);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY).collect().await?.to_bytes();
    Ok(BytesResponse::from(http::Response::from_parts(parts, Full::new(body))))
}
