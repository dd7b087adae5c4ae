//! The HTTP-01 responder (`tls.acme_http_listen`, port 80 as the CA sees it): answers
//! `GET /.well-known/acme-challenge/TOKEN` for the open challenges, redirects everything else
//! to the dashboard over HTTPS. Plain HTTP from anyone: the listener's [`Gate`] caps
//! connections, each connection gets one request and a deadline.
//!
//! [`Gate`]: crate::listener::Gate

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{self, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::debug;

use crate::shutdown::Shutdown;

/// The path prefix of HTTP-01 (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The open HTTP-01 challenges: token → key authorization.
#[derive(Debug, Default)]
pub struct Tokens(RwLock<HashMap<String, String>>);

impl Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.into(), key_authorization.into());
    }

    pub fn remove(&self, token: &str) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned()
    }
}

/// The answer to one request: the key authorization of an open challenge, 404 for any other
/// token, and a redirect to `https_base` (e.g. `https://proxy.example.com:8443`) for the rest.
pub fn answer(tokens: &Tokens, method: &Method, path: &str, https_base: &str) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::new());
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        match tokens.get(token).filter(|_| *method == Method::GET || *method == Method::HEAD) {
            Some(ka) => {
                *resp.body_mut() = Bytes::from(ka);
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            }
            None => *resp.status_mut() = StatusCode::NOT_FOUND,
        }
        return resp;
    }
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    // The path came through hyper's parser (no CR, LF or spaces), the base from the config.
    if let Ok(v) = HeaderValue::from_str(&format!("{https_base}{path}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Serves HTTP-01 until shutdown.
pub async fn serve(
    listener: TcpListener,
    tokens: Arc<Tokens>,
    https_base: String,
    gate: Arc<crate::listener::Gate>,
    conn_timeout: Duration,
    mut shutdown: Shutdown,
) {
    let https_base: Arc<str> = https_base.into();
    loop {
        let (tcp, peer) = tokio::select! {
            c = crate::listener::accept(&listener) => c,
            _ = shutdown.recv() => return,
        };
        let Ok(mut admitted) = gate.admit(peer.ip()) else { continue };
        admitted.handshake_done();
        let (tokens, base) = (tokens.clone(), https_base.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let resp = answer(&tokens, req.method(), req.uri().path(), &base).map(Full::new);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(conn_timeout)
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(tcp), svc);
            // A whole connection, request head to last byte: a validator asks once and is done.
            match tokio::time::timeout(conn_timeout, conn).await {
                Ok(Err(e)) => debug!(%peer, error = %e, "HTTP-01 connection ended with an error"),
                Err(_) => debug!(%peer, "HTTP-01 connection timed out"),
                Ok(Ok(())) => {}
            }
            drop(admitted);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_tokens_are_answered_and_the_rest_goes_to_https() {
        let t = Tokens::default();
        t.insert("tok", "tok.thumb");
        let base = "https://proxy.example.com:8443";
        let r = answer(&t, &Method::GET, "/.well-known/acme-challenge/tok", base);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.into_body(), "tok.thumb");
        assert_eq!(answer(&t, &Method::GET, "/.well-known/acme-challenge/other", base).status(), 404);
        assert_eq!(answer(&t, &Method::POST, "/.well-known/acme-challenge/tok", base).status(), 404);
        let r = answer(&t, &Method::GET, "/users", base);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "https://proxy.example.com:8443/users");
        t.remove("tok");
        assert_eq!(answer(&t, &Method::GET, "/.well-known/acme-challenge/tok", base).status(), 404);
    }
}
