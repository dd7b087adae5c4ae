//! Country (and ASN) lookups from operator-supplied MaxMind-format databases. With no database
//! configured there is no country, and `-country-` targeting says so.

use std::net::IpAddr;
use std::path::Path;

/// An opened country database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp")
    }
}

#[derive(serde::Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
}

#[derive(serde::Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(|reader| GeoIp { reader })
            .map_err(|e| format!("cannot open GeoIP database {}: {e}", path.display()))
    }

    /// The autonomous system of `ip` and its organisation (an ASN database).
    pub fn asn(&self, ip: IpAddr) -> Option<(u32, String)> {
        let result = self.reader.lookup(ip).ok()?;
        let rec: AsnRecord<'_> = result.decode().ok()??;
        Some((rec.autonomous_system_number?, rec.autonomous_system_organization.unwrap_or_default().to_owned()))
    }

    /// The ISO 3166-1 alpha-2 country of `ip`, upper case.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let result = self.reader.lookup(ip).ok()?;
        let rec: CountryRecord<'_> = result.decode().ok()??;
        let code = rec.country?.iso_code?.as_bytes();
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }
}
