//! The stream multiplexer shared by both ends of a tunnel: stream table, credit windows,
//! connection window, and the frame dispatch that feeds them.
//!
//! It owns no socket. The session that owns the WebSocket feeds every decoded frame to
//! [`Mux::dispatch`] from its single reader task and drains the outbound queue into the
//! WebSocket from its single writer task. Control frames come back out of `dispatch` for the
//! session to handle. Locks are std mutexes held for a map lookup only, never across `.await`.
//!
//! The outbound queue is bounded in bytes ([`MuxConfig::max_queued`]): DATA is already bounded
//! by the peer's windows, but the answers a peer can provoke (HEARTBEAT_ACK, RESET, WINDOW) are
//! not, and a peer that provokes them and never reads would grow the queue without end. The
//! frame that would pass the bound is dropped and the mux is marked overflowed
//! ([`Mux::overflowed`]): the session then ends the connection (`limit_exceeded`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use super::protocol::{ErrorCode, Frame};
use crate::target::{OpenErrReason, ResetReason, Target};

/// Upper bound on credit a peer may grant, so hostile WINDOW floods cannot overflow counters.
const MAX_CREDIT: i64 = 1 << 40;

/// What one queued frame costs beyond its bytes (the queue node and the `Bytes` handle), counted
/// against [`MuxConfig::max_queued`] so that many tiny frames cannot hide behind their length.
const FRAME_OVERHEAD: usize = 64;

/// The queued cost of a frame of `len` bytes.
fn queued_cost(len: usize) -> usize {
    len.saturating_add(FRAME_OVERHEAD)
}

/// Flow-control numbers for one tunnel (SECURITY.md §2; `[limits]` in the config).
#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// Receive window we advertise for each new stream.
    pub initial_window: u32,
    /// Largest receive window auto-tuning may grow to.
    pub max_window: u32,
    /// Bytes we accept in flight on the whole connection (our connection window).
    pub own_inflight: u32,
    /// Bytes the peer accepts in flight on the whole connection.
    pub peer_inflight: u32,
    /// Largest DATA payload per frame.
    pub max_data: usize,
    /// A stream with no bytes either way for this long is reset.
    pub idle_timeout: Duration,
    /// Most bytes queued for the writer at once (DATA within the peer's windows plus the
    /// control frames on top); past it the mux overflows.
    pub max_queued: usize,
    /// This side opens the streams (the server): a frame about a stream id it never opened
    /// is a protocol violation.
    pub opens_streams: bool,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            initial_window: 256 * 1024,
            max_window: 4 * 1024 * 1024,
            own_inflight: 16 * 1024 * 1024,
            peer_inflight: 16 * 1024 * 1024,
            max_data: super::protocol::MAX_DATA_LEN,
            idle_timeout: Duration::from_secs(60),
            max_queued: 16 * 1024 * 1024 + 4 * 1024 * 1024,
            opens_streams: false,
        }
    }
}

/// What reaches a stream from the peer.
#[derive(Debug)]
pub enum Inbound {
    Data(Bytes),
    Fin,
    Reset(ResetReason, String),
}

/// Why opening a stream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenFailure {
    #[error("node refused: {reason} ({message})", reason = .reason.as_str())]
    Refused { reason: OpenErrReason, message: String },
    #[error("node did not answer the open within {0:?}")]
    Timeout(Duration),
    #[error("node connection closed")]
    Closed,
    #[error("node is at its stream limit")]
    Busy,
}

/// A violation by the peer that ends the whole connection.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MuxViolation(pub String);

/// Completes a pending open with the peer's window and dialled address, or the failure.
type OpenWaiter = oneshot::Sender<Result<(u32, Option<SocketAddr>), OpenFailure>>;

/// Send credit of one stream, shared by the writer half and the dispatcher.
#[derive(Debug)]
pub(crate) struct Credit {
    avail: AtomicI64,
    closed: AtomicBool,
    notify: Notify,
}

impl Credit {
    fn new(initial: u32) -> Self {
        Credit { avail: AtomicI64::new(i64::from(initial)), closed: AtomicBool::new(false), notify: Notify::new() }
    }
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Receive side bookkeeping of one stream, shared by the reader half and the dispatcher.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    /// Current window we granted (grows with auto-tuning).
    window: AtomicU32,
    /// Total bytes we have returned as credit (plus the initial window).
    granted: AtomicU64,
}

struct Slot {
    tx: mpsc::UnboundedSender<Inbound>,
    credit: Arc<Credit>,
    recv: Arc<RecvWindow>,
    received: u64,
    open_waiter: Option<OpenWaiter>,
}

struct Inner {
    out: mpsc::UnboundedSender<Out>,
    /// Bytes in `out` not yet taken by the writer (shared with [`OutQueue`]).
    queued: Arc<AtomicUsize>,
    /// Set once a frame would have passed `cfg.max_queued`.
    overflow: watch::Sender<bool>,
    /// Set by [`Mux::close`], for whoever waits on the connection ([`Mux::closed`]); `closed`
    /// holds the same fact for the routing's per-node checks, an atomic load.
    ended: watch::Sender<bool>,
    streams: Mutex<HashMap<u32, Slot>>,
    conn_credit: Semaphore,
    conn_unreturned: AtomicU64,
    cfg: MuxConfig,
    closed: AtomicBool,
    next_id: AtomicU32,
    active: AtomicUsize,
    /// Smoothed round-trip time in microseconds (0 = unknown), for window auto-tuning.
    rtt_us: AtomicU64,
    /// DATA payload bytes carried both ways since the tunnel opened.
    carried: AtomicU64,
}

/// One tunnel's multiplexer. Cheap to clone.
#[derive(Clone)]
pub struct Mux {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux").field("active", &self.active_streams()).finish()
    }
}

impl Mux {
    /// Creates a mux and the queue of encoded frames its writer task must send.
    pub fn new(cfg: MuxConfig) -> (Mux, OutQueue) {
        let (out, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let inner = Inner {
            out,
            queued: queued.clone(),
            overflow: watch::channel(false).0,
            ended: watch::channel(false).0,
            streams: Mutex::new(HashMap::new()),
            conn_credit: Semaphore::new(cfg.peer_inflight as usize),
            conn_unreturned: AtomicU64::new(0),
            cfg,
            closed: AtomicBool::new(false),
            next_id: AtomicU32::new(1),
            active: AtomicUsize::new(0),
            rtt_us: AtomicU64::new(0),
            carried: AtomicU64::new(0),
        };
        (Mux { inner: Arc::new(inner) }, OutQueue { rx, queued })
    }

    /// Queues encoded bytes for the writer, within `max_queued`. False when the frame was not
    /// queued: the connection is gone, or it would pass the bound (the mux is then overflowed).
    pub(crate) fn enqueue(&self, b: Bytes) -> bool {
        let n = queued_cost(b.len());
        let before = self.inner.queued.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > self.inner.cfg.max_queued {
            self.inner.queued.fetch_sub(n, Ordering::AcqRel);
            if !self.inner.overflow.send_replace(true) {
                tracing::warn!(
                    queued = before,
                    limit = self.inner.cfg.max_queued,
                    "the peer does not read what it asks for: outgoing queue full"
                );
            }
            return false;
        }
        if self.inner.out.send(Out::Frame(b)).is_err() {
            self.inner.queued.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues a WebSocket pong answering a peer's ping (older agents still send them), within
    /// `max_queued` like any frame.
    pub fn send_pong(&self, payload: Bytes) {
        let n = queued_cost(payload.len());
        let before = self.inner.queued.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > self.inner.cfg.max_queued || self.inner.out.send(Out::Pong(payload)).is_err() {
            self.inner.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Resolves once the outgoing queue has overflowed (the peer provokes frames it does not
    /// read). Cancel-safe.
    pub async fn overflowed(&self) {
        let mut rx = self.inner.overflow.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Resolves once [`Mux::close`] was called (a newer session of the device replaced this
    /// one, a kick, shutdown). Cancel-safe.
    pub async fn closed(&self) {
        let mut rx = self.inner.ended.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Bytes queued for the writer right now.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    pub fn config(&self) -> &MuxConfig {
        &self.inner.cfg
    }

    /// Streams currently open on this tunnel.
    pub fn active_streams(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// DATA payload bytes carried both ways since the tunnel opened (what the quality watchdog
    /// holds a node's own traffic counter against).
    pub fn carried_bytes(&self) -> u64 {
        self.inner.carried.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Records a round-trip sample (heartbeat or ping) for window auto-tuning.
    /// The smoothed round-trip time of the tunnel, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        match self.inner.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub fn observe_rtt(&self, rtt: Duration) {
        let sample = rtt.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.inner.rtt_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { (old * 7 + sample) / 8 };
        self.inner.rtt_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Queues an encoded frame. Fails silently once the connection is closed or its queue is
    /// full (see [`Mux::overflowed`]).
    pub fn send_frame(&self, frame: &Frame) {
        self.enqueue(frame.encode());
    }

    /// Server side: opens a stream to `target` through the peer and waits for OPEN_OK.
    pub async fn open(&self, target: Target, max_streams: usize, wait: Duration) -> Result<MuxStream, OpenFailure> {
        self.open_with(target, max_streams, wait, false).await
    }

    /// [`Mux::open`], with the OPEN's `probe` flag (a watchdog probe to the server's own probe
    /// endpoint).
    pub async fn open_with(
        &self,
        target: Target,
        max_streams: usize,
        wait: Duration,
        probe: bool,
    ) -> Result<MuxStream, OpenFailure> {
        if self.is_closed() {
            return Err(OpenFailure::Closed);
        }
        if self.inner.active.fetch_add(1, Ordering::AcqRel) >= max_streams {
            self.inner.active.fetch_sub(1, Ordering::AcqRel);
            return Err(OpenFailure::Busy);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done_rx) = oneshot::channel();
        let mut stream = self.register(id, 0, Some(done_tx));
        self.send_frame(&Frame::Open { stream: id, window: self.inner.cfg.initial_window, target, probe });
        match tokio::time::timeout(wait, done_rx).await {
            Ok(Ok(Ok((window, peer)))) => {
                stream.tx.credit.avail.fetch_add(i64::from(window), Ordering::AcqRel);
                stream.peer = peer;
                Ok(stream)
            }
            Ok(Ok(Err(e))) => {
                stream.tx.guard.finished.store(true, Ordering::Release); // the slot is already gone
                Err(e)
            }
            Ok(Err(_)) => Err(OpenFailure::Closed),
            Err(_) => Err(OpenFailure::Timeout(wait)),
        }
    }

    /// Node side: registers a stream the peer opened with `window` of send credit.
    /// Returns `None` when the node is at `max_streams` (the caller answers OPEN_ERR busy).
    pub fn accept(&self, id: u32, window: u32, max_streams: usize) -> Option<MuxStream> {
        if self.inner.active.fetch_add(1, Ordering::AcqRel) >= max_streams {
            self.inner.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(self.register(id, window, None))
    }

    fn register(&self, id: u32, credit: u32, open_waiter: Option<OpenWaiter>) -> MuxStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Credit::new(credit));
        let window = self.inner.cfg.initial_window;
        let recv = Arc::new(RecvWindow { window: AtomicU32::new(window), granted: AtomicU64::new(u64::from(window)) });
        let slot = Slot { tx, credit: credit.clone(), recv: recv.clone(), received: 0, open_waiter };
        if let Ok(mut map) = self.inner.streams.lock() {
            map.insert(id, slot);
        }
        let guard = Arc::new(Guard {
            id,
            mux: self.clone(),
            sent_fin: AtomicBool::new(false),
            got_fin: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        });
        MuxStream {
            tx: StreamTx { guard: guard.clone(), credit },
            rx: StreamRx { guard, rx, recv, consumed: 0, last_grant: tokio::time::Instant::now() },
            peer: None,
        }
    }

    fn remove(&self, id: u32) -> Option<Slot> {
        self.inner.streams.lock().ok().and_then(|mut m| m.remove(&id))
    }

    /// Feeds one frame read from the peer. Stream frames are handled here; control frames and
    /// OPEN (which needs the node's dial logic) are returned for the session to handle.
    pub fn dispatch(&self, frame: Frame) -> Result<Option<Frame>, MuxViolation> {
        if let Frame::Data { stream, .. }
        | Frame::Window { stream: stream @ 1.., .. }
        | Frame::OpenOk { stream, .. }
        | Frame::OpenErr { stream, .. }
        | Frame::Reset { stream, .. } = &frame
            && self.never_opened(*stream)
        {
            return Err(MuxViolation(format!("{} for stream {stream}, which was never opened", frame.name())));
        }
        match frame {
            Frame::Data { stream, fin, payload } => {
                let len = payload.len() as u64;
                self.inner.carried.fetch_add(len, Ordering::Relaxed);
                self.return_conn_credit(len);
                let mut reset = None;
                if let Ok(mut map) = self.inner.streams.lock()
                    && let Some(slot) = map.get_mut(&stream)
                {
                    slot.received += len;
                    if slot.received > slot.recv.granted.load(Ordering::Acquire) {
                        reset = Some((ResetReason::FlowControl, "peer sent beyond the stream window"));
                    } else if (!payload.is_empty() && slot.tx.send(Inbound::Data(payload)).is_err())
                        || (fin && slot.tx.send(Inbound::Fin).is_err())
                    {
                        reset = Some((ResetReason::Cancel, "stream closed"));
                    }
                    if reset.is_some()
                        && let Some(slot) = map.remove(&stream)
                    {
                        slot.credit.close();
                        let _ = slot.tx.send(Inbound::Reset(ResetReason::FlowControl, "flow control".into()));
                    }
                }
                if let Some((reason, message)) = reset {
                    self.send_frame(&Frame::Reset { stream, reason, message: message.into() });
                }
                Ok(None)
            }
            Frame::Window { stream: 0, increment } => {
                if self.inner.conn_credit.available_permits() as i64 + i64::from(increment) > MAX_CREDIT {
                    return Err(MuxViolation("connection window overflow".into()));
                }
                self.inner.conn_credit.add_permits(increment as usize);
                Ok(None)
            }
            Frame::Window { stream, increment } => {
                let over = self
                    .inner
                    .streams
                    .lock()
                    .ok()
                    .and_then(|m| {
                        m.get(&stream).map(|slot| {
                            let now = slot.credit.avail.fetch_add(i64::from(increment), Ordering::AcqRel)
                                + i64::from(increment);
                            slot.credit.notify.notify_one();
                            now > MAX_CREDIT
                        })
                    })
                    .unwrap_or(false);
                if over {
                    self.reset_stream(stream, ResetReason::FlowControl, "window overflow");
                }
                Ok(None)
            }
            Frame::OpenOk { stream, window, peer } => {
                let waiter = self
                    .inner
                    .streams
                    .lock()
                    .ok()
                    .and_then(|mut m| m.get_mut(&stream).and_then(|s| s.open_waiter.take()));
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok((window, peer)));
                        Ok(None)
                    }
                    None => Ok(None), // late answer for a stream we gave up on
                }
            }
            Frame::OpenErr { stream, reason, message } => {
                if let Some(mut slot) = self.remove(stream)
                    && let Some(w) = slot.open_waiter.take()
                {
                    let _ = w.send(Err(OpenFailure::Refused { reason, message }));
                }
                Ok(None)
            }
            Frame::Reset { stream, reason, message } => {
                if let Some(slot) = self.remove(stream) {
                    slot.credit.close();
                    let _ = slot.tx.send(Inbound::Reset(reason, message));
                    if let Some(w) = slot.open_waiter {
                        let _ = w.send(Err(OpenFailure::Closed));
                    }
                }
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    /// On the opening side: `stream` is an id this side has not handed out (yet). A late
    /// answer for a stream it gave up on is not this: its id was handed out.
    fn never_opened(&self, stream: u32) -> bool {
        self.inner.cfg.opens_streams && (stream == 0 || stream >= self.inner.next_id.load(Ordering::Acquire))
    }

    fn return_conn_credit(&self, len: u64) {
        let pending = self.inner.conn_unreturned.fetch_add(len, Ordering::AcqRel) + len;
        if pending >= u64::from(self.inner.cfg.own_inflight / 4).max(1) {
            self.inner.conn_unreturned.fetch_sub(pending, Ordering::AcqRel);
            self.send_frame(&Frame::Window { stream: 0, increment: pending.min(u64::from(u32::MAX)) as u32 });
        }
    }

    /// Resets one stream from our side.
    pub fn reset_stream(&self, stream: u32, reason: ResetReason, message: &str) {
        if let Some(slot) = self.remove(stream) {
            slot.credit.close();
            let _ = slot.tx.send(Inbound::Reset(reason, message.into()));
        }
        self.send_frame(&Frame::Reset { stream, reason, message: message.into() });
    }

    /// Ends the connection: every stream sees a reset, pending opens fail, new opens fail.
    pub fn close(&self, reason: &str) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.ended.send_replace(true);
        let slots: Vec<Slot> =
            self.inner.streams.lock().map(|mut m| m.drain().map(|(_, s)| s).collect()).unwrap_or_default();
        for slot in slots {
            slot.credit.close();
            let _ = slot.tx.send(Inbound::Reset(ResetReason::Shutdown, reason.into()));
            if let Some(w) = slot.open_waiter {
                let _ = w.send(Err(OpenFailure::Closed));
            }
        }
        self.inner.conn_credit.close();
        // Ask the writer to stop once what is queued (e.g. an ERROR frame) has been sent. The
        // sentinel is counted like a frame (the writer counts it off) but never refused.
        self.inner.queued.fetch_add(queued_cost(0), Ordering::AcqRel);
        if self.inner.out.send(Out::Close).is_err() {
            self.inner.queued.fetch_sub(queued_cost(0), Ordering::AcqRel);
        }
    }

    /// Queues a connection-level ERROR frame (the writer closes after sending it).
    pub fn send_error(&self, code: ErrorCode, message: &str) {
        self.send_frame(&Frame::Error { code, message: message.into() });
    }
}

/// What the writer is asked to send.
#[derive(Debug)]
pub enum Out {
    /// An encoded tunnel frame (one binary WebSocket message).
    Frame(Bytes),
    /// A WebSocket pong with this payload.
    Pong(Bytes),
    /// Close after what was queued before.
    Close,
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Frame(b) | Out::Pong(b) => b.len(),
            Out::Close => 0,
        }
    }
}

/// The writer's end of the outbound queue: encoded frames in order, each counted off the
/// mux's queued bytes as it is taken.
#[derive(Debug)]
pub struct OutQueue {
    rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
}

impl OutQueue {
    /// The next entry; `None` once every mux handle is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Out> {
        let o = self.rx.recv().await?;
        self.queued.fetch_sub(queued_cost(o.len()), Ordering::AcqRel);
        Some(o)
    }

    /// The next entry if one is queued now.
    pub fn try_recv(&mut self) -> Option<Out> {
        let o = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(queued_cost(o.len()), Ordering::AcqRel);
        Some(o)
    }

    /// The next encoded tunnel frame queued now, skipping pongs and the close request (tests).
    #[cfg(test)]
    pub fn try_recv_frame(&mut self) -> Option<Bytes> {
        loop {
            match self.try_recv()? {
                Out::Frame(b) => return Some(b),
                Out::Pong(_) | Out::Close => {}
            }
        }
    }
}

/// One multiplexed stream: a sending half and a receiving half that can be driven by two
/// loops at once. When both halves are gone, a stream that did not finish cleanly (FIN both
/// ways) is reset towards the peer.
pub struct MuxStream {
    pub tx: StreamTx,
    pub rx: StreamRx,
    peer: Option<SocketAddr>,
}

impl std::fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.tx.guard.id).finish()
    }
}

struct Guard {
    id: u32,
    mux: Mux,
    sent_fin: AtomicBool,
    got_fin: AtomicBool,
    finished: AtomicBool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.mux.inner.active.fetch_sub(1, Ordering::AcqRel);
        let clean = self.sent_fin.load(Ordering::Acquire) && self.got_fin.load(Ordering::Acquire);
        if self.finished.load(Ordering::Acquire) || clean {
            self.mux.remove(self.id);
        } else {
            self.mux.reset_stream(self.id, ResetReason::Cancel, "stream abandoned");
        }
    }
}

impl MuxStream {
    pub fn id(&self) -> u32 {
        self.tx.guard.id
    }

    /// The address the node connected to (from OPEN_OK), when it said.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Node side: tells the server the dial succeeded.
    pub fn send_open_ok(&self, peer: Option<SocketAddr>) {
        let mux = &self.tx.guard.mux;
        mux.send_frame(&Frame::OpenOk { stream: self.id(), window: mux.inner.cfg.initial_window, peer });
    }

    /// Node side: tells the server the dial failed and forgets the stream.
    pub fn reject(self, reason: OpenErrReason, message: &str) {
        let g = &self.tx.guard;
        g.finished.store(true, Ordering::Release);
        g.mux.remove(g.id);
        g.mux.send_frame(&Frame::OpenErr { stream: g.id, reason, message: message.into() });
    }

    /// Abandons the stream with a RESET to the peer.
    pub fn reset(self, reason: ResetReason, message: &str) {
        self.tx.reset(reason, message);
    }

    pub fn into_split(self) -> (StreamTx, StreamRx) {
        (self.tx, self.rx)
    }
}

/// The sending half of a stream.
pub struct StreamTx {
    guard: Arc<Guard>,
    credit: Arc<Credit>,
}

impl StreamTx {
    /// Waits until send credit is available and returns how many bytes may be sent now, at
    /// most `max`. `None` when the stream is dead.
    pub async fn reserve(&self, max: usize) -> Option<usize> {
        loop {
            if self.credit.closed.load(Ordering::Acquire) {
                return None;
            }
            let avail = self.credit.avail.load(Ordering::Acquire);
            if avail > 0 {
                return Some((avail as u64).min(max as u64) as usize);
            }
            self.credit.notify.notified().await;
        }
    }

    /// Sends one DATA frame. The first [`HEADER_LEN`](super::protocol::HEADER_LEN) bytes of
    /// `frame` are reserved for the header; the payload is the rest (at most the reserved
    /// credit). Takes connection credit, waiting for it if needed. False when the tunnel is gone.
    pub async fn send_data(&mut self, mut frame: bytes::BytesMut, fin: bool) -> bool {
        use super::protocol::{HEADER_LEN, write_data_header};
        let n = frame.len().saturating_sub(HEADER_LEN);
        let mux = &self.guard.mux;
        if n > 0 {
            match mux.inner.conn_credit.acquire_many(n as u32).await {
                Ok(p) => p.forget(),
                Err(_) => return false,
            }
            self.credit.avail.fetch_sub(n as i64, Ordering::AcqRel);
            mux.inner.carried.fetch_add(n as u64, Ordering::Relaxed);
        }
        write_data_header(&mut frame, self.guard.id, fin);
        if fin {
            self.guard.sent_fin.store(true, Ordering::Release);
        }
        // A read much shorter than its buffer (a 4 KiB burst frame, a full frame) would pin all
        // of it while it waits in the queue, so it is copied to its own size.
        let frame = if frame.capacity() > 2 * frame.len() + FRAME_OVERHEAD {
            Bytes::copy_from_slice(&frame)
        } else {
            frame.freeze()
        };
        mux.enqueue(frame)
    }

    /// Sends our FIN without payload.
    pub fn send_fin(&mut self) {
        if !self.guard.sent_fin.swap(true, Ordering::AcqRel) {
            self.guard.mux.send_frame(&Frame::Data { stream: self.guard.id, fin: true, payload: Bytes::new() });
        }
    }

    /// Abandons the stream with a RESET to the peer (both halves see it).
    pub fn reset(&self, reason: ResetReason, message: &str) {
        self.guard.finished.store(true, Ordering::Release);
        self.guard.mux.reset_stream(self.guard.id, reason, message);
    }

    pub fn max_data(&self) -> usize {
        self.guard.mux.inner.cfg.max_data
    }

    pub fn idle_timeout(&self) -> Duration {
        self.guard.mux.inner.cfg.idle_timeout
    }
}

/// The receiving half of a stream.
pub struct StreamRx {
    guard: Arc<Guard>,
    rx: mpsc::UnboundedReceiver<Inbound>,
    recv: Arc<RecvWindow>,
    consumed: u64,
    last_grant: tokio::time::Instant,
}

impl StreamRx {
    /// Next inbound event. `None` means the mux forgot the stream (connection closed).
    pub async fn recv(&mut self) -> Option<Inbound> {
        let ev = self.rx.recv().await;
        match &ev {
            Some(Inbound::Fin) => self.guard.got_fin.store(true, Ordering::Release),
            Some(Inbound::Reset(..)) | None => self.guard.finished.store(true, Ordering::Release),
            Some(Inbound::Data(_)) => {}
        }
        ev
    }

    /// Returns credit for `n` bytes delivered to our socket, growing the window when a whole
    /// half-window drained in less than about two round trips (docs/protocol.md).
    pub fn consumed(&mut self, n: usize) {
        self.consumed += n as u64;
        let window = self.recv.window.load(Ordering::Relaxed);
        if self.consumed < u64::from(window / 2) {
            return;
        }
        let inner = &self.guard.mux.inner;
        let rtt = Duration::from_micros(inner.rtt_us.load(Ordering::Relaxed).max(1000));
        let mut grow = 0u32;
        if window < inner.cfg.max_window && self.last_grant.elapsed() < rtt * 2 {
            let new = window.saturating_mul(2).min(inner.cfg.max_window);
            grow = new - window;
            self.recv.window.store(new, Ordering::Relaxed);
        }
        self.last_grant = tokio::time::Instant::now();
        let inc = (self.consumed + u64::from(grow)).min(u64::from(u32::MAX));
        self.consumed = 0;
        self.recv.granted.fetch_add(inc, Ordering::AcqRel);
        self.guard.mux.send_frame(&Frame::Window { stream: self.guard.id, increment: inc as u32 });
    }
}
