//! The node's identity on disk (`--state FILE`, mode 0600) and the pairing link it came from.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::identity::{DEVICE_ID_LEN, KeyAlg, device_id};

/// `traffix://pair?server=HOST:PORT&pin=HEX&code=CODE`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLink {
    pub server: String,
    pub pin: [u8; 32],
    pub code: String,
    /// The server runs `--insecure-http` (development only): plain `ws://`, no TLS.
    pub insecure: bool,
}

impl PairLink {
    pub fn parse(link: &str) -> Result<PairLink, String> {
        let url = url::Url::parse(link.trim()).map_err(|e| format!("pairing link is not a URL: {e}"))?;
        if url.scheme() != "traffix" || url.host_str() != Some("pair") {
            return Err("pairing link must start with traffix://pair?".into());
        }
        let mut server = None;
        let mut pin = None;
        let mut code = None;
        let mut insecure = false;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "server" => server = Some(v.into_owned()),
                "pin" => pin = Some(crate::tls::parse_pin(&v).ok_or("pin must be 64 hex digits")?),
                "code" => code = Some(v.into_owned()),
                "insecure" => insecure = v == "1",
                _ => {}
            }
        }
        let server = server.ok_or("pairing link lacks server=")?;
        if server.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("server {server:?} in the pairing link must be HOST:PORT"));
        }
        Ok(PairLink {
            server,
            pin: pin.ok_or("pairing link lacks pin=")?,
            code: code.ok_or("pairing link lacks code=")?,
            insecure,
        })
    }

    pub fn to_link(&self) -> String {
        let tail = if self.insecure { "&insecure=1" } else { "" };
        format!("traffix://pair?server={}&pin={}&code={}{tail}", self.server, hex::encode(self.pin), self.code)
    }
}

/// What a node keeps between runs.
#[derive(Serialize, Deserialize, Clone)]
pub struct NodeIdentity {
    pub server: String,
    pub pin: String,
    pub key_alg: KeyAlg,
    /// PKCS#8 of the Ed25519 key, base64.
    pub pkcs8: String,
    /// Set once the server accepted the pairing.
    #[serde(default)]
    pub paired: bool,
    #[serde(default)]
    pub vip: Option<String>,
    /// Plain `ws://` to a server running `--insecure-http` (development only).
    #[serde(default)]
    pub insecure: bool,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("server", &self.server)
            .field("paired", &self.paired)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A new identity with a fresh Ed25519 key.
    pub fn generate(link: &PairLink) -> Result<NodeIdentity, String> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed".to_string())?;
        Ok(NodeIdentity {
            server: link.server.clone(),
            pin: hex::encode(link.pin),
            key_alg: KeyAlg::Ed25519,
            pkcs8: base64::engine::general_purpose::STANDARD.encode(doc.as_ref()),
            paired: false,
            vip: None,
            insecure: link.insecure,
        })
    }

    pub fn keypair(&self) -> Result<Ed25519KeyPair, String> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(&self.pkcs8)
            .map_err(|_| "state file key is not base64".to_string())?;
        Ed25519KeyPair::from_pkcs8(&der).map_err(|_| "state file key is not a valid Ed25519 PKCS#8 key".to_string())
    }

    pub fn public_key(&self) -> Result<Vec<u8>, String> {
        Ok(self.keypair()?.public_key().as_ref().to_vec())
    }

    pub fn device_id(&self) -> Result<[u8; DEVICE_ID_LEN], String> {
        Ok(device_id(self.key_alg, &self.public_key()?))
    }

    pub fn pin_bytes(&self) -> Result<[u8; 32], String> {
        crate::tls::parse_pin(&self.pin).ok_or_else(|| "state file pin is not 64 hex digits".to_string())
    }

    pub fn load(path: &Path) -> Result<Option<NodeIdentity>, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{} is not a node state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes atomically (temp file + rename) with mode 0600: the file holds the private key.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_link_round_trip_and_errors() {
        let mut l =
            PairLink { server: "example.com:8443".into(), pin: [0xab; 32], code: "ABCD".into(), insecure: false };
        assert_eq!(PairLink::parse(&l.to_link()), Ok(l.clone()));
        l.insecure = true;
        assert_eq!(PairLink::parse(&l.to_link()), Ok(l));
        assert!(PairLink::parse("https://pair?server=a:1").is_err());
        assert!(PairLink::parse("traffix://pair?server=a&pin=00&code=x").is_err());
        assert!(PairLink::parse("traffix://pair?server=a:1&pin=zz&code=x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn state_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.json");
        let l = PairLink { server: "h:1".into(), pin: [1; 32], code: "C".into(), insecure: false };
        let id = NodeIdentity::generate(&l).unwrap();
        id.save(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let back = NodeIdentity::load(&p).unwrap().unwrap();
        assert_eq!(back.device_id().unwrap(), id.device_id().unwrap());
    }
}
