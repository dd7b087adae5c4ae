//! The payment providers' HTTP client: one HTTP/1.1 request per connection, over tokio-rustls
//! with the process's one crypto provider and Mozilla's roots (`https://`), or plain TCP to a
//! loopback address (`http://`, tests; [`super::config::check_api_url`] allows nothing else).
//! A provider is a peer: every request has a deadline and every answer a size cap.

use std::sync::Arc;
use std::time::Duration;

use axum::http;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// A provider's answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// The client: a TLS config, a deadline, a cap.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("timeout", &self.timeout).field("max_body", &self.max_body).finish()
    }
}

impl HttpClient {
    pub fn new(timeout: Duration, max_body: usize) -> Result<HttpClient, String> {
        let cfg = crate::tls::public_client_config(Vec::new())?;
        Ok(HttpClient { tls: Arc::new(cfg), timeout, max_body })
    }

    /// Sends `method url` with `headers` and `body`; the whole exchange within the deadline.
    /// Header values are given by the caller (an API token): they never appear in errors.
    pub async fn send(
        &self,
        method: http::Method,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Answer, String> {
        let what = format!("{method} {}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path());
        match tokio::time::timeout(self.timeout, self.send_inner(method, url, headers, body)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {} s", self.timeout.as_secs())),
        }
    }

    async fn send_inner(
        &self,
        method: http::Method,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Answer, String> {
        let host = url.host_str().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url[url::Position::BeforePath..])
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, concat!("traffix/", env!("CARGO_PKG_VERSION")))
            .header(http::header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = match body {
            Some((ctype, b)) => {
                req = req.header(http::header::CONTENT_TYPE, ctype);
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|_| "a request header is not valid".to_owned())?;
        let resp = if url.scheme() == "https" {
            let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            exchange(TokioIo::new(tls), req).await?
        } else {
            exchange(TokioIo::new(tcp), req).await?
        };
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| format!("reading the answer (at most {} bytes): {e}", self.max_body))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    // The connection task ends when the response is read (or the deadline drops the request).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-shot HTTP server on 127.0.0.1 that answers the first request with `answer`.
    async fn serve_once(answer: Vec<u8>) -> url::Url {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        });
        url::Url::parse(&format!("http://{addr}/api/getInvoices?invoice_ids=1")).unwrap()
    }

    fn client() -> HttpClient {
        crate::tls::install_provider();
        HttpClient::new(Duration::from_secs(30), 4096).unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_read_within_its_cap() {
        let body = r#"{"ok":true,"result":{"items":[]}}"#;
        let url =
            serve_once(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()).await;
        let a = client().send(Method::GET, &url, &[("Crypto-Pay-API-Token", "1:x".into())], None).await.unwrap();
        assert_eq!((a.status, &a.body[..]), (200, body.as_bytes()));
    }

    #[tokio::test]
    async fn oversized_truncated_and_malformed_answers_are_errors() {
        let big = format!("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{}", "x".repeat(5000));
        let chunked_big =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n{}\r\n0\r\n\r\n", "y".repeat(5000));
        for (what, answer) in [
            ("over the cap", big.into_bytes()),
            ("over the cap, chunked", chunked_big.into_bytes()),
            ("cut short", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ok\":".to_vec()),
            ("not HTTP", b"\x16\x03\x01\x00\xffgarbage\r\n\r\n".to_vec()),
            ("no answer", Vec::new()),
        ] {
            let url = serve_once(answer).await;
            let e = client().send(Method::GET, &url, &[], None).await.unwrap_err();
            assert!(e.starts_with("GET http://127.0.0.1/api/getInvoices"), "{what}: {e}");
            assert!(!e.contains("invoice_ids"), "no query in errors: {e}");
        }
    }
}
