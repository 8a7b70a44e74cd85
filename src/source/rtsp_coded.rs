//! RTSP H.264 and H.265: RTP packets through camflow's own depacketizers
//! (`proto::rtp_h264`, `proto::rtp_h265`), and the decoder configuration
//! (`avcC`/`hvcC`) kept up to date from the SDP's parameter sets and the
//! ones the camera sends in band. The async loop around it is in `rtsp`.
//!
//! Why not retina's H.264 depacketizer: it ends the session with an error
//! when a session begins in the middle of a fragmented NAL unit (VLC's
//! server starts wherever it is) or after a loss it has no count for, and
//! it has no H.265 and no bound on a picture's size.

use std::sync::Arc;

use bytes::Bytes;

use crate::packet::{VideoCodec, VideoParams};
use crate::proto::rtp_h264::{self, Dropped, OnLoss, Stats};
use crate::proto::{h264, hevc, rtp_h265, sdp};

/// A depacketizer for the camera's codec.
pub(super) enum Depack {
    H264(rtp_h264::Depacketizer),
    H265(rtp_h265::Depacketizer),
}

/// One access unit, handed on.
pub(super) struct Unit {
    /// NAL units with 4-byte length prefixes.
    pub data: Bytes,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// An IDR (H.264) or IRAP (H.265) picture.
    pub key: bool,
}

impl Depack {
    /// For `codec`, with the SDP's `fmtp` parameters of the video track.
    pub fn new(
        codec: VideoCodec,
        max_frame: usize,
        on_loss: OnLoss,
        fmtp: &[(String, String)],
    ) -> Self {
        match codec {
            VideoCodec::H264 => Depack::H264(rtp_h264::Depacketizer::new(max_frame, on_loss)),
            VideoCodec::H265 => {
                let don = sdp::param(fmtp, "sprop-max-don-diff")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Depack::H265(rtp_h265::Depacketizer::new(max_frame, on_loss, don))
            }
        }
    }

    /// One RTP packet of the video track.
    pub fn push(&mut self, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Result<(), Dropped> {
        match self {
            Depack::H264(d) => d.push(seq, ts, marker, payload),
            Depack::H265(d) => d.push(seq, ts, marker, payload),
        }
    }

    /// The next access unit done; the parameter sets it carries go to
    /// `sets` first.
    pub fn pull(&mut self, sets: &mut Sets) -> Option<Unit> {
        match self {
            Depack::H264(d) => {
                let au = d.pull()?;
                sets.add(&[], &au.params.sps, &au.params.pps);
                Some(Unit {
                    data: au.data,
                    timestamp: au.timestamp,
                    key: au.key,
                })
            }
            Depack::H265(d) => {
                let au = d.pull()?;
                sets.add(&au.params.vps, &au.params.sps, &au.params.pps);
                Some(Unit {
                    data: au.data,
                    timestamp: au.timestamp,
                    key: au.key,
                })
            }
        }
    }

    /// The depacketizer's counters.
    pub fn stats(&self) -> &Stats {
        match self {
            Depack::H264(d) => d.stats(),
            Depack::H265(d) => d.stats(),
        }
    }
}

/// The stream's parameter sets as last seen, and the decoder configuration
/// they make.
pub(super) struct Sets {
    codec: VideoCodec,
    vps: Vec<Vec<u8>>,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    params: Option<Arc<VideoParams>>,
    /// Why the last sets made no configuration.
    pub problem: Option<String>,
}

impl Sets {
    /// From the SDP's `sprop-*` parameters, when the camera gives them; a
    /// set that is not base64 is left out (the camera may send good ones
    /// in band), and `problem` says so.
    pub fn from_sdp(codec: VideoCodec, fmtp: &[(String, String)]) -> Sets {
        let mut sets = Sets {
            codec,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            params: None,
            problem: None,
        };
        let decode = |name: &str, problem: &mut Option<String>| match sdp::param(fmtp, name)
            .map(sdp::nal_units)
        {
            Some(Ok(units)) => units,
            Some(Err(e)) => {
                *problem = Some(format!("the SDP's {name}: {e}"));
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut problem = None;
        match codec {
            VideoCodec::H264 => {
                for nal in decode("sprop-parameter-sets", &mut problem) {
                    match nal.first().map(|h| h & 0x1F) {
                        Some(h264::nal_type::SPS) => sets.sps.push(nal),
                        Some(h264::nal_type::PPS) => sets.pps.push(nal),
                        _ => {}
                    }
                }
            }
            VideoCodec::H265 => {
                sets.vps = decode("sprop-vps", &mut problem);
                sets.sps = decode("sprop-sps", &mut problem);
                sets.pps = decode("sprop-pps", &mut problem);
            }
        }
        sets.rebuild();
        if problem.is_some() {
            sets.problem = problem;
        }
        sets
    }

    /// Parameter sets from an access unit; a set with an id already known
    /// replaces it. The configuration is rebuilt when anything changed.
    fn add(&mut self, vps: &[Bytes], sps: &[Bytes], pps: &[Bytes]) {
        let mut changed = false;
        for (list, new) in [
            (&mut self.vps, vps),
            (&mut self.sps, sps),
            (&mut self.pps, pps),
        ] {
            // Cameras repeat their sets with every keyframe: copied only
            // when they differ.
            if !new.is_empty()
                && !list
                    .iter()
                    .map(Vec::as_slice)
                    .eq(new.iter().map(|b| &b[..]))
            {
                *list = new.iter().map(|b| b.to_vec()).collect();
                changed = true;
            }
        }
        if changed {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        fn refs(l: &[Vec<u8>]) -> Vec<&[u8]> {
            l.iter().map(Vec::as_slice).collect()
        }
        let built = match self.codec {
            VideoCodec::H264 => h264::avc_configuration(&refs(&self.sps), &refs(&self.pps))
                .map(|c| (c.avcc, c.rfc6381, c.width, c.height))
                .map_err(|e| e.to_string()),
            VideoCodec::H265 => {
                hevc::configuration(&refs(&self.vps), &refs(&self.sps), &refs(&self.pps))
                    .map(|c| (c.hvcc, c.rfc6381, c.width, c.height))
                    .map_err(|e| e.to_string())
            }
        };
        match built {
            Ok((extradata, rfc6381, width, height)) => {
                let params = VideoParams {
                    codec: self.codec,
                    width,
                    height,
                    extradata,
                    rfc6381,
                };
                if self.params.as_deref() != Some(&params) {
                    self.params = Some(Arc::new(params));
                }
                self.problem = None;
            }
            Err(e) if !self.sps.is_empty() => self.problem = Some(e),
            Err(_) => {}
        }
    }

    /// The decoder configuration, once parameter sets made one.
    pub fn params(&self) -> Option<&Arc<VideoParams>> {
        self.params.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_parameter_sets_make_an_avcc() {
        let fmtp = vec![(
            "sprop-parameter-sets".to_string(),
            "Z01AKo2NQDwBE/LgLcBAQFAAAD6AABX5CdoIhGo=,aO44gA==".to_string(),
        )];
        let sets = Sets::from_sdp(VideoCodec::H264, &fmtp);
        let p = sets.params().expect("a configuration");
        assert_eq!((p.width, p.height), (1920, 1080));
        assert_eq!(p.rfc6381, "avc1.4D402A");
        assert_eq!(p.extradata[0], 1);
        assert!(sets.problem.is_none());
    }

    #[test]
    fn a_corrupt_sprop_is_named_and_left_out() {
        let fmtp = vec![(
            "sprop-parameter-sets".to_string(),
            "@@,aO44gA==".to_string(),
        )];
        let sets = Sets::from_sdp(VideoCodec::H264, &fmtp);
        assert!(sets.params().is_none());
        assert!(
            sets.problem.as_deref().unwrap_or("").contains("not base64"),
            "{:?}",
            sets.problem
        );
    }
}
