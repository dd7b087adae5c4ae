//! `traffix node stats` and `traffix node unpair`: one control request (docs/protocol.md "Control
//! requests", version 2) on a control-only session with the saved identity, so it works whether
//! or not the agent is serving at the same time (a control-only session does not replace the
//! serving tunnel).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::warn;

use super::NodeOptions;
use super::state::NodeIdentity;
use crate::identity::challenge_message;
use crate::tunnel::protocol::{
    self, CONTROL_VERSION, ErrorCode, Frame, Hello, Proof, Stats, StatsEntry, StatsRequest, StatsStatus,
};
use crate::tunnel::ws::{self, ReadEnd};

/// How long the whole exchange may take, handshake included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to ask the server.
#[derive(Debug, Clone)]
pub enum Request {
    /// The last `days` days and `months` months of this device's traffic and earnings.
    Stats { days: u16, months: u16 },
    /// Forget this device; `reason` goes into the server's audit log.
    Unpair { reason: Option<String> },
}

/// One period of [`StatsView`]: its first UTC day, bytes both ways and earnings.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeriodView {
    /// `YYYY-MM-DD` for a day, `YYYY-MM` for a month.
    pub period: String,
    pub bytes: u64,
    /// Decimal, in `currency` (e.g. `0.42`).
    pub earned: String,
    /// The same in micro-units (`1000000` = 1.00).
    pub earned_micros: u64,
}

/// The server's numbers for this device, as `traffix node stats` prints them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsView {
    pub device: String,
    pub currency: String,
    pub days: Vec<PeriodView>,
    pub months: Vec<PeriodView>,
}

impl StatsView {
    fn new(device: String, s: &Stats) -> Self {
        let period = |e: &StatsEntry, month: bool| {
            let (y, m, d) = crate::units::civil_from_days(i64::from(e.start_day));
            PeriodView {
                period: if month { format!("{y:04}-{m:02}") } else { format!("{y:04}-{m:02}-{d:02}") },
                bytes: e.bytes,
                earned: crate::money::Micros(e.earned).to_string(),
                earned_micros: e.earned,
            }
        };
        StatsView {
            device,
            currency: s.currency.clone().unwrap_or_default(),
            days: s.days.iter().map(|e| period(e, false)).collect(),
            months: s.months.iter().map(|e| period(e, true)).collect(),
        }
    }
}

/// What the server answered.
#[derive(Debug)]
pub enum Answer {
    Stats(StatsView),
    /// The server forgot the device and the identity file was deleted.
    Unpaired {
        device: String,
    },
}

/// Connects with the identity in `opts.state`, asks `req`, and returns the answer. After
/// UNPAIRED it deletes the identity file: the key is worthless now, and a new pairing makes a
/// new one.
pub async fn ask(opts: &NodeOptions, req: Request) -> Result<Answer, String> {
    let identity = NodeIdentity::load(&opts.state)?
        .ok_or_else(|| format!("{} holds no node identity: pair first with --pair LINK", opts.state.display()))?;
    if !identity.paired {
        return Err("this node was never paired: run `traffix node --pair LINK` first".into());
    }
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, connect(opts, &identity, &req))
        .await
        .map_err(|_| format!("no answer from {} within {} s", identity.server, EXCHANGE_TIMEOUT.as_secs()))??;
    if let Answer::Unpaired { .. } = answer {
        forget(&opts.state)?;
    }
    Ok(answer)
}

/// Deletes the identity file (a missing one is fine: it is gone either way).
fn forget(state: &Path) -> Result<(), String> {
    match std::fs::remove_file(state) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("the server forgot this device, but {} could not be deleted: {e}", state.display())),
    }
}

async fn connect(opts: &NodeOptions, identity: &NodeIdentity, req: &Request) -> Result<Answer, String> {
    let server = identity.server.clone();
    let tcp = super::dial_server(opts, &server).await?;
    if identity.insecure {
        warn!("connecting over plain ws:// (the server runs --insecure-http; development only)");
        let wsock = super::upgrade(opts, format!("ws://{server}/v1/tunnel"), tcp).await?;
        return exchange(wsock, identity, req).await;
    }
    let host = server.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(&server).to_owned();
    let tls_cfg = crate::tls::pinned_client_config(identity.pin_bytes()?).map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| format!("bad server name {host:?}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {server} failed (wrong pin?): {e}"))?;
    let wsock = super::upgrade(opts, format!("wss://{server}/v1/tunnel"), tls).await?;
    exchange(wsock, identity, req).await
}

/// The server's refusal in words; version 1 servers are told apart.
fn refusal(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::VersionUnsupported => {
            format!(
                "the server does not support control requests (it needs protocol version {CONTROL_VERSION}): {message}"
            )
        }
        c => format!("server refused: {}: {message}", c.describe()),
    }
}

async fn exchange<S>(mut wsock: ws::WsConn<S>, identity: &NodeIdentity, req: &Request) -> Result<Answer, String>
where
    S: ws::WsRead + tokio::io::AsyncWrite,
{
    let pin = identity.pin_bytes()?;
    let keypair = identity.keypair()?;
    let device_id = identity.device_id()?;
    let step = |e: ReadEnd| format!("control session: {e}");
    let hello = Hello {
        min_version: CONTROL_VERSION,
        max_version: protocol::PROTOCOL_VERSION,
        device_id: Some(device_id),
        agent: Some(format!("traffix-node/{}", env!("CARGO_PKG_VERSION"))),
        max_streams: Some(0),
        max_inflight: None,
        control_only: true,
    };
    ws::send_handshake_frame(&mut wsock, &Frame::Hello(hello)).await.map_err(step)?;
    let challenge = match ws::read_handshake_frame(&mut wsock).await.map_err(step)? {
        Frame::Challenge(c) => c,
        Frame::Error { code, message } => return Err(refusal(code, &message)),
        other => return Err(format!("expected CHALLENGE, got {}", other.name())),
    };
    let signature = keypair.sign(&challenge_message(&pin, &device_id, &challenge.nonce)).as_ref().to_vec();
    ws::send_handshake_frame(&mut wsock, &Frame::Proof(Proof { nonce: challenge.nonce, signature }))
        .await
        .map_err(step)?;
    match ws::read_handshake_frame(&mut wsock).await.map_err(step)? {
        Frame::Welcome(_) => {}
        Frame::Error { code, message } => return Err(refusal(code, &message)),
        other => return Err(format!("expected WELCOME, got {}", other.name())),
    }
    let request_id = crate::auth::random_bytes::<4>().map(u32::from_be_bytes).map_err(|e| e.to_string())?;
    let frame = match req {
        Request::Stats { days, months } => {
            Frame::StatsRequest(StatsRequest { request_id, days: *days, months: *months })
        }
        Request::Unpair { reason } => Frame::Unpair { request_id, reason: reason.clone() },
    };
    ws::send_handshake_frame(&mut wsock, &frame).await.map_err(step)?;
    let device = hex::encode(device_id);
    let answer = loop {
        match ws::read_handshake_frame(&mut wsock).await.map_err(step)? {
            Frame::Stats(s) if s.request_id == request_id => match s.status {
                StatsStatus::Ok => break Answer::Stats(StatsView::new(device, &s)),
                StatsStatus::RateLimited => {
                    return Err(format!(
                        "the server asks to wait {} s before the next request",
                        s.retry_after_s.unwrap_or(10)
                    ));
                }
                StatsStatus::Unavailable => {
                    return Err("the server has no numbers to give (billing is off, or it could not read them)".into());
                }
            },
            Frame::Unpaired { request_id: id } if id == request_id => break Answer::Unpaired { device },
            Frame::HeartbeatAck(_) | Frame::Challenge(_) | Frame::Stats(_) | Frame::Unpaired { .. } => {}
            Frame::Error { code, message } => return Err(refusal(code, &message)),
            other => return Err(format!("unexpected {} from the server", other.name())),
        }
    };
    let _ = wsock.close().await;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_shown_as_dates_and_decimal_money() {
        let s = Stats {
            currency: Some("EUR".into()),
            days: vec![StatsEntry { start_day: 20_513, bytes: 5, earned: 1_250_000 }],
            months: vec![StatsEntry { start_day: 20_513, bytes: 5, earned: 7 }],
            ..Stats::default()
        };
        let v = StatsView::new("ab".into(), &s);
        assert_eq!(
            v.days,
            vec![PeriodView { period: "2026-03-01".into(), bytes: 5, earned: "1.25".into(), earned_micros: 1_250_000 }]
        );
        assert_eq!(v.months[0].period, "2026-03");
        assert_eq!(v.months[0].earned, "0.000007");
        assert_eq!(v.currency, "EUR");
    }

    #[test]
    fn version_1_servers_are_named_in_the_refusal() {
        assert!(refusal(ErrorCode::VersionUnsupported, "x").contains("version 2"));
        assert!(refusal(ErrorCode::AuthFailed, "unknown device").contains("unknown device"));
    }
}
