//! The web dashboard: the files of `assets/`, embedded in release builds and read from disk in
//! debug builds (rust-embed), served at `/` and `/assets/…` with a strict content security
//! policy (no inline scripts, nothing from other origins).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(path: &str) -> Response {
    let Some(f) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime = f.metadata.mimetype().to_owned();
    let mut resp = f.data.into_owned().into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn index() -> Response {
    file("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    file(&path)
}

/// `/` and `/assets/…`.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset))
}
