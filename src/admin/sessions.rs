//! Traffic (`traffix session list`, `traffix usage`): client streams, and zero-filled usage
//! series per hour or day of a client, an owner's nodes, a device, a sub-user or everything.

use serde::{Deserialize, Serialize};

use super::views::{SessionView, UsagePoint, UsageView, rfc3339};
use super::{AdminCtx, AdminError, Command, Window};
use crate::store::{SessionFilter, UsageBucket, now_secs};

/// Client streams, newest first; with `user`, only that client's (an unknown user is
/// `not_found`); with `node_ip`, only those a node with that public IP carried; only those
/// overlapping `window` (open at some moment from `since` to `until`; a live stream lasts until
/// now), at most 100 by default. The window's `before` is a session `id`: the next page of a list
/// continues before the smallest `id` of the one before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionList {
    pub user: Option<String>,
    #[serde(default)]
    pub node_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Usage per hour or day of a client (`client:NAME`), an owner's nodes (`owner:NAME`), one
/// device (`device:ID`), a sub-user (`sub:NAME`) or `all`, the last `last` buckets, zero-filled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub subject: String,
    /// `hour` or `day`.
    pub by: String,
    pub last: Option<u64>,
}

impl Command for SessionList {
    type Output = Vec<SessionView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<SessionView>, AdminError> {
        if let Some(u) = &self.user {
            ctx.require_user(u)?;
        }
        let node_ip = match self.node_ip.as_deref().map(str::trim) {
            None => None,
            // The canonical spelling, as the session rows store it.
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| AdminError::new("invalid", format!("{ip:?} is not an IP address")))?
                    .to_string(),
            ),
        };
        let window = Window { limit: Some(self.window.limit.unwrap_or(100)), ..self.window };
        let filter = SessionFilter { client: self.user.as_deref(), node_ip: node_ip.as_deref(), window };
        let list = ctx.store.list_sessions(&filter)?;
        Ok(list.iter().map(SessionView::from).collect())
    }
}

impl Command for Usage {
    type Output = UsageView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UsageView, AdminError> {
        ctx.usage(&self.subject, &self.by, self.last)
    }
}

impl AdminCtx {
    /// A zero-filled usage series of `subject`, the last `last` hours or days up to now.
    pub fn usage(&self, subject: &str, by: &str, last: Option<u64>) -> Result<UsageView, AdminError> {
        let bad_subject = || AdminError::new("invalid", "the subject is client:NAME, owner:NAME, device:ID or all");
        let subject = match subject.split_once(':') {
            None if subject == "all" => subject.to_owned(),
            None => return Err(bad_subject()),
            Some((kind @ ("client" | "owner"), key)) => {
                if self.store.get_user(key)?.is_none() {
                    return Err(AdminError::new("not_found", format!("no user {key:?}")));
                }
                format!("{kind}:{key}")
            }
            Some(("device", key)) => format!("device:{}", self.find_device(key)?.id),
            Some(("sub", key)) => {
                if self.store.get_subuser(key)?.is_none() {
                    return Err(AdminError::new("not_found", format!("no sub-user {key:?}")));
                }
                format!("sub:{key}")
            }
            Some(_) => return Err(bad_subject()),
        };
        let (width, default_last) = match by {
            "hour" => (1u64, 24u64),
            "day" => (24, 30),
            _ => return Err(AdminError::new("invalid", "--by is hour or day")),
        };
        let last = last.unwrap_or(default_last).clamp(1, 24 * 366 / width);
        let now_bucket = now_secs() / 3600 / width;
        let first = now_bucket + 1 - last;
        let rows = self.store.usage_series(&subject, first * width, (now_bucket + 1) * width)?;
        let mut buckets = vec![UsageBucket::default(); last as usize];
        let mut total = UsageBucket::default();
        for (hour, b) in rows {
            total.add(&b);
            if let Some(slot) = buckets.get_mut((hour / width - first) as usize) {
                slot.add(&b);
            }
        }
        Ok(UsageView {
            subject,
            by: by.to_owned(),
            series: buckets
                .iter()
                .enumerate()
                .map(|(i, b)| UsagePoint::new(Some(rfc3339((first + i as u64) * width * 3600)), b))
                .collect(),
            total: UsagePoint::new(None, &total),
        })
    }
}
