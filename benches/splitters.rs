//! Throughput of the sans-IO splitters on real data: the JPEG splitter on
//! an MJPEG file (JPEGs back to back) and the multipart splitter on the
//! same JPEGs wrapped as a camera's multipart body, fed in TCP-sized
//! pieces. `cargo bench --bench splitters -- FILE.mjpeg`; scripts/bench
//! makes the file. Prints MB/s, best of 5 passes.

use std::time::Instant;

use camflow::proto::{jpeg, multipart};

const PIECE: usize = 64 * 1024;

fn best_of<F: FnMut() -> usize>(bytes: usize, mut f: F) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let n = f();
        assert!(n > 0);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e6
}

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        eprintln!("usage: cargo bench --bench splitters -- FILE.mjpeg");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));

    let jpeg_mbs = best_of(data.len(), || {
        let mut s = jpeg::Splitter::new(jpeg::DEFAULT_MAX_FRAME);
        let mut frames = 0;
        for piece in data.chunks(PIECE) {
            s.feed(piece);
            while let Ok(Some(_)) = s.next_frame() {
                frames += 1;
            }
        }
        frames
    });

    // The same JPEGs as a camera's multipart body, without Content-Length
    // (the harder case: the boundary must be searched for).
    let mut s = jpeg::Splitter::new(jpeg::DEFAULT_MAX_FRAME);
    s.feed(&data);
    let mut body = Vec::with_capacity(data.len() + (1 << 16));
    while let Ok(Some(f)) = s.next_frame() {
        body.extend_from_slice(b"--bench\r\nContent-Type: image/jpeg\r\n\r\n");
        body.extend_from_slice(&f);
        body.extend_from_slice(b"\r\n");
    }
    let multipart_mbs = best_of(body.len(), || {
        let mut s = multipart::Splitter::new("bench", multipart::DEFAULT_MAX_PART);
        let mut parts = 0;
        for piece in body.chunks(PIECE) {
            s.feed(piece);
            while let Ok(Some(_)) = s.next_part() {
                parts += 1;
            }
        }
        parts
    });
    println!("jpeg splitter       {jpeg_mbs:10.0} MB/s");
    println!("multipart splitter  {multipart_mbs:10.0} MB/s (no Content-Length)");
}
