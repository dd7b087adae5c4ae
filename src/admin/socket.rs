//! The local admin socket: `admin.sock` in the data directory, mode 0600, so only the
//! operator (and root) can drive a running server. One JSON request line in, one JSON reply
//! line out: `{"ok": …}` or `{"error": code, "reason": text}`. Requests are [`AdminRequest`]s;
//! [`call`] sends one typed command and reads its typed answer back.
//!
//! One request streams its answer: `{"cmd": "backup_archive"}`. Its reply line is
//! `{"ok": {"manifest": …}}` (or an error line), followed by the archive in the frames of
//! `stream.rs`; [`call_backup`] reads them into a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::backup::{self, Manifest, Sources};
use super::stream;
use super::{AdminCtx, AdminError, AdminRequest, Command};
use crate::shutdown::Shutdown;

pub use super::SOCKET_FILE;
/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Binds the admin socket with mode 0600 (replacing a stale one).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    // Create it unreachable first, then open it to the owner only.
    let listener = UnixListener::bind(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Serves admin requests until shutdown; `files` says where the server's files are, for
/// backup archives.
pub async fn serve(listener: UnixListener, ctx: Arc<AdminCtx>, files: Arc<Sources>, mut shutdown: Shutdown) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.recv() => return,
        };
        let Ok((stream, _)) = conn else { continue };
        let (ctx, files) = (ctx.clone(), files.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, ctx, files).await {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
}

/// Requests whose answer is streamed (see the module doc).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum StreamRequest {
    /// A backup archive of the whole server.
    BackupArchive {},
}

/// The reply line of a streamed backup: what the archive holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupHeader {
    pub manifest: Manifest,
}

/// Bytes of the archive the blocking writer hands the socket at once, and how many such
/// chunks may wait: the server holds at most this much of an archive in memory.
const CHANNEL_CHUNKS: usize = 8;

/// A blocking `Write` that sends fixed-size chunks to the socket task (backpressure: it waits
/// while the socket is slow).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = stream::MAX_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == stream::MAX_CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(stream::MAX_CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Streams a backup archive: the header line, then the frames.
async fn stream_backup(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    ctx: Arc<AdminCtx>,
    files: Arc<Sources>,
    actor: String,
) -> std::io::Result<()> {
    let prepared = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || backup::prepare(&ctx, &files, &actor)).await
    };
    let prepared = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return reply(&mut wr, json!({"error": e.error, "reason": e.reason})).await,
        Err(e) => return reply(&mut wr, json!({"error": "internal", "reason": e.to_string()})).await,
    };
    let header = BackupHeader { manifest: prepared.manifest.clone() };
    let mut line = serde_json::to_vec(&json!({"ok": header})).unwrap_or_default();
    line.push(b'\n');
    wr.write_all(&line).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
    let job = tokio::task::spawn_blocking(move || {
        let w = ChannelWriter { tx, buf: Vec::with_capacity(stream::MAX_CHUNK) };
        // `prepared` is dropped at the end of this task, which removes the snapshot.
        prepared.write_tar(w).map(drop)
    });
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut bytes = 0u64;
    while let Some(chunk) = rx.recv().await {
        hash.update(&chunk);
        bytes += chunk.len() as u64;
        // A client that goes away ends the stream: the writer's next send fails.
        stream::write_data(&mut wr, &chunk).await?;
    }
    match job.await {
        Ok(Ok(())) => {
            tracing::info!(bytes, "backup archive streamed over the admin socket");
            stream::write_end(&mut wr, &stream::StreamEnd { bytes, sha256: hex::encode(hash.finish()) }).await?;
        }
        Ok(Err(e)) => stream::write_error(&mut wr, &e).await?,
        Err(e) => stream::write_error(&mut wr, &AdminError::new("internal", e.to_string())).await?,
    }
    wr.shutdown().await
}

async fn reply(wr: &mut tokio::net::unix::OwnedWriteHalf, v: Value) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await?;
    wr.shutdown().await
}

/// The audit actor of a command given on the server's command line: `admin (cli)` for root,
/// `admin (cli, uid N)` for another local user allowed on the socket; `offline` when the
/// command ran against the database directly (no server running).
pub fn cli_actor(uid: Option<u32>, offline: bool) -> String {
    let mut parts = vec!["cli".to_owned()];
    match uid {
        Some(0) => {}
        Some(u) => parts.push(format!("uid {u}")),
        None if offline => {}
        None => parts.push("unknown uid".into()),
    }
    if offline {
        parts.push("offline".into());
    }
    format!("admin ({})", parts.join(", "))
}

async fn handle(stream: UnixStream, ctx: Arc<AdminCtx>, files: Arc<Sources>) -> std::io::Result<()> {
    // The socket is mode 0600; the caller goes into the audit log as the admin at the CLI.
    let actor = cli_actor(stream.peer_cred().ok().map(|c| c.uid()), false);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd).take(MAX_LINE as u64);
    let mut line = String::new();
    rd.read_line(&mut line).await?;
    if let Ok(StreamRequest::BackupArchive {}) = serde_json::from_str::<StreamRequest>(&line) {
        return stream_backup(wr, ctx, files, actor).await;
    }
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Err(e) => json!({"error": "bad_request", "reason": e.to_string()}),
        Ok(req) => {
            let res = tokio::task::spawn_blocking(move || ctx.dispatch(req, &actor)).await;
            match res {
                Ok(Ok(v)) => json!({"ok": v}),
                Ok(Err(e)) => json!({"error": e.error, "reason": e.reason}),
                Err(e) => json!({"error": "internal", "reason": e.to_string()}),
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await?;
    wr.shutdown().await
}

use tokio::io::AsyncReadExt;

/// Sends a command to a running server and reads its typed answer. `Ok(None)` when no server
/// listens on the socket.
pub async fn call<C: Command>(data_dir: &Path, cmd: &C) -> Result<Option<Result<C::Output, AdminError>>, String> {
    match call_raw(data_dir, &cmd.clone().into()).await? {
        None => Ok(None),
        Some(Err(e)) => Ok(Some(Err(e))),
        Some(Ok(v)) => {
            serde_json::from_value(v).map(|o| Some(Ok(o))).map_err(|e| format!("admin socket sent a bad reply: {e}"))
        }
    }
}

/// Asks a running server for a backup archive and writes it to `out` (as it arrives). `Ok(None)`
/// when no server listens; the outer error is a broken or hostile stream.
pub async fn call_backup(
    data_dir: &Path,
    mut out: impl std::io::Write,
) -> Result<Option<Result<(BackupHeader, stream::StreamEnd), AdminError>>, String> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot reach the admin socket {}: {e}", path.display())),
    };
    let (rd, mut wr) = stream.into_split();
    let req = serde_json::to_vec(&StreamRequest::BackupArchive {}).map_err(|e| e.to_string())?;
    wr.write_all(&req).await.map_err(|e| e.to_string())?;
    wr.write_all(b"\n").await.map_err(|e| e.to_string())?;
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    (&mut rd).take(MAX_LINE as u64).read_until(b'\n', &mut line).await.map_err(|e| format!("admin socket: {e}"))?;
    if !line.ends_with(b"\n") {
        return Err("admin socket: the reply line is missing or too long".into());
    }
    let v: Value = serde_json::from_slice(&line).map_err(|e| format!("admin socket sent a bad reply: {e}"))?;
    let Some(ok) = v.get("ok") else {
        return Ok(Some(Err(AdminError::new(
            v.get("error").and_then(Value::as_str).unwrap_or("error"),
            v.get("reason").and_then(Value::as_str).unwrap_or("unknown error"),
        ))));
    };
    let header: BackupHeader =
        serde_json::from_value(ok.clone()).map_err(|e| format!("admin socket sent a bad reply: {e}"))?;
    match stream::read_stream(&mut rd, |d| out.write_all(d)).await {
        Ok(Ok(end)) => {
            out.flush().map_err(|e| e.to_string())?;
            Ok(Some(Ok((header, end))))
        }
        Ok(Err(e)) => Ok(Some(Err(e))),
        Err(e) => Err(format!("the backup stream from the server is broken: {e}")),
    }
}

/// Sends a request and reads the reply line: the answer as JSON, or the command's error.
async fn call_raw(data_dir: &Path, req: &AdminRequest) -> Result<Option<Result<Value, AdminError>>, String> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot reach the admin socket {}: {e}", path.display())),
    };
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    wr.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut resp = String::new();
    BufReader::new(rd).read_line(&mut resp).await.map_err(|e| format!("admin socket: {e}"))?;
    let v: Value = serde_json::from_str(&resp).map_err(|e| format!("admin socket sent a bad reply: {e}"))?;
    if let Some(ok) = v.get("ok") {
        return Ok(Some(Ok(ok.clone())));
    }
    let err = AdminError::new(
        v.get("error").and_then(Value::as_str).unwrap_or("error"),
        v.get("reason").and_then(Value::as_str).unwrap_or("unknown error"),
    );
    Ok(Some(Err(err)))
}

#[cfg(test)]
mod tests {
    use super::cli_actor;

    #[test]
    fn the_cli_actor_names_the_admin_not_a_uid() {
        assert_eq!(cli_actor(Some(0), false), "admin (cli)");
        assert_eq!(cli_actor(Some(1000), false), "admin (cli, uid 1000)");
        assert_eq!(cli_actor(Some(0), true), "admin (cli, offline)");
        assert_eq!(cli_actor(None, true), "admin (cli, offline)");
    }
}
