//! H.264 syntax camflow needs to read (ITU-T H.264, 08/2021).
//!
//! What flows in: NAL units as stored in MP4 (AVCC: each unit prefixed by
//! its length, parameter sets in the `avcC` record or in band). What flows
//! out: where each NAL unit of a sample lies ([`nal_units`]) and, for each
//! coded slice, how many bytes from its NAL header to the end of its slice
//! header ([`ParamSets::slice_header_len`]).
//!
//! The one user is Common Encryption (ISO/IEC 23001-7): for H.264 video,
//! subsample encryption leaves the length prefix, the NAL header and the
//! whole slice header of each VCL NAL unit in the clear, the way Shaka
//! Packager and Bento4 do, so a player can parse the header before it
//! decrypts. That length depends on the active SPS and PPS (field coding,
//! picture order count type, weighted prediction, ...), so parameter sets are
//! parsed too, as far as slice headers need them.
//!
//! Lengths are counted in the escaped bytes as stored: bits are read from
//! the RBSP (emulation prevention `0x03` bytes removed, 7.4.1), and the
//! position of the last bit read is mapped back to the byte that holds it.
//!
//! All bytes here are untrusted: every read is bounds-checked, every
//! Exp-Golomb code and loop count is limited, nothing panics, and nothing is
//! allocated from a length field.

use std::fmt;
use std::ops::Range;

/// `nal_unit_type` values (Table 7-1) this module deals with.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice data partition A (Extended profile).
    pub const SLICE_DPA: u8 = 2;
    /// Coded slice data partition C.
    pub const SLICE_DPC: u8 = 4;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    /// Coded slice extension (SVC, MVC: Annexes G and H).
    pub const SLICE_EXT: u8 = 20;
    /// Coded slice extension for a depth view (Annexes I and J).
    pub const SLICE_EXT_DEPTH: u8 = 21;
}

/// Why H.264 syntax could not be read. `bit` is a position in the RBSP of
/// the NAL unit being parsed, counting from the first bit of its NAL header
/// byte (the way FFmpeg's `trace_headers` counts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty NAL unit (no header byte)")]
    EmptyNal,
    #[error("NAL unit header {header:#04x} has forbidden_zero_bit set; not H.264, or corrupt")]
    ForbiddenZeroBit { header: u8 },
    #[error("NAL unit ends (after {bits} RBSP bits) inside {what}")]
    Truncated { what: &'static str, bits: u64 },
    #[error("{what} at RBSP bit {bit}: Exp-Golomb code with more than 31 leading zero bits")]
    ExpGolombTooLong { what: &'static str, bit: u64 },
    #[error("{what} = {value} at RBSP bit {bit} is out of range ({allowed})")]
    OutOfRange {
        what: &'static str,
        value: i64,
        bit: u64,
        allowed: &'static str,
    },
    #[error("NAL unit type {nal_type} is not a coded slice")]
    NotSlice { nal_type: u8 },
    #[error("NAL unit type {nal_type} ({name}) is not supported")]
    Unsupported { nal_type: u8, name: &'static str },
    #[error("slice refers to PPS {pps_id}, which has not been seen (not in the avcC record nor in band before it)")]
    UnknownPps { pps_id: u32 },
    #[error("slice's PPS {pps_id} refers to SPS {sps_id}, which has not been seen")]
    UnknownSps { pps_id: u32, sps_id: u32 },
    #[error(
        "PPS {pps_id}'s SliceGroupChangeRate {rate} is over its SPS's PicSizeInMapUnits {pic_size}"
    )]
    SliceGroupChangeRate {
        pps_id: u8,
        rate: u32,
        pic_size: u32,
    },
    #[error("avcC record ends at byte {len} inside {what}")]
    AvccTruncated { what: &'static str, len: usize },
    #[error("avcC record has configurationVersion {version}, not 1")]
    AvccVersion { version: u8 },
    #[error("avcC record's parameter set {index} is NAL unit type {nal_type}, not {expected}")]
    AvccNalType {
        index: usize,
        nal_type: u8,
        expected: &'static str,
    },
    #[error("NAL unit length size {0} is not 1, 2, 3 or 4 bytes")]
    LengthSize(usize),
    #[error("sample ends at byte {len} inside the length prefix of the NAL unit at byte {offset}")]
    PrefixTruncated { offset: usize, len: usize },
    #[error("NAL unit length {nal_len} at sample byte {offset} runs past the sample's end ({available} bytes left)")]
    NalTruncated {
        offset: usize,
        nal_len: usize,
        available: usize,
    },
}

/// `nal_unit_type` of a NAL unit (its first byte's low 5 bits), or `None`
/// when it is empty.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// Whether a `nal_unit_type` is a VCL NAL unit (coded slice data), the
/// units Common Encryption encrypts; all others stay entirely clear.
pub const fn is_vcl(nal_type: u8) -> bool {
    matches!(
        nal_type,
        1..=5 | nal_type::SLICE_EXT | nal_type::SLICE_EXT_DEPTH
    )
}

// ---------------------------------------------------------------------------
// RBSP bit reader

/// Reads bits of the RBSP inside a NAL unit as stored (7.3.1): emulation
/// prevention bytes (`0x03` after two `0x00`) are skipped as they are met,
/// so nothing is copied, and [`BitReader::escaped_len`] maps the position
/// back to the stored bytes.
#[derive(Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Escaped index of the next byte to load.
    next: usize,
    /// Escaped index of the byte bits are being read from (meaningful once
    /// one was loaded).
    cur_pos: usize,
    cur: u8,
    /// Unread bits left in `cur`.
    bits_left: u8,
    /// Consecutive 0x00 data bytes just loaded (up to 2).
    zeros: u8,
    /// RBSP bits read so far.
    pos: u64,
}

impl fmt::Debug for BitReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitReader")
            .field("len", &self.data.len())
            .field("rbsp_bits_read", &self.pos)
            .field("escaped_len", &self.escaped_len())
            .finish()
    }
}

impl<'a> BitReader<'a> {
    /// A reader over `nal` as stored (escaped), from its first byte.
    pub fn new(nal: &'a [u8]) -> Self {
        Self {
            data: nal,
            next: 0,
            cur_pos: 0,
            cur: 0,
            bits_left: 0,
            zeros: 0,
            pos: 0,
        }
    }

    /// RBSP bits read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Escaped bytes from the start of the NAL unit up to and including the
    /// byte that holds the last bit read (0 before any bit was read): the
    /// RBSP position rounded up to a whole byte, plus the emulation
    /// prevention bytes before it.
    pub fn escaped_len(&self) -> usize {
        if self.pos == 0 {
            0
        } else {
            self.cur_pos + 1
        }
    }

    /// Loads the next RBSP byte, skipping an emulation prevention byte.
    fn load(&mut self, what: &'static str) -> Result<(), Error> {
        let truncated = Error::Truncated {
            what,
            bits: self.pos,
        };
        let mut i = self.next;
        let mut b = *self.data.get(i).ok_or_else(|| truncated.clone())?;
        if self.zeros >= 2 && b == 0x03 {
            i += 1;
            b = *self.data.get(i).ok_or(truncated)?;
            self.zeros = 0;
        }
        self.zeros = if b == 0 { (self.zeros + 1).min(2) } else { 0 };
        self.cur = b;
        self.cur_pos = i;
        self.next = i + 1;
        self.bits_left = 8;
        Ok(())
    }

    /// One bit, as a flag.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, Error> {
        if self.bits_left == 0 {
            self.load(what)?;
        }
        self.bits_left -= 1;
        self.pos += 1;
        Ok((self.cur >> self.bits_left) & 1 != 0)
    }

    /// `u(n)`, `n` up to 32 bits, most significant first.
    pub fn bits(&mut self, n: u32, what: &'static str) -> Result<u32, Error> {
        let mut v: u64 = 0;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.flag(what)?);
        }
        // At most 32 bits were shifted in.
        Ok(v as u32)
    }

    /// Skips `n` RBSP bits.
    pub fn skip(&mut self, n: u64, what: &'static str) -> Result<(), Error> {
        let mut n = n;
        // Whole bytes are loaded one at a time, as emulation prevention
        // bytes can sit anywhere; the loop ends when the data does.
        while n > 0 {
            if self.bits_left == 0 {
                self.load(what)?;
            }
            let step = u64::from(self.bits_left).min(n);
            // step <= 8.
            self.bits_left -= step as u8;
            self.pos += step;
            n -= step;
        }
        Ok(())
    }

    /// `ue(v)` (9.1), limited to 31 leading zero bits (values up to
    /// 2^32 - 2), the most any syntax element needs.
    pub fn ue(&mut self, what: &'static str) -> Result<u32, Error> {
        let start = self.pos;
        let mut zeros = 0u32;
        while !self.flag(what)? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::ExpGolombTooLong { what, bit: start });
            }
        }
        let rest = u64::from(self.bits(zeros, what)?);
        // zeros <= 31, so this is at most 2^32 - 2.
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    /// `se(v)` (9.1.1).
    pub fn se(&mut self, what: &'static str) -> Result<i32, Error> {
        let k = i64::from(self.ue(what)?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31 - 1.
        Ok(v as i32)
    }

    /// `ue(v)` that must be at most `max`.
    fn ue_max(
        &mut self,
        what: &'static str,
        max: u32,
        allowed: &'static str,
    ) -> Result<u32, Error> {
        let bit = self.pos;
        let v = self.ue(what)?;
        if v > max {
            return Err(Error::OutOfRange {
                what,
                value: v.into(),
                bit,
                allowed,
            });
        }
        Ok(v)
    }

    /// `se(v)` that must be within `range`.
    fn se_in(
        &mut self,
        what: &'static str,
        range: std::ops::RangeInclusive<i32>,
        allowed: &'static str,
    ) -> Result<i32, Error> {
        let bit = self.pos;
        let v = self.se(what)?;
        if !range.contains(&v) {
            return Err(Error::OutOfRange {
                what,
                value: v.into(),
                bit,
                allowed,
            });
        }
        Ok(v)
    }
}

/// The escaped byte offset, within `nal` as stored, of RBSP byte
/// `rbsp_byte` (counting from the NAL header byte), or `None` past the end.
pub fn escaped_offset(nal: &[u8], rbsp_byte: usize) -> Option<usize> {
    let mut r = BitReader::new(nal);
    let bits = u64::try_from(rbsp_byte)
        .ok()?
        .checked_add(1)?
        .checked_mul(8)?;
    r.skip(bits, "").ok()?;
    Some(r.escaped_len() - 1)
}

/// Reads and checks the one-byte NAL unit header; returns
/// `(nal_ref_idc, nal_unit_type)`.
fn nal_header(r: &mut BitReader<'_>, nal: &[u8]) -> Result<(u8, u8), Error> {
    let header = *nal.first().ok_or(Error::EmptyNal)?;
    if header & 0x80 != 0 {
        return Err(Error::ForbiddenZeroBit { header });
    }
    r.skip(8, "nal_unit_header")?;
    Ok(((header >> 5) & 3, header & 0x1f))
}

/// Reads the NAL unit header of a parameter set of type `want` (`what`
/// and `allowed` name it in the error).
fn parameter_set_header(
    r: &mut BitReader<'_>,
    nal: &[u8],
    want: u8,
    what: &'static str,
    allowed: &'static str,
) -> Result<(), Error> {
    let (_, t) = nal_header(r, nal)?;
    if t != want {
        return Err(Error::OutOfRange {
            what,
            value: t.into(),
            bit: 3,
            allowed,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Parameter sets

/// `profile_idc` values whose SPS carries chroma format, bit depths and
/// scaling matrices (7.3.2.1.1).
const fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Widths and heights above this many macroblocks (131,072 pixels) are
/// refused as corrupt; level 6.2 allows at most 1,055.
const MAX_MBS_PER_SIDE: u32 = 8192;

/// A sequence parameter set (7.3.2.1.1): the fields slice headers depend
/// on, and the picture size. VUI is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub id: u8,
    pub profile_idc: u8,
    /// `constraint_set0_flag` .. `constraint_set5_flag` and the two reserved
    /// bits, as the byte stored.
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// 0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4.
    pub chroma_format_idc: u8,
    pub separate_colour_plane_flag: bool,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub qpprime_y_zero_transform_bypass_flag: bool,
    pub seq_scaling_matrix_present_flag: bool,
    /// `log2_max_frame_num_minus4 + 4`: the bits of `frame_num`.
    pub log2_max_frame_num: u8,
    pub pic_order_cnt_type: u8,
    /// `log2_max_pic_order_cnt_lsb_minus4 + 4` (type 0 only, else 0).
    pub log2_max_pic_order_cnt_lsb: u8,
    /// Type 1 only (else false).
    pub delta_pic_order_always_zero_flag: bool,
    pub max_num_ref_frames: u32,
    pub gaps_in_frame_num_value_allowed_flag: bool,
    pub pic_width_in_mbs: u32,
    pub pic_height_in_map_units: u32,
    pub frame_mbs_only_flag: bool,
    pub mb_adaptive_frame_field_flag: bool,
    pub direct_8x8_inference_flag: bool,
    /// Cropped picture size in pixels (7.4.2.1.1).
    pub width: u32,
    pub height: u32,
}

impl Sps {
    /// Parses an SPS NAL unit (header byte included, escaped as stored).
    pub fn parse(nal: &[u8]) -> Result<Self, Error> {
        let mut r = BitReader::new(nal);
        parameter_set_header(&mut r, nal, nal_type::SPS, "nal_unit_type of an SPS", "7")?;
        let profile_idc = r.bits(8, "profile_idc")? as u8;
        let constraint_flags = r.bits(8, "constraint_set_flags")? as u8;
        let level_idc = r.bits(8, "level_idc")? as u8;
        let id = r.ue_max("seq_parameter_set_id", 31, "0..=31")? as u8;
        let mut sps = Sps {
            id,
            profile_idc,
            constraint_flags,
            level_idc,
            chroma_format_idc: 1,
            separate_colour_plane_flag: false,
            bit_depth_luma: 8,
            bit_depth_chroma: 8,
            qpprime_y_zero_transform_bypass_flag: false,
            seq_scaling_matrix_present_flag: false,
            log2_max_frame_num: 0,
            pic_order_cnt_type: 0,
            log2_max_pic_order_cnt_lsb: 0,
            delta_pic_order_always_zero_flag: false,
            max_num_ref_frames: 0,
            gaps_in_frame_num_value_allowed_flag: false,
            pic_width_in_mbs: 0,
            pic_height_in_map_units: 0,
            frame_mbs_only_flag: true,
            mb_adaptive_frame_field_flag: false,
            direct_8x8_inference_flag: false,
            width: 0,
            height: 0,
        };
        if has_chroma_info(profile_idc) {
            sps.chroma_format_idc = r.ue_max("chroma_format_idc", 3, "0..=3")? as u8;
            if sps.chroma_format_idc == 3 {
                sps.separate_colour_plane_flag = r.flag("separate_colour_plane_flag")?;
            }
            sps.bit_depth_luma = r.ue_max("bit_depth_luma_minus8", 6, "0..=6")? as u8 + 8;
            sps.bit_depth_chroma = r.ue_max("bit_depth_chroma_minus8", 6, "0..=6")? as u8 + 8;
            sps.qpprime_y_zero_transform_bypass_flag =
                r.flag("qpprime_y_zero_transform_bypass_flag")?;
            sps.seq_scaling_matrix_present_flag = r.flag("seq_scaling_matrix_present_flag")?;
            if sps.seq_scaling_matrix_present_flag {
                let lists = if sps.chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag("seq_scaling_list_present_flag")? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        sps.log2_max_frame_num = r.ue_max("log2_max_frame_num_minus4", 12, "0..=12")? as u8 + 4;
        sps.pic_order_cnt_type = r.ue_max("pic_order_cnt_type", 2, "0..=2")? as u8;
        match sps.pic_order_cnt_type {
            0 => {
                sps.log2_max_pic_order_cnt_lsb =
                    r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12, "0..=12")? as u8 + 4;
            }
            1 => {
                sps.delta_pic_order_always_zero_flag =
                    r.flag("delta_pic_order_always_zero_flag")?;
                r.se("offset_for_non_ref_pic")?;
                r.se("offset_for_top_to_bottom_field")?;
                let n = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255, "0..=255")?;
                for _ in 0..n {
                    r.se("offset_for_ref_frame")?;
                }
            }
            _ => {}
        }
        sps.max_num_ref_frames = r.ue("max_num_ref_frames")?;
        sps.gaps_in_frame_num_value_allowed_flag =
            r.flag("gaps_in_frame_num_value_allowed_flag")?;
        let w_bit = r.position();
        sps.pic_width_in_mbs = r.ue("pic_width_in_mbs_minus1")? + 1;
        if sps.pic_width_in_mbs > MAX_MBS_PER_SIDE {
            return Err(Error::OutOfRange {
                what: "pic_width_in_mbs_minus1",
                value: i64::from(sps.pic_width_in_mbs) - 1,
                bit: w_bit,
                allowed: "0..=8191",
            });
        }
        let h_bit = r.position();
        sps.pic_height_in_map_units = r.ue("pic_height_in_map_units_minus1")? + 1;
        if sps.pic_height_in_map_units > MAX_MBS_PER_SIDE {
            return Err(Error::OutOfRange {
                what: "pic_height_in_map_units_minus1",
                value: i64::from(sps.pic_height_in_map_units) - 1,
                bit: h_bit,
                allowed: "0..=8191",
            });
        }
        sps.frame_mbs_only_flag = r.flag("frame_mbs_only_flag")?;
        if !sps.frame_mbs_only_flag {
            sps.mb_adaptive_frame_field_flag = r.flag("mb_adaptive_frame_field_flag")?;
        }
        sps.direct_8x8_inference_flag = r.flag("direct_8x8_inference_flag")?;
        let mut crop = [0u32; 4]; // left, right, top, bottom
        let crop_bit = r.position();
        if r.flag("frame_cropping_flag")? {
            for (c, what) in crop.iter_mut().zip([
                "frame_crop_left_offset",
                "frame_crop_right_offset",
                "frame_crop_top_offset",
                "frame_crop_bottom_offset",
            ]) {
                *c = r.ue(what)?;
            }
        }

        // 7.4.2.1.1, equations 7-19 to 7-22. Sizes are bounded above, so
        // these products fit in u64 without overflow.
        let (sub_w, sub_h) = match sps.chroma_array_type() {
            0 => (1, 1),
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let frame_factor = if sps.frame_mbs_only_flag { 1 } else { 2 };
        let full_w = u64::from(sps.pic_width_in_mbs) * 16;
        let full_h = u64::from(sps.pic_height_in_map_units) * 16 * frame_factor;
        let crop_w = (u64::from(crop[0]) + u64::from(crop[1])) * sub_w;
        let crop_h = (u64::from(crop[2]) + u64::from(crop[3])) * sub_h * frame_factor;
        if crop_w >= full_w || crop_h >= full_h {
            return Err(Error::OutOfRange {
                what: "frame cropping",
                value: crop_w.max(crop_h) as i64,
                bit: crop_bit,
                allowed: "less than the coded picture size",
            });
        }
        sps.width = (full_w - crop_w) as u32;
        sps.height = (full_h - crop_h) as u32;
        Ok(sps)
    }

    /// `ChromaArrayType` (7.4.2.1.1): 0 with separate colour planes.
    pub fn chroma_array_type(&self) -> u8 {
        if self.separate_colour_plane_flag {
            0
        } else {
            self.chroma_format_idc
        }
    }

    /// `PicSizeInMapUnits` (7-16).
    pub fn pic_size_in_map_units(&self) -> u32 {
        // Both at most MAX_MBS_PER_SIDE: fits.
        self.pic_width_in_mbs * self.pic_height_in_map_units
    }
}

/// Skips `scaling_list()` (7.3.2.1.1.1): only the delta codes are stored,
/// and a list ends early when the next scale becomes 0.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Error> {
    let mut last: i32 = 8;
    let mut next: i32 = 8;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se_in("delta_scale", -128..=127, "-128..=127")?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// A picture parameter set (7.3.2.2), up to `redundant_pic_cnt_present_flag`:
/// the trailing High-profile fields (8x8 transform, scaling matrices) do not
/// affect slice headers and are not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pps {
    pub id: u8,
    pub sps_id: u8,
    /// CABAC when set, CAVLC when not.
    pub entropy_coding_mode_flag: bool,
    pub bottom_field_pic_order_in_frame_present_flag: bool,
    /// `num_slice_groups_minus1 + 1` (FMO: Baseline and Extended only).
    pub num_slice_groups: u8,
    pub slice_group_map_type: u8,
    /// `slice_group_change_rate_minus1 + 1` (map types 3 to 5).
    pub slice_group_change_rate: u32,
    pub num_ref_idx_l0_default_active: u8,
    pub num_ref_idx_l1_default_active: u8,
    pub weighted_pred_flag: bool,
    pub weighted_bipred_idc: u8,
    pub pic_init_qp_minus26: i32,
    pub pic_init_qs_minus26: i32,
    pub chroma_qp_index_offset: i32,
    pub deblocking_filter_control_present_flag: bool,
    pub constrained_intra_pred_flag: bool,
    pub redundant_pic_cnt_present_flag: bool,
}

impl Pps {
    /// Parses a PPS NAL unit (header byte included, escaped as stored). It
    /// does not need its SPS.
    pub fn parse(nal: &[u8]) -> Result<Self, Error> {
        let mut r = BitReader::new(nal);
        parameter_set_header(&mut r, nal, nal_type::PPS, "nal_unit_type of a PPS", "8")?;
        let id = r.ue_max("pic_parameter_set_id", 255, "0..=255")? as u8;
        let sps_id = r.ue_max("seq_parameter_set_id", 31, "0..=31")? as u8;
        let entropy_coding_mode_flag = r.flag("entropy_coding_mode_flag")?;
        let bottom_field_pic_order_in_frame_present_flag =
            r.flag("bottom_field_pic_order_in_frame_present_flag")?;
        let num_slice_groups = r.ue_max("num_slice_groups_minus1", 7, "0..=7")? as u8 + 1;
        let mut slice_group_map_type = 0;
        let mut slice_group_change_rate = 1;
        if num_slice_groups > 1 {
            slice_group_map_type = r.ue_max("slice_group_map_type", 6, "0..=6")? as u8;
            match slice_group_map_type {
                0 => {
                    for _ in 0..num_slice_groups {
                        r.ue("run_length_minus1")?;
                    }
                }
                2 => {
                    for _ in 1..num_slice_groups {
                        r.ue("top_left")?;
                        r.ue("bottom_right")?;
                    }
                }
                3..=5 => {
                    r.flag("slice_group_change_direction_flag")?;
                    // Checked against PicSizeInMapUnits at slice time, when
                    // the SPS is known.
                    slice_group_change_rate = r.ue("slice_group_change_rate_minus1")? + 1;
                }
                6 => {
                    let n = u64::from(r.ue("pic_size_in_map_units_minus1")?) + 1;
                    let bits = u64::from(ceil_log2(u32::from(num_slice_groups)));
                    // Skipping runs out of data on a corrupt count: no loop
                    // per entry, no allocation.
                    r.skip(n * bits, "slice_group_id")?;
                }
                _ => {} // 1: dispersed, no parameters.
            }
        }
        let num_ref_idx_l0_default_active =
            r.ue_max("num_ref_idx_l0_default_active_minus1", 31, "0..=31")? as u8 + 1;
        let num_ref_idx_l1_default_active =
            r.ue_max("num_ref_idx_l1_default_active_minus1", 31, "0..=31")? as u8 + 1;
        let weighted_pred_flag = r.flag("weighted_pred_flag")?;
        let bit = r.position();
        let weighted_bipred_idc = r.bits(2, "weighted_bipred_idc")? as u8;
        if weighted_bipred_idc > 2 {
            return Err(Error::OutOfRange {
                what: "weighted_bipred_idc",
                value: weighted_bipred_idc.into(),
                bit,
                allowed: "0..=2",
            });
        }
        let pic_init_qp_minus26 = r.se_in("pic_init_qp_minus26", -62..=25, "-62..=25")?;
        let pic_init_qs_minus26 = r.se_in("pic_init_qs_minus26", -26..=25, "-26..=25")?;
        let chroma_qp_index_offset = r.se_in("chroma_qp_index_offset", -12..=12, "-12..=12")?;
        Ok(Pps {
            id,
            sps_id,
            entropy_coding_mode_flag,
            bottom_field_pic_order_in_frame_present_flag,
            num_slice_groups,
            slice_group_map_type,
            slice_group_change_rate,
            num_ref_idx_l0_default_active,
            num_ref_idx_l1_default_active,
            weighted_pred_flag,
            weighted_bipred_idc,
            pic_init_qp_minus26,
            pic_init_qs_minus26,
            chroma_qp_index_offset,
            deblocking_filter_control_present_flag: r
                .flag("deblocking_filter_control_present_flag")?,
            constrained_intra_pred_flag: r.flag("constrained_intra_pred_flag")?,
            redundant_pic_cnt_present_flag: r.flag("redundant_pic_cnt_present_flag")?,
        })
    }
}

/// `Ceil(Log2(v))` for v >= 1 (0 for v <= 1).
fn ceil_log2(v: u32) -> u32 {
    if v <= 1 {
        0
    } else {
        32 - (v - 1).leading_zeros()
    }
}

/// The SPSs and PPSs seen so far, by id, from the `avcC` record and in band.
/// A later one with the same id replaces the earlier (7.4.1.2.1).
#[derive(Debug, Clone)]
pub struct ParamSets {
    sps: [Option<Sps>; 32],
    pps: Vec<Option<Pps>>,
}

impl Default for ParamSets {
    fn default() -> Self {
        Self {
            sps: [None; 32],
            pps: vec![None; 256],
        }
    }
}

impl ParamSets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sps(&self, id: u8) -> Option<&Sps> {
        self.sps.get(usize::from(id))?.as_ref()
    }

    pub fn pps(&self, id: u8) -> Option<&Pps> {
        self.pps.get(usize::from(id))?.as_ref()
    }

    /// Adds the parameter sets of an `AVCDecoderConfigurationRecord` (ISO/IEC
    /// 14496-15 5.3.3.1, the body of an `avcC` box) and returns its NAL unit
    /// length size in bytes. All of them are parsed before any is stored, so
    /// on error nothing changes. The High-profile extension after the PPS
    /// list (chroma format, bit depths, SPS extensions) is not needed and
    /// not read, nor is anything after it.
    pub fn add_avcc(&mut self, avcc: &[u8]) -> Result<usize, Error> {
        let mut pos = 0;
        let mut take = |n: usize, what: &'static str| -> Result<&[u8], Error> {
            let end = pos + n;
            let s = avcc.get(pos..end).ok_or(Error::AvccTruncated {
                what,
                len: avcc.len(),
            })?;
            pos = end;
            Ok(s)
        };
        let head = take(6, "the record header")?;
        if head[0] != 1 {
            return Err(Error::AvccVersion { version: head[0] });
        }
        let length_size = usize::from(head[4] & 3) + 1;
        let num_sps = usize::from(head[5] & 0x1f);
        let mut spss = Vec::with_capacity(num_sps);
        for index in 0..num_sps {
            let len = take(2, "a sequenceParameterSetLength")?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let nal = take(len, "a sequenceParameterSetNALUnit")?;
            check_avcc_nal(nal, index, nal_type::SPS, "7 (SPS)")?;
            spss.push(Sps::parse(nal)?);
        }
        let num_pps = usize::from(take(1, "numOfPictureParameterSets")?[0]);
        let mut ppss = Vec::with_capacity(num_pps);
        for index in 0..num_pps {
            let len = take(2, "a pictureParameterSetLength")?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let nal = take(len, "a pictureParameterSetNALUnit")?;
            check_avcc_nal(nal, index, nal_type::PPS, "8 (PPS)")?;
            ppss.push(Pps::parse(nal)?);
        }
        for s in spss {
            self.sps[usize::from(s.id)] = Some(s);
        }
        for p in ppss {
            self.pps[usize::from(p.id)] = Some(p);
        }
        Ok(length_size)
    }

    /// Takes note of an in-band NAL unit: an SPS or PPS is parsed and
    /// stored; any other type is ignored. Returns whether it was stored.
    pub fn add_nal(&mut self, nal: &[u8]) -> Result<bool, Error> {
        match nal_unit_type(nal) {
            Some(nal_type::SPS) => {
                let s = Sps::parse(nal)?;
                self.sps[usize::from(s.id)] = Some(s);
                Ok(true)
            }
            Some(nal_type::PPS) => {
                let p = Pps::parse(nal)?;
                self.pps[usize::from(p.id)] = Some(p);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The length of a coded slice NAL unit's header in its stored bytes:
    /// from its NAL header byte (counted) to the byte holding the last bit
    /// of `slice_header()` (7.3.3), emulation prevention bytes included.
    /// This is what Common Encryption leaves clear after the length prefix.
    ///
    /// For `nal_unit_type` 1 and 5; 2 to 4 (data partitioning), 20 and 21
    /// (SVC/MVC) are [`Error::Unsupported`], other types
    /// [`Error::NotSlice`].
    pub fn slice_header_len(&self, nal: &[u8]) -> Result<usize, Error> {
        Ok(self.slice_header(nal)?.len)
    }

    /// Parses a slice header; see [`ParamSets::slice_header_len`].
    pub fn slice_header(&self, nal: &[u8]) -> Result<SliceHeader, Error> {
        let mut r = BitReader::new(nal);
        let (nal_ref_idc, t) = nal_header(&mut r, nal)?;
        match t {
            nal_type::SLICE | nal_type::IDR => {}
            nal_type::SLICE_DPA..=nal_type::SLICE_DPC => {
                return Err(Error::Unsupported {
                    nal_type: t,
                    name: "slice data partition",
                })
            }
            nal_type::SLICE_EXT | nal_type::SLICE_EXT_DEPTH => {
                return Err(Error::Unsupported {
                    nal_type: t,
                    name: "coded slice extension, SVC/MVC/3D",
                })
            }
            _ => return Err(Error::NotSlice { nal_type: t }),
        }
        let idr = t == nal_type::IDR;
        let first_mb_in_slice = r.ue("first_mb_in_slice")?;
        let slice_type = r.ue_max("slice_type", 9, "0..=9")? as u8;
        let pps_id = r.ue("pic_parameter_set_id")?;
        let pps = u8::try_from(pps_id)
            .ok()
            .and_then(|id| self.pps(id))
            .ok_or(Error::UnknownPps { pps_id })?;
        let sps = self.sps(pps.sps_id).ok_or(Error::UnknownSps {
            pps_id,
            sps_id: pps.sps_id.into(),
        })?;
        let kind = SliceType::from_u8(slice_type % 5);
        if sps.separate_colour_plane_flag {
            r.bits(2, "colour_plane_id")?;
        }
        let frame_num = r.bits(sps.log2_max_frame_num.into(), "frame_num")?;
        let mut field_pic_flag = false;
        let mut bottom_field_flag = false;
        if !sps.frame_mbs_only_flag {
            field_pic_flag = r.flag("field_pic_flag")?;
            if field_pic_flag {
                bottom_field_flag = r.flag("bottom_field_flag")?;
            }
        }
        if idr {
            r.ue("idr_pic_id")?;
        }
        let bottom_present = pps.bottom_field_pic_order_in_frame_present_flag && !field_pic_flag;
        match sps.pic_order_cnt_type {
            0 => {
                r.bits(sps.log2_max_pic_order_cnt_lsb.into(), "pic_order_cnt_lsb")?;
                if bottom_present {
                    r.se("delta_pic_order_cnt_bottom")?;
                }
            }
            1 if !sps.delta_pic_order_always_zero_flag => {
                r.se("delta_pic_order_cnt[0]")?;
                if bottom_present {
                    r.se("delta_pic_order_cnt[1]")?;
                }
            }
            _ => {}
        }
        if pps.redundant_pic_cnt_present_flag {
            r.ue_max("redundant_pic_cnt", 127, "0..=127")?;
        }
        if kind == SliceType::B {
            r.flag("direct_spatial_mv_pred_flag")?;
        }
        let mut num_ref_idx_active = [
            u32::from(pps.num_ref_idx_l0_default_active),
            u32::from(pps.num_ref_idx_l1_default_active),
        ];
        let (max_refs, allowed) = if field_pic_flag {
            (31, "0..=31")
        } else {
            (15, "0..=15")
        };
        if matches!(kind, SliceType::P | SliceType::Sp | SliceType::B)
            && r.flag("num_ref_idx_active_override_flag")?
        {
            num_ref_idx_active[0] =
                r.ue_max("num_ref_idx_l0_active_minus1", max_refs, allowed)? + 1;
            if kind == SliceType::B {
                num_ref_idx_active[1] =
                    r.ue_max("num_ref_idx_l1_active_minus1", max_refs, allowed)? + 1;
            }
        }
        let lists = match kind {
            SliceType::I | SliceType::Si => 0,
            SliceType::P | SliceType::Sp => 1,
            SliceType::B => 2,
        };

        // ref_pic_list_modification() (7.3.3.1).
        for &refs in &num_ref_idx_active[..lists] {
            if r.flag("ref_pic_list_modification_flag")? {
                // At most num_ref_idx_lX_active_minus1 + 1 modifications and
                // the end code (7.4.3.1); 32 refs is the most there can be.
                let mut n = 0;
                loop {
                    let bit = r.position();
                    match r.ue("modification_of_pic_nums_idc")? {
                        0 | 1 => {
                            r.ue("abs_diff_pic_num_minus1")?;
                        }
                        2 => {
                            r.ue("long_term_pic_num")?;
                        }
                        3 => break,
                        v => {
                            return Err(Error::OutOfRange {
                                what: "modification_of_pic_nums_idc",
                                value: v.into(),
                                bit,
                                allowed: "0..=3",
                            })
                        }
                    }
                    n += 1;
                    if n > refs {
                        return Err(Error::OutOfRange {
                            what: "modification_of_pic_nums_idc count",
                            value: n.into(),
                            bit,
                            allowed: "at most num_ref_idx_lX_active_minus1 + 1",
                        });
                    }
                }
            }
        }

        // pred_weight_table() (7.3.3.2).
        let chroma = sps.chroma_array_type() != 0;
        if (pps.weighted_pred_flag && matches!(kind, SliceType::P | SliceType::Sp))
            || (pps.weighted_bipred_idc == 1 && kind == SliceType::B)
        {
            r.ue_max("luma_log2_weight_denom", 7, "0..=7")?;
            if chroma {
                r.ue_max("chroma_log2_weight_denom", 7, "0..=7")?;
            }
            for &refs in &num_ref_idx_active[..lists] {
                for _ in 0..refs {
                    if r.flag("luma_weight_flag")? {
                        r.se_in("luma_weight", -128..=127, "-128..=127")?;
                        r.se_in("luma_offset", -128..=127, "-128..=127")?;
                    }
                    if chroma && r.flag("chroma_weight_flag")? {
                        for _ in 0..2 {
                            r.se_in("chroma_weight", -128..=127, "-128..=127")?;
                            r.se_in("chroma_offset", -128..=127, "-128..=127")?;
                        }
                    }
                }
            }
        }

        // dec_ref_pic_marking() (7.3.3.3).
        if nal_ref_idc != 0 {
            if idr {
                r.flag("no_output_of_prior_pics_flag")?;
                r.flag("long_term_reference_flag")?;
            } else if r.flag("adaptive_ref_pic_marking_mode_flag")? {
                // FFmpeg's limit (MAX_MMCO_COUNT): each operation is at most
                // one per reference picture and a few more.
                let mut n = 0;
                loop {
                    let bit = r.position();
                    let op = r.ue("memory_management_control_operation")?;
                    match op {
                        0 => break,
                        1..=6 => {}
                        v => {
                            return Err(Error::OutOfRange {
                                what: "memory_management_control_operation",
                                value: v.into(),
                                bit,
                                allowed: "0..=6",
                            })
                        }
                    }
                    if op == 1 || op == 3 {
                        r.ue("difference_of_pic_nums_minus1")?;
                    }
                    if op == 2 {
                        r.ue("long_term_pic_num")?;
                    }
                    if op == 3 || op == 6 {
                        r.ue("long_term_frame_idx")?;
                    }
                    if op == 4 {
                        r.ue("max_long_term_frame_idx_plus1")?;
                    }
                    n += 1;
                    if n > 66 {
                        return Err(Error::OutOfRange {
                            what: "memory_management_control_operation count",
                            value: n,
                            bit,
                            allowed: "at most 66",
                        });
                    }
                }
            }
        }

        if pps.entropy_coding_mode_flag && !matches!(kind, SliceType::I | SliceType::Si) {
            r.ue_max("cabac_init_idc", 2, "0..=2")?;
        }
        let slice_qp_delta = r.se_in("slice_qp_delta", -87..=87, "-87..=87")?;
        if matches!(kind, SliceType::Sp | SliceType::Si) {
            if kind == SliceType::Sp {
                r.flag("sp_for_switch_flag")?;
            }
            r.se_in("slice_qs_delta", -51..=51, "-51..=51")?;
        }
        if pps.deblocking_filter_control_present_flag {
            let idc = r.ue_max("disable_deblocking_filter_idc", 2, "0..=2")?;
            if idc != 1 {
                r.se_in("slice_alpha_c0_offset_div2", -6..=6, "-6..=6")?;
                r.se_in("slice_beta_offset_div2", -6..=6, "-6..=6")?;
            }
        }
        if pps.num_slice_groups > 1 && (3..=5).contains(&pps.slice_group_map_type) {
            // 7.4.3: Ceil(Log2(PicSizeInMapUnits ÷ SliceGroupChangeRate + 1))
            // bits; with integer division rounded up, as FFmpeg does, the
            // result is the same.
            let size = sps.pic_size_in_map_units();
            let rate = pps.slice_group_change_rate;
            if rate > size {
                return Err(Error::SliceGroupChangeRate {
                    pps_id: pps.id,
                    rate,
                    pic_size: size,
                });
            }
            let max = size.div_ceil(rate);
            r.bits(ceil_log2(max + 1), "slice_group_change_cycle")?;
        }
        Ok(SliceHeader {
            nal_ref_idc,
            nal_unit_type: t,
            first_mb_in_slice,
            slice_type,
            pps_id: pps.id,
            frame_num,
            field_pic_flag,
            bottom_field_flag,
            slice_qp_delta,
            bits: r.position(),
            len: r.escaped_len(),
        })
    }
}

/// `slice_type % 5` (Table 7-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceType {
    P,
    B,
    I,
    Sp,
    Si,
}

impl SliceType {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::P,
            1 => Self::B,
            2 => Self::I,
            3 => Self::Sp,
            _ => Self::Si,
        }
    }
}

/// A few fields of a parsed slice header, and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceHeader {
    pub nal_ref_idc: u8,
    pub nal_unit_type: u8,
    pub first_mb_in_slice: u32,
    /// As coded, 0..=9 (5..=9: all slices of the picture have this type).
    pub slice_type: u8,
    pub pps_id: u8,
    pub frame_num: u32,
    pub field_pic_flag: bool,
    pub bottom_field_flag: bool,
    pub slice_qp_delta: i32,
    /// RBSP bits from the NAL header byte to the end of the slice header.
    pub bits: u64,
    /// Stored (escaped) bytes from the NAL header byte to the one holding
    /// the slice header's last bit: [`ParamSets::slice_header_len`].
    pub len: usize,
}

impl SliceHeader {
    pub fn slice_type(&self) -> SliceType {
        SliceType::from_u8(self.slice_type % 5)
    }
}

// ---------------------------------------------------------------------------
// AVCC samples

/// One NAL unit of an AVCC sample: `offset` is where its header byte is in
/// the sample (its length prefix is the `length_size` bytes before), `len`
/// its length without the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalUnit {
    pub offset: usize,
    pub len: usize,
}

impl NalUnit {
    /// The NAL unit's bytes within the sample.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The NAL units of an AVCC sample (each prefixed by its big-endian length
/// in `length_size` bytes, ISO/IEC 14496-15 5.3.2), in order. The iterator
/// yields an error and then ends if a length prefix or a NAL unit is cut
/// short; zero-length NAL units are yielded as they are.
pub fn nal_units(sample: &[u8], length_size: usize) -> NalUnits<'_> {
    NalUnits {
        sample,
        length_size,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`nal_units`].
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    sample: &'a [u8],
    length_size: usize,
    pos: usize,
    done: bool,
}

impl Iterator for NalUnits<'_> {
    type Item = Result<NalUnit, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.sample.len() {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl NalUnits<'_> {
    fn step(&mut self) -> Result<NalUnit, Error> {
        if !(1..=4).contains(&self.length_size) {
            return Err(Error::LengthSize(self.length_size));
        }
        let offset = self.pos;
        let prefix =
            self.sample
                .get(offset..offset + self.length_size)
                .ok_or(Error::PrefixTruncated {
                    offset,
                    len: self.sample.len(),
                })?;
        let len = prefix
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        let start = offset + self.length_size;
        let available = self.sample.len() - start;
        if len > available {
            return Err(Error::NalTruncated {
                offset,
                nal_len: len,
                available,
            });
        }
        self.pos = start + len;
        Ok(NalUnit { offset: start, len })
    }
}

fn check_avcc_nal(nal: &[u8], index: usize, want: u8, expected: &'static str) -> Result<(), Error> {
    match nal_unit_type(nal) {
        Some(t) if t == want => Ok(()),
        Some(t) => Err(Error::AvccNalType {
            index,
            nal_type: t,
            expected,
        }),
        None => Err(Error::EmptyNal),
    }
}

/// A decoder configuration built from an H.264 stream's parameter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The AVCDecoderConfigurationRecord (`avcC` box payload), with
    /// 4-byte NAL unit lengths (`lengthSizeMinusOne` 3).
    pub avcc: Vec<u8>,
    /// RFC 6381 codec string, e.g. `avc1.64001F`.
    pub rfc6381: String,
    /// Picture size in pixels, cropping applied.
    pub width: u32,
    /// Picture height in pixels, cropping applied.
    pub height: u32,
}

/// Builds the `avcC` record (ISO/IEC 14496-15 §5.3.3.1) from parameter
/// sets (NAL units with their header byte, no start code); the first SPS
/// describes the stream. What an RTSP camera gives in its SDP or in band
/// becomes what libavcodec and the MP4 muxer take.
pub fn avc_configuration(sps: &[&[u8]], pps: &[&[u8]]) -> Result<AvcConfig, Error> {
    let first = sps.first().ok_or(Error::EmptyNal)?;
    let info = Sps::parse(first)?;
    if pps.is_empty() || sps.len() > 31 || pps.len() > 255 {
        return Err(Error::OutOfRange {
            what: "parameter set count",
            value: pps.len().max(sps.len()) as i64,
            bit: 0,
            allowed: "1..=31 SPS and 1..=255 PPS",
        });
    }
    let mut avcc = vec![
        1,
        info.profile_idc,
        info.constraint_flags,
        info.level_idc,
        0xFC | 3,
        0xE0 | sps.len() as u8,
    ];
    let put = |out: &mut Vec<u8>, nal: &[u8]| -> Result<(), Error> {
        let len = u16::try_from(nal.len()).map_err(|_| Error::OutOfRange {
            what: "parameter set length",
            value: nal.len() as i64,
            bit: 0,
            allowed: "at most 65535 bytes",
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
        Ok(())
    };
    for s in sps {
        put(&mut avcc, s)?;
    }
    avcc.push(pps.len() as u8);
    for p in pps {
        put(&mut avcc, p)?;
    }
    Ok(AvcConfig {
        avcc,
        rfc6381: format!(
            "avc1.{:02X}{:02X}{:02X}",
            info.profile_idc, info.constraint_flags, info.level_idc
        ),
        width: info.width,
        height: info.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // testdata/h264/*: see testdata/h264/README.md.
    const STREAMS: &[(&str, &[u8])] = &[
        (
            "baseline.h264",
            include_bytes!("../../testdata/h264/baseline.h264"),
        ),
        (
            "gray-weighted.h264",
            include_bytes!("../../testdata/h264/gray-weighted.h264"),
        ),
        (
            "high-cqm-custom.h264",
            include_bytes!("../../testdata/h264/high-cqm-custom.h264"),
        ),
        (
            "high-cqm-jvt.h264",
            include_bytes!("../../testdata/h264/high-cqm-jvt.h264"),
        ),
        (
            "high422-10bit-weighted.h264",
            include_bytes!("../../testdata/h264/high422-10bit-weighted.h264"),
        ),
        (
            "high444-cqm-odd.h264",
            include_bytes!("../../testdata/h264/high444-cqm-odd.h264"),
        ),
        (
            "high444-lossless.h264",
            include_bytes!("../../testdata/h264/high444-lossless.h264"),
        ),
        (
            "interlaced-mbaff.h264",
            include_bytes!("../../testdata/h264/interlaced-mbaff.h264"),
        ),
        (
            "main-cabac-b.h264",
            include_bytes!("../../testdata/h264/main-cabac-b.h264"),
        ),
        (
            "main-cavlc-b-nodeblock.h264",
            include_bytes!("../../testdata/h264/main-cavlc-b-nodeblock.h264"),
        ),
        (
            "odd-size-crop.h264",
            include_bytes!("../../testdata/h264/odd-size-crop.h264"),
        ),
        (
            "refs-pyramid.h264",
            include_bytes!("../../testdata/h264/refs-pyramid.h264"),
        ),
        (
            "slices4.h264",
            include_bytes!("../../testdata/h264/slices4.h264"),
        ),
        (
            "synth.h264",
            include_bytes!("../../testdata/h264/synth.h264"),
        ),
        (
            "weighted.h264",
            include_bytes!("../../testdata/h264/weighted.h264"),
        ),
    ];
    const AVCC_422: &[u8] = include_bytes!("../../testdata/h264/high422-10bit-weighted.avcC");

    /// `(file, slice index in file order, nal_unit_type, header bits in the
    /// RBSP, header bytes as stored)`, from
    /// FFmpeg 5.1's `trace_headers` by `testdata/h264/expected.py`.
    #[rustfmt::skip]
    const FFMPEG: &[(&str, usize, u8, u64, usize)] = &[
    ("baseline.h264", 0, 5, 34, 5), // slice_beta_offset_div2
    ("baseline.h264", 1, 1, 33, 5), // slice_beta_offset_div2
    ("baseline.h264", 2, 1, 35, 5), // slice_beta_offset_div2
    ("baseline.h264", 3, 1, 32, 4), // slice_beta_offset_div2
    ("baseline.h264", 4, 5, 36, 5), // slice_beta_offset_div2
    ("baseline.h264", 5, 1, 35, 5), // slice_beta_offset_div2
    ("baseline.h264", 6, 1, 37, 5), // slice_beta_offset_div2
    ("baseline.h264", 7, 1, 34, 5), // slice_beta_offset_div2
    ("gray-weighted.h264", 0, 5, 42, 6), // slice_beta_offset_div2
    ("gray-weighted.h264", 1, 1, 40, 5), // slice_beta_offset_div2
    ("gray-weighted.h264", 2, 1, 86, 11), // slice_beta_offset_div2
    ("gray-weighted.h264", 3, 1, 105, 14), // slice_beta_offset_div2
    ("gray-weighted.h264", 4, 1, 56, 7), // slice_beta_offset_div2
    ("gray-weighted.h264", 5, 1, 46, 6), // slice_beta_offset_div2
    ("gray-weighted.h264", 6, 1, 127, 16), // slice_beta_offset_div2
    ("gray-weighted.h264", 7, 1, 129, 17), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 0, 5, 38, 5), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 1, 1, 42, 6), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 2, 1, 42, 6), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 3, 1, 72, 9), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 4, 1, 44, 6), // slice_beta_offset_div2
    ("high-cqm-custom.h264", 5, 1, 81, 11), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 0, 5, 38, 5), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 1, 1, 42, 6), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 2, 1, 42, 6), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 3, 1, 72, 9), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 4, 1, 44, 6), // slice_beta_offset_div2
    ("high-cqm-jvt.h264", 5, 1, 81, 11), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 0, 5, 42, 6), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 1, 1, 42, 6), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 2, 1, 138, 18), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 3, 1, 52, 7), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 4, 1, 46, 6), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 5, 1, 147, 19), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 6, 1, 58, 8), // slice_beta_offset_div2
    ("high422-10bit-weighted.h264", 7, 1, 46, 6), // slice_beta_offset_div2
    ("high444-cqm-odd.h264", 0, 5, 40, 5), // slice_beta_offset_div2
    ("high444-cqm-odd.h264", 1, 1, 46, 6), // slice_beta_offset_div2
    ("high444-cqm-odd.h264", 2, 1, 45, 6), // slice_beta_offset_div2
    ("high444-cqm-odd.h264", 3, 1, 46, 6), // slice_beta_offset_div2
    ("high444-cqm-odd.h264", 4, 1, 89, 12), // slice_beta_offset_div2
    ("high444-lossless.h264", 0, 5, 28, 4), // disable_deblocking_filter_idc
    ("high444-lossless.h264", 1, 1, 32, 4), // disable_deblocking_filter_idc
    ("high444-lossless.h264", 2, 1, 60, 8), // disable_deblocking_filter_idc
    ("high444-lossless.h264", 3, 1, 69, 9), // disable_deblocking_filter_idc
    ("interlaced-mbaff.h264", 0, 5, 44, 6), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 1, 1, 44, 6), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 2, 1, 49, 7), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 3, 1, 50, 7), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 4, 1, 67, 9), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 5, 1, 50, 7), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 6, 1, 67, 9), // slice_beta_offset_div2
    ("interlaced-mbaff.h264", 7, 1, 50, 7), // slice_beta_offset_div2
    ("main-cabac-b.h264", 0, 5, 40, 5), // slice_beta_offset_div2
    ("main-cabac-b.h264", 1, 1, 44, 6), // slice_beta_offset_div2
    ("main-cabac-b.h264", 2, 1, 45, 6), // slice_beta_offset_div2
    ("main-cabac-b.h264", 3, 1, 46, 6), // slice_beta_offset_div2
    ("main-cabac-b.h264", 4, 1, 87, 11), // slice_beta_offset_div2
    ("main-cabac-b.h264", 5, 1, 58, 8), // slice_beta_offset_div2
    ("main-cabac-b.h264", 6, 1, 46, 6), // slice_beta_offset_div2
    ("main-cabac-b.h264", 7, 1, 89, 12), // slice_beta_offset_div2
    ("main-cabac-b.h264", 8, 1, 58, 8), // slice_beta_offset_div2
    ("main-cabac-b.h264", 9, 1, 46, 6), // slice_beta_offset_div2
    ("main-cavlc-b-nodeblock.h264", 0, 5, 40, 5), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 1, 1, 43, 6), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 2, 1, 44, 6), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 3, 1, 45, 6), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 4, 1, 86, 11), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 5, 1, 57, 8), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 6, 1, 45, 6), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 7, 1, 88, 11), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 8, 1, 57, 8), // disable_deblocking_filter_idc
    ("main-cavlc-b-nodeblock.h264", 9, 1, 45, 6), // disable_deblocking_filter_idc
    ("odd-size-crop.h264", 0, 5, 40, 5), // slice_beta_offset_div2
    ("odd-size-crop.h264", 1, 1, 46, 6), // slice_beta_offset_div2
    ("odd-size-crop.h264", 2, 1, 45, 6), // slice_beta_offset_div2
    ("odd-size-crop.h264", 3, 1, 46, 6), // slice_beta_offset_div2
    ("odd-size-crop.h264", 4, 1, 46, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 0, 5, 40, 5), // slice_beta_offset_div2
    ("refs-pyramid.h264", 1, 1, 44, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 2, 1, 45, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 3, 1, 46, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 4, 1, 46, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 5, 1, 67, 9), // slice_beta_offset_div2
    ("refs-pyramid.h264", 6, 1, 62, 8), // slice_beta_offset_div2
    ("refs-pyramid.h264", 7, 1, 46, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 8, 1, 46, 6), // slice_beta_offset_div2
    ("refs-pyramid.h264", 9, 1, 69, 9), // slice_beta_offset_div2
    ("refs-pyramid.h264", 10, 1, 62, 8), // slice_beta_offset_div2
    ("refs-pyramid.h264", 11, 1, 46, 6), // slice_beta_offset_div2
    ("slices4.h264", 0, 5, 48, 6), // slice_beta_offset_div2
    ("slices4.h264", 1, 5, 56, 7), // slice_beta_offset_div2
    ("slices4.h264", 2, 5, 58, 8), // slice_beta_offset_div2
    ("slices4.h264", 3, 5, 60, 8), // slice_beta_offset_div2
    ("slices4.h264", 4, 1, 54, 7), // slice_beta_offset_div2
    ("slices4.h264", 5, 1, 60, 8), // slice_beta_offset_div2
    ("slices4.h264", 6, 1, 62, 8), // slice_beta_offset_div2
    ("slices4.h264", 7, 1, 64, 8), // slice_beta_offset_div2
    ("slices4.h264", 8, 1, 53, 7), // slice_beta_offset_div2
    ("slices4.h264", 9, 1, 61, 8), // slice_beta_offset_div2
    ("slices4.h264", 10, 1, 61, 8), // slice_beta_offset_div2
    ("slices4.h264", 11, 1, 63, 8), // slice_beta_offset_div2
    ("slices4.h264", 12, 1, 54, 7), // slice_beta_offset_div2
    ("slices4.h264", 13, 1, 62, 8), // slice_beta_offset_div2
    ("slices4.h264", 14, 1, 62, 8), // slice_beta_offset_div2
    ("slices4.h264", 15, 1, 64, 8), // slice_beta_offset_div2
    ("slices4.h264", 16, 1, 97, 13), // slice_beta_offset_div2
    ("slices4.h264", 17, 1, 105, 14), // slice_beta_offset_div2
    ("slices4.h264", 18, 1, 105, 14), // slice_beta_offset_div2
    ("slices4.h264", 19, 1, 107, 14), // slice_beta_offset_div2
    ("synth.h264", 0, 5, 64, 8), // slice_beta_offset_div2
    ("synth.h264", 1, 1, 503, 63), // disable_deblocking_filter_idc
    ("synth.h264", 2, 1, 153, 20), // slice_beta_offset_div2
    ("synth.h264", 3, 1, 32, 4), // slice_beta_offset_div2
    ("synth.h264", 4, 5, 44, 6), // slice_qp_delta
    ("synth.h264", 5, 5, 44, 6), // slice_qp_delta
    ("synth.h264", 6, 5, 44, 6), // slice_qp_delta
    ("synth.h264", 7, 1, 73, 10), // slice_qp_delta
    ("synth.h264", 8, 1, 63, 8), // slice_qp_delta
    ("synth.h264", 9, 1, 73, 10), // slice_qp_delta
    ("synth.h264", 10, 1, 39, 5), // slice_group_change_cycle
    ("synth.h264", 11, 1, 46, 6), // slice_group_change_cycle
    ("synth.h264", 12, 1, 45, 6), // slice_beta_offset_div2
    ("synth.h264", 13, 5, 42, 6), // slice_beta_offset_div2
    ("synth.h264", 14, 5, 42, 6), // slice_beta_offset_div2
    ("synth.h264", 15, 5, 36, 5), // slice_group_change_cycle
    ("synth.h264", 16, 5, 46, 6), // slice_beta_offset_div2
    ("synth.h264", 17, 1, 57, 9), // slice_qp_delta
    ("synth.h264", 18, 5, 78, 10), // slice_group_change_cycle
    ("synth.h264", 19, 5, 80, 10), // slice_group_change_cycle
    ("synth.h264", 20, 5, 80, 10), // slice_group_change_cycle
    ("synth.h264", 21, 5, 82, 11), // slice_group_change_cycle
    ("synth.h264", 22, 5, 82, 11), // slice_group_change_cycle
    ("synth.h264", 23, 5, 82, 11), // slice_group_change_cycle
    ("synth.h264", 24, 5, 82, 11), // slice_group_change_cycle
    ("synth.h264", 25, 5, 84, 11), // slice_group_change_cycle
    ("weighted.h264", 0, 5, 42, 6), // slice_beta_offset_div2
    ("weighted.h264", 1, 1, 44, 6), // slice_beta_offset_div2
    ("weighted.h264", 2, 1, 181, 23), // slice_beta_offset_div2
    ("weighted.h264", 3, 1, 181, 23), // slice_beta_offset_div2
    ("weighted.h264", 4, 1, 56, 7), // slice_beta_offset_div2
    ("weighted.h264", 5, 1, 44, 6), // slice_beta_offset_div2
    ("weighted.h264", 6, 1, 46, 6), // slice_beta_offset_div2
    ("weighted.h264", 7, 1, 195, 25), // slice_beta_offset_div2
    ("weighted.h264", 8, 1, 193, 25), // slice_beta_offset_div2
    ("weighted.h264", 9, 1, 167, 21), // slice_beta_offset_div2
    ];

    fn stream(name: &str) -> &'static [u8] {
        STREAMS.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Annex B byte stream to NAL units (trailing zero bytes dropped), the
    /// way expected.py splits it.
    fn annexb(data: &[u8]) -> Vec<&[u8]> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= data.len() {
            if data[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut out = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let mut e = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            while e > s && data[e - 1] == 0 {
                e -= 1;
            }
            out.push(&data[s..e]);
        }
        out
    }

    /// Emulation prevention removed, the simple way.
    fn unescape(nal: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }

    /// Parameter sets of a stream, added in band.
    fn param_sets(data: &[u8]) -> ParamSets {
        let mut ps = ParamSets::new();
        for nal in annexb(data) {
            ps.add_nal(nal).unwrap();
        }
        ps
    }

    /// Every slice of every stream, in band, against FFmpeg.
    #[test]
    fn slice_header_len_matches_ffmpeg_trace_headers() {
        let mut got = Vec::new();
        for &(name, data) in STREAMS {
            let mut ps = ParamSets::new();
            let mut idx = 0;
            for nal in annexb(data) {
                let t = nal_unit_type(nal).unwrap();
                if is_vcl(t) {
                    let h = ps
                        .slice_header(nal)
                        .unwrap_or_else(|e| panic!("{name} slice {idx}: {e}"));
                    assert_eq!(ps.slice_header_len(nal), Ok(h.len));
                    got.push((name, idx, t, h.bits, h.len));
                    idx += 1;
                } else {
                    ps.add_nal(nal).unwrap();
                }
            }
        }
        let want: Vec<_> = FFMPEG.to_vec();
        assert_eq!(got, want);
        assert_eq!(got.len(), 146);
    }

    /// The same slices as MP4 stores them: parameter sets from an avcC
    /// record FFmpeg's muxer wrote, slices as length-prefixed samples.
    #[test]
    fn avcc_record_and_samples() {
        let name = "high422-10bit-weighted.h264";
        let mut ps = ParamSets::new();
        assert_eq!(ps.add_avcc(AVCC_422), Ok(4));
        let sps = ps.sps(0).unwrap();
        assert_eq!(
            (
                sps.profile_idc,
                sps.chroma_format_idc,
                sps.bit_depth_luma,
                sps.bit_depth_chroma
            ),
            (122, 2, 10, 10)
        );
        assert_eq!((sps.width, sps.height), (64, 48));
        assert!(ps.pps(0).unwrap().weighted_pred_flag);

        let want: Vec<usize> = FFMPEG.iter().filter(|r| r.0 == name).map(|r| r.4).collect();
        let slices: Vec<&[u8]> = annexb(stream(name))
            .into_iter()
            .filter(|n| is_vcl(nal_unit_type(n).unwrap()))
            .collect();
        for length_size in [2, 3, 4] {
            // One sample per slice, then all slices in one sample.
            let mut all = Vec::new();
            let mut got = Vec::new();
            for nal in &slices {
                let mut sample = nal.len().to_be_bytes()[8 - length_size..].to_vec();
                sample.extend_from_slice(nal);
                let units: Vec<NalUnit> = nal_units(&sample, length_size)
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(
                    units,
                    [NalUnit {
                        offset: length_size,
                        len: nal.len()
                    }]
                );
                got.push(ps.slice_header_len(&sample[units[0].range()]).unwrap());
                all.extend_from_slice(&sample);
            }
            assert_eq!(got, want);
            let lens: Vec<usize> = nal_units(&all, length_size)
                .map(|u| ps.slice_header_len(&all[u.unwrap().range()]).unwrap())
                .collect();
            assert_eq!(lens, want);
        }
    }

    #[test]
    fn sps_fields() {
        let cases: &[(&str, u8, u8, u8, bool, u32, u32)] = &[
            // name, profile, chroma_format_idc, poc type, frame_mbs_only, width, height
            ("baseline.h264", 66, 1, 2, true, 64, 48),
            ("main-cabac-b.h264", 77, 1, 0, true, 64, 48),
            ("odd-size-crop.h264", 100, 1, 0, true, 66, 50),
            ("high444-cqm-odd.h264", 244, 3, 0, true, 65, 49),
            ("interlaced-mbaff.h264", 100, 1, 0, false, 64, 64),
            ("gray-weighted.h264", 100, 0, 0, true, 64, 48),
            ("slices4.h264", 100, 1, 0, true, 128, 96),
        ];
        for &(name, profile, chroma, poc, frame_mbs_only, w, h) in cases {
            let ps = param_sets(stream(name));
            let s = ps.sps(0).unwrap();
            assert_eq!(
                (s.profile_idc, s.chroma_format_idc, s.pic_order_cnt_type),
                (profile, chroma, poc),
                "{name}"
            );
            assert_eq!(s.frame_mbs_only_flag, frame_mbs_only, "{name}");
            assert_eq!(s.mb_adaptive_frame_field_flag, !frame_mbs_only, "{name}");
            assert_eq!((s.width, s.height), (w, h), "{name}");
        }
        let lossless = param_sets(stream("high444-lossless.h264"));
        assert!(
            lossless
                .sps(0)
                .unwrap()
                .qpprime_y_zero_transform_bypass_flag
        );

        // synth.py: SPS 0 (PAFF, POC type 1, 8 scaling lists), 5 (separate
        // colour planes, 12 lists), 1 (Extended, cropping), 2 (wide, 16-bit
        // frame_num and POC LSB).
        let ps = param_sets(stream("synth.h264"));
        let s0 = ps.sps(0).unwrap();
        assert!(s0.seq_scaling_matrix_present_flag);
        assert_eq!(
            (s0.pic_order_cnt_type, s0.delta_pic_order_always_zero_flag),
            (1, false)
        );
        assert_eq!(
            (s0.frame_mbs_only_flag, s0.width, s0.height),
            (false, 64, 96)
        );
        let s5 = ps.sps(5).unwrap();
        assert!(s5.separate_colour_plane_flag);
        assert_eq!(
            (s5.chroma_array_type(), s5.log2_max_pic_order_cnt_lsb),
            (0, 6)
        );
        let s1 = ps.sps(1).unwrap();
        assert_eq!((s1.profile_idc, s1.width, s1.height), (88, 58, 46));
        let s2 = ps.sps(2).unwrap();
        assert_eq!(
            (s2.log2_max_frame_num, s2.log2_max_pic_order_cnt_lsb),
            (16, 16)
        );
        assert_eq!(s2.pic_size_in_map_units(), 8000);
        let p1 = ps.pps(1).unwrap();
        assert_eq!(
            (p1.sps_id, p1.num_slice_groups, p1.slice_group_map_type),
            (1, 4, 4)
        );
        assert_eq!(p1.slice_group_change_rate, 3);
        assert!(ps.pps(0).unwrap().redundant_pic_cnt_present_flag);
        assert_eq!(ps.pps(0).unwrap().weighted_bipred_idc, 1);
    }

    /// synth.py's slices around emulation prevention bytes, byte by byte.
    #[test]
    fn emulation_prevention_in_and_after_slice_header() {
        let data = stream("synth.h264");
        let ps = param_sets(data);
        let slices: Vec<&[u8]> = annexb(data)
            .into_iter()
            .filter(|n| is_vcl(nal_unit_type(n).unwrap()))
            .collect();

        // frame_num and pic_order_cnt_lsb: 32 zero bits, one 0x03 inserted.
        let s = slices[17];
        assert_eq!(
            s[..9],
            [0x41, 0x98, 0x48, 0x00, 0x00, 0x03, 0x00, 0x00, 0xbf]
        );
        let h = ps.slice_header(s).unwrap();
        assert_eq!((h.bits, h.len), (57, 9));
        assert_eq!((h.frame_num, h.pps_id), (0, 8));

        // The header's last two bytes are zero and slice data starts with
        // 0x01: the 0x03 between them is not part of the header.
        let s = slices[19];
        assert_eq!(s[8..12], [0x00, 0x00, 0x03, 0x01]);
        let h = ps.slice_header(s).unwrap();
        assert_eq!((h.bits, h.len), (80, 10));

        // The reader's count includes an escape before the byte it is in.
        let mut r = BitReader::new(&[0x00, 0x00, 0x03, 0x00, 0x80]);
        assert_eq!(r.bits(24, "x").unwrap(), 0);
        assert_eq!(r.escaped_len(), 4);
        assert!(r.flag("x").unwrap());
        assert_eq!(r.escaped_len(), 5);
        assert_eq!(r.position(), 25);
    }

    #[test]
    fn bit_reader_agrees_with_unescaping() {
        let mut nals: Vec<&[u8]> = STREAMS.iter().flat_map(|(_, d)| annexb(d)).collect();
        let extra: &[&[u8]] = &[
            &[0, 0, 3],
            &[0, 0, 3, 3, 0, 0, 3, 0, 0, 0, 3],
            &[0x65, 0, 0, 3, 0, 0, 3, 1, 0, 0, 3],
            &[0, 3, 0, 0, 3, 0, 0, 0, 0],
        ];
        nals.extend_from_slice(extra);
        for nal in nals {
            let rbsp = unescape(nal);
            let mut r = BitReader::new(nal);
            for (i, &b) in rbsp.iter().enumerate() {
                assert_eq!(r.bits(8, "byte").unwrap(), u32::from(b));
                let off = r.escaped_len() - 1;
                assert_eq!(nal[off], b);
                assert_eq!(escaped_offset(nal, i), Some(off));
                // Everything before maps to the same count of RBSP bytes.
                assert_eq!(unescape(&nal[..=off]).len(), i + 1);
            }
            assert!(matches!(r.flag("end"), Err(Error::Truncated { .. })));
            assert_eq!(escaped_offset(nal, rbsp.len()), None);
        }
        assert_eq!(escaped_offset(&[1], usize::MAX), None);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4; se 0, 1, -1, 2, -2.
        let bits = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&bits);
        let ue: Vec<u32> = (0..5).map(|_| r.ue("v").unwrap()).collect();
        assert_eq!(ue, [0, 1, 2, 3, 4]);
        let mut r = BitReader::new(&bits);
        let se: Vec<i32> = (0..5).map(|_| r.se("v").unwrap()).collect();
        assert_eq!(se, [0, 1, -1, 2, -2]);

        // 31 leading zeros: the largest value, 2^32 - 2; 32 are refused.
        // 31 zeros, then 1, then 31 ones: 2^31 - 1 + 2^31 - 1.
        let max = [0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(BitReader::new(&max).ue("v"), Ok(u32::MAX - 1));
        assert_eq!(BitReader::new(&max).se("v"), Ok(-(i32::MAX)));
        let too_long = [0x00, 0x00, 0x00, 0x00, 0xff];
        assert_eq!(
            BitReader::new(&too_long).ue("first_mb_in_slice"),
            Err(Error::ExpGolombTooLong {
                what: "first_mb_in_slice",
                bit: 0
            })
        );
        assert_eq!(
            BitReader::new(&[0x00])
                .ue("frame_num")
                .unwrap_err()
                .to_string(),
            "NAL unit ends (after 8 RBSP bits) inside frame_num"
        );
    }

    #[test]
    fn unknown_parameter_sets() {
        let data = stream("baseline.h264");
        let nals = annexb(data);
        let idr = *nals.iter().find(|n| n[0] & 0x1f == 5).unwrap();
        let sps = *nals.iter().find(|n| n[0] & 0x1f == 7).unwrap();
        let pps = *nals.iter().find(|n| n[0] & 0x1f == 8).unwrap();

        let mut ps = ParamSets::new();
        assert_eq!(
            ps.slice_header_len(idr),
            Err(Error::UnknownPps { pps_id: 0 })
        );
        assert_eq!(ps.add_nal(pps), Ok(true));
        assert_eq!(
            ps.slice_header_len(idr),
            Err(Error::UnknownSps {
                pps_id: 0,
                sps_id: 0
            })
        );
        assert_eq!(ps.add_nal(sps), Ok(true));
        assert_eq!(ps.slice_header_len(idr), Ok(5));

        // A slice naming PPS 300 (over the 255 limit).
        let mut w = Bits::default();
        w.ue(0);
        w.ue(7);
        w.ue(300);
        let nal = w.nal(0x65);
        assert_eq!(
            ps.slice_header_len(&nal),
            Err(Error::UnknownPps { pps_id: 300 })
        );
        assert_eq!(
            Error::UnknownPps { pps_id: 3 }.to_string(),
            "slice refers to PPS 3, which has not been seen (not in the avcC record nor in band before it)"
        );
    }

    #[test]
    fn non_slice_nal_units() {
        let ps = param_sets(stream("baseline.h264"));
        assert_eq!(ps.slice_header_len(&[]), Err(Error::EmptyNal));
        assert_eq!(
            ps.slice_header_len(&[0x06, 0x05]),
            Err(Error::NotSlice { nal_type: 6 })
        );
        assert_eq!(
            ps.slice_header_len(&[0x09, 0xf0]),
            Err(Error::NotSlice { nal_type: 9 })
        );
        assert_eq!(
            ps.slice_header_len(&[0x67, 0x42]),
            Err(Error::NotSlice { nal_type: 7 })
        );
        assert!(matches!(
            ps.slice_header_len(&[0x74, 0x80]),
            Err(Error::Unsupported { nal_type: 20, .. })
        ));
        assert!(matches!(
            ps.slice_header_len(&[0x22, 0x80]),
            Err(Error::Unsupported { nal_type: 2, .. })
        ));
        assert_eq!(
            ps.slice_header_len(&[0xe5, 0x88]),
            Err(Error::ForbiddenZeroBit { header: 0xe5 })
        );
        assert!(!is_vcl(6) && !is_vcl(7) && !is_vcl(8) && !is_vcl(9) && !is_vcl(0));
        assert!(is_vcl(1) && is_vcl(5) && is_vcl(20));
        assert_eq!(ParamSets::new().add_nal(&[0x06, 0x05]), Ok(false));
        assert_eq!(ParamSets::new().add_nal(&[]), Ok(false));
    }

    /// Every cut of every real NAL unit: a slice keeps its length while the
    /// header is whole, and is `Truncated` once it is not; nothing panics.
    #[test]
    fn truncations() {
        for &(name, data) in STREAMS {
            let mut ps = ParamSets::new();
            for nal in annexb(data) {
                let t = nal[0] & 0x1f;
                if is_vcl(t) {
                    let full = ps.slice_header_len(nal).unwrap();
                    for cut in 0..nal.len() {
                        let r = ps.slice_header_len(&nal[..cut]);
                        if cut >= full {
                            assert_eq!(r, Ok(full), "{name} cut {cut}");
                        } else if cut == 0 {
                            assert_eq!(r, Err(Error::EmptyNal));
                        } else {
                            assert!(
                                matches!(r, Err(Error::Truncated { .. })),
                                "{name} {cut} {r:?}"
                            );
                        }
                    }
                } else {
                    for cut in 0..nal.len() {
                        let _ = ParamSets::new().add_nal(&nal[..cut]);
                    }
                    // Cut inside what is read (VUI, after it, is not).
                    if t == 7 {
                        assert!(matches!(
                            Sps::parse(&nal[..5]),
                            Err(Error::Truncated { .. })
                        ));
                    }
                    ps.add_nal(nal).unwrap();
                }
            }
        }
    }

    /// Random bytes, and real NAL units with bits flipped: errors or sane
    /// lengths, never a panic.
    #[test]
    fn garbage() {
        let mut rng = fastrand::Rng::with_seed(0x264);
        let nals: Vec<&[u8]> = STREAMS.iter().flat_map(|(_, d)| annexb(d)).collect();
        let mut ps = ParamSets::new();
        for nal in &nals {
            let _ = ps.add_nal(nal);
        }
        let check = |ps: &ParamSets, nal: &[u8]| {
            if let Ok(len) = ps.slice_header_len(nal) {
                assert!((2..=nal.len()).contains(&len), "{len} of {}", nal.len());
            }
        };
        for _ in 0..20_000 {
            let n = rng.usize(0..64);
            let mut v: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if let Some(h) = v.first_mut() {
                *h = [0x65, 0x41, 0x01, 0x67, 0x68, 0x21, 0x25][rng.usize(..7)];
            }
            check(&ps, &v);
            let mut scratch = ps.clone();
            let _ = scratch.add_nal(&v);
            let _ = scratch.add_avcc(&v);
            let _ = nal_units(&v, rng.usize(0..6)).count();
        }
        for _ in 0..20_000 {
            let mut v = nals[rng.usize(..nals.len())].to_vec();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..v.len());
                v[i] ^= 1 << rng.u8(0..8);
            }
            v[0] &= 0x7f;
            let mut scratch = ps.clone();
            if scratch.add_nal(&v).is_ok() {
                for s in nals.iter().filter(|n| is_vcl(n[0] & 0x1f)).take(40) {
                    check(&scratch, s);
                }
            }
            check(&ps, &v);
        }
    }

    #[test]
    fn nal_unit_splitting() {
        let sample = [
            0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84,
        ];
        let units: Vec<_> = nal_units(&sample, 4).collect();
        assert_eq!(
            units,
            [
                Ok(NalUnit { offset: 4, len: 2 }),
                Ok(NalUnit { offset: 10, len: 0 }),
                Ok(NalUnit { offset: 14, len: 3 }),
            ]
        );
        assert_eq!(nal_units(&[], 4).count(), 0);
        assert_eq!(
            nal_units(&[1, 0x09, 2, 0x65], 1).collect::<Vec<_>>(),
            [
                Ok(NalUnit { offset: 1, len: 1 }),
                Err(Error::NalTruncated {
                    offset: 2,
                    nal_len: 2,
                    available: 1
                }),
            ]
        );
        assert_eq!(
            nal_units(&sample[..2], 4).collect::<Vec<_>>(),
            [Err(Error::PrefixTruncated { offset: 0, len: 2 })]
        );
        assert_eq!(
            nal_units(&sample, 0).collect::<Vec<_>>(),
            [Err(Error::LengthSize(0))]
        );
        assert_eq!(
            nal_units(&sample, 5).collect::<Vec<_>>(),
            [Err(Error::LengthSize(5))]
        );
        // Every cut: whole units, then at most one error.
        for cut in 0..sample.len() {
            let r: Vec<_> = nal_units(&sample[..cut], 4).collect();
            assert!(r.iter().rev().skip(1).all(|u| u.is_ok()), "{cut}");
            assert_eq!(
                r.last().is_some_and(|u| u.is_err()),
                ![0, 6, 10].contains(&cut),
                "{cut}"
            );
        }
        assert_eq!(
            Error::NalTruncated {
                offset: 2,
                nal_len: 200,
                available: 1
            }
            .to_string(),
            "NAL unit length 200 at sample byte 2 runs past the sample's end (1 bytes left)"
        );
    }

    #[test]
    fn avcc_errors_change_nothing() {
        let mut ps = ParamSets::new();
        // Cut anywhere before the end of the PPS list: truncated. (The High
        // profile extension after it is not read.)
        let pps_end = AVCC_422.len() - 4;
        for cut in 0..pps_end {
            let r = ps.add_avcc(&AVCC_422[..cut]);
            assert!(
                matches!(r, Err(Error::AvccTruncated { .. })),
                "{cut}: {r:?}"
            );
            assert!(ps.sps(0).is_none() && ps.pps(0).is_none());
        }
        for cut in pps_end..=AVCC_422.len() {
            assert_eq!(ParamSets::new().add_avcc(&AVCC_422[..cut]), Ok(4));
        }
        let mut v = AVCC_422.to_vec();
        v[0] = 0;
        assert_eq!(ps.add_avcc(&v), Err(Error::AvccVersion { version: 0 }));
        // The PPS slot holding an SPS.
        let mut v = AVCC_422.to_vec();
        v[8] = 0x68;
        assert!(matches!(
            ps.add_avcc(&v),
            Err(Error::AvccNalType {
                index: 0,
                nal_type: 8,
                ..
            })
        ));
        // A good SPS with a broken PPS: the SPS is not stored either.
        let mut v = AVCC_422.to_vec();
        v[pps_end - 1] = 0xff;
        v[pps_end - 2] = 0xff;
        v[pps_end - 3] = 0xff;
        v[pps_end - 5] = 0x00;
        v[pps_end - 6] = 0x00;
        v[pps_end - 7] = 0x00;
        assert!(ps.add_avcc(&v).is_err());
        assert!(ps.sps(0).is_none());
        // Length size 2 from lengthSizeMinusOne = 1.
        let mut v = AVCC_422.to_vec();
        v[4] = 0xfd;
        assert_eq!(ParamSets::new().add_avcc(&v), Ok(2));
    }

    /// A later SPS or PPS with the same id replaces the first.
    #[test]
    fn in_band_replacement() {
        let mut ps = param_sets(stream("baseline.h264"));
        assert_eq!(ps.sps(0).unwrap().profile_idc, 66);
        for nal in annexb(stream("interlaced-mbaff.h264")) {
            ps.add_nal(nal).unwrap();
        }
        assert!(!ps.sps(0).unwrap().frame_mbs_only_flag);
        assert!(
            ps.pps(0)
                .unwrap()
                .bottom_field_pic_order_in_frame_present_flag
        );
    }

    /// Writes RBSP bits for hand-made NAL units.
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn u(&mut self, n: u32, v: u64) {
            for i in (0..n).rev() {
                self.0.push((v >> i) & 1 != 0);
            }
        }

        fn ue(&mut self, v: u64) {
            let v = v + 1;
            let n = 64 - v.leading_zeros();
            self.u(n - 1, 0);
            self.u(n, v);
        }

        /// Header byte, the bits, a stop bit, escaped.
        fn nal(mut self, header: u8) -> Vec<u8> {
            self.0.push(true);
            while !self.0.len().is_multiple_of(8) {
                self.0.push(false);
            }
            let mut out = vec![header];
            let mut zeros = 0;
            for byte in self.0.chunks(8) {
                let b = byte.iter().fold(0u8, |v, &bit| (v << 1) | u8::from(bit));
                if zeros >= 2 && b <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                out.push(b);
            }
            out
        }
    }
}
