//! Device identity: the key algorithms a node may hold, the device id derived from its public
//! key, and the bytes it signs to answer a challenge (docs/protocol.md, "Device id" and "Signed
//! bytes"). Leaf types: `auth` verifies with them, `store` keeps them, the node agent and
//! `tunnel::protocol` carry them; this module imports nothing of the project.

/// A device id: the first [`DEVICE_ID_LEN`] bytes of a hash of its public key.
pub type DeviceId = [u8; DEVICE_ID_LEN];

/// Length of a device id.
pub const DEVICE_ID_LEN: usize = 16;
/// Length of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// Signing algorithm of a device key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAlg {
    Ed25519 = 1,
    EcdsaP256 = 2,
}

impl KeyAlg {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(KeyAlg::Ed25519),
            2 => Some(KeyAlg::EcdsaP256),
            _ => None,
        }
    }
}

/// The bytes a device signs to answer a challenge (docs/protocol.md, "Signed bytes").
pub fn challenge_message(pin: &[u8; 32], device_id: &DeviceId, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    const LABEL: &[u8] = b"traffix-challenge-v1\0";
    let mut m = Vec::with_capacity(LABEL.len() + 32 + DEVICE_ID_LEN + NONCE_LEN);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(pin);
    m.extend_from_slice(device_id);
    m.extend_from_slice(nonce);
    m
}

/// A device's id, derived from its public key (docs/protocol.md, "Device id").
pub fn device_id(alg: KeyAlg, public_key: &[u8]) -> DeviceId {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"traffix-device-id-v1");
    ctx.update(&[alg as u8]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; DEVICE_ID_LEN];
    id.copy_from_slice(&d.as_ref()[..DEVICE_ID_LEN]);
    id
}

/// Where `device` falls among `n` (below `n`): its id modulo `n`. The id is a SHA-256 prefix, so
/// devices fall evenly; periodic work over the fleet is spread by it (a session's timers, the
/// watchdog's shares) so that nodes that came together do not all do it at once.
pub fn spread(device: &DeviceId, n: u128) -> u128 {
    u128::from_le_bytes(*device) % n.max(1)
}

/// The Android Key Attestation challenge for pairing with `code` at the server whose pin is
/// `pin` (docs/protocol.md, "Attestation challenge"): `SHA-256("traffix-attest-v1" ‖ pin ‖ code)`,
/// `code` as the UTF-8 text of the pairing link. A phone computes it before it dials (making a
/// Keystore key can take seconds); it is fresh because pairing codes are one-time and
/// server-issued.
pub fn attestation_challenge(pin: &[u8; 32], code: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"traffix-attest-v1");
    ctx.update(pin);
    ctx.update(code.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// How far a device's attestation proves it is a real phone with its key in secure hardware
/// (docs/trust.md), weakest first so that `>=` compares strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    /// No attestation chain (Linux nodes, phones without Key Attestation).
    #[default]
    None,
    /// A chain that does not prove everything `Hardware` needs; the device's reasons say why.
    Software,
    /// A Key Attestation chain to a trusted root for a TEE or StrongBox key, on a locked phone
    /// with verified boot, for this server's challenge and our app.
    Hardware,
}

impl TrustLevel {
    pub fn name(self) -> &'static str {
        match self {
            TrustLevel::None => "none",
            TrustLevel::Software => "software",
            TrustLevel::Hardware => "hardware",
        }
    }

    pub fn parse(s: &str) -> Option<TrustLevel> {
        match s {
            "none" => Some(TrustLevel::None),
            "software" => Some(TrustLevel::Software),
            "hardware" => Some(TrustLevel::Hardware),
            _ => None,
        }
    }
}

impl std::fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
