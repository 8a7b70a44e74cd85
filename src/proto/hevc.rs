//! H.265 decoder configuration from parameter sets (ITU-T H.265, ISO/IEC
//! 14496-15 §8.3.3.1).
//!
//! What flows in: a stream's VPS, SPS and PPS NAL units, each whole, with
//! its 2-byte NAL header and without a start code or length prefix (as
//! RTP carries them and an SDP's `sprop-vps`/`sprop-sps`/`sprop-pps` give
//! them). What flows out: the HEVCDecoderConfigurationRecord (`hvcC`) that
//! libavcodec's hevc decoder and the mp4 muxer take as extradata, saying
//! that packets are NAL units with 4-byte length prefixes; the RFC 6381
//! codec string (`hvc1.1.6.L93.B0`); and the picture size the SPS gives,
//! its conformance window applied. Everything the record says of the
//! stream (profile, tier, level, constraint flags, chroma format, bit
//! depths, temporal layers) is read from the SPS.
//!
//! All bytes are untrusted: every read is bounds-checked (the RBSP reader
//! is [`h264::BitReader`], whose Exp-Golomb and emulation prevention rules
//! H.265 shares), and nothing panics.

use super::h264::{self, BitReader};

/// `nal_unit_type` values (Table 7-1) of the parameter sets.
pub mod nal_type {
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
}

/// Why a configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The SPS could not be read.
    #[error("H.265 SPS: {0}")]
    Syntax(#[from] h264::Error),
    /// A parameter set given is of another type (or too short for a header).
    #[error("H.265 parameter set {index} is NAL unit type {nal_type:?}, not {expected}")]
    NalType {
        index: usize,
        nal_type: Option<u8>,
        expected: &'static str,
    },
    /// One of VPS, SPS or PPS is missing.
    #[error("no H.265 {0} was given")]
    Missing(&'static str),
    /// A parameter set or a count of them does not fit the record's 16-bit
    /// fields.
    #[error("H.265 {0} do not fit an hvcC record")]
    TooLarge(&'static str),
    /// The SPS gives a picture with no pixels (its conformance window is as
    /// large as the picture, or larger).
    #[error("H.265 SPS gives an empty picture ({width}x{height} less its conformance window)")]
    EmptyPicture { width: u32, height: u32 },
}

/// `nal_unit_type` of an H.265 NAL unit (bits 1..7 of its first header
/// byte), or `None` when it is shorter than its 2-byte header.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    (nal.len() >= 2).then(|| (nal[0] >> 1) & 0x3f)
}

/// What an SPS says that the `hvcC` record and the codec string carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    /// `general_profile_space` .. `general_level_idc`: the 12 bytes of the
    /// general profile_tier_level, as the record stores them.
    pub general_ptl: [u8; 12],
    /// `sps_max_sub_layers_minus1 + 1`.
    pub temporal_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nested: bool,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// Luma bit depth less 8.
    pub bit_depth_luma_minus8: u8,
    /// Chroma bit depth less 8.
    pub bit_depth_chroma_minus8: u8,
    /// Picture width shown, the conformance window applied.
    pub width: u32,
    /// Picture height shown, the conformance window applied.
    pub height: u32,
}

impl Sps {
    /// Reads an SPS NAL unit (header included) up to its bit depths.
    pub fn parse(nal: &[u8]) -> Result<Self, Error> {
        if nal_unit_type(nal) != Some(nal_type::SPS) {
            return Err(Error::NalType {
                index: 0,
                nal_type: nal_unit_type(nal),
                expected: "SPS (33)",
            });
        }
        let mut r = BitReader::new(nal);
        r.skip(16, "nal_unit_header")?;
        r.skip(4, "sps_video_parameter_set_id")?;
        let max_sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")? as u8;
        let temporal_id_nested = r.flag("sps_temporal_id_nesting_flag")?;
        let mut general_ptl = [0u8; 12];
        for b in general_ptl.iter_mut() {
            // 8 bits at a time: the value fits a byte.
            *b = r.bits(8, "general_profile_tier_level")? as u8;
        }
        // Sub-layer profile and level, skipped (7.3.3).
        let mut present = Vec::with_capacity(usize::from(max_sub_layers_minus1));
        for _ in 0..max_sub_layers_minus1 {
            let profile = r.flag("sub_layer_profile_present_flag")?;
            let level = r.flag("sub_layer_level_present_flag")?;
            present.push((profile, level));
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(
                2 * u64::from(8 - max_sub_layers_minus1),
                "reserved_zero_2bits",
            )?;
        }
        for (profile, level) in present {
            if profile {
                r.skip(88, "sub_layer_profile")?;
            }
            if level {
                r.skip(8, "sub_layer_level_idc")?;
            }
        }
        r.ue("sps_seq_parameter_set_id")?;
        let chroma_format_idc = r.ue("chroma_format_idc")?;
        if chroma_format_idc > 3 {
            return Err(h264::Error::OutOfRange {
                what: "chroma_format_idc",
                value: i64::from(chroma_format_idc),
                bit: r.position(),
                allowed: "0..=3",
            }
            .into());
        }
        let separate_planes = chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
        let pic_width = r.ue("pic_width_in_luma_samples")?;
        let pic_height = r.ue("pic_height_in_luma_samples")?;
        let mut window = [0u32; 4];
        if r.flag("conformance_window_flag")? {
            for w in window.iter_mut() {
                *w = r.ue("conf_win_offset")?;
            }
        }
        let depth = |r: &mut BitReader<'_>, what| -> Result<u8, Error> {
            let v = r.ue(what)?;
            if v > 8 {
                return Err(h264::Error::OutOfRange {
                    what,
                    value: i64::from(v),
                    bit: r.position(),
                    allowed: "0..=8",
                }
                .into());
            }
            Ok(v as u8)
        };
        let bit_depth_luma_minus8 = depth(&mut r, "bit_depth_luma_minus8")?;
        let bit_depth_chroma_minus8 = depth(&mut r, "bit_depth_chroma_minus8")?;
        // SubWidthC and SubHeightC (Table 6-1); ChromaArrayType 0 with
        // separate planes.
        let (sub_w, sub_h) = match (chroma_format_idc, separate_planes) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let crop = |a: u32, b: u32, sub: u64| (u64::from(a) + u64::from(b)) * sub;
        let width = u64::from(pic_width).checked_sub(crop(window[0], window[1], sub_w));
        let height = u64::from(pic_height).checked_sub(crop(window[2], window[3], sub_h));
        let (Some(width), Some(height)) = (width, height) else {
            return Err(Error::EmptyPicture {
                width: pic_width,
                height: pic_height,
            });
        };
        if width == 0 || height == 0 {
            return Err(Error::EmptyPicture {
                width: pic_width,
                height: pic_height,
            });
        }
        Ok(Sps {
            general_ptl,
            temporal_layers: max_sub_layers_minus1 + 1,
            temporal_id_nested,
            chroma_format_idc: chroma_format_idc as u8,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            // Both at most a ue(v) value, which fits u32.
            width: width as u32,
            height: height as u32,
        })
    }

    /// The RFC 6381 codec string for an `hvc1` sample entry (ISO/IEC
    /// 14496-15 Annex E): profile space and profile, the compatibility
    /// flags bit-reversed in hex, tier and level, then the constraint bytes
    /// in hex with trailing zero bytes left out.
    pub fn rfc6381(&self) -> String {
        let p = &self.general_ptl;
        let space = ["", "A", "B", "C"][usize::from(p[0] >> 6)];
        let profile = p[0] & 0x1f;
        let tier = if p[0] & 0x20 != 0 { 'H' } else { 'L' };
        let compat = u32::from_be_bytes([p[1], p[2], p[3], p[4]]).reverse_bits();
        let level = p[11];
        let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{level}");
        let constraints = &p[5..11];
        let used = constraints
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for b in &constraints[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// A decoder configuration built from parameter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The HEVCDecoderConfigurationRecord (`hvcC` box payload).
    pub hvcc: Vec<u8>,
    /// RFC 6381 codec string, e.g. `hvc1.1.6.L93.B0`.
    pub rfc6381: String,
    /// Picture width shown, the conformance window applied.
    pub width: u32,
    /// Picture height shown, the conformance window applied.
    pub height: u32,
}

/// Builds the `hvcC` record (lengthSizeMinusOne 3: 4-byte length prefixes)
/// from a stream's parameter sets, each without start code or length
/// prefix; the first SPS describes the stream. Arrays are marked complete,
/// as an `hvc1` sample entry requires.
pub fn configuration(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<Config, Error> {
    let first_sps = sps.first().ok_or(Error::Missing("SPS"))?;
    if vps.is_empty() {
        return Err(Error::Missing("VPS"));
    }
    if pps.is_empty() {
        return Err(Error::Missing("PPS"));
    }
    let info = Sps::parse(first_sps)?;
    let mut out = Vec::with_capacity(
        23 + [vps, sps, pps]
            .iter()
            .flat_map(|a| a.iter())
            .map(|n| 5 + n.len())
            .sum::<usize>(),
    );
    out.push(1); // configurationVersion
    out.extend_from_slice(&info.general_ptl);
    // reserved '1111', min_spatial_segmentation_idc 0 (not given).
    out.extend_from_slice(&[0xf0, 0x00]);
    // reserved '111111', parallelismType 0 (unknown).
    out.push(0xfc);
    out.push(0xfc | info.chroma_format_idc);
    out.push(0xf8 | info.bit_depth_luma_minus8);
    out.push(0xf8 | info.bit_depth_chroma_minus8);
    out.extend_from_slice(&[0, 0]); // avgFrameRate: unspecified
                                    // constantFrameRate 0, numTemporalLayers, temporalIdNested,
                                    // lengthSizeMinusOne 3.
    out.push(
        ((info.temporal_layers & 0x07) << 3) | (u8::from(info.temporal_id_nested) << 2) | 0x03,
    );
    out.push(3); // numOfArrays
    for (nals, ty, name) in [
        (vps, nal_type::VPS, "VPS (32)"),
        (sps, nal_type::SPS, "SPS (33)"),
        (pps, nal_type::PPS, "PPS (34)"),
    ] {
        // array_completeness 1, reserved 0, NAL_unit_type.
        out.push(0x80 | ty);
        let n = u16::try_from(nals.len()).map_err(|_| Error::TooLarge("parameter sets"))?;
        out.extend_from_slice(&n.to_be_bytes());
        for (index, nal) in nals.iter().enumerate() {
            if nal_unit_type(nal) != Some(ty) {
                return Err(Error::NalType {
                    index,
                    nal_type: nal_unit_type(nal),
                    expected: name,
                });
            }
            let len = u16::try_from(nal.len()).map_err(|_| Error::TooLarge("parameter sets"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(nal);
        }
    }
    Ok(Config {
        hvcc: out,
        rfc6381: info.rfc6381(),
        width: info.width,
        height: info.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Parameter sets of x265 3.5 streams: `ffmpeg -f lavfi -i
    // testsrc2=size=WxH:rate=25 -c:v libx265 -f hevc`, Main profile,
    // 8-bit 4:2:0.
    /// 320x240, level 2 (60).
    const VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x98, 0x09,
    ];
    const SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];
    const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
    /// 1920x1080 (coded 1920x1088, cropped by the conformance window),
    /// level 4 (120).
    const SPS_1080: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0,
        0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
    ];
    /// The start of the `hvcC` record libavformat's mp4 muxer wrote for the
    /// 320x240 stream, up to its numOfArrays (it adds a fourth array, for
    /// x265's SEI).
    const FFMPEG_HVCC_HEAD: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f,
    ];

    #[test]
    fn sps_gives_size_format_and_profile() {
        let s = Sps::parse(SPS).unwrap();
        assert_eq!((s.width, s.height), (320, 240));
        assert_eq!(s.chroma_format_idc, 1);
        assert_eq!((s.bit_depth_luma_minus8, s.bit_depth_chroma_minus8), (0, 0));
        assert_eq!((s.temporal_layers, s.temporal_id_nested), (1, true));
        assert_eq!(s.general_ptl[0], 0x01, "Main profile, Main tier");
        assert_eq!(s.general_ptl[11], 60, "level 2");
    }

    #[test]
    fn the_conformance_window_is_applied() {
        let s = Sps::parse(SPS_1080).unwrap();
        assert_eq!((s.width, s.height), (1920, 1080));
        assert_eq!(s.rfc6381(), "hvc1.1.6.L120.90");
    }

    #[test]
    fn the_record_is_what_the_mp4_muxer_writes_with_three_arrays() {
        let c = configuration(&[VPS], &[SPS], &[PPS]).unwrap();
        assert_eq!(&c.hvcc[..22], FFMPEG_HVCC_HEAD);
        assert_eq!(c.hvcc[22], 3);
        let mut rest = &c.hvcc[23..];
        for (ty, nal) in [(32u8, VPS), (33, SPS), (34, PPS)] {
            assert_eq!(rest[0], 0x80 | ty);
            assert_eq!(&rest[1..3], &[0, 1]);
            assert_eq!(
                usize::from(u16::from_be_bytes([rest[3], rest[4]])),
                nal.len()
            );
            assert_eq!(&rest[5..5 + nal.len()], nal);
            rest = &rest[5 + nal.len()..];
        }
        assert!(rest.is_empty());
        assert_eq!(c.rfc6381, "hvc1.1.6.L60.90");
        assert_eq!((c.width, c.height), (320, 240));
    }

    #[test]
    fn codec_strings_follow_iso_14496_15_annex_e() {
        let mut s = Sps::parse(SPS).unwrap();
        // Main 10, High tier, level 4 (120), progressive_source_flag only.
        s.general_ptl = [0x22, 0x20, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 120];
        assert_eq!(s.rfc6381(), "hvc1.2.4.H120.80");
        // Profile space 1, every constraint byte used up to the last.
        s.general_ptl = [0x41, 0x60, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0x01, 93];
        assert_eq!(s.rfc6381(), "hvc1.A1.6.L93.B0.0.0.0.0.1");
        // No constraint flags at all.
        s.general_ptl = [0x01, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 93];
        assert_eq!(s.rfc6381(), "hvc1.1.6.L93");
    }

    #[test]
    fn wrong_or_missing_parameter_sets_are_errors() {
        assert_eq!(
            configuration(&[], &[SPS], &[PPS]),
            Err(Error::Missing("VPS"))
        );
        assert_eq!(
            configuration(&[VPS], &[], &[PPS]),
            Err(Error::Missing("SPS"))
        );
        assert_eq!(
            configuration(&[VPS], &[SPS], &[]),
            Err(Error::Missing("PPS"))
        );
        assert!(matches!(
            configuration(&[PPS], &[SPS], &[PPS]),
            Err(Error::NalType {
                nal_type: Some(34),
                ..
            })
        ));
        assert!(matches!(
            configuration(&[VPS], &[VPS], &[PPS]),
            Err(Error::NalType {
                nal_type: Some(32),
                ..
            })
        ));
        assert!(matches!(
            configuration(&[VPS], &[SPS], &[&[0x44]]),
            Err(Error::NalType { nal_type: None, .. })
        ));
    }

    #[test]
    fn cut_or_damaged_sps_never_panics() {
        // Cut anywhere before the bit depths: an error, never a panic.
        for n in 0..SPS.len() {
            let _ = Sps::parse(&SPS[..n]);
        }
        assert!(Sps::parse(&SPS[..20]).is_err());
        // Every single byte changed to every value.
        for i in 2..SPS.len() {
            for v in [0x00, 0x03, 0x7f, 0x80, 0xff] {
                let mut d = SPS.to_vec();
                d[i] = v;
                if let Ok(c) = configuration(&[VPS], &[&d], &[PPS]) {
                    assert!(c.width > 0 && c.height > 0);
                }
            }
        }
        // Random bytes behind an SPS header, of every length up to 64.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            let mut d = vec![0x42, 0x01];
            for _ in 0..n % 64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d.push(x as u8);
            }
            let _ = configuration(&[VPS], &[&d], &[PPS]);
        }
        // A 16x16 picture whose conformance window takes all 16 columns.
        let cropped_away: &[u8] = &[
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x3c, 0xa0, 0x88, 0x47, 0x13, 0xf8,
        ];
        assert_eq!(
            Sps::parse(cropped_away),
            Err(Error::EmptyPicture {
                width: 16,
                height: 16
            })
        );
        let mut whole = cropped_away.to_vec();
        // The same SPS with conf_win_right_offset 0: the whole picture.
        whole.truncate(15);
        whole.extend_from_slice(&[0xa0, 0x88, 0x47, 0xfc]);
        let s = Sps::parse(&whole).unwrap();
        assert_eq!((s.width, s.height), (16, 16));
    }
}
