//! A QR code as a PNG image for `sendPhoto` (Telegram does not take SVG photos): the modules
//! from `qrcode`, drawn as 8-bit grey rows, deflated with `flate2`. Just the
//! three chunks a PNG needs (IHDR, IDAT, IEND).

use std::io::Write;

/// Pixels per module and the quiet zone around the code, in modules.
const SCALE: usize = 8;
const QUIET: usize = 4;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A PNG of the QR code of `text`.
pub fn png(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let w = code.width();
    let dark = code.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut raw = Vec::with_capacity((side + 1) * side);
    for y in 0..side {
        raw.push(0); // filter: none
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < w);
        for x in 0..side {
            let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < w);
            let on = match (mx, my) {
                (Some(mx), Some(my)) => dark.get(my * w + mx).is_some_and(|c| *c == qrcode::Color::Dark),
                _ => false,
            };
            raw.push(if on { 0 } else { 255 });
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).map_err(|e| e.to_string())?;
    let idat = z.finish().map_err(|e| e.to_string())?;
    let side32 = u32::try_from(side).map_err(|e| e.to_string())?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_valid_png_whose_pixels_are_the_code() {
        let text = "traffix://pair?server=proxy.example.com:8443&pin=00&code=ABC";
        let p = png(text).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        let side = u32::from_be_bytes(p[16..20].try_into().unwrap()) as usize;
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        assert_eq!(side, (code.width() + 2 * QUIET) * SCALE);
        // IHDR's CRC is right.
        let mut crc = flate2::Crc::new();
        crc.update(&p[12..29]);
        assert_eq!(crc.sum().to_be_bytes(), p[29..33]);
        // The image data inflates to side rows of 1 + side bytes; the top-left finder is dark.
        let len = u32::from_be_bytes(p[33..37].try_into().unwrap()) as usize;
        assert_eq!(&p[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&p[41..41 + len]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), side * (side + 1));
        let px = |x: usize, y: usize| raw[y * (side + 1) + 1 + x];
        assert_eq!(px(0, 0), 255, "quiet zone");
        assert_eq!(px(QUIET * SCALE, QUIET * SCALE), 0, "finder pattern");
        assert!(p.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
    }
}
