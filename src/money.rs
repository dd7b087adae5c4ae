//! Money: integer micro-units of the operator's currency (`1_000_000` = 1.00), parsed from and
//! printed as decimal strings. Never floats. Pure; the ledger rules build on these types.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Micro-units per currency unit.
pub const MICROS_PER_UNIT: u64 = 1_000_000;

/// A non-negative amount in micro-units (transfer amounts, prices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0:?} is not a decimal number like \"12.50\"")]
    Syntax(String),
    #[error("amount {0:?} has more than 6 decimal places")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

impl Micros {
    /// Parses `"12"`, `"12.5"`, `"0.000001"`. No sign, no exponent, at most 6 decimals.
    pub fn parse(s: &str) -> Result<Micros, MoneyError> {
        let t = s.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
            return Err(MoneyError::Syntax(s.into()));
        }
        if frac.len() > 6 {
            return Err(MoneyError::TooPrecise(s.into()));
        }
        let int: u64 = int.parse().map_err(|_| MoneyError::Overflow(s.into()))?;
        let mut f: u64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| MoneyError::Syntax(s.into()))? };
        for _ in frac.len()..6 {
            f *= 10;
        }
        int.checked_mul(MICROS_PER_UNIT)
            .and_then(|v| v.checked_add(f))
            .map(Micros)
            .ok_or_else(|| MoneyError::Overflow(s.into()))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / MICROS_PER_UNIT, (self.0 % MICROS_PER_UNIT) / 10_000)?;
        let rest = self.0 % 10_000;
        if rest != 0 {
            let s = format!("{rest:04}");
            write!(f, "{}", s.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// Parses a signed amount for corrections: the unsigned grammar of [`Micros::parse`] after an
/// optional `+` or `-` (`"-13.50"`, `"+2"`, `"2.00"`). Nothing may sit between the sign and the
/// digits. The magnitude must fit an `i64`.
pub fn parse_signed(s: &str) -> Result<i64, MoneyError> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(MoneyError::Syntax(s.into()));
    }
    let m = Micros::parse(digits).map_err(|e| match e {
        MoneyError::Syntax(_) => MoneyError::Syntax(s.into()),
        MoneyError::TooPrecise(_) => MoneyError::TooPrecise(s.into()),
        MoneyError::Overflow(_) => MoneyError::Overflow(s.into()),
    })?;
    let v = i64::try_from(m.0).map_err(|_| MoneyError::Overflow(s.into()))?;
    Ok(if negative { -v } else { v })
}

/// Formats a signed balance in micro-units as a decimal string.
pub fn format_signed(v: i64) -> String {
    let m = Micros(v.unsigned_abs());
    if v < 0 { format!("-{m}") } else { m.to_string() }
}

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(u64),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => Micros::parse(&s).map_err(serde::de::Error::custom),
            Raw::I(i) => {
                i.checked_mul(MICROS_PER_UNIT).map(Micros).ok_or_else(|| serde::de::Error::custom("amount too large"))
            }
            Raw::F(f) => Err(serde::de::Error::custom(format!(
                "money must be a decimal string like \"3.00\", never a float ({f})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        for (s, v, out) in [
            ("12.50", 12_500_000, "12.50"),
            ("0.000001", 1, "0.000001"),
            ("3", 3_000_000, "3.00"),
            ("1.2345", 1_234_500, "1.2345"),
        ] {
            assert_eq!(Micros::parse(s), Ok(Micros(v)));
            assert_eq!(Micros(v).to_string(), out);
        }
        for bad in ["", ".5", "5.", "-1", "1e3", "1.0000001", "99999999999999999999", "1,5", " 1 . 5"] {
            assert!(Micros::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format_signed(-1_500_000), "-1.50");
    }

    #[test]
    fn signed_amounts_take_one_sign_and_the_same_grammar() {
        for (s, v) in [("-13.50", -13_500_000), ("+2", 2_000_000), ("2.00", 2_000_000), ("-0.000001", -1), ("0", 0)] {
            assert_eq!(parse_signed(s), Ok(v), "{s}");
        }
        for bad in [
            "",
            "-",
            "+",
            "--1",
            "+-1",
            "- 1",
            "-.5",
            "-1.",
            "1,5",
            "-1,5",
            "-1e3",
            "1E3",
            "-1.0000001",
            "1-",
            "-+1",
            "-99999999999999999999",
            "-18446744073709.551615",
            "½",
            "-١",
        ] {
            assert!(parse_signed(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_signed("-1.0000001"), Err(MoneyError::TooPrecise("-1.0000001".into())));
    }
}
