//! Copying one stream: moves bytes between a socket and a multiplexed stream, both ways, with
//! half-close, idle timeout and byte counting. It knows nothing of SOCKS5, HTTP or billing:
//! the server's relay (`crate::relay`) and the node agent hand it `(socket, stream)`, and a
//! [`Meter`] hears about the bytes.
//!
//! Per-stream counters are plain locals of the two copy loops (no shared atomic per read); the
//! meter is told in batches. Read buffers are allocated only while data flows and go to the
//! WebSocket writer as the frame itself (the header is reserved in front of the payload).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::mux::{Inbound, MuxStream};
use super::protocol::HEADER_LEN;
use crate::target::ResetReason;

/// Read size while a socket idles (see the up loop of [`bidirectional`]). The read goes into a
/// 1 KiB array inside the copy task instead of a buffer of its own, and what arrives is copied
/// into a frame of its size: an idle stream holds no separate read buffer.
const IDLE_READ: usize = 1024;

/// Read size once an idle-sized read came back full (a request head, an interactive burst):
/// with the frame header in front the buffer is exactly 4 KiB, one allocator size class.
const SMALL_READ: usize = 4 * 1024 - HEADER_LEN;

/// The next read size after a read of `n` bytes that was allowed `credit` (at most `want`):
/// up one step (idle → small → a full frame) when the read filled what it was given, back to
/// idle-sized reads after one shorter than [`IDLE_READ`], down to small reads after one shorter
/// than [`SMALL_READ`].
fn next_read_size(want: usize, credit: usize, n: usize, max: usize) -> usize {
    if n == credit {
        if want == IDLE_READ { SMALL_READ.min(max) } else { max }
    } else if n < IDLE_READ {
        IDLE_READ
    } else if n < SMALL_READ {
        SMALL_READ.min(max)
    } else {
        want
    }
}

/// Report usage to the meter after at least this many bytes (and at the end).
pub const METER_BATCH: u64 = 256 * 1024;

/// Receives byte counts of a copied stream. The server's relay implements it for billing and
/// metrics.
pub trait Meter: Send + Sync {
    /// `up` = client → target bytes, `down` = target → client bytes, since the last call.
    fn record(&self, up: u64, down: u64);

    /// A bandwidth limit: how long `n` bytes just read in one direction (`client_to_target`
    /// or back) wait before they are passed on. Asked once per read (a frame, at most 64 KiB),
    /// never per byte. None by default.
    fn pace(&self, _client_to_target: bool, _n: u64) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A meter that ignores everything.
#[derive(Debug, Default)]
pub struct NoMeter;
impl Meter for NoMeter {
    fn record(&self, _up: u64, _down: u64) {}
}

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEnd {
    /// Both directions finished with EOF.
    Closed,
    /// The peer reset the stream or the tunnel went away.
    PeerReset(ResetReason),
    /// Our socket failed.
    SocketError,
    /// Nothing moved for the idle timeout.
    Idle,
}

impl CopyEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyEnd::Closed => "closed",
            CopyEnd::PeerReset(ResetReason::Shutdown) => "tunnel_closed",
            CopyEnd::PeerReset(ResetReason::Billing) => "billing",
            // The node's own idle timer fired first (it has the same timeout): the same end.
            CopyEnd::PeerReset(ResetReason::IdleTimeout) => "idle_timeout",
            CopyEnd::PeerReset(_) => "peer_reset",
            CopyEnd::SocketError => "socket_error",
            CopyEnd::Idle => "idle_timeout",
        }
    }
}

/// Totals of one copied stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes read from the socket and sent into the tunnel.
    pub sent: u64,
    /// Bytes received from the tunnel and written to the socket.
    pub received: u64,
    pub end: CopyEnd,
}

/// Bytes counted but not yet reported to the meter; reports them when dropped.
struct Unmetered<'a, F: Fn(u64, u64)> {
    sent: AtomicU64,
    received: AtomicU64,
    record: &'a F,
}

impl<F: Fn(u64, u64)> Drop for Unmetered<'_, F> {
    fn drop(&mut self) {
        let (s, r) = (*self.sent.get_mut(), *self.received.get_mut());
        if s > 0 || r > 0 {
            (self.record)(s, r);
        }
    }
}

/// Milliseconds since `start`: the "last activity" clock shared by the two copy loops.
fn now_ms(start: tokio::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Copies until both directions are done or either side fails.
///
/// `socket_is_client` says which way is "up" for the meter: on the server the socket is the
/// client (socket → tunnel is up); on the node it is the target (tunnel → socket is up).
pub async fn bidirectional<S>(socket: S, stream: MuxStream, meter: Arc<dyn Meter>, socket_is_client: bool) -> CopyStats
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(socket);
    let (mut tx, mut rx) = stream.into_split();
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let stop_up = Notify::new();
    // The up side ended the stream (idle, a socket error, the tunnel gone): the down side may
    // be waiting on a write a client never reads, so it is told to stop too.
    let stop_down = Notify::new();
    let idle = tx.idle_timeout();
    let idle_ms = idle.as_millis() as u64;
    let max = tx.max_data();
    let record = |sent: u64, received: u64| {
        if socket_is_client { meter.record(sent, received) } else { meter.record(received, sent) }
    };
    // Bytes moved but not yet reported. Owned by this stream only; the guard reports the tail
    // even when the copy is dropped mid-way (a cut), so no delivered byte goes unmetered.
    let pending = Unmetered { sent: AtomicU64::new(0), received: AtomicU64::new(0), record: &record };

    // socket → tunnel
    let up = async {
        let mut sent = 0u64;
        // Read size adapts (`next_read_size`): 1 KiB into `small` while the socket idles, 4 KiB
        // frames for bursts, full frames once reads fill what they are given.
        let mut want = IDLE_READ;
        let mut small = [0u8; IDLE_READ];
        let end = loop {
            let credit = tokio::select! {
                c = tx.reserve(max) => c,
                _ = stop_up.notified() => break None,
            };
            let Some(credit) = credit else { break None };
            let credit = credit.min(want);
            let read = tokio::select! {
                r = tokio::time::timeout(idle, read_frame(&mut rd, &mut small, credit)) => r,
                _ = stop_up.notified() => break None,
            };
            match read {
                Err(_) => {
                    if now_ms(start).saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                        tx.reset(ResetReason::IdleTimeout, "idle timeout");
                        stop_down.notify_one();
                        break Some(CopyEnd::Idle);
                    }
                    // Nothing came for a whole idle period (the other way kept the stream
                    // alive): wait with an idle-sized read, not a frame buffer.
                    want = IDLE_READ;
                }
                Ok(Err(_)) => {
                    tx.reset(ResetReason::Cancel, "socket error");
                    stop_down.notify_one();
                    break Some(CopyEnd::SocketError);
                }
                Ok(Ok((_, 0))) => {
                    tx.send_fin();
                    break None;
                }
                Ok(Ok((buf, n))) => {
                    let wait = meter.pace(socket_is_client, n as u64);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop_up.notified() => break None,
                        }
                    }
                    last.store(now_ms(start), Ordering::Relaxed);
                    want = next_read_size(want, credit, n, max);
                    sent += n as u64;
                    if pending.sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64 >= METER_BATCH {
                        record(pending.sent.swap(0, Ordering::Relaxed), 0);
                    }
                    if !tx.send_data(buf, false).await {
                        stop_down.notify_one();
                        break Some(CopyEnd::PeerReset(ResetReason::Shutdown));
                    }
                }
            }
        };
        (sent, end)
    };

    // tunnel → socket
    let down = async {
        let mut received = 0u64;
        let end = loop {
            match tokio::time::timeout(idle, rx.recv()).await {
                Err(_) => {
                    if now_ms(start).saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                        stop_up.notify_one();
                        break Some(CopyEnd::Idle);
                    }
                }
                Ok(Some(Inbound::Data(b))) => {
                    let wait = meter.pace(!socket_is_client, b.len() as u64);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop_down.notified() => {
                                stop_up.notify_one();
                                break Some(CopyEnd::Idle);
                            }
                        }
                    }
                    last.store(now_ms(start), Ordering::Relaxed);
                    // Written piece by piece: each write that moves bytes counts as activity,
                    // and a socket that takes nothing for the idle timeout (a client that never
                    // reads its download) ends the stream as idle.
                    let mut off = 0;
                    let mut failed = None;
                    while off < b.len() && failed.is_none() {
                        tokio::select! {
                            w = tokio::time::timeout(idle, wr.write(&b[off..])) => match w {
                                Ok(Ok(0)) | Ok(Err(_)) => failed = Some(CopyEnd::SocketError),
                                Ok(Ok(n)) => {
                                    off += n;
                                    last.store(now_ms(start), Ordering::Relaxed);
                                }
                                Err(_) => {
                                    if now_ms(start).saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                                        failed = Some(CopyEnd::Idle);
                                    }
                                }
                            },
                            _ = stop_down.notified() => failed = Some(CopyEnd::Idle),
                        }
                    }
                    if let Some(end) = failed {
                        stop_up.notify_one();
                        break Some(end);
                    }
                    received += b.len() as u64;
                    let n = b.len() as u64;
                    if pending.received.fetch_add(n, Ordering::Relaxed) + n >= METER_BATCH {
                        record(0, pending.received.swap(0, Ordering::Relaxed));
                    }
                    rx.consumed(b.len());
                }
                Ok(Some(Inbound::Fin)) => {
                    let _ = wr.shutdown().await;
                    break None;
                }
                Ok(Some(Inbound::Reset(reason, _))) => {
                    stop_up.notify_one();
                    break Some(CopyEnd::PeerReset(reason));
                }
                Ok(None) => {
                    stop_up.notify_one();
                    break Some(CopyEnd::PeerReset(ResetReason::Shutdown));
                }
            }
        };
        (received, end)
    };

    let ((sent, up_end), (received, down_end)) = tokio::join!(up, down);
    drop(pending);
    let end = match (up_end, down_end) {
        (Some(CopyEnd::SocketError), _) | (_, Some(CopyEnd::SocketError)) => CopyEnd::SocketError,
        (_, Some(e)) | (Some(e), None) => e,
        (None, None) => CopyEnd::Closed,
    };
    if end == CopyEnd::SocketError || end == CopyEnd::Idle {
        tx.reset(ResetReason::Cancel, end.as_str());
    }
    CopyStats { sent, received, end }
}

/// Reads at most `max` bytes into a new frame, after room for the frame header: through `small`
/// when `max` fits it (the frame is then allocated at the size read), straight into a frame of
/// `max` otherwise. Returns the frame and the bytes read; 0 is end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    small: &mut [u8],
    max: usize,
) -> std::io::Result<(BytesMut, usize)> {
    if max <= small.len() {
        let n = rd.read(&mut small[..max]).await?;
        let mut frame = BytesMut::with_capacity(HEADER_LEN + n);
        frame.resize(HEADER_LEN, 0);
        frame.extend_from_slice(&small[..n]);
        return Ok((frame, n));
    }
    let mut frame = BytesMut::with_capacity(HEADER_LEN + max);
    frame.resize(HEADER_LEN, 0);
    let n = (&mut *rd).take(max as u64).read_buf(&mut frame).await?;
    Ok((frame, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_sized_read_goes_through_the_small_array_into_a_frame_of_its_size() {
        let mut src: &[u8] = b"hello";
        let mut small = [0u8; IDLE_READ];
        let (frame, n) = read_frame(&mut src, &mut small, IDLE_READ).await.unwrap();
        assert_eq!(n, 5);
        assert_eq!(frame.len(), HEADER_LEN + 5);
        assert_eq!(frame.capacity(), HEADER_LEN + 5, "no room kept beyond what was read");
        assert_eq!(&frame[HEADER_LEN..], b"hello");
    }

    #[tokio::test]
    async fn a_full_frame_read_goes_straight_into_the_frame_and_stops_at_its_limit() {
        let data = vec![7u8; 3 * IDLE_READ];
        let mut src: &[u8] = &data;
        let mut small = [0u8; IDLE_READ];
        let (frame, n) = read_frame(&mut src, &mut small, 2 * IDLE_READ).await.unwrap();
        assert_eq!(n, 2 * IDLE_READ);
        assert_eq!(frame.len(), HEADER_LEN + 2 * IDLE_READ);
        assert_eq!(src.len(), IDLE_READ, "nothing read past the limit");
        // An idle-sized read never takes more than it was allowed either.
        let (_, n) = read_frame(&mut src, &mut small, 10).await.unwrap();
        assert_eq!((n, src.len()), (10, IDLE_READ - 10));
    }

    #[test]
    fn reads_step_up_when_full_and_back_down_when_short() {
        let max = 64 * 1024 - HEADER_LEN;
        // A burst: the idle-sized read fills, then a 4 KiB read, then full frames.
        assert_eq!(next_read_size(IDLE_READ, IDLE_READ, IDLE_READ, max), SMALL_READ);
        assert_eq!(next_read_size(SMALL_READ, SMALL_READ, SMALL_READ, max), max);
        assert_eq!(next_read_size(max, max, max, max), max);
        // A read limited by the window that fills its credit steps up too.
        assert_eq!(next_read_size(max, 100, 100, max), max);
        // A request head of 2.5 KiB: 1 KiB, then the rest in one small frame, staying small.
        assert_eq!(next_read_size(SMALL_READ, SMALL_READ, 1500, max), SMALL_READ);
        // Short reads step down: under 1 KiB to idle-sized, under 4 KiB to small.
        assert_eq!(next_read_size(max, max, 200, max), IDLE_READ);
        assert_eq!(next_read_size(max, max, 3000, max), SMALL_READ);
        assert_eq!(next_read_size(max, max, 20_000, max), max);
        assert_eq!(next_read_size(SMALL_READ, SMALL_READ, 10, max), IDLE_READ);
    }

    #[tokio::test]
    async fn end_of_stream_reads_zero_either_way() {
        let mut small = [0u8; IDLE_READ];
        for max in [IDLE_READ, 4 * IDLE_READ] {
            let mut src: &[u8] = b"";
            assert_eq!(read_frame(&mut src, &mut small, max).await.unwrap().1, 0);
        }
    }
}
