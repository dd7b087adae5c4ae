//! WebSocket plumbing shared by both ends: the tungstenite limits of SECURITY.md §2, the writer
//! task that drains a mux's outbound queue, and the reader helper that turns messages into
//! frames with a liveness deadline.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::mux::OutQueue;
use super::protocol::{Frame, ProtocolError};
use crate::config::Limits;

/// An outbound queue entry of this length asks the writer to close after what was queued before.
/// (Real frames are never empty: the header alone is 6 bytes.)
pub const CLOSE_SENTINEL_LEN: usize = 0;

// Config validation keeps `limits.ws_max_frame` at or above its own minimum, which must fit the
// largest tunnel frame.
const _: () = assert!(crate::config::MIN_WS_MAX_FRAME >= super::protocol::MAX_FRAME_LEN);

/// tungstenite configuration from `[limits]`: small buffers on idle sockets, bounded frames.
pub fn ws_config(l: &Limits) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = l.ws_read_buffer;
    c.write_buffer_size = l.ws_write_buffer;
    c.max_write_buffer_size = l.ws_max_write_buffer.max(l.ws_write_buffer + l.ws_max_frame + 16);
    c.max_frame_size = Some(l.ws_max_frame);
    c.max_message_size = Some(l.ws_max_message);
    c
}

/// Drains `rx` into the WebSocket, batching whatever is queued into one flush, and pings every
/// `ping_every` (the payload carries a timestamp so the reader can measure the RTT).
/// Returns when the queue closes, a close sentinel arrives, or the socket fails.
pub async fn run_writer<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut rx: OutQueue,
    ping_every: Option<Duration>,
    epoch: tokio::time::Instant,
) -> Option<SplitSink<WebSocketStream<S>, Message>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ping = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { break };
                if first.len() == CLOSE_SENTINEL_LEN {
                    break;
                }
                if sink.feed(Message::Binary(first)).await.is_err() {
                    return None;
                }
                // Batch what is already queued, bounded so pings and fairness are kept.
                let mut closing = false;
                for _ in 0..64 {
                    match rx.try_recv() {
                        Some(b) if b.len() == CLOSE_SENTINEL_LEN => { closing = true; break; }
                        Some(b) => if sink.feed(Message::Binary(b)).await.is_err() { return None },
                        None => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return None;
                }
                if closing {
                    break;
                }
            }
            _ = ping.tick(), if ping_every.is_some() => {
                let ts = (epoch.elapsed().as_micros() as u64).to_be_bytes();
                if sink.send(Message::Ping(Bytes::copy_from_slice(&ts))).await.is_err() {
                    return None;
                }
            }
        }
    }
    let _ = sink.flush().await;
    let _ = sink.close().await;
    Some(sink)
}

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadEnd {
    #[error("peer closed the connection")]
    Closed,
    #[error("no message from the peer for {0:?}")]
    Dead(Duration),
    #[error("websocket error: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("protocol violation: text message")]
    Text,
}

/// Why [`next_control`] returned without a control frame.
#[derive(Debug, thiserror::Error)]
pub enum ControlEnd {
    #[error(transparent)]
    Read(#[from] ReadEnd),
    /// A frame the multiplexer refused (answered with ERROR 5).
    #[error("{0}")]
    Violation(String),
}

/// Reads the next frame. Pongs update `rtt` (microseconds) and are otherwise skipped.
pub async fn next_frame<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    dead_after: Duration,
    epoch: tokio::time::Instant,
    rtt: &mut Option<Duration>,
) -> Result<Frame, ReadEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = match tokio::time::timeout(dead_after, stream.next()).await {
            Err(_) => return Err(ReadEnd::Dead(dead_after)),
            Ok(None) => return Err(ReadEnd::Closed),
            Ok(Some(m)) => m?,
        };
        match msg {
            Message::Binary(b) => return Ok(Frame::decode(b)?),
            Message::Pong(p) => {
                if let Ok(ts) = <[u8; 8]>::try_from(p.as_ref()) {
                    let sent = Duration::from_micros(u64::from_be_bytes(ts));
                    *rtt = epoch.elapsed().checked_sub(sent);
                }
            }
            Message::Ping(_) | Message::Frame(_) => {}
            Message::Close(_) => return Err(ReadEnd::Closed),
            Message::Text(_) => return Err(ReadEnd::Text),
        }
    }
}

/// Reads frames until a control frame arrives, feeding stream frames to `mux` on the way.
/// Protocol violations are answered with `ERROR 5` before returning the reason. Cancel-safe
/// between frames, so it can sit in a `select!` loop.
pub async fn next_control<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    mux: &super::mux::Mux,
    dead_after: Duration,
    epoch: tokio::time::Instant,
) -> Result<Frame, ControlEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let mut rtt = None;
        let frame = next_frame(stream, dead_after, epoch, &mut rtt).await;
        if let Some(r) = rtt {
            mux.observe_rtt(r);
        }
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, ReadEnd::Protocol(_) | ReadEnd::Text) {
                    mux.send_error(super::protocol::ErrorCode::ProtocolViolation, &e.to_string());
                }
                return Err(e.into());
            }
        };
        match mux.dispatch(frame) {
            Ok(None) => continue,
            Ok(Some(control)) => return Ok(control),
            Err(v) => {
                mux.send_error(super::protocol::ErrorCode::ProtocolViolation, &v.0);
                return Err(ControlEnd::Violation(v.0));
            }
        }
    }
}

/// Reads one frame from an unsplit socket (used during the handshake).
pub async fn read_handshake_frame<S>(ws: &mut WebSocketStream<S>) -> Result<Frame, ReadEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None => return Err(ReadEnd::Closed),
            Some(m) => match m? {
                Message::Binary(b) => return Ok(Frame::decode(b)?),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(_) => return Err(ReadEnd::Closed),
                Message::Text(_) => return Err(ReadEnd::Text),
            },
        }
    }
}

/// Sends one frame on an unsplit socket (used during the handshake).
pub async fn send_handshake_frame<S>(ws: &mut WebSocketStream<S>, frame: &Frame) -> Result<(), ReadEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::Binary(frame.encode())).await?;
    Ok(())
}
