//! A minimal, strict DER reader for the Key Attestation extension: definite lengths only, at
//! most 4 length bytes, tag numbers up to 2^28, every length checked against what is left. It
//! never panics and never recurses on its own: callers walk the structure they expect.

use std::fmt;

/// ASN.1 tag classes (bits 8–7 of the identifier octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// One element: its tag, whether it is constructed, and its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
    pub content: &'a [u8],
}

/// Why a DER structure was refused; `at` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError {
    pub at: &'static str,
    pub what: String,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

impl std::error::Error for DerError {}

pub fn err(at: &'static str, what: impl Into<String>) -> DerError {
    DerError { at, what: what.into() }
}

/// Universal tag numbers used here.
pub const BOOLEAN: u32 = 1;
pub const INTEGER: u32 = 2;
pub const OCTET_STRING: u32 = 4;
pub const ENUMERATED: u32 = 10;
pub const SEQUENCE: u32 = 16;
pub const SET: u32 = 17;

/// A cursor over consecutive DER elements.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element, whatever it is.
    pub fn any(&mut self, at: &'static str) -> Result<Tlv<'a>, DerError> {
        let b = self.rest;
        let first = *b.first().ok_or_else(|| err(at, "truncated: no tag"))?;
        let class = match first >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        let constructed = first & 0x20 != 0;
        let mut i = 1;
        let mut number = u32::from(first & 0x1f);
        if number == 0x1f {
            // High tag number form: base-128, most significant first, no leading 0x80.
            number = 0;
            for n in 0.. {
                let byte = *b.get(i).ok_or_else(|| err(at, "truncated tag number"))?;
                i += 1;
                if n == 0 && byte == 0x80 {
                    return Err(err(at, "tag number with a leading zero"));
                }
                if n >= 4 {
                    return Err(err(at, "tag number too large"));
                }
                number = (number << 7) | u32::from(byte & 0x7f);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            if number < 0x1f {
                return Err(err(at, "tag number in the long form below 31"));
            }
        }
        let len_byte = *b.get(i).ok_or_else(|| err(at, "truncated: no length"))?;
        i += 1;
        let len = if len_byte < 0x80 {
            usize::from(len_byte)
        } else {
            let n = usize::from(len_byte & 0x7f);
            if n == 0 {
                return Err(err(at, "indefinite length (not DER)"));
            }
            if n > 4 {
                return Err(err(at, format!("a {n}-byte length")));
            }
            let bytes = b.get(i..i + n).ok_or_else(|| err(at, "truncated length"))?;
            i += n;
            if bytes[0] == 0 {
                return Err(err(at, "length with a leading zero (not DER)"));
            }
            let len = bytes.iter().fold(0usize, |acc, v| (acc << 8) | usize::from(*v));
            if len < 0x80 {
                return Err(err(at, "long-form length below 128 (not DER)"));
            }
            len
        };
        let end = i.checked_add(len).ok_or_else(|| err(at, "length overflows"))?;
        let content = b.get(i..end).ok_or_else(|| {
            err(at, format!("length {len} runs past the end ({} bytes left)", b.len().saturating_sub(i)))
        })?;
        self.rest = &b[end..];
        Ok(Tlv { class, constructed, number, content })
    }

    /// The next element, which must be the universal type `number`.
    pub fn universal(&mut self, number: u32, at: &'static str) -> Result<Tlv<'a>, DerError> {
        let t = self.any(at)?;
        if t.class != Class::Universal || t.number != number {
            return Err(err(at, format!("expected {}, found {}", type_name(Class::Universal, number), t.describe())));
        }
        let want_constructed = matches!(number, SEQUENCE | SET);
        if t.constructed != want_constructed {
            return Err(err(at, "wrong primitive/constructed form"));
        }
        Ok(t)
    }

    /// A SEQUENCE's contents as a new reader.
    pub fn sequence(&mut self, at: &'static str) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.universal(SEQUENCE, at)?.content))
    }

    /// A SET's contents as a new reader.
    pub fn set(&mut self, at: &'static str) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.universal(SET, at)?.content))
    }

    pub fn octets(&mut self, at: &'static str) -> Result<&'a [u8], DerError> {
        Ok(self.universal(OCTET_STRING, at)?.content)
    }

    pub fn integer(&mut self, at: &'static str) -> Result<i64, DerError> {
        int_value(self.universal(INTEGER, at)?.content, at)
    }

    pub fn enumerated(&mut self, at: &'static str) -> Result<i64, DerError> {
        int_value(self.universal(ENUMERATED, at)?.content, at)
    }

    pub fn boolean(&mut self, at: &'static str) -> Result<bool, DerError> {
        match self.universal(BOOLEAN, at)?.content {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            other => Err(err(at, format!("BOOLEAN of {} bytes {:02x?} (DER: 00 or ff)", other.len(), other))),
        }
    }

    /// Nothing may follow the last expected element.
    pub fn end(&self, at: &'static str) -> Result<(), DerError> {
        if self.rest.is_empty() { Ok(()) } else { Err(err(at, format!("{} trailing bytes", self.rest.len()))) }
    }
}

/// A DER INTEGER or ENUMERATED content (two's complement, minimal) as an `i64`.
fn int_value(c: &[u8], at: &'static str) -> Result<i64, DerError> {
    if c.is_empty() {
        return Err(err(at, "empty integer"));
    }
    if c.len() > 8 {
        return Err(err(at, format!("integer of {} bytes (at most 8)", c.len())));
    }
    if c.len() > 1 && ((c[0] == 0x00 && c[1] & 0x80 == 0) || (c[0] == 0xff && c[1] & 0x80 != 0)) {
        return Err(err(at, "integer not minimally encoded (not DER)"));
    }
    let init: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    Ok(c.iter().fold(init, |acc, b| (acc << 8) | i64::from(*b)))
}

fn type_name(class: Class, number: u32) -> String {
    match (class, number) {
        (Class::Universal, BOOLEAN) => "BOOLEAN".into(),
        (Class::Universal, INTEGER) => "INTEGER".into(),
        (Class::Universal, OCTET_STRING) => "OCTET STRING".into(),
        (Class::Universal, ENUMERATED) => "ENUMERATED".into(),
        (Class::Universal, SEQUENCE) => "SEQUENCE".into(),
        (Class::Universal, SET) => "SET".into(),
        (Class::Universal, n) => format!("universal tag {n}"),
        (Class::Context, n) => format!("[{n}]"),
        (Class::Application, n) => format!("[APPLICATION {n}]"),
        (Class::Private, n) => format!("[PRIVATE {n}]"),
    }
}

impl Tlv<'_> {
    pub fn describe(&self) -> String {
        type_name(self.class, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_long_and_high_tag_forms() {
        // [704] EXPLICIT { NULL } : bf 85 40 02 05 00
        let b = [0xbf, 0x85, 0x40, 0x02, 0x05, 0x00];
        let t = Reader::new(&b).any("t").expect("valid");
        assert_eq!((t.class, t.constructed, t.number, t.content), (Class::Context, true, 704, &[5u8, 0][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 128));
        assert_eq!(Reader::new(&long).octets("o").map(<[u8]>::len), Ok(128));
    }

    #[test]
    fn integers_are_signed_and_minimal() {
        for (bytes, want) in [(&[0x00][..], 0), (&[0x7f], 127), (&[0x00, 0x80], 128), (&[0xff], -1), (&[0x80], -128)] {
            assert_eq!(int_value(bytes, "i"), Ok(want));
        }
        assert!(int_value(&[], "i").is_err());
        assert!(int_value(&[0x00, 0x01], "i").is_err());
        assert!(int_value(&[0xff, 0x80], "i").is_err());
        assert!(int_value(&[1; 9], "i").is_err());
    }

    #[test]
    fn hostile_encodings_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "no tag"),
            (&[0x30], "no length"),
            (&[0x30, 0x80], "indefinite"),
            (&[0x30, 0x85, 1, 1, 1, 1, 1], "5-byte length"),
            (&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], "runs past the end"),
            (&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0], "below 128"),
            (&[0x30, 0x82, 0x00, 0x90], "leading zero"),
            (&[0x30, 0x05, 0x00], "runs past the end"),
            (&[0xbf, 0x80, 0x01, 0x00], "leading zero"),
            (&[0xbf, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00], "too large"),
            (&[0xbf, 0x85], "truncated tag"),
            (&[0x1f, 0x05, 0x00], "below 31"),
        ];
        for (bytes, want) in cases {
            let e = Reader::new(bytes).any("x").expect_err("refused");
            assert!(e.to_string().contains(want), "{bytes:02x?}: {e}");
        }
        assert!(Reader::new(&[0x01, 0x01, 0x01]).boolean("b").is_err(), "BOOLEAN true must be ff");
        assert!(Reader::new(&[0x04, 0x00]).sequence("s").unwrap_err().to_string().contains("expected SEQUENCE"));
        assert!(Reader::new(&[0x24, 0x00]).octets("o").is_err(), "constructed OCTET STRING is not DER");
    }
}
