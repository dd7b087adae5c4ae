//! Where a client's stream goes and why it did not get there: the [`Target`] (an IP endpoint or a
//! name the node resolves), the node's [`OpenErrReason`] for an open it refused, and the
//! [`ResetReason`] a stream ended with. Leaf types: the front-ends, the relay and its router, the
//! node agent and the tunnel share them, and this module imports nothing of the project
//! (`tunnel::protocol` encodes them; docs/protocol.md gives their numbers).

use std::net::SocketAddr;

/// Where a stream should go: an IP endpoint or a name the node resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl Target {
    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(a) => a.port(),
            Target::Domain(_, p) => *p,
        }
    }

    /// The host part as text (no brackets, no port).
    pub fn host(&self) -> String {
        match self {
            Target::Ip(a) => a.ip().to_string(),
            Target::Domain(d, _) => d.clone(),
        }
    }
}

/// `host:port` for logs, session rows and messages. A name is client text (a SOCKS5 name may
/// hold any byte), so control characters and backslashes are written escaped (`\r`, `\n`,
/// `\0`, `\\`): a target can never forge a log line or a table row.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        match self {
            Target::Ip(a) => write!(f, "{a}"),
            Target::Domain(d, p) => {
                for c in d.chars() {
                    if c.is_control() || c == '\\' {
                        write!(f, "{}", c.escape_debug())?;
                    } else {
                        f.write_char(c)?;
                    }
                }
                write!(f, ":{p}")
            }
        }
    }
}

/// Why a node could not open a stream. The proxy maps these to SOCKS5 replies and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenErrReason {
    RefusedByPolicy = 1,
    DnsFailed = 2,
    ConnectionRefused = 3,
    Timeout = 4,
    HostUnreachable = 5,
    NetworkUnreachable = 6,
    NodeBusy = 7,
    Draining = 8,
    Internal = 9,
}

impl OpenErrReason {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::RefusedByPolicy,
            2 => Self::DnsFailed,
            3 => Self::ConnectionRefused,
            4 => Self::Timeout,
            5 => Self::HostUnreachable,
            6 => Self::NetworkUnreachable,
            7 => Self::NodeBusy,
            8 => Self::Draining,
            _ => Self::Internal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefusedByPolicy => "refused_by_policy",
            Self::DnsFailed => "dns_failed",
            Self::ConnectionRefused => "connection_refused",
            Self::Timeout => "timeout",
            Self::HostUnreachable => "host_unreachable",
            Self::NetworkUnreachable => "network_unreachable",
            Self::NodeBusy => "node_busy",
            Self::Draining => "draining",
            Self::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    Cancel = 0,
    ProtocolViolation = 1,
    FlowControl = 2,
    IdleTimeout = 3,
    Internal = 4,
    Shutdown = 5,
    Billing = 6,
}

impl ResetReason {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Cancel,
            1 => Self::ProtocolViolation,
            2 => Self::FlowControl,
            3 => Self::IdleTimeout,
            5 => Self::Shutdown,
            6 => Self::Billing,
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_display_control_bytes_escaped() {
        let t = |d: &str| Target::Domain(d.into(), 80).to_string();
        assert_eq!(t("example.com"), "example.com:80");
        assert_eq!(t("bücher.de"), "bücher.de:80");
        assert_eq!(t("evil\r\nX-Injected: 1"), "evil\\r\\nX-Injected: 1:80");
        assert_eq!(t("nul\0tab\tdel\u{7f}"), "nul\\0tab\\tdel\\u{7f}:80");
        assert_eq!(t("back\\slash"), "back\\\\slash:80");
        assert_eq!(Target::Ip("[::1]:443".parse().unwrap()).to_string(), "[::1]:443");
    }
}
