//! The bits of an SDP session description (RFC 8866) camflow reads itself:
//! a media section's `a=fmtp` parameters, where H.264 and H.265 cameras put
//! their parameter sets (RFC 6184 §8.1 `sprop-parameter-sets`, RFC 7798
//! §7.1 `sprop-vps`/`sprop-sps`/`sprop-pps`, `sprop-max-don-diff`). retina
//! parses the rest of the SDP but hands these on only for the codecs it
//! depacketizes itself.
//!
//! In: the SDP's bytes (untrusted). Out: name/value pairs, and parameter
//! sets decoded from base64. Nothing here panics or allocates past the
//! input's size.

use base64::Engine;

/// The `a=fmtp` parameters of the `media_index`-th media section (`m=`
/// lines counted from 0), in order, names in lower case. Empty when the
/// section or its `a=fmtp` line is missing.
pub fn fmtp(sdp: &[u8], media_index: usize) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(sdp);
    let mut section: Option<usize> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
            continue;
        }
        if section != Some(media_index) {
            continue;
        }
        // `a=fmtp:<format> <param>=<value>;<param>=<value>...`
        let Some(rest) = line.strip_prefix("a=fmtp:") else {
            continue;
        };
        let params = rest.split_once(' ').map_or("", |(_, p)| p);
        return params
            .split(';')
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
    }
    Vec::new()
}

/// The value of parameter `name` (lower case) in `params`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// NAL units from a comma-separated list of base64 strings, as the sprop
/// parameters carry them; an entry that is not base64 is an error naming it.
pub fn nal_units(list: &str) -> Result<Vec<Vec<u8>>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| format!("{s:?} is not base64"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DESCRIBE answer from a Dahua camera (retina's test data) with H.265
    /// video and PCMA audio.
    const DAHUA_H265: &str = "v=0\r\no=- 2253040596 2253040596 IN IP4 0.0.0.0\r\n\
        s=Media Server\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\n\
        m=video 0 RTP/AVP 98\r\na=control:trackID=0\r\na=rtpmap:98 H265/90000\r\n\
        a=fmtp:98 profile-id=1;sprop-sps=QgEBAWAAAAMAsAAAAwAAAwBaoAWCAeFja5JFL83BQYFBAAADAAEAAAMADKE=;\
        sprop-pps=RAHA8saNA7NA;sprop-vps=QAEMAf//AWAAAAMAsAAAAwAAAwBarAwAAAMABAAAAwAyqA==\r\n\
        a=recvonly\r\nm=audio 0 RTP/AVP 8\r\na=control:trackID=1\r\na=fmtp:8 x=y\r\n";

    #[test]
    fn a_dahua_cameras_h265_parameter_sets() {
        let p = fmtp(DAHUA_H265.as_bytes(), 0);
        assert_eq!(param(&p, "profile-id"), Some("1"));
        let vps = nal_units(param(&p, "sprop-vps").unwrap()).unwrap();
        let sps = nal_units(param(&p, "sprop-sps").unwrap()).unwrap();
        let pps = nal_units(param(&p, "sprop-pps").unwrap()).unwrap();
        assert_eq!((vps.len(), sps.len(), pps.len()), (1, 1, 1));
        assert_eq!(vps[0][0] >> 1, 32);
        assert_eq!(sps[0][0] >> 1, 33);
        assert_eq!(pps[0][0] >> 1, 34);
        let config = crate::proto::hevc::configuration(&[&vps[0]], &[&sps[0]], &[&pps[0]]);
        assert!(config.is_ok(), "{config:?}");
        // The second section's own line, and nothing from a missing one.
        assert_eq!(
            fmtp(DAHUA_H265.as_bytes(), 1),
            vec![("x".into(), "y".into())]
        );
        assert!(fmtp(DAHUA_H265.as_bytes(), 2).is_empty());
    }

    #[test]
    fn h264_sprop_parameter_sets_and_bad_base64() {
        let sdp = "m=video 0 RTP/AVP 97\na=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id=4d402a; \
                   packetization-mode=1; sprop-parameter-sets=Z01AKo2NQDwBE/LgLcBAQFAAAD6AABX5CdoIhGo=,aO44gA==\n";
        let p = fmtp(sdp.as_bytes(), 0);
        let sets = nal_units(param(&p, "sprop-parameter-sets").unwrap()).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0][0] & 0x1f, 7);
        assert_eq!(sets[1][0] & 0x1f, 8);
        assert!(nal_units("Z01A,@@@").unwrap_err().contains("@@@"));
        // Garbage never panics.
        for cut in 0..sdp.len() {
            let _ = fmtp(&sdp.as_bytes()[..cut], 0);
        }
    }
}
