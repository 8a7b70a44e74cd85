//! Packaging a file as MPEG-DASH with its video encrypted (Common
//! Encryption, 'cbcs' or 'cenc', for ClearKey players); audio stays clear.
//! libavformat's dash muxer writes clear segments into a scratch folder;
//! camflow encrypts the video's (`proto::cenc_mp4`), adds ContentProtection
//! to the MPD, and moves everything into place, the MPD last, so that a
//! player never sees an MPD whose segments are missing. Used by `camflow
//! package` and by the packaging service.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine;

use crate::pipeline::{dash, probe};
use crate::proto::cenc::{self, Key16, Scheme};
use crate::proto::cenc_mp4::{self, FragmentProtector, Node, Protection};
use crate::proto::h264::ParamSets;

/// What to package, and how.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    pub input: PathBuf,
    /// Output folder (created): `stream.mpd`, `init-N.m4s`,
    /// `chunk-N-NNNNN.m4s`, and with `hls` `master.m3u8`, `media_N.m3u8`.
    pub out: PathBuf,
    pub segment_seconds: f64,
    pub hls: bool,
    pub scheme: Scheme,
    pub key: Key16,
    pub kid: Key16,
    /// Video in another codec is re-encoded to H.264 (libx264, a keyframe
    /// per segment) instead of refused.
    pub transcode: bool,
}

/// A step done (the packaging service shows them as job statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Clear fragmented segments written.
    Fragmented,
    /// The video's segments encrypted.
    Encrypted,
}

#[derive(Debug, Clone)]
pub struct PackageSummary {
    pub duration: f64,
    pub mpd: PathBuf,
    pub audio: bool,
    /// Audio streams left out (not AAC).
    pub skipped_audio: Vec<String>,
}

/// Packages `spec.input`. `on_progress(seconds done, seconds total)` while
/// the segments are written; `on_stage` after each step. The key never
/// appears in an error.
pub fn package(
    spec: &PackageSpec,
    stop: &Arc<AtomicBool>,
    on_progress: &mut (dyn FnMut(f64, f64) + Send),
    on_stage: &mut dyn FnMut(Stage),
) -> anyhow::Result<PackageSummary> {
    let created = !spec.out.exists();
    std::fs::create_dir_all(&spec.out)
        .map_err(|e| anyhow!("cannot create {}: {e}", spec.out.display()))?;
    keep_large_buffers();
    let scratch = spec.out.join(format!(
        ".camflow-clear-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| anyhow!("cannot write in {}: {e}", spec.out.display()))?;
    let job = Job {
        input: spec.input.clone(),
        out: spec.out.clone(),
        scratch: scratch.clone(),
        segment_seconds: spec.segment_seconds,
        hls: spec.hls,
        transcode: spec.transcode,
        protection: Protection {
            track_id: 1,
            scheme: spec.scheme,
            kid: spec.kid,
            key: spec.key,
            iv: random_iv(spec.scheme),
        },
    };
    let r = job.run(stop, on_progress, on_stage);
    let _ = std::fs::remove_dir_all(&scratch);
    if r.is_err() && created {
        // The folder this run made goes, if nothing else is in it.
        let _ = std::fs::remove_dir(&spec.out);
    }
    r
}

/// Once the new MPD is in place, removes what an earlier run into the same
/// folder wrote and this one did not (a longer input's last chunks, the
/// HLS playlists of an `--hls` run): only the dash muxer's names, never
/// other files.
fn remove_earlier_files(out: &Path, written: &[String]) -> anyhow::Result<()> {
    use crate::sink::is_number;
    crate::sink::remove_own(out, |name| {
        let chunk = name
            .strip_prefix("chunk-")
            .and_then(|n| n.strip_suffix(".m4s"))
            .and_then(|n| n.split_once('-'))
            .is_some_and(|(rep, number)| is_number(rep) && is_number(number));
        let init = name
            .strip_prefix("init-")
            .and_then(|n| n.strip_suffix(".m4s"))
            .is_some_and(is_number);
        let media = name
            .strip_prefix("media_")
            .and_then(|n| n.strip_suffix(".m3u8"))
            .is_some_and(is_number);
        (chunk || init || media || name == "master.m3u8") && !written.iter().any(|w| w == name)
    })
    .map_err(|(path, e)| anyhow::Error::new(e).context(format!("cannot remove {}", path.display())))
}

/// Segments pass through buffers of several MB each. glibc hands out and
/// takes back blocks that large straight from the kernel, so every segment
/// paid for fresh zeroed pages (two thirds of a run's time was page faults);
/// kept in the heap, the same memory serves the next segment.
fn keep_large_buffers() {
    // SAFETY: mallopt only tunes the allocator; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// The output folder `package` uses by default: INPUT's name with
/// `-dash`, next to it.
pub fn default_out(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "package".into());
    input.with_file_name(format!("{stem}-dash"))
}

/// 'cbcs': a random constant IV; 'cenc': a random start for the per-sample
/// IVs (the low half stays zero: it is the block counter).
fn random_iv(scheme: Scheme) -> [u8; 16] {
    let mut iv = [0u8; 16];
    let n = match scheme {
        Scheme::Cbcs => 16,
        Scheme::Cenc => 8,
    };
    for b in iv.iter_mut().take(n) {
        *b = fastrand::u8(..);
    }
    iv
}

/// A video sample's subsample map.
type Subsamples = Box<dyn FnMut(&[u8]) -> Result<Vec<cenc::Subsample>, String>>;

struct Job {
    input: PathBuf,
    out: PathBuf,
    scratch: PathBuf,
    segment_seconds: f64,
    hls: bool,
    transcode: bool,
    protection: Protection,
}

impl Job {
    fn run(
        self,
        stop: &Arc<AtomicBool>,
        on_progress: &mut (dyn FnMut(f64, f64) + Send),
        on_stage: &mut dyn FnMut(Stage),
    ) -> anyhow::Result<PackageSummary> {
        // Video that is not H.264 is re-encoded first, into a file beside
        // the output, when asked to.
        let encoded = self
            .out
            .join(format!(".camflow-video-{}.mp4", fastrand::u32(..)));
        // Only video in another codec is re-encoded: a file without video
        // has nothing to encode, and one libavformat cannot open is left to
        // the packaging step to report.
        let other_codec = if self.transcode {
            probe::outline(&self.input)
                .filter(|o| o.video_codec.as_deref().is_some_and(|c| c != "h264"))
        } else {
            None
        };
        let video_from = if let Some(outline) = other_codec {
            encode_video(
                &self.input,
                &encoded,
                self.segment_seconds,
                outline.duration_seconds.unwrap_or(0.0),
                stop,
                on_progress,
            )?;
            Some(encoded.clone())
        } else {
            None
        };
        let r = self.run_with(video_from.as_deref(), stop, on_progress, on_stage);
        let _ = std::fs::remove_file(&encoded);
        r
    }

    fn run_with(
        self,
        video_from: Option<&Path>,
        stop: &Arc<AtomicBool>,
        on_progress: &mut (dyn FnMut(f64, f64) + Send),
        on_stage: &mut dyn FnMut(Stage),
    ) -> anyhow::Result<PackageSummary> {
        // The video's init segment says how to read its slices; each media
        // segment is encrypted as the muxer finishes it, in order (the
        // 'cenc' IVs count on across them).
        let protection = self.protection.clone();
        let mut fp: Option<FragmentProtector<Subsamples>> = None;
        let mut filter = |name: &str, bytes: &[u8]| -> Result<Vec<u8>, String> {
            if name.starts_with("init-") {
                let mut params = ParamSets::new();
                let avcc = avcc_of(bytes).map_err(|e| e.to_string())?;
                let length_size = params
                    .add_avcc(&avcc)
                    .map_err(|e| format!("the video's avcC: {e}"))?;
                let out = cenc_mp4::protect_init(bytes, &protection).map_err(|e| e.to_string())?;
                fp = Some(FragmentProtector::new(
                    protection.clone(),
                    Box::new(move |s: &[u8]| {
                        cenc_mp4::h264_subsamples(&mut params, length_size, s)
                    }),
                ));
                Ok(out)
            } else {
                fp.as_mut()
                    .ok_or("a media segment came before the init segment")?
                    .protect_segment(bytes)
                    .map_err(|e| format!("{name}: {e}"))
            }
        };
        let files = dash::DashFiles {
            input: &self.input,
            video_from,
            dir: &self.scratch,
            segment_seconds: self.segment_seconds,
            hls: self.hls,
        };
        // Fragmented: being cut into segments, each encrypted as it is
        // cut; Encrypted: every segment done, the files go into place.
        on_stage(Stage::Fragmented);
        let clear = dash::write_clear(&files, stop, on_progress, &mut filter)
            .map_err(|e| anyhow!("{e}"))?;
        on_stage(Stage::Encrypted);
        // Audio (clear) and playlists move as they are; the MPD goes last.
        let mut names: Vec<String> = std::fs::read_dir(&self.scratch)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for n in &names {
            if n == dash::MPD {
                continue;
            }
            let from = self.scratch.join(n);
            let to = self.out.join(n);
            if n.ends_with(".m3u8") {
                let text = std::fs::read_to_string(&from)?;
                let text = self.hls_with_key(n, &text, clear.video_rep);
                write_atomic(&to, text.as_bytes())?;
            } else {
                std::fs::rename(&from, &to)
                    .with_context(|| format!("cannot move {} into place", to.display()))?;
            }
        }
        let mpd = std::fs::read_to_string(self.scratch.join(dash::MPD))?;
        let mpd = self.mpd_with_protection(&mpd)?;
        write_atomic(&self.out.join(dash::MPD), mpd.as_bytes())?;
        remove_earlier_files(&self.out, &names)?;
        Ok(PackageSummary {
            duration: clear.duration,
            mpd: self.out.join(dash::MPD),
            audio: clear.audio_rep.is_some(),
            skipped_audio: clear.skipped_audio,
        })
    }

    /// The MPD with the CENC namespace and, in the video's AdaptationSet,
    /// the mp4protection ContentProtection (scheme, default KID) and the
    /// CommonSystem one carrying the `pssh`.
    fn mpd_with_protection(&self, mpd: &str) -> anyhow::Result<String> {
        let p = &self.protection;
        let mut out = String::with_capacity(mpd.len() + 512);
        let mut added_ns = false;
        let mut added_cp = false;
        for line in mpd.lines() {
            if !added_ns && line.contains("xmlns=\"urn:mpeg:dash:schema:mpd:2011\"") {
                out.push_str(line);
                out.push('\n');
                out.push_str("\txmlns:cenc=\"urn:mpeg:cenc:2013\"\n");
                added_ns = true;
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if !added_cp
                && line.contains("<AdaptationSet")
                && line.contains("contentType=\"video\"")
            {
                let mut pssh = Vec::new();
                cenc_mp4::pssh(&p.kid).write(&mut pssh);
                let b64 = base64::engine::general_purpose::STANDARD.encode(&pssh);
                out.push_str(&format!(
                    "\t\t\t<ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"{}\" cenc:default_KID=\"{}\"/>\n",
                    String::from_utf8_lossy(&p.scheme.fourcc()),
                    cenc::uuid(&p.kid)
                ));
                out.push_str(&format!(
                    "\t\t\t<ContentProtection schemeIdUri=\"urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b\"><cenc:pssh>{b64}</cenc:pssh></ContentProtection>\n"
                ));
                added_cp = true;
            }
        }
        if !(added_ns && added_cp) {
            bail!("the dash muxer's MPD has no video AdaptationSet to protect");
        }
        Ok(out)
    }

    /// The video's media playlist gets an EXT-X-KEY saying how its samples
    /// are encrypted (with the `pssh` as the key's data); others as they
    /// are.
    fn hls_with_key(&self, name: &str, text: &str, rep: usize) -> String {
        if name != format!("media_{rep}.m3u8") {
            return text.to_string();
        }
        let p = &self.protection;
        let mut pssh = Vec::new();
        cenc_mp4::pssh(&p.kid).write(&mut pssh);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pssh);
        let method = match p.scheme {
            Scheme::Cbcs => "SAMPLE-AES",
            Scheme::Cenc => "SAMPLE-AES-CTR",
        };
        let key = format!(
            "#EXT-X-KEY:METHOD={method},URI=\"data:text/plain;base64,{b64}\",KEYID=0x{},KEYFORMAT=\"urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b\",KEYFORMATVERSIONS=\"1\"",
            cenc::hex(&p.kid)
        );
        let mut out = String::new();
        let mut added = false;
        for line in text.lines() {
            if !added && line.starts_with("#EXT-X-MAP") {
                out.push_str(&key);
                out.push('\n');
                added = true;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Re-encodes the input's video to H.264 in `to` (MP4, video only), a
/// keyframe every segment, with the transcode engine; progress runs to
/// `total` seconds (0 when the length is not known).
fn encode_video(
    input: &Path,
    to: &Path,
    segment_seconds: f64,
    total: f64,
    stop: &Arc<AtomicBool>,
    on_progress: &mut (dyn FnMut(f64, f64) + Send),
) -> anyhow::Result<()> {
    use crate::pipeline::{encode::EncodeSettings, input::InputSource, mux, transcode, Fed};
    let job = transcode::OutputJob {
        target: mux::Target::Stream {
            container: mux::Container::Mp4,
            to: to.display().to_string(),
            timeout: 10.0,
        },
        encode: EncodeSettings {
            size: None,
            bitrate: None,
            gop_seconds: segment_seconds,
            preset: "veryfast".into(),
            zerolatency: false,
            frame_rate: None,
        },
        force_encode: true,
        fps: None,
        duration: None,
        realtime: false,
    };
    transcode::run(
        Fed::Input(InputSource::Path(input.to_path_buf())),
        &job,
        stop.clone(),
        Arc::new(AtomicU64::new(0)),
        &mut |m| on_progress(m.seconds, total),
    )
    .map_err(|e| anyhow!("re-encoding the video: {e}"))?;
    Ok(())
}

/// The `avcC` body of an init segment's first video sample entry.
fn avcc_of(init: &[u8]) -> anyhow::Result<Vec<u8>> {
    let top = Node::parse_all(init)?;
    let entry = top
        .iter()
        .find(|n| &n.kind == b"moov")
        .and_then(|m| m.child(b"trak"))
        .and_then(|t| t.child(b"mdia"))
        .and_then(|m| m.child(b"minf"))
        .and_then(|m| m.child(b"stbl"))
        .and_then(|m| m.child(b"stsd"))
        .and_then(|s| s.children.first())
        .ok_or_else(|| anyhow!("the video's init segment has no sample entry"))?;
    entry
        .children
        .iter()
        .find(|c| &c.kind == b"avcC")
        .map(|c| c.prefix.clone())
        .ok_or_else(|| anyhow!("the video's sample entry has no avcC"))
}

/// Writes `to` through a temporary name and a rename.
fn write_atomic(to: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = to.with_extension("camflow-tmp");
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}
