//! `camflow probe`: protocol, container, codec, size, frame rate; for an
//! EvoStream stream also how many messages of each tag were seen.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde::Serialize;

use crate::cli::ProbeArgs;
use crate::cmd::decode::join;
use crate::cmd::open_or_stop;
use crate::packet::{Items, JpegClock, JpegFrame, VideoCodec, VideoPacket};
use crate::pipeline::probe::{ContainerReport, StreamReport};
use crate::pipeline::Fed;
use crate::pipeline::{self, input::InputSource, PipelineError};
use crate::proto::evostream;
use crate::proto::jpeg;
use crate::shutdown::Shutdown;
use crate::source;

#[derive(Debug, Serialize)]
struct Report {
    source: String,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    framing: Option<String>,
    #[serde(flatten)]
    container: ContainerReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    received_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evostream_tags: Option<BTreeMap<String, u64>>,
    /// RTSP: the SDP's media and the transport in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    rtsp: Option<source::rtsp::RtspInfo>,
}

/// A tag's number and what the EvoStream player calls it.
fn tag_name(tag: u8) -> String {
    let name = match tag {
        evostream::TAG_MOOV => "moov",
        evostream::TAG_BEGIN => "begin",
        evostream::TAG_VIDEO => "video",
        evostream::TAG_MOOF => "moof",
        evostream::TAG_MDAT => "mdat",
        evostream::TAG_END => "end",
        _ => "unknown",
    };
    format!("{tag} {name}")
}

pub async fn run(args: ProbeArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let opts = args.source.options()?;
    let name = opts.spec.display_name();
    let Some(opened) = open_or_stop(&opts, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let stats = opened.stats.clone();
    let net_stats = opened.stats.unwrap_or_default();
    let rtsp_info = || {
        stats
            .as_ref()
            .and_then(|s| s.rtsp.lock().ok().and_then(|r| r.clone()))
    };
    let rtsp = rtsp_info();
    let fail = |e: source::SourceError| {
        anyhow!(
            "{name}: {}",
            source::redact_text(&e.to_string(), &opts.spec)
        )
    };
    let (measured, received, framing) = match Fed::from(opened.input) {
        Fed::Input(input) => (Err(input), None, None),
        Fed::Jpegs(jpegs) => {
            let http = net_stats.http_framing.lock().ok().and_then(|f| f.clone());
            let framing = match http {
                Some(http) => http,
                None if rtsp.is_some() => "RTP, JPEG per RFC 2435".into(),
                None => "raw JPEG".into(),
            };
            let c = probe_jpegs(jpegs).await.map_err(fail)?;
            (Ok(c), Some(net_stats.bytes()), Some(framing))
        }
        Fed::Packets(packets) => {
            let c = probe_packets(packets).await.map_err(fail)?;
            let framing = if c.container == "hevc" {
                "RTP, H.265 per RFC 7798"
            } else {
                "RTP, H.264 per RFC 6184"
            }
            .to_string();
            (Ok(c), Some(net_stats.bytes()), Some(framing))
        }
    };
    let input = match measured {
        Err(input) => input,
        Ok(mut container) => {
            // RTSP's transport is settled by SETUP, after the open: the
            // info is read again once pictures came.
            let rtsp = rtsp_info();
            if let Some(info) = &rtsp {
                container = rtsp_container(info, container);
            }
            let report = Report {
                source: name,
                protocol: opts.spec.protocol(),
                framing,
                container,
                received_bytes: received,
                evostream_tags: None,
                rtsp,
            };
            print_report(&report, args.json)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let stop = shutdown.flag();
    let worker = pipeline::spawn("camflow-probe", move || {
        let r = pipeline::probe::run(&input, stop, Arc::new(AtomicU64::new(0)));
        let r = match (r, &input) {
            // The receiver's error explains a failed open better than libav's.
            (Err(e), InputSource::Chunks(feed)) => {
                Err(feed.error().map(PipelineError::Source).unwrap_or(e))
            }
            (r, _) => r,
        };
        if let InputSource::Chunks(feed) = &input {
            feed.close();
        }
        r
    })
    .context("cannot start the probe thread")?;
    let container = join(worker).await?.map_err(|e| {
        anyhow!(
            "{name}: {}",
            source::redact_text(&e.to_string(), &opts.spec)
        )
    })?;

    let framing = stats
        .as_ref()
        .and_then(|s| s.framing.lock().ok().and_then(|f| *f))
        .map(|f| f.to_string());
    let evostream_tags = stats.as_ref().and_then(|s| {
        s.evostream.lock().ok().and_then(|e| {
            e.as_ref()
                .map(|e| e.tags.iter().map(|(t, n)| (tag_name(*t), *n)).collect())
        })
    });
    let mut container = container;
    if stats.is_some() {
        // A live stream has no duration; libav only saw what it read so far.
        container.duration_seconds = None;
    }
    let report = Report {
        source: name,
        protocol: opts.spec.protocol(),
        framing,
        container,
        received_bytes: stats.as_ref().map(|s| s.bytes()),
        evostream_tags,
        rtsp: None,
    };
    print_report(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_text(report);
    }
    Ok(())
}

/// Frames looked at to measure an MJPEG camera's rate.
const PROBE_FRAMES: usize = 10;

/// An MJPEG camera sends no container: the size comes from the first
/// JPEG's frame header, the rate from when the first frames arrived.
async fn probe_jpegs(mut rx: Items<JpegFrame>) -> Result<ContainerReport, source::SourceError> {
    let mut times = Vec::new();
    let mut clock = JpegClock::default();
    let mut size = None;
    let window = tokio::time::sleep(std::time::Duration::from_secs(2));
    tokio::pin!(window);
    while times.len() < PROBE_FRAMES {
        let item = tokio::select! {
            i = rx.recv() => i,
            _ = &mut window, if !times.is_empty() => break,
        };
        match item {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(j)) => {
                if size.is_none() {
                    size = jpeg::dimensions(&j.data);
                }
                times.push(clock.time(&j));
            }
        }
    }
    rx.close();
    if times.is_empty() {
        return Err(source::SourceError::Ended(
            "the camera sent no JPEG before closing".into(),
        ));
    }
    let fps = match (times.first(), times.last()) {
        (Some(a), Some(b)) if times.len() > 1 && b > a => Some((times.len() - 1) as f64 / (b - a)),
        _ => None,
    };
    Ok(ContainerReport {
        container: "mjpeg".into(),
        container_long: "JPEG images back to back".into(),
        duration_seconds: None,
        streams: vec![StreamReport {
            index: 0,
            kind: "video".into(),
            codec: "mjpeg".into(),
            width: size.map(|s| u32::from(s.0)),
            height: size.map(|s| u32::from(s.1)),
            fps,
            pixel_format: None,
            sample_rate: None,
            rotation: None,
            mirrored: false,
        }],
    })
}

/// An H.264 or H.265 camera's codec and size come with its parameters,
/// its rate from the first pictures' timestamps.
async fn probe_packets(mut rx: Items<VideoPacket>) -> Result<ContainerReport, source::SourceError> {
    let mut times = Vec::new();
    let mut params = None;
    let window = tokio::time::sleep(std::time::Duration::from_secs(2));
    tokio::pin!(window);
    while times.len() < PROBE_FRAMES {
        let item = tokio::select! {
            i = rx.recv() => i,
            _ = &mut window, if !times.is_empty() => break,
        };
        match item {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(p)) => {
                if let Some(new) = p.params {
                    params.get_or_insert(new);
                }
                times.push(p.pts);
            }
        }
    }
    rx.close();
    let Some(params) = params else {
        return Err(source::SourceError::Ended(
            "the camera sent no H.264 picture before closing".into(),
        ));
    };
    let (codec, long) = match params.codec {
        VideoCodec::H264 => ("h264", "H.264 access units"),
        VideoCodec::H265 => ("hevc", "H.265 access units"),
    };
    Ok(ContainerReport {
        container: codec.into(),
        container_long: long.into(),
        duration_seconds: None,
        streams: vec![StreamReport {
            index: 0,
            kind: "video".into(),
            codec: codec.into(),
            width: Some(params.width),
            height: Some(params.height),
            fps: measured_fps(&times),
            pixel_format: None,
            sample_rate: None,
            rotation: None,
            mirrored: false,
        }],
    })
}

/// Frames per second from the first frames' times.
fn measured_fps(times: &[f64]) -> Option<f64> {
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (times.len() > 1 && hi > lo).then(|| (times.len() - 1) as f64 / (hi - lo))
}

/// An RTSP camera's streams are its SDP's media; the video one gets the
/// size and rate measured on its pictures.
fn rtsp_container(info: &source::rtsp::RtspInfo, measured: ContainerReport) -> ContainerReport {
    let video = measured.streams.into_iter().next();
    let streams = info
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let codec = match m.encoding.as_str() {
                "jpeg" => "mjpeg".to_string(),
                // libavcodec's name, as a file's probe shows it.
                "h265" => "hevc".to_string(),
                e => e.to_string(),
            };
            match (&video, m.used) {
                (Some(v), true) => StreamReport {
                    index: i,
                    kind: m.media.clone(),
                    codec,
                    width: v.width.or(m.width),
                    height: v.height.or(m.height),
                    // What arrived beats what the SDP announces (often
                    // the camera's maximum).
                    fps: v.fps.or(m.fps),
                    pixel_format: None,
                    sample_rate: None,
                    rotation: None,
                    mirrored: false,
                },
                _ => StreamReport {
                    index: i,
                    kind: m.media.clone(),
                    codec,
                    width: m.width,
                    height: m.height,
                    fps: m.fps,
                    pixel_format: None,
                    sample_rate: (m.media == "audio").then_some(m.clock_rate),
                    rotation: None,
                    mirrored: false,
                },
            }
        })
        .collect();
    ContainerReport {
        container: "rtsp".into(),
        container_long: format!("RTSP session over {}", info.transport.0),
        duration_seconds: None,
        streams,
    }
}

fn print_text(r: &Report) {
    println!("source:     {}", r.source);
    println!("protocol:   {}", r.protocol);
    if let Some(f) = &r.framing {
        println!("framing:    {f}");
    }
    println!(
        "container:  {} ({})",
        r.container.container, r.container.container_long
    );
    if let Some(d) = r.container.duration_seconds {
        println!("duration:   {d:.3} s");
    }
    for s in &r.container.streams {
        let mut parts = vec![format!("{} {}", s.kind, s.codec)];
        if let (Some(w), Some(h)) = (s.width, s.height) {
            parts.push(format!("{w}x{h}"));
        }
        if let Some(f) = s.fps {
            parts.push(format!("{f:.3} fps"));
        }
        if let Some(p) = &s.pixel_format {
            parts.push(p.clone());
        }
        if let Some(sr) = s.sample_rate {
            parts.push(format!("{sr} Hz"));
        }
        // A rotated stream (as phones record) is shown turned; say how.
        match (s.rotation.filter(|r| *r != 0.0), s.mirrored) {
            (Some(r), false) => parts.push(format!("rotated {r:.0}° clockwise for display")),
            (Some(r), true) => parts.push(format!(
                "rotated {r:.0}° clockwise and mirrored for display"
            )),
            (None, true) => parts.push("mirrored for display".into()),
            (None, false) => {}
        }
        println!("stream {}:   {}", s.index, parts.join(", "));
    }
    if let Some(b) = r.received_bytes {
        println!("received:   {b} bytes");
    }
    if let Some(tags) = &r.evostream_tags {
        let list: Vec<String> = tags.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
        println!("evostream:  {}", list.join(", "));
    }
    if let Some(rtsp) = &r.rtsp {
        println!("transport:  RTP over {}", rtsp.transport.0);
        if let Some(server) = &rtsp.server {
            println!("server:     {server}");
        }
        for (i, m) in rtsp.media.iter().enumerate() {
            let used = if m.used { " (read)" } else { "" };
            let codec = m
                .codec
                .as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default();
            println!(
                "sdp {i}:      {} {}/{}, payload type {}{codec}{used}",
                m.media, m.encoding, m.clock_rate, m.payload_type
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::packet::VideoParams;

    #[tokio::test]
    async fn h265_packets_are_probed_as_hevc() {
        let params = Arc::new(VideoParams {
            codec: VideoCodec::H265,
            width: 320,
            height: 240,
            extradata: vec![1],
            rfc6381: "hvc1.1.6.L60.90".into(),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for i in 0..5 {
            let p = VideoPacket {
                data: bytes::Bytes::new(),
                pts: f64::from(i) / 25.0,
                key: i == 0,
                at_unix: 0.0,
                params: (i == 0).then(|| params.clone()),
            };
            tx.send(Ok(p)).await.unwrap();
        }
        drop(tx);
        let c = probe_packets(rx).await.unwrap();
        assert_eq!(
            (c.container.as_str(), c.container_long.as_str()),
            ("hevc", "H.265 access units")
        );
        let v = &c.streams[0];
        assert_eq!(
            (v.codec.as_str(), v.width, v.height),
            ("hevc", Some(320), Some(240))
        );
        assert!(v.fps.is_some_and(|f| (f - 25.0).abs() < 0.01));
    }
}
