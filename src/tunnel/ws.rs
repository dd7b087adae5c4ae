//! WebSocket plumbing shared by both ends: the tungstenite limits of SECURITY.md §2, the writer
//! task that drains a mux's outbound queue, the reader helper that turns messages into frames,
//! and the liveness rule both ends apply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Drains `rx` into the WebSocket, batching whatever is queued into one flush. Sends no
/// WebSocket pings: the heartbeat is the tunnel's only keepalive (docs/protocol.md), so an idle
/// tunnel wakes a phone's radio once per heartbeat, not also for pings.
/// Returns when the queue closes, a close sentinel arrives, or the socket fails.
pub async fn run_writer<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut rx: OutQueue,
) -> Option<SplitSink<WebSocketStream<S>, Message>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(first) = rx.recv().await {
        if first.len() == CLOSE_SENTINEL_LEN {
            break;
        }
        if sink.feed(Message::Binary(first)).await.is_err() {
            return None;
        }
        // Batch what is already queued, bounded for fairness.
        let mut closing = false;
        for _ in 0..64 {
            match rx.try_recv() {
                Some(b) if b.len() == CLOSE_SENTINEL_LEN => {
                    closing = true;
                    break;
                }
                Some(b) => {
                    if sink.feed(Message::Binary(b)).await.is_err() {
                        return None;
                    }
                }
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
    let _ = sink.flush().await;
    let _ = sink.close().await;
    Some(sink)
}

/// When a message last arrived from the peer: written by the reader, read by the liveness
/// check of the same session loop (an atomic, so both can hold it in one `select!`).
#[derive(Debug)]
pub struct Heard {
    epoch: tokio::time::Instant,
    ms: AtomicU64,
}

impl Heard {
    /// Heard "now" (the handshake just completed).
    pub fn new() -> Heard {
        Heard { epoch: tokio::time::Instant::now(), ms: AtomicU64::new(0) }
    }

    /// Something arrived.
    pub fn mark(&self) {
        self.ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When something last arrived.
    pub fn last(&self) -> tokio::time::Instant {
        self.epoch + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

impl Default for Heard {
    fn default() -> Self {
        Heard::new()
    }
}

/// The liveness rule of [`super::protocol::liveness_timeout`] for one tunnel: the busy timeout
/// while streams are live, the idle one (from the idle heartbeat interval, when granted)
/// otherwise. When streams become live the busy timeout counts from then at the earliest, so a
/// node that was idle (heartbeating slowly) is not declared dead the moment a stream opens.
#[derive(Debug, Clone)]
pub struct Liveness {
    busy: Duration,
    idle: Duration,
    busy_since: Option<tokio::time::Instant>,
}

impl Liveness {
    /// From the intervals the server granted (WELCOME tags 3 and 9).
    pub fn new(interval_s: u16, idle_interval_s: Option<u16>) -> Liveness {
        let busy = super::protocol::liveness_timeout(interval_s);
        let idle = idle_interval_s.map(super::protocol::liveness_timeout).unwrap_or(busy).max(busy);
        Liveness { busy, idle, busy_since: None }
    }

    /// The instant after which the peer counts as dead, given when it was last heard and
    /// whether streams are live at `now`.
    pub fn deadline(
        &mut self,
        heard: tokio::time::Instant,
        busy: bool,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        if busy {
            let since = *self.busy_since.get_or_insert(now);
            heard.max(since) + self.busy
        } else {
            self.busy_since = None;
            heard + self.idle
        }
    }

    /// The timeout in force (for the log line of a dead tunnel).
    pub fn timeout(&self, busy: bool) -> Duration {
        if busy { self.busy } else { self.idle }
    }
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

/// Reads the next frame, marking `heard` for every message (a peer's WebSocket ping counts:
/// older agents still send them, and tungstenite answers them). No timeout here: the session
/// loop checks [`Liveness`].
pub async fn next_frame<S>(stream: &mut SplitStream<WebSocketStream<S>>, heard: &Heard) -> Result<Frame, ReadEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = match stream.next().await {
            None => return Err(ReadEnd::Closed),
            Some(m) => m?,
        };
        heard.mark();
        match msg {
            Message::Binary(b) => return Ok(Frame::decode(b)?),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
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
    heard: &Heard,
) -> Result<Frame, ControlEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = next_frame(stream, heard).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::protocol::liveness_timeout;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[test]
    fn the_liveness_rule_is_two_and_a_half_intervals_and_ten_seconds() {
        assert_eq!(liveness_timeout(15), Duration::from_millis(47_500));
        assert_eq!(liveness_timeout(60), Duration::from_secs(160));
        assert_eq!(liveness_timeout(0), Duration::from_millis(12_500), "0 reads as 1 s");
        assert_eq!(liveness_timeout(u16::MAX), Duration::from_millis(65_535 * 2_500 + 10_000));
    }

    #[test]
    fn the_server_grants_the_configured_intervals_and_both_ends_derive_the_same_timeouts() {
        let l = crate::config::Limits::default();
        assert_eq!((l.heartbeat_interval_secs, l.idle_heartbeat_interval()), (15, Some(60)));
        let off = crate::config::Limits { heartbeat_idle_interval_secs: 0, ..l.clone() };
        assert_eq!(off.idle_heartbeat_interval(), None, "0 grants no idle interval (no tag 9)");
        let live = Liveness::new(l.heartbeat_interval_secs, l.idle_heartbeat_interval());
        assert_eq!((live.timeout(true), live.timeout(false)), (liveness_timeout(15), liveness_timeout(60)));
        // An old server (no tag 9): one interval for both.
        let old = Liveness::new(15, None);
        assert_eq!(old.timeout(false), liveness_timeout(15));
        // A shorter idle interval than the busy one is never used to cut a tunnel sooner.
        assert_eq!(Liveness::new(60, Some(15)).timeout(false), liveness_timeout(60));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_gets_the_idle_timeout_and_a_stream_opening_never_cuts_it_at_once() {
        let heard = Heard::new();
        let mut l = Liveness::new(15, Some(60));
        let t0 = tokio::time::Instant::now();
        assert_eq!(l.deadline(heard.last(), false, t0), t0 + Duration::from_secs(160));
        // 100 s of silence (an idle node heartbeats every 60 s; one was late): still alive.
        tokio::time::advance(Duration::from_secs(100)).await;
        let now = tokio::time::Instant::now();
        assert!(now < l.deadline(heard.last(), false, now));
        // A stream opens now: the busy timeout counts from now, not from the last message.
        assert_eq!(l.deadline(heard.last(), true, now), now + Duration::from_millis(47_500));
        tokio::time::advance(Duration::from_secs(10)).await;
        heard.mark();
        let now = tokio::time::Instant::now();
        assert_eq!(l.deadline(heard.last(), true, now), now + Duration::from_millis(47_500), "heard again");
        tokio::time::advance(Duration::from_secs(48)).await;
        let now = tokio::time::Instant::now();
        assert!(now >= l.deadline(heard.last(), true, now), "a busy tunnel silent for 48 s is dead");
        // Streams done: back to the idle timeout from the last message.
        assert!(now < l.deadline(heard.last(), false, now));
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_sends_no_pings_and_a_peers_ping_counts_as_heard() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut node = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (sink, mut stream) = server.split();
        let (q, rx) = crate::tunnel::mux::Mux::new(crate::tunnel::mux::MuxConfig::default());
        let writer = tokio::spawn(run_writer(sink, rx));
        // Ten idle minutes: nothing at all reaches the node (no pings, no wake-ups).
        let quiet = tokio::time::timeout(Duration::from_secs(600), node.next()).await;
        assert!(quiet.is_err(), "the server wrote {quiet:?} to an idle node");
        // A ping from an older node is heard (and answered by tungstenite).
        let heard = Heard::new();
        tokio::time::advance(Duration::from_secs(30)).await;
        node.send(Message::Ping(vec![1, 2].into())).await.unwrap();
        node.send(Message::Binary(Frame::Drain { reason: None, deadline_s: None }.encode())).await.unwrap();
        let before = heard.last();
        let f = next_frame(&mut stream, &heard).await.unwrap();
        assert!(matches!(f, Frame::Drain { .. }));
        assert!(heard.last() > before);
        drop(q);
        writer.abort();
    }
}
