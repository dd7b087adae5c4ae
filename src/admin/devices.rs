//! Pairing and devices (`traffix pair`, `traffix device …`): one-time pairing links, the device
//! list with each node's live state, ban and unban, and finding a device by id prefix or vIP.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::{DeviceView, PairView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, PAIR_CODE_TTL_SECS, Window};
use crate::relay::live::Cut;
use crate::store::{DeviceRecord, PairCode, now_secs};
use crate::tunnel::protocol::ErrorCode;

/// Creates a one-time pairing link for a new node of `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pair {
    pub name: String,
}

/// Devices paired inside `window`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceList {
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Bans a device (id, id prefix or virtual IP); a connected one is disconnected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceBan {
    pub id: String,
    pub reason: String,
}

/// Sets a device's quality state by hand (`healthy`, `degraded`, `flagged`) with a note, or
/// gives it back to the watchdog (`auto`). Banning stays `device ban`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceQuality {
    pub id: String,
    pub state: String,
    pub note: String,
}

/// Removes (unpairs) a device: it no longer authenticates, its live streams are cut and its
/// tunnel is closed with `device_removed`; its vIP stays reserved and its history stays. The
/// device itself runs this over the tunnel (UNPAIR, actor `device:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRemove {
    pub id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Lifts a device's ban; the reason, if given, goes into the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceUnban {
    pub id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Command for Pair {
    type Output = PairView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("pair.create", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<PairView, AdminError> {
        if ctx.public_address.is_empty() {
            return Err(AdminError::new(
                "pairing_off",
                "pairing is off: this server has no public address for nodes to dial; set \
                 server.public_address = \"HOST:PORT\" in traffix.toml and restart the server",
            ));
        }
        let name = self.name;
        let code = crate::auth::new_pairing_code().map_err(|e| AdminError::new("internal", e.to_string()))?;
        let now = now_secs();
        let expires_at = now + PAIR_CODE_TTL_SECS;
        match ctx.store.get_user(&name)? {
            None => return Err(AdminError::new("not_found", format!("no user {name:?}"))),
            Some(u) if u.disabled => {
                return Err(AdminError::new("disabled", format!("user {name:?} is disabled")));
            }
            Some(_) => {}
        }
        ctx.store.create_pair_code(
            &crate::auth::pairing_code_hash(&code),
            &PairCode { user: name.clone(), created_at: now, expires_at, used: false, used_by: None },
        )?;
        let link = crate::node::state::PairLink {
            server: ctx.public_address.clone(),
            pin: crate::tls::parse_pin(&ctx.pin).unwrap_or_default(),
            code: code.clone(),
            insecure: ctx.insecure_http,
        }
        .to_link();
        Ok(PairView { link, code, expires_at: rfc3339(expires_at), user: name })
    }
}

impl Command for DeviceList {
    type Output = Vec<DeviceView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<DeviceView>, AdminError> {
        // With the last-seen rows not yet written.
        let mut devices = crate::tunnel::seen::list_devices(&ctx.store, ctx.live.as_ref().map(|l| l.seen.as_ref()))?;
        devices.sort_by(|a, b| (a.paired_at, &a.id).cmp(&(b.paired_at, &b.id)));
        let keys = key_accounts(&devices);
        let devices = self.window.apply(devices, |d| d.paired_at);
        Ok(devices.iter().map(|d| ctx.device_view_with(d, &keys)).collect())
    }
}

impl Command for DeviceBan {
    type Output = DeviceView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("device.ban", &self.id).reason(Some(self.reason.clone())))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.device_before(&self.id)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeviceView, AdminError> {
        let DeviceBan { id, reason } = self;
        let dev = ctx.find_device(&id)?;
        let raw = hex::decode(&dev.id).map_err(|_| AdminError::new("store_error", "corrupt device id"))?;
        let dev = ctx.store.update_device(&raw, |d| {
            d.banned = true;
            d.ban_reason = Some(reason.clone());
        })?;
        if let (Some(l), Ok(id16)) = (&ctx.live, <[u8; 16]>::try_from(raw.as_slice())) {
            // Its streams end as banned (their session rows say so) before its tunnel goes.
            ctx.cut(Cut::Device(id16), "device_banned");
            l.registry.kick(&id16, ErrorCode::DeviceBanned, &format!("device banned: {reason}"));
        }
        tracing::info!(device = %dev.id, %reason, "device banned");
        ctx.notify(crate::notify::Event::NodeFlagged {
            owner: dev.owner.clone(),
            device: dev.id.clone(),
            vip: dev.vip.to_string(),
            banned: true,
            reason: reason.clone(),
        });
        Ok(ctx.device_view(&dev))
    }
}

impl Command for DeviceRemove {
    type Output = DeviceView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("device.remove", &self.id).reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.device_before(&self.id)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeviceView, AdminError> {
        let dev = ctx.find_device(&self.id)?;
        // The device's row is what keeps its key out: removing a banned device would lift the
        // ban (the key could pair again), so a ban is lifted on purpose first.
        if dev.banned {
            return Err(AdminError::new(
                "conflict",
                format!("device {} is banned: removing it would let its key pair again; unban it first", dev.vip),
            ));
        }
        let raw = hex::decode(&dev.id).map_err(|_| AdminError::new("store_error", "corrupt device id"))?;
        let view = ctx.device_view(&dev);
        ctx.store.remove_device(&raw)?;
        if let (Some(l), Ok(id16)) = (&ctx.live, <[u8; 16]>::try_from(raw.as_slice())) {
            // Its streams end (their session rows say why) before its tunnel goes.
            ctx.cut(Cut::Device(id16), "device_removed");
            l.registry.kick(&id16, ErrorCode::DeviceRemoved, "this device was removed from the server: pair it again");
            // Its quality record went with it in the store; the watchdog forgets it too.
            if let Some(w) = &l.watchdog {
                w.forget(&id16);
            }
        }
        tracing::info!(device = %dev.id, owner = %dev.owner, reason = self.reason.as_deref(), "device removed");
        Ok(view)
    }
}

impl Command for DeviceUnban {
    type Output = DeviceView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("device.unban", &self.id).reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.device_before(&self.id)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeviceView, AdminError> {
        let dev = ctx.find_device(&self.id)?;
        let raw = hex::decode(&dev.id).map_err(|_| AdminError::new("store_error", "corrupt device id"))?;
        let dev = ctx.store.update_device(&raw, |d| {
            d.banned = false;
            d.ban_reason = None;
        })?;
        if let (Some(w), Some(id)) = (ctx.live.as_ref().and_then(|l| l.watchdog.as_ref()), dev.device_id()) {
            w.unbanned(&id, now_secs());
        }
        tracing::info!(device = %dev.id, reason = self.reason.as_deref(), "device unbanned");
        Ok(ctx.device_view(&dev))
    }
}

impl Command for DeviceQuality {
    type Output = DeviceView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("device.quality_override", &self.id).reason(Some(format!("{}: {}", self.state, self.note))))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.device_before(&self.id)
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<DeviceView, AdminError> {
        let state = match self.state.trim().to_ascii_lowercase().as_str() {
            "auto" => None,
            s => match crate::watchdog::quality::State::parse(s) {
                Some(crate::watchdog::quality::State::Banned) | None => {
                    return Err(AdminError::new(
                        "invalid",
                        format!(
                            "quality state {:?}: use healthy, degraded, flagged or auto (to ban: traffix device ban)",
                            self.state
                        ),
                    ));
                }
                st => st,
            },
        };
        let note = super::checked_reason(&self.note)
            .map_err(|_| AdminError::new("invalid", "an override needs a note (1-500 characters)"))?;
        let dev = ctx.find_device(&self.id)?;
        let Some(w) = ctx.live.as_ref().and_then(|l| l.watchdog.as_ref()) else {
            return Err(AdminError::new("offline", "the quality watchdog runs in the server: start `traffix serve`"));
        };
        let id = dev.device_id().ok_or_else(|| AdminError::new("store_error", "corrupt device id"))?;
        if let Some(t) = w.set_override(&id, &dev.owner, state, &note, actor, now_secs()) {
            tracing::info!(device = %dev.id, to = t.to.as_str(), %note, "device quality set by an admin");
        }
        Ok(ctx.device_view(&dev))
    }
}

/// Attestation key (SHA-256 hex) → the accounts with a device it attested.
pub type KeyAccounts = HashMap<String, BTreeSet<String>>;

/// Which accounts each attestation key appears on, over `devices`.
pub fn key_accounts(devices: &[DeviceRecord]) -> KeyAccounts {
    let mut out: KeyAccounts = HashMap::new();
    for d in devices {
        if let Some(k) = d.trust.as_ref().and_then(|t| t.attestation_key.as_ref()) {
            out.entry(k.clone()).or_default().insert(d.owner.clone());
        }
    }
    out
}

impl AdminCtx {
    /// A device with its live state when connected.
    pub fn device_view(&self, d: &DeviceRecord) -> DeviceView {
        let shared = d.trust.as_ref().and_then(|t| t.attestation_key.as_ref());
        let keys = match shared {
            Some(_) => key_accounts(&self.store.list_devices().unwrap_or_default()),
            None => KeyAccounts::new(),
        };
        self.device_view_with(d, &keys)
    }

    /// [`AdminCtx::device_view`] with the accounts of every attestation key worked out once.
    pub fn device_view_with(&self, d: &DeviceRecord, keys: &KeyAccounts) -> DeviceView {
        // The registry first: a node that left has recorded its last row by then. That row may
        // still wait for the batched writer.
        let live = self.live.as_ref().and_then(|l| d.device_id().and_then(|id| l.registry.get(&id)));
        let pending = self.live.as_ref().and_then(|l| l.seen.overlay(d));
        let d = pending.as_ref().unwrap_or(d);
        let status = live.as_ref().map(|n| n.status());
        let today = self.store.device_today(&d.id, now_secs()).unwrap_or_default();
        let name = |v: Result<Value, serde_json::Error>| v.ok().and_then(|v| v.as_str().map(str::to_owned));
        let ip = live.as_ref().map(|n| n.public_ip).or_else(|| d.last_ip.as_deref().and_then(|ip| ip.parse().ok()));
        let asn = self.live.as_ref().zip(ip).and_then(|(l, ip)| l.geoip.asn(ip));
        let quality =
            self.live.as_ref().and_then(|l| l.watchdog.as_ref()).zip(d.device_id()).and_then(|(w, id)| w.view(&id));
        let accounts = d
            .trust
            .as_ref()
            .and_then(|t| t.attestation_key.as_ref())
            .and_then(|k| keys.get(k))
            .map(|owners| u32::try_from(owners.len()).unwrap_or(u32::MAX));
        DeviceView {
            id: d.id.clone(),
            owner: d.owner.clone(),
            vip: d.vip.to_string(),
            online: live.is_some(),
            state: live.as_ref().and_then(|n| name(serde_json::to_value(n.state()))),
            active_streams: live.as_ref().map(|n| n.mux.active_streams()),
            public_ip: live.as_ref().map(|n| n.public_ip.to_string()).or_else(|| d.last_ip.clone()),
            country: live.as_ref().and_then(|n| n.country_str()).or_else(|| d.country.clone()),
            battery_pct: status.as_ref().and_then(|s| s.battery_pct),
            network: status.as_ref().and_then(|s| name(serde_json::to_value(s.network))),
            model: d.model.clone(),
            os: d.os.clone(),
            key_alg: name(serde_json::to_value(d.key_alg)).unwrap_or_default(),
            paired_at: rfc3339(d.paired_at),
            last_seen: d.last_seen.map(rfc3339),
            banned: d.banned,
            ban_reason: d.ban_reason.clone(),
            paused: d.paused,
            pause_reason: match &status {
                Some(s) if s.state == crate::tunnel::protocol::NodeState::Paused => {
                    Some(s.pause_reason.unwrap_or_default().as_str().to_owned())
                }
                Some(_) => None,
                None => d.node_pause.clone(),
            },
            bytes_today: today.bytes(),
            earned_today_micros: today.earned,
            connected_at: live.as_ref().map(|n| rfc3339(n.connected_at)),
            rtt_ms: live.as_ref().and_then(|n| n.mux.rtt()).map(|r| r.as_secs_f64() * 1000.0),
            asn: asn.as_ref().map(|a| a.0),
            as_org: asn.map(|a| a.1),
            uptime_s: status.as_ref().and_then(|s| s.uptime_s),
            charging: status.as_ref().and_then(|s| s.charging),
            max_streams: status.as_ref().and_then(|s| s.max_streams),
            daily_cap_bytes: status.as_ref().and_then(|s| s.daily_cap),
            monthly_cap_bytes: status.as_ref().and_then(|s| s.monthly_cap),
            node_bytes_today: status.as_ref().and_then(|s| s.bytes_today),
            node_bytes_month: status.as_ref().and_then(|s| s.bytes_month),
            quality_state: quality.as_ref().map(|q| q.state.as_str().to_owned()),
            score: quality.as_ref().map(|q| q.score),
            quality,
            trust: d.trust_level().name().to_owned(),
            trust_reasons: d.trust.as_ref().map(|t| t.reasons.clone()).unwrap_or_default(),
            security_level: d.trust.as_ref().and_then(|t| t.security_level.clone()),
            attestation_key_accounts: accounts,
            shared_attestation_key: accounts.map(|n| n > self.shared_key_accounts),
            emulator_hints: Some(d.emulator_hints.clone()),
        }
    }

    /// Finds a device by full id, unique id prefix (≥ 6 hex digits) or virtual IP.
    pub(super) fn find_device(&self, key: &str) -> Result<DeviceRecord, AdminError> {
        let all = self.store.list_devices()?;
        let key = key.trim().to_ascii_lowercase();
        if let Ok(vip) = key.parse::<Ipv4Addr>() {
            return all
                .into_iter()
                .find(|d| d.vip == vip)
                .ok_or_else(|| AdminError::new("not_found", format!("no device has virtual IP {vip}")));
        }
        if key.len() < 6 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::new("invalid", "give a device id (at least 6 hex digits) or its virtual IP"));
        }
        let mut hits: Vec<DeviceRecord> = all.into_iter().filter(|d| d.id.starts_with(&key)).collect();
        match hits.len() {
            0 => Err(AdminError::new("not_found", format!("no device id starts with {key}"))),
            1 => Ok(hits.remove(0)),
            n => Err(AdminError::new("ambiguous", format!("{n} devices start with {key}; give more digits"))),
        }
    }

    /// A device as it was before a change, for the audit log.
    fn device_before(&self, key: &str) -> Option<Value> {
        self.find_device(key).ok().and_then(|d| serde_json::to_value(self.device_view(&d)).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::test_ctx;
    use crate::store::{DeviceRecord, PairCode};

    fn pair(ctx: &AdminCtx, code: &str, key: u8) -> DeviceRecord {
        let now = now_secs();
        ctx.store
            .create_pair_code(
                code,
                &PairCode { user: "bob".into(), created_at: now, expires_at: now + 600, used: false, used_by: None },
            )
            .unwrap();
        let rec = DeviceRecord::new(hex::encode([key; 16]), crate::identity::KeyAlg::Ed25519, hex::encode([key; 32]));
        ctx.store.pair_device(code, now, rec).unwrap()
    }

    #[test]
    fn a_removed_device_is_gone_audited_and_its_vip_never_reused() {
        let (_dir, ctx) = test_ctx();
        ctx.execute(crate::admin::UserAdd { name: "bob".into(), password: None, admin: false }).unwrap();
        let first = pair(&ctx, "c1", 1);
        let removed = ctx
            .execute_as(DeviceRemove { id: first.id[..8].into(), reason: Some("selling it".into()) }, "device:0101")
            .unwrap();
        assert_eq!(removed.id, first.id);
        assert!(ctx.store.get_device(&[1; 16]).unwrap().is_none());
        assert!(ctx.execute(DeviceList::default()).unwrap().is_empty(), "no longer listed");
        let again = DeviceRemove { id: first.id.clone(), reason: None };
        assert_eq!(ctx.execute(again).unwrap_err().error, "not_found");
        let audit = ctx.store.list_audit(&Default::default()).unwrap();
        let entry = audit.iter().find(|a| a.action == "device.remove").expect("audited");
        assert_eq!((entry.actor.as_str(), entry.reason.as_deref()), ("device:0101", Some("selling it")));
        // Another device does not get the removed one's address; the same key pairs as new.
        let other = pair(&ctx, "c2", 2);
        assert_ne!(other.vip, first.vip);
        let back = pair(&ctx, "c3", 1);
        assert_ne!(back.vip, first.vip);
    }

    /// A node whose pairing handshake timed out after the server had paired it retries with
    /// the same code: the same key is answered as paired; another key is refused.
    #[test]
    fn the_same_key_may_repeat_a_pairing_whose_answer_was_lost() {
        let (_dir, ctx) = test_ctx();
        ctx.execute(crate::admin::UserAdd { name: "bob".into(), password: None, admin: false }).unwrap();
        let first = pair(&ctx, "c1", 1);
        let now = now_secs();
        let same = DeviceRecord::new(hex::encode([1u8; 16]), crate::identity::KeyAlg::Ed25519, hex::encode([1u8; 32]));
        let again = ctx.store.pair_device("c1", now, same).unwrap();
        assert_eq!((again.vip, again.owner.as_str()), (first.vip, "bob"));
        assert_eq!(ctx.execute(DeviceList::default()).unwrap().len(), 1, "still one device");
        let other = DeviceRecord::new(hex::encode([2u8; 16]), crate::identity::KeyAlg::Ed25519, hex::encode([2u8; 32]));
        assert!(matches!(ctx.store.pair_device("c1", now, other), Err(crate::store::PairError::Used)));
        // Banned meanwhile: the repeat is refused as banned.
        ctx.execute(DeviceBan { id: first.id.clone(), reason: "fraud".into() }).unwrap();
        let same = DeviceRecord::new(hex::encode([1u8; 16]), crate::identity::KeyAlg::Ed25519, hex::encode([1u8; 32]));
        assert!(matches!(ctx.store.pair_device("c1", now, same), Err(crate::store::PairError::Banned)));
    }

    #[test]
    fn a_banned_device_is_not_removed_so_its_key_stays_out() {
        let (_dir, ctx) = test_ctx();
        ctx.execute(crate::admin::UserAdd { name: "bob".into(), password: None, admin: false }).unwrap();
        let dev = pair(&ctx, "c1", 1);
        ctx.execute(DeviceBan { id: dev.id.clone(), reason: "fraud".into() }).unwrap();
        // Neither the admin nor the device itself (its UNPAIR runs this command).
        let e = ctx.execute_as(DeviceRemove { id: dev.id.clone(), reason: None }, "device:0101").unwrap_err();
        assert_eq!(e.error, "conflict");
        assert!(e.reason.contains("unban it first"), "{}", e.reason);
        assert!(ctx.store.get_device(&[1; 16]).unwrap().is_some_and(|d| d.banned));
        let now = now_secs();
        ctx.store
            .create_pair_code(
                "c2",
                &PairCode { user: "bob".into(), created_at: now, expires_at: now + 600, used: false, used_by: None },
            )
            .unwrap();
        let again = DeviceRecord { id: hex::encode([1u8; 16]), ..dev.clone() };
        assert!(ctx.store.pair_device("c2", now, again).is_err(), "the banned key cannot pair again");
    }
}
