//! In-process tests of the multiplexer and relay: two muxes wired back to back through their
//! encoded frames (no sockets), so flow control and teardown can be checked exactly.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::copy::{self, CopyEnd, NoMeter};
use super::mux::{Inbound, Mux, MuxConfig, OpenFailure, OutQueue};
use super::protocol::Frame;
use crate::target::{OpenErrReason, ResetReason, Target};

fn cfg(window: u32) -> MuxConfig {
    MuxConfig {
        initial_window: window,
        max_window: window * 4,
        own_inflight: window * 8,
        peer_inflight: window * 8,
        ..MuxConfig::default()
    }
}

/// Forwards every frame `from` queues into `to.dispatch`, returning control frames on `ctl`.
fn wire(mut rx: OutQueue, to: Mux, ctl: tokio::sync::mpsc::UnboundedSender<Frame>) {
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let super::mux::Out::Frame(b) = out else { break };
            let f = Frame::decode(b).expect("mux emitted an invalid frame");
            match to.dispatch(f) {
                Ok(Some(c)) => {
                    let _ = ctl.send(c);
                }
                Ok(None) => {}
                Err(v) => panic!("violation: {}", v.0),
            }
        }
    });
}

/// A server mux and a node mux; the node side relays every OPEN to an in-memory echo target.
fn pair(window: u32) -> (Mux, Mux) {
    let (server, s_rx) = Mux::new(cfg(window));
    let (node, n_rx) = Mux::new(cfg(window));
    let (s_ctl, _s_ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    let (n_ctl, mut n_ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    wire(s_rx, node.clone(), n_ctl);
    wire(n_rx, server.clone(), s_ctl);
    let node2 = node.clone();
    tokio::spawn(async move {
        while let Some(f) = n_ctl_rx.recv().await {
            if let Frame::Open { stream, window, target, .. } = f {
                let Some(s) = node2.accept(stream, window, 64) else { continue };
                if target.port() == 1 {
                    s.reject(OpenErrReason::ConnectionRefused, "nothing listens on port 1");
                    continue;
                }
                // An echo "origin": whatever comes in goes back out.
                let (a, mut b) = tokio::io::duplex(64 * 1024);
                s.send_open_ok(None);
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(&mut b);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
                tokio::spawn(copy::bidirectional(a, s, Arc::new(NoMeter), false));
            }
        }
    });
    (server, node)
}

fn target() -> Target {
    Target::Domain("example.com".into(), 80)
}

#[tokio::test]
async fn bytes_cross_intact_with_windows_much_smaller_than_the_payload() {
    let (server, _node) = pair(64 * 1024);
    let stream = server.open(target(), 64, std::time::Duration::from_secs(5)).await.unwrap();
    let (client, mut app) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(copy::bidirectional(client, stream, Arc::new(NoMeter), true));
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(&mut app);
    let send = data.clone();
    let writer = async move {
        w.write_all(&send).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(writer, reader);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    let stats = relay.await.unwrap();
    assert_eq!(stats.end, CopyEnd::Closed);
    assert_eq!((stats.sent, stats.received), (5_000_000, 5_000_000));
    assert_eq!(server.active_streams(), 0, "finished streams are forgotten");
    assert_eq!(server.carried_bytes(), 10_000_000, "payload both ways, what the watchdog compares");
}

#[tokio::test]
async fn open_errors_and_stream_caps_reach_the_opener() {
    let (server, _node) = pair(64 * 1024);
    match server.open(Target::Domain("x".into(), 1), 64, std::time::Duration::from_secs(5)).await {
        Err(OpenFailure::Refused { reason: OpenErrReason::ConnectionRefused, message }) => {
            assert!(message.contains("port 1"))
        }
        other => panic!("{other:?}"),
    }
    let a = server.open(target(), 1, std::time::Duration::from_secs(5)).await.unwrap();
    assert!(matches!(server.open(target(), 1, std::time::Duration::from_secs(5)).await, Err(OpenFailure::Busy)));
    drop(a);
    assert_eq!(server.active_streams(), 0);
}

#[tokio::test]
async fn sending_beyond_the_window_resets_the_stream() {
    let (m, mut out) = Mux::new(cfg(65_536));
    let mut s = m.accept(7, 65_536, 8).unwrap();
    // The peer ignores our 64 KiB window and sends 64 KiB + 1.
    m.dispatch(Frame::Data { stream: 7, fin: false, payload: Bytes::from(vec![0u8; 65_536]) }).unwrap();
    m.dispatch(Frame::Data { stream: 7, fin: false, payload: Bytes::from_static(b"x") }).unwrap();
    let mut saw_reset = false;
    while let Some(b) = out.try_recv_frame() {
        if let Ok(Frame::Reset { stream: 7, reason: ResetReason::FlowControl, .. }) = Frame::decode(b) {
            saw_reset = true;
        }
    }
    assert!(saw_reset, "a flow-control violation resets the stream towards the peer");
    let mut got = 0;
    while let Some(ev) = s.rx.recv().await {
        match ev {
            Inbound::Data(d) => got += d.len(),
            Inbound::Reset(ResetReason::FlowControl, _) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, 65_536);
}

/// A peer that provokes answers and never reads cannot grow the outgoing queue past its bound:
/// the frame that would pass it is dropped and the mux reports the overflow once.
#[tokio::test]
async fn the_outgoing_queue_is_bounded_and_overflow_is_reported() {
    let (m, mut out) = Mux::new(MuxConfig { max_queued: 64 * 1024, ..cfg(65_536) });
    use futures_util::FutureExt;
    assert!(m.overflowed().now_or_never().is_none());
    let ack = Frame::Reset { stream: 9, reason: ResetReason::Cancel, message: "x".repeat(100) };
    // Each frame counts its bytes and a fixed overhead.
    let len = ack.encode().len() + 64;
    for _ in 0..10_000 {
        m.send_frame(&ack);
    }
    assert!(m.queued_bytes() <= 64 * 1024, "{} bytes queued", m.queued_bytes());
    assert_eq!(m.queued_bytes(), 64 * 1024 / len * len);
    assert!(m.overflowed().now_or_never().is_some());
    // The writer taking frames frees room again.
    let mut taken = 0;
    while out.try_recv().is_some() {
        taken += 1;
    }
    assert_eq!(taken, 64 * 1024 / len);
    assert_eq!(m.queued_bytes(), 0);
    // Closing queues the writer's stop sentinel, counted in and out like any frame: the count
    // does not wrap, so frames sent while the tunnel winds down are not taken for an overflow.
    m.send_frame(&ack);
    m.close("test");
    while out.try_recv().is_some() {}
    assert_eq!(m.queued_bytes(), 0);
}

#[tokio::test]
async fn window_floods_are_a_connection_violation() {
    let (m, _out) = Mux::new(cfg(65_536));
    let mut err = None;
    for _ in 0..400 {
        if let Err(e) = m.dispatch(Frame::Window { stream: 0, increment: u32::MAX }) {
            err = Some(e);
            break;
        }
    }
    assert!(err.is_some(), "unbounded connection credit must be refused");
}

#[tokio::test]
async fn closing_the_tunnel_resets_every_stream_and_fails_new_opens() {
    let (server, _node) = pair(64 * 1024);
    let mut s = server.open(target(), 64, std::time::Duration::from_secs(5)).await.unwrap();
    server.close("test");
    assert!(matches!(s.rx.recv().await, Some(Inbound::Reset(ResetReason::Shutdown, _))));
    assert!(s.tx.reserve(10).await.is_none());
    assert!(matches!(server.open(target(), 64, std::time::Duration::from_secs(1)).await, Err(OpenFailure::Closed)));
}

#[tokio::test]
async fn whoever_waits_on_the_connection_hears_that_it_was_closed() {
    let (server, _node) = pair(1024);
    let waiting = tokio::spawn({
        let server = server.clone();
        async move { server.closed().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    server.close("replaced by a newer connection");
    waiting.await.unwrap();
    // And whoever starts waiting afterwards.
    server.closed().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_is_reset_after_the_idle_timeout() {
    let (server, _node) = pair(64 * 1024);
    let stream = server.open(target(), 64, std::time::Duration::from_secs(5)).await.unwrap();
    let (client, _keep) = tokio::io::duplex(1024);
    let stats = copy::bidirectional(client, stream, Arc::new(NoMeter), true).await;
    assert_eq!(stats.end, CopyEnd::Idle);
}

#[tokio::test]
async fn frames_about_streams_the_opener_never_opened_are_violations() {
    let (m, _out) = Mux::new(MuxConfig { opens_streams: true, ..cfg(65_536) });
    let ok = |stream| Frame::OpenOk { stream, window: 1024, peer: None };
    assert!(m.dispatch(ok(1)).is_err(), "no stream was opened yet");
    assert!(m.dispatch(Frame::Data { stream: 0, fin: false, payload: Bytes::from_static(b"x") }).is_err());
    assert!(m.dispatch(Frame::Window { stream: 0, increment: 1 }).is_ok(), "stream 0 is the connection window");
    // A stream the server gave up on (its open timed out): the node's late answers are fine.
    let gave_up = m.open(Target::Domain("example.com".into(), 80), 8, std::time::Duration::from_millis(1)).await;
    assert!(gave_up.is_err());
    assert!(m.dispatch(ok(1)).is_ok(), "a late OPEN_OK");
    assert!(m.dispatch(Frame::Reset { stream: 1, reason: ResetReason::Cancel, message: String::new() }).is_ok());
    let e = m.dispatch(ok(2)).unwrap_err();
    assert!(e.0.contains("OPEN_OK for stream 2, which was never opened"), "{}", e.0);
    // The node's side accepts what the server opens, so it has no such rule.
    let (node, _out) = Mux::new(cfg(65_536));
    assert!(node.dispatch(ok(9)).is_ok());
}
