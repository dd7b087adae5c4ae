//! Images for `sendPhoto` (Telegram does not take SVG photos): a QR code (the modules from
//! `qrcode`) and a small bar chart of daily usage, drawn as 8-bit grey rows and written as a PNG
//! deflated with `flate2` — just the three chunks a PNG needs (IHDR, IDAT, IEND).

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
    grey_png(side, side, |x, y| {
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < w);
        let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < w);
        let on = match (mx, my) {
            (Some(mx), Some(my)) => dark.get(my * w + mx).is_some_and(|c| *c == qrcode::Color::Dark),
            _ => false,
        };
        if on { 0 } else { 255 }
    })
}

/// Chart size and bar geometry.
const CHART_W: usize = 420;
const CHART_H: usize = 200;
const MARGIN: usize = 10;

/// A bar chart of `values` (e.g. bytes per day, oldest first): one dark bar each, scaled to the
/// largest, on white with a baseline. `None` for no values.
pub fn bar_chart(values: &[u64]) -> Option<Result<Vec<u8>, String>> {
    if values.is_empty() || values.len() > 64 {
        return None;
    }
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let slot = (CHART_W - 2 * MARGIN) / values.len();
    let bar = (slot * 3 / 4).max(1);
    let base = CHART_H - MARGIN;
    let heights: Vec<usize> = values
        .iter()
        .map(|v| {
            let h = u128::from(*v) * (base - MARGIN) as u128 / u128::from(max);
            usize::try_from(h).unwrap_or(0).max(usize::from(*v > 0))
        })
        .collect();
    Some(grey_png(CHART_W, CHART_H, |x, y| {
        if y == base && (MARGIN..CHART_W - MARGIN).contains(&x) {
            return 0;
        }
        let Some(i) = x.checked_sub(MARGIN).map(|d| d / slot).filter(|i| *i < heights.len()) else { return 255 };
        let in_bar = (x - MARGIN) % slot < bar;
        if in_bar && y < base && y >= base - heights[i] { 60 } else { 255 }
    }))
}

/// A `width` × `height` 8-bit greyscale PNG of `pixel(x, y)`.
fn grey_png(width: usize, height: usize, pixel: impl Fn(usize, usize) -> u8) -> Result<Vec<u8>, String> {
    let mut raw = Vec::with_capacity((width + 1) * height);
    for y in 0..height {
        raw.push(0); // filter: none
        raw.extend((0..width).map(|x| pixel(x, y)));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).map_err(|e| e.to_string())?;
    let idat = z.finish().map_err(|e| e.to_string())?;
    let (w32, h32) =
        (u32::try_from(width).map_err(|e| e.to_string())?, u32::try_from(height).map_err(|e| e.to_string())?);
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w32.to_be_bytes());
    ihdr.extend_from_slice(&h32.to_be_bytes());
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

    fn pixels(p: &[u8]) -> (usize, Vec<u8>) {
        let side = u32::from_be_bytes(p[16..20].try_into().unwrap()) as usize;
        let len = u32::from_be_bytes(p[33..37].try_into().unwrap()) as usize;
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&p[41..41 + len]).read_to_end(&mut raw).unwrap();
        (side, raw)
    }

    #[test]
    fn bar_chart_bars_scale_to_the_largest() {
        assert!(bar_chart(&[]).is_none());
        let p = bar_chart(&[0, 50, 100]).unwrap().unwrap();
        let (w, raw) = pixels(&p);
        assert_eq!(w, CHART_W);
        assert_eq!(raw.len(), CHART_H * (CHART_W + 1));
        let px = |x: usize, y: usize| raw[y * (CHART_W + 1) + 1 + x];
        let slot = (CHART_W - 2 * MARGIN) / 3;
        let base = CHART_H - MARGIN;
        // Just above the baseline: no bar for 0, bars for 50 and 100.
        assert_eq!(px(MARGIN + 1, base - 1), 255);
        assert_eq!(px(MARGIN + slot + 1, base - 1), 60);
        assert_eq!(px(MARGIN + 2 * slot + 1, base - 1), 60);
        // Near the top only the largest reaches.
        assert_eq!(px(MARGIN + slot + 1, MARGIN + 1), 255);
        assert_eq!(px(MARGIN + 2 * slot + 1, MARGIN + 1), 60);
        assert_eq!(px(MARGIN + 5, base), 0, "baseline");
    }
}
