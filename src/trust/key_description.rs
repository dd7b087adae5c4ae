//! The Android Key Attestation extension (OID 1.3.6.1.4.1.11129.2.1.17) of a leaf certificate:
//! the `KeyDescription` schema of source.android.com "Key and ID attestation", read strictly.
//!
//! ```text
//! KeyDescription ::= SEQUENCE {
//!     attestationVersion         INTEGER,
//!     attestationSecurityLevel   SecurityLevel,   -- Software(0), TrustedEnvironment(1), StrongBox(2)
//!     keyMintVersion             INTEGER,
//!     keyMintSecurityLevel       SecurityLevel,
//!     attestationChallenge       OCTET STRING,
//!     uniqueId                   OCTET STRING,
//!     softwareEnforced           AuthorizationList,
//!     hardwareEnforced           AuthorizationList }
//! AuthorizationList ::= SEQUENCE { ... [704] rootOfTrust, [709] attestationApplicationId ... }
//!                                   -- every entry [n] EXPLICIT and OPTIONAL, in tag order
//! RootOfTrust ::= SEQUENCE { verifiedBootKey OCTET STRING, deviceLocked BOOLEAN,
//!     verifiedBootState ENUMERATED { Verified(0), SelfSigned(1), Unverified(2), Failed(3) },
//!     verifiedBootHash OCTET STRING OPTIONAL (version 3 and later) }
//! AttestationApplicationId ::= SEQUENCE {   -- DER inside the [709] OCTET STRING
//!     packageInfos      SET OF SEQUENCE { packageName OCTET STRING, version INTEGER },
//!     signatureDigests  SET OF OCTET STRING }
//! ```
//! Entries of an AuthorizationList this server does not use are skipped (after their framing is
//! checked), so newer KeyMint versions with more tags still parse.

use super::der::{Class, DerError, Reader, err};

/// The extension's OID, 1.3.6.1.4.1.11129.2.1.17, as DER content bytes.
pub const OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x01, 0x11];
/// The OID in dotted form, for messages and x509-parser.
pub const OID_TEXT: &str = "1.3.6.1.4.1.11129.2.1.17";

/// AuthorizationList tags used here.
const TAG_ROOT_OF_TRUST: u32 = 704;
const TAG_APPLICATION_ID: u32 = 709;
/// At most this many package infos and signature digests are read (a real app id has one or a
/// few: apps sharing a uid).
const MAX_APP_ENTRIES: usize = 32;

/// Where a key lives, as the attestation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityLevel {
    Software,
    TrustedEnvironment,
    StrongBox,
}

impl SecurityLevel {
    fn from_enum(v: i64, at: &'static str) -> Result<Self, DerError> {
        match v {
            0 => Ok(SecurityLevel::Software),
            1 => Ok(SecurityLevel::TrustedEnvironment),
            2 => Ok(SecurityLevel::StrongBox),
            other => Err(err(at, format!("unknown security level {other}"))),
        }
    }

    /// `software`, `tee` or `strongbox`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityLevel::Software => "software",
            SecurityLevel::TrustedEnvironment => "tee",
            SecurityLevel::StrongBox => "strongbox",
        }
    }
}

/// The verified boot state of the root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    Verified,
    SelfSigned,
    Unverified,
    Failed,
}

impl BootState {
    pub fn name(self) -> &'static str {
        match self {
            BootState::Verified => "verified",
            BootState::SelfSigned => "self-signed",
            BootState::Unverified => "unverified",
            BootState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOfTrust {
    pub device_locked: bool,
    pub boot_state: BootState,
}

/// The app that asked for the key: its package names and signing-certificate digests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplicationId {
    pub packages: Vec<String>,
    pub signature_digests: Vec<Vec<u8>>,
}

/// What the server checks of a KeyDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    pub attestation_version: i64,
    pub attestation_security_level: SecurityLevel,
    pub keymint_security_level: SecurityLevel,
    pub challenge: Vec<u8>,
    /// From `hardwareEnforced` (a root of trust only in `softwareEnforced` proves nothing).
    pub root_of_trust: Option<RootOfTrust>,
    /// From either list (Android puts it in `softwareEnforced`: the framework supplies it).
    pub application: Option<ApplicationId>,
}

/// Parses the extension's value (the content of its OCTET STRING).
pub fn parse(bytes: &[u8]) -> Result<KeyDescription, DerError> {
    let mut outer = Reader::new(bytes);
    let mut r = outer.sequence("KeyDescription")?;
    outer.end("KeyDescription")?;
    let attestation_version = r.integer("attestationVersion")?;
    let attestation_security_level =
        SecurityLevel::from_enum(r.enumerated("attestationSecurityLevel")?, "attestationSecurityLevel")?;
    r.integer("keyMintVersion")?;
    let keymint_security_level =
        SecurityLevel::from_enum(r.enumerated("keyMintSecurityLevel")?, "keyMintSecurityLevel")?;
    let challenge = r.octets("attestationChallenge")?.to_vec();
    r.octets("uniqueId")?;
    let software = authorization_list(r.sequence("softwareEnforced")?, "softwareEnforced")?;
    let hardware = authorization_list(r.sequence("hardwareEnforced")?, "hardwareEnforced")?;
    // Later schema versions may append fields; they are not ours to judge.
    Ok(KeyDescription {
        attestation_version,
        attestation_security_level,
        keymint_security_level,
        challenge,
        root_of_trust: hardware.root_of_trust,
        application: hardware.application.or(software.application),
    })
}

#[derive(Default)]
struct AuthList {
    root_of_trust: Option<RootOfTrust>,
    application: Option<ApplicationId>,
}

fn authorization_list(mut r: Reader<'_>, at: &'static str) -> Result<AuthList, DerError> {
    let mut out = AuthList::default();
    let mut last_tag = None;
    while !r.is_empty() {
        let entry = r.any(at)?;
        if entry.class != Class::Context || !entry.constructed {
            return Err(err(at, format!("entry {} is not an EXPLICIT context tag", entry.describe())));
        }
        if last_tag.is_some_and(|t| entry.number <= t) {
            return Err(err(at, format!("tag [{}] out of order or repeated", entry.number)));
        }
        last_tag = Some(entry.number);
        // EXPLICIT: exactly one element inside.
        let mut inner = Reader::new(entry.content);
        match entry.number {
            TAG_ROOT_OF_TRUST => out.root_of_trust = Some(root_of_trust(inner.sequence("rootOfTrust")?)?),
            TAG_APPLICATION_ID => {
                out.application = Some(application_id(inner.octets("attestationApplicationId")?)?);
            }
            _ => {
                inner.any(at)?;
            }
        }
        inner.end(at)?;
    }
    Ok(out)
}

fn root_of_trust(mut r: Reader<'_>) -> Result<RootOfTrust, DerError> {
    r.octets("rootOfTrust.verifiedBootKey")?;
    let device_locked = r.boolean("rootOfTrust.deviceLocked")?;
    let boot_state = match r.enumerated("rootOfTrust.verifiedBootState")? {
        0 => BootState::Verified,
        1 => BootState::SelfSigned,
        2 => BootState::Unverified,
        3 => BootState::Failed,
        other => return Err(err("rootOfTrust.verifiedBootState", format!("unknown state {other}"))),
    };
    if !r.is_empty() {
        r.octets("rootOfTrust.verifiedBootHash")?;
    }
    r.end("rootOfTrust")?;
    Ok(RootOfTrust { device_locked, boot_state })
}

fn application_id(bytes: &[u8]) -> Result<ApplicationId, DerError> {
    let mut outer = Reader::new(bytes);
    let mut r = outer.sequence("attestationApplicationId")?;
    outer.end("attestationApplicationId")?;
    let mut infos = r.set("attestationApplicationId.packageInfos")?;
    let mut app = ApplicationId::default();
    while !infos.is_empty() {
        if app.packages.len() == MAX_APP_ENTRIES {
            return Err(err("attestationApplicationId.packageInfos", format!("more than {MAX_APP_ENTRIES}")));
        }
        let mut info = infos.sequence("attestationApplicationId.packageInfo")?;
        let name = info.octets("packageInfo.packageName")?;
        info.integer("packageInfo.version")?;
        info.end("packageInfo")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| err("packageInfo.packageName", "not UTF-8"))?
            .chars()
            .take(256)
            .collect();
        app.packages.push(name);
    }
    let mut digests = r.set("attestationApplicationId.signatureDigests")?;
    while !digests.is_empty() {
        if app.signature_digests.len() == MAX_APP_ENTRIES {
            return Err(err("attestationApplicationId.signatureDigests", format!("more than {MAX_APP_ENTRIES}")));
        }
        app.signature_digests.push(digests.octets("attestationApplicationId.signatureDigest")?.to_vec());
    }
    r.end("attestationApplicationId")?;
    Ok(app)
}
