//! Devices (paired nodes), their virtual IPs, and one-time pairing codes.

use std::net::Ipv4Addr;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{DEVICES, META, PAIR_CODES, USERS, VIPS};
use super::{Store, StoreError, from_json, to_json};
use crate::identity::{DeviceId, KeyAlg};

/// First address of the virtual IP space `100.64.0.0/10`.
const VIP_BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
/// Number of addresses in `100.64.0.0/10`.
const VIP_SPACE: u32 = 1 << 22;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Lowercase hex of the 16-byte device id.
    pub id: String,
    pub owner: String,
    pub vip: Ipv4Addr,
    pub key_alg: KeyAlg,
    /// Hex of the public key as sent at pairing.
    pub public_key: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    /// Hex DER of the attestation chain, leaf first (verified by the device-trust checks).
    #[serde(default)]
    pub attestation: Vec<String>,
    pub paired_at: u64,
    #[serde(default)]
    pub last_seen: Option<u64>,
    #[serde(default)]
    pub last_ip: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub banned: bool,
    #[serde(default)]
    pub ban_reason: Option<String>,
    /// The device trust verdict of its attestation at pairing (docs/trust.md). Set for every
    /// device from schema 7 on (`migrations::migrate_to_v7` fills it in for older ones).
    #[serde(default)]
    pub trust: Option<crate::trust::Verdict>,
    /// Emulator hints the app reported at pairing: weak signals, shown to the admin only.
    #[serde(default)]
    pub emulator_hints: Vec<String>,
    /// Paused by its owner (the bot's /devices, the portal): online, but routed nothing.
    #[serde(default)]
    pub paused: bool,
    /// The pause reason the node itself last reported (HEARTBEAT tag 13, e.g. `daily_cap`),
    /// written with its last-seen; `None` while it serves. A node that leaves paused closes its
    /// tunnel until the condition clears: it is shown as paused (this reason), not offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_pause: Option<String>,
}

impl DeviceRecord {
    /// A device about to be paired: its id and key, everything else empty (the store assigns
    /// owner, vIP and pairing time in `pair_device`).
    pub fn new(id: String, key_alg: crate::identity::KeyAlg, public_key: String) -> Self {
        DeviceRecord {
            id,
            owner: String::new(),
            vip: std::net::Ipv4Addr::UNSPECIFIED,
            key_alg,
            public_key,
            model: None,
            os: None,
            app_version: None,
            attestation: Vec::new(),
            paired_at: 0,
            last_seen: None,
            last_ip: None,
            country: None,
            banned: false,
            ban_reason: None,
            trust: None,
            emulator_hints: Vec::new(),
            paused: false,
            node_pause: None,
        }
    }

    /// The device's trust level (`none` when it was never judged).
    pub fn trust_level(&self) -> crate::identity::TrustLevel {
        self.trust.as_ref().map(|t| t.level).unwrap_or_default()
    }

    /// The device id as bytes (`None` if the stored hex is corrupt).
    pub fn device_id(&self) -> Option<DeviceId> {
        hex::decode(&self.id).ok().and_then(|b| DeviceId::try_from(b).ok())
    }

    /// Takes a last-seen update (what [`Store::touch_devices`] writes): the time, the address and
    /// country when known (an unknown one keeps the last), and the node's own pause reason.
    pub fn saw(&mut self, at: u64, ip: Option<&str>, country: Option<&str>, pause: Option<&str>) {
        self.last_seen = Some(at);
        if let Some(ip) = ip {
            self.last_ip = Some(ip.to_owned());
        }
        if let Some(c) = country {
            self.country = Some(c.to_owned());
        }
        self.node_pause = pause.map(str::to_owned);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairCode {
    pub user: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub used: bool,
    /// The device (id, hex) that used the code: the same key asking again with it (its first
    /// answer was lost) is answered as paired, not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
}

/// One last-seen update: device id, time, public IP, country.
/// A device's last-seen update: id, when, address, country, and its own pause reason
/// ([`DeviceRecord::node_pause`]; `None` while serving).
pub type SeenRow = (Vec<u8>, u64, Option<String>, Option<String>, Option<String>);

/// Why a pairing was refused.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("pairing code is unknown")]
    Unknown,
    #[error("pairing code was already used")]
    Used,
    #[error("pairing code expired")]
    Expired,
    #[error("the owner account is disabled")]
    OwnerDisabled,
    #[error("device is banned")]
    Banned,
    #[error("device is already paired to another user")]
    OtherOwner,
    #[error("virtual IP space exhausted")]
    VipExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

macro_rules! pair_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PairError {
            fn from(e: $t) -> Self { PairError::Store(e.into()) }
        }
    )*};
}
pair_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Sets a trust verdict on every device without one (schema 7); returns how many.
pub(super) fn backfill_trust(txn: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut t = txn.open_table(DEVICES)?;
    let mut updates = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let mut d: DeviceRecord = from_json(v.value())?;
        if d.trust.is_none() {
            let mut verdict = crate::trust::Verdict::default();
            if !d.attestation.is_empty() {
                verdict
                    .reasons
                    .push("paired before attestation chains were verified; pair it again to verify its chain".into());
            }
            d.trust = Some(verdict);
            updates.push((k.value().to_vec(), to_json(&d)?));
        }
    }
    for (k, v) in &updates {
        t.insert(k.as_slice(), v.as_slice())?;
    }
    Ok(updates.len())
}

fn vip_of(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(VIP_BASE + n)
}

impl Store {
    /// Stores a pairing code (by its hash) for `user`.
    pub fn create_pair_code(&self, code_hash: &str, code: &PairCode) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            if txn.open_table(USERS)?.get(code.user.as_str())?.is_none() {
                return Err(StoreError::NotFound(format!("user {:?}", code.user)));
            }
            let mut t = txn.open_table(PAIR_CODES)?;
            // Forget expired codes while we are here, so the table stays small.
            let now = code.created_at;
            let expired: Vec<String> = t
                .iter()?
                .filter_map(|r| r.ok())
                .filter_map(|(k, v)| {
                    let c: PairCode = from_json(v.value()).ok()?;
                    (c.expires_at + 86_400 < now).then(|| k.value().to_owned())
                })
                .collect();
            for k in expired {
                t.remove(k.as_str())?;
            }
            t.insert(code_hash, to_json(code)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Redeems a pairing code and registers (or re-registers) the device in one transaction.
    /// A device already known keeps its virtual IP; a new one gets the next free address.
    pub fn pair_device(&self, code_hash: &str, now: u64, mut device: DeviceRecord) -> Result<DeviceRecord, PairError> {
        let txn = self.write()?;
        let result = {
            let mut codes = txn.open_table(PAIR_CODES)?;
            let mut code: PairCode = match codes.get(code_hash)? {
                Some(v) => from_json(v.value())?,
                None => return Err(PairError::Unknown),
            };
            if code.used {
                // The same key again with the code it paired with: the handshake that paired it
                // timed out or its link dropped before WELCOME. It is paired: say so, once more.
                if code.used_by.as_deref() == Some(device.id.as_str()) {
                    let id = hex::decode(&device.id).map_err(|_| StoreError::Invalid("device id is not hex".into()))?;
                    let paired: Option<DeviceRecord> =
                        txn.open_table(DEVICES)?.get(id.as_slice())?.map(|v| from_json(v.value())).transpose()?;
                    match paired {
                        Some(d) if d.banned => return Err(PairError::Banned),
                        Some(d) if d.owner == code.user => return Ok(d),
                        _ => {}
                    }
                }
                return Err(PairError::Used);
            }
            if now >= code.expires_at {
                return Err(PairError::Expired);
            }
            let owner: super::UserRecord = match txn.open_table(USERS)?.get(code.user.as_str())? {
                Some(v) => from_json(v.value())?,
                None => return Err(PairError::Unknown),
            };
            if owner.disabled {
                return Err(PairError::OwnerDisabled);
            }
            code.used = true;
            code.used_by = Some(device.id.clone());
            codes.insert(code_hash, to_json(&code)?.as_slice())?;

            let id = hex::decode(&device.id).map_err(|_| StoreError::Invalid("device id is not hex".into()))?;
            let mut devices = txn.open_table(DEVICES)?;
            let existing: Option<DeviceRecord> =
                devices.get(id.as_slice())?.map(|v| from_json(v.value())).transpose()?;
            device.owner = code.user.clone();
            device.paired_at = now;
            match existing {
                Some(old) if old.banned => return Err(PairError::Banned),
                Some(old) if old.owner != device.owner => return Err(PairError::OtherOwner),
                Some(old) => {
                    device.vip = old.vip;
                    device.country = old.country;
                }
                None => {
                    let mut meta = txn.open_table(META)?;
                    let mut vips = txn.open_table(VIPS)?;
                    let mut n = meta.get("next_vip")?.map(|v| v.value() as u32).unwrap_or(1);
                    let mut tries = 0u32;
                    loop {
                        // Skip .0 and .255 host bytes: valid here, but they confuse people.
                        let last = n & 0xff;
                        if n == 0 || n >= VIP_SPACE - 1 {
                            n = 1;
                        } else if last != 0 && last != 255 && vips.get(u32::from(vip_of(n)))?.is_none() {
                            break;
                        } else {
                            n += 1;
                        }
                        tries += 1;
                        if tries > VIP_SPACE {
                            return Err(PairError::VipExhausted);
                        }
                    }
                    device.vip = vip_of(n);
                    vips.insert(u32::from(device.vip), id.as_slice())?;
                    meta.insert("next_vip", u64::from(n + 1))?;
                }
            }
            devices.insert(id.as_slice(), to_json(&device)?.as_slice())?;
            device
        };
        txn.commit()?;
        Ok(result)
    }

    pub fn get_device(&self, id: &[u8]) -> Result<Option<DeviceRecord>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(DEVICES)?;
        t.get(id)?.map(|v| from_json(v.value())).transpose()
    }

    pub fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut out = Vec::new();
        self.visit_devices(|d| out.push(d))?;
        Ok(out)
    }

    /// How many devices there are (the table's length: no record is read).
    pub fn count_devices(&self) -> Result<usize, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(DEVICES)?;
        Ok(redb::ReadableTableMetadata::len(&t)? as usize)
    }

    /// Hands every device to `visit`, one at a time, from one read transaction: a reader that
    /// keeps a little of each (the notification watcher, every 30 s) never holds all the
    /// records at once (about 1 KiB each, 10 MiB at 10,000 nodes).
    pub fn visit_devices(&self, mut visit: impl FnMut(DeviceRecord)) -> Result<(), StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(DEVICES)?;
        for row in t.iter()? {
            visit(from_json(row?.1.value())?);
        }
        Ok(())
    }

    /// Reads, changes and writes one device in one transaction.
    pub fn update_device(&self, id: &[u8], change: impl FnOnce(&mut DeviceRecord)) -> Result<DeviceRecord, StoreError> {
        let txn = self.write()?;
        let dev = {
            let mut t = txn.open_table(DEVICES)?;
            let mut dev: DeviceRecord = match t.get(id)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("device {}", hex::encode(id)))),
            };
            change(&mut dev);
            t.insert(id, to_json(&dev)?.as_slice())?;
            dev
        };
        txn.commit()?;
        Ok(dev)
    }

    /// Forgets a device (unpaired): its row goes, so its key no longer authenticates and it may
    /// pair again as new. Its virtual IP stays reserved (never handed to another device, so
    /// session rows and abuse reports keep naming one device); its usage and ledger history stay.
    /// Returns the record as it was. A banned device is refused (`Conflict`): its row is what
    /// keeps a banned key out.
    pub fn remove_device(&self, id: &[u8]) -> Result<DeviceRecord, StoreError> {
        let txn = self.write()?;
        let dev = {
            let mut t = txn.open_table(DEVICES)?;
            let dev: DeviceRecord = match t.get(id)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("device {}", hex::encode(id)))),
            };
            // Checked in the same transaction as the removal: a ban that just landed stays.
            if dev.banned {
                return Err(StoreError::Conflict(format!(
                    "device {} is banned: removing it would let its key pair again; unban it first",
                    dev.vip
                )));
            }
            t.remove(id)?;
            dev
        };
        // The watchdog's record of it goes with it (its measurements mean nothing for a key that
        // pairs again).
        txn.open_table(super::tables::NODE_QUALITY)?.remove(id)?;
        txn.commit()?;
        Ok(dev)
    }

    /// Test fixtures: stores `recs` as they are, in one transaction (no pairing code, no vIP).
    #[cfg(test)]
    pub(crate) fn put_devices_for_test(&self, recs: &[DeviceRecord]) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(DEVICES)?;
            for d in recs {
                let id = hex::decode(&d.id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                t.insert(id.as_slice(), to_json(d)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Persists last-seen times (and addresses, countries) of many devices in one transaction.
    pub fn touch_devices(&self, seen: &[SeenRow]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let txn = self.write()?;
        {
            let mut t = txn.open_table(DEVICES)?;
            for (id, at, ip, country, pause) in seen {
                let dev: Option<DeviceRecord> = t.get(id.as_slice())?.map(|v| from_json(v.value())).transpose()?;
                if let Some(mut dev) = dev {
                    dev.saw(*at, ip.as_deref(), country.as_deref(), pause.as_deref());
                    t.insert(id.as_slice(), to_json(&dev)?.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}
