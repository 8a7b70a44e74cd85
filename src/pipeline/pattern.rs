//! The simulated camera's test pattern, in packed BGR.
//!
//! Top half: four colour bars (red, green, blue, white), so a client can
//! check it got BGR order right. Middle: a grey square moving one step per
//! frame, so consecutive frames differ. Bottom eighth: the frame number as
//! 16 black/white cells, most significant bit first, so a client can check
//! that no frame was lost, repeated or reordered.

/// Bar colours in BGR order: red, green, blue, white.
pub const BARS: [[u8; 3]; 4] = [[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255]];

/// Cells in the frame-number band: the counter wraps after 2^16 frames.
pub const COUNTER_BITS: u32 = 16;

/// First row of the counter band.
pub fn counter_top(height: u32) -> u32 {
    height - height / 8
}

/// Draws frame `index` into `buf` (rows of `stride` bytes).
pub fn draw(buf: &mut [u8], stride: usize, width: u32, height: u32, index: u64) {
    let (w, h) = (width as usize, height as usize);
    let mid = h / 2;
    let band = counter_top(height) as usize;
    let square = (h / 8).clamp(2, 64);
    let travel = w.saturating_sub(square).max(1);
    let sq_x = (index as usize * 4) % travel;
    let sq_y = mid + (band - mid).saturating_sub(square) / 2;
    for y in 0..h {
        let Some(row) = buf.get_mut(y * stride..y * stride + w * 3) else {
            return;
        };
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let c: [u8; 3] = if y < mid {
                BARS[(x * 4 / w).min(3)]
            } else if y < band {
                if (sq_x..sq_x + square).contains(&x) && (sq_y..sq_y + square).contains(&y) {
                    [128, 128, 128]
                } else {
                    [0, 0, 0]
                }
            } else {
                let cell = (x * COUNTER_BITS as usize / w) as u32;
                let bit = (index >> (COUNTER_BITS - 1 - cell)) & 1;
                if bit == 1 {
                    [255, 255, 255]
                } else {
                    [0, 0, 0]
                }
            };
            px.copy_from_slice(&c);
        }
    }
}

/// Reads the frame number back from a decoded packed-BGR frame (the middle
/// of each counter cell, thresholded), modulo 2^16.
pub fn read_counter(bgr: &[u8], width: u32, height: u32) -> Option<u64> {
    let (w, h) = (width as usize, height as usize);
    let y = (counter_top(height) as usize + h) / 2;
    let mut n = 0u64;
    for cell in 0..COUNTER_BITS as usize {
        let x = (2 * cell + 1) * w / (2 * COUNTER_BITS as usize);
        let g = *bgr.get((y * w + x) * 3 + 1)?;
        n = (n << 1) | u64::from(g > 128);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_round_trips() {
        let (w, h) = (320u32, 240u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        for i in [0u64, 1, 2, 255, 256, 4097, 65535] {
            draw(&mut buf, w as usize * 3, w, h, i);
            assert_eq!(read_counter(&buf, w, h), Some(i));
        }
    }

    #[test]
    fn bars_are_bgr() {
        let (w, h) = (64u32, 32u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        draw(&mut buf, w as usize * 3, w, h, 0);
        // Top-left bar is red: B=0, G=0, R=255.
        assert_eq!(&buf[..3], &[0, 0, 255]);
    }
}
