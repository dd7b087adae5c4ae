//! The HTTP client of GeoIP updates: one GET at a time over hyper's HTTP/1 client, TLS by
//! rustls trusting the public web PKI (webpki-roots, so a container without a CA bundle works
//! too). Bounded in everything a server controls: the whole download, redirects included,
//! runs under one deadline; a body larger than the cap is refused as it arrives (not after);
//! at most [`MAX_REDIRECTS`] redirects are followed, never from HTTPS down to HTTP, and
//! credentials are sent to the first origin only (MaxMind redirects to presigned storage URLs,
//! which must not see the licence key).
//!
//! A [`Request`] says how it is shown: errors and logs name that text, never a URL that holds
//! a key or a signature.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use url::Url;

/// Redirects followed before a download gives up (MaxMind uses one).
pub const MAX_REDIRECTS: usize = 5;

/// One download to make.
#[derive(Clone)]
pub struct Request {
    pub(super) url: Url,
    /// An `Authorization` header value, for the first origin only.
    pub(super) authorization: Option<String>,
    shown: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({})", self.shown)
    }
}

impl Request {
    /// A GET of `url`, shown as `shown` (the URL with any secret masked).
    pub fn new(url: Url, shown: impl Into<String>) -> Request {
        Request { url, authorization: None, shown: shown.into() }
    }

    /// Sends HTTP Basic credentials (to the first origin only).
    pub fn basic_auth(mut self, user: &str, password: &crate::secret::Secret) -> Request {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// How errors name this download.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sends more than {limit} bytes (geoip.max_download_bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url} did not finish within {secs} s (geoip.download_timeout_secs)")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
}

impl FetchError {
    /// The HTTP status of a refused download.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What one request-response exchange gave.
enum Hop {
    Body(Vec<u8>),
    Redirect(String),
    Status(u16),
    TooLarge,
}

/// The client; cheap to share.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Client {
    /// A client whose every download (redirects included) must end within `timeout`.
    pub fn new(timeout: Duration) -> Result<Client, String> {
        let cfg = crate::tls::public_client_config(Vec::new())?;
        Ok(Client { tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)), timeout })
    }

    /// GETs `req`, following redirects, and returns the body: at most `limit` bytes, else
    /// [`FetchError::TooLarge`]. Anything but a 200 at the end is [`FetchError::Status`].
    pub async fn get(&self, req: &Request, limit: u64) -> Result<Vec<u8>, FetchError> {
        match tokio::time::timeout(self.timeout, self.follow(req, limit)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout { url: req.shown.clone(), secs: self.timeout.as_secs() }),
        }
    }

    async fn follow(&self, req: &Request, limit: u64) -> Result<Vec<u8>, FetchError> {
        let first = req.url.origin();
        let mut url = req.url.clone();
        let mut shown = req.shown.clone();
        for _ in 0..=MAX_REDIRECTS {
            let auth = if url.origin() == first { req.authorization.as_deref() } else { None };
            let fail = |message: String| FetchError::Failed { url: shown.clone(), message };
            match self.once(&url, auth, limit).await.map_err(fail)? {
                Hop::Body(b) => return Ok(b),
                Hop::Status(status) => return Err(FetchError::Status { url: shown, status }),
                Hop::TooLarge => return Err(FetchError::TooLarge { url: shown, limit }),
                Hop::Redirect(location) => {
                    let next = url
                        .join(&location)
                        .map_err(|_| fail(format!("redirected to a location that is not a URL: {location:?}")))?;
                    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
                        return Err(fail(format!(
                            "redirected to a location that is not an HTTP URL ({})",
                            next.scheme()
                        )));
                    }
                    if url.scheme() == "https" && next.scheme() != "https" {
                        return Err(fail("redirected from HTTPS to plain HTTP: refused".into()));
                    }
                    // The next URL may hold a signature: only its host is ever shown.
                    shown = format!("{} (redirected to {})", req.shown, next.host_str().unwrap_or("?"));
                    url = next;
                }
            }
        }
        Err(FetchError::Failed { url: shown, message: format!("more than {MAX_REDIRECTS} redirects") })
    }

    async fn once(&self, url: &Url, auth: Option<&str>, limit: u64) -> Result<Hop, String> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut builder = hyper::Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
            .header(header::HOST, &url[url::Position::BeforeHost..url::Position::AfterPort])
            .header(header::USER_AGENT, concat!("traffix/", env!("CARGO_PKG_VERSION")))
            .header(header::ACCEPT, "*/*");
        if let Some(a) = auth {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let request = builder.body(String::new()).map_err(|e| format!("bad request: {e}"))?;
        if url.scheme() == "https" {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| format!("{host} is not a name TLS can check"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(TokioIo::new(tls), request, limit).await
        } else {
            exchange(TokioIo::new(tcp), request, limit).await
        }
    }
}

/// Stops the connection's task when the exchange ends or is dropped (a deadline).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<T>(io: T, request: hyper::Request<String>, limit: u64) -> Result<Hop, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, String>(io).await.map_err(|e| format!("HTTP: {e}"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = send.send_request(request).await.map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    if status.is_redirection() {
        return match resp.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()) {
            Some(l) => Ok(Hop::Redirect(l.to_owned())),
            None => Err(format!("HTTP {} without a Location", status.as_u16())),
        };
    }
    if status != hyper::StatusCode::OK {
        return Ok(Hop::Status(status.as_u16()));
    }
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(Hop::TooLarge);
    }
    let mut body = resp.into_body();
    let mut out: Vec<u8> = Vec::with_capacity(usize::try_from(declared.unwrap_or(0)).unwrap_or(0));
    while let Some(frame) = std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await {
        let frame = frame.map_err(|e| format!("the download broke off after {} bytes: {e}", out.len()))?;
        if let Ok(data) = frame.into_data() {
            let data: Bytes = data;
            if out.len() as u64 + data.len() as u64 > limit {
                return Ok(Hop::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Hop::Body(out))
}
