//! The local admin socket: `admin.sock` in the data directory, mode 0600, so only the
//! operator (and root) can drive a running server. One JSON request line in, one JSON reply
//! line out: `{"ok": …}` or `{"error": code, "reason": text}`. Requests are [`AdminRequest`]s;
//! [`call`] sends one typed command and reads its typed answer back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{AdminCtx, AdminError, AdminRequest, Command};
use crate::shutdown::Shutdown;

pub const SOCKET_FILE: &str = "admin.sock";
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

/// Serves admin requests until shutdown.
pub async fn serve(listener: UnixListener, ctx: Arc<AdminCtx>, mut shutdown: Shutdown) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.recv() => return,
        };
        let Ok((stream, _)) = conn else { continue };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, ctx).await {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
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

async fn handle(stream: UnixStream, ctx: Arc<AdminCtx>) -> std::io::Result<()> {
    // The socket is mode 0600; the caller goes into the audit log as the admin at the CLI.
    let actor = cli_actor(stream.peer_cred().ok().map(|c| c.uid()), false);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd).take(MAX_LINE as u64);
    let mut line = String::new();
    rd.read_line(&mut line).await?;
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
