//! Common Encryption written into fragmented MP4 (ISO/IEC 23001-7 boxes):
//! an init segment's sample entry becomes `encv` with `sinf`/`frma`/`schm`/
//! `schi`/`tenc` and the movie gets a CommonSystem `pssh`; each fragment's
//! samples of that track are encrypted in `mdat` and described by `senc`,
//! `saiz` and `saio`, with `trun` data offsets and `sidx` sizes moved to
//! match. Sans-IO: bytes in, bytes out.
//!
//! Written here because no Rust crate rewrites fMP4 for CENC, and FFmpeg
//! 5.1's own CENC writer leaves fragments without `senc`/`saiz`/`saio`
//! and has no 'cbcs'.

use super::cenc::{self, Key16, Scheme, Subsample};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed MP4: {0}")]
    Malformed(String),
    #[error("unsupported MP4 layout: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Crypt(#[from] cenc::CryptError),
}

fn malformed(s: impl Into<String>) -> Error {
    Error::Malformed(s.into())
}

/// The CommonSystem `pssh` system ID (W3C "cenc" initialization data).
pub const COMMON_SYSTEM_ID: [u8; 16] = [
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
];

/// A box as a tree: `prefix` is the body before any children (a full
/// box's version and flags, a sample entry's fields); a leaf keeps its
/// whole body in `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: [u8; 4],
    pub prefix: Vec<u8>,
    pub children: Vec<Node>,
}

/// How many body bytes come before the children of a container box, or
/// `None` for a leaf.
fn container_prefix(kind: &[u8; 4]) -> Option<usize> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"mvex" | b"moof" | b"traf" | b"dinf"
        | b"edts" | b"sinf" | b"schi" => Some(0),
        // Full box header, then entry_count.
        b"stsd" => Some(8),
        // SampleEntry (8) + VisualSampleEntry fields (70).
        b"avc1" | b"avc3" | b"encv" => Some(78),
        // SampleEntry (8) + AudioSampleEntry fields (20).
        b"mp4a" | b"enca" => Some(28),
        _ => None,
    }
}

impl Node {
    pub fn leaf(kind: &[u8; 4], body: Vec<u8>) -> Node {
        Node {
            kind: *kind,
            prefix: body,
            children: Vec::new(),
        }
    }

    /// Parses the boxes that tile `data`.
    pub fn parse_all(data: &[u8]) -> Result<Vec<Node>, Error> {
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let rest = &data[at..];
            if rest.len() < 8 {
                return Err(malformed("a box header is cut short"));
            }
            let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = [rest[4], rest[5], rest[6], rest[7]];
            let (header, size) = match size32 {
                0 => (8, rest.len()),
                1 => {
                    if rest.len() < 16 {
                        return Err(malformed("a large box header is cut short"));
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rest[8..16]);
                    (
                        16,
                        usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                    )
                }
                n => (8, n),
            };
            if size < header || size > rest.len() {
                return Err(malformed(format!(
                    "box '{}' of {size} bytes where {} remain",
                    String::from_utf8_lossy(&kind),
                    rest.len()
                )));
            }
            let body = &rest[header..size];
            let node = match container_prefix(&kind) {
                Some(p) if body.len() >= p => Node {
                    kind,
                    prefix: body[..p].to_vec(),
                    children: Node::parse_all(&body[p..])?,
                },
                Some(_) => {
                    return Err(malformed(format!(
                        "box '{}' too short",
                        String::from_utf8_lossy(&kind)
                    )))
                }
                None => Node::leaf(&kind, body.to_vec()),
            };
            out.push(node);
            at += size;
        }
        Ok(out)
    }

    pub fn size(&self) -> usize {
        let content = self.prefix.len() + self.children.iter().map(Node::size).sum::<usize>();
        // A box past 4 GiB (an mdat of a long GOP) takes the 64-bit size.
        match u32::try_from(8 + content) {
            Ok(_) => 8 + content,
            Err(_) => 16 + content,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let size = self.size();
        match u32::try_from(size) {
            Ok(small) => out.extend_from_slice(&small.to_be_bytes()),
            Err(_) => out.extend_from_slice(&1u32.to_be_bytes()),
        }
        out.extend_from_slice(&self.kind);
        if u32::try_from(size).is_err() {
            out.extend_from_slice(&(size as u64).to_be_bytes());
        }
        out.extend_from_slice(&self.prefix);
        for c in &self.children {
            c.write(out);
        }
    }

    pub fn child(&self, kind: &[u8; 4]) -> Option<&Node> {
        self.children.iter().find(|c| &c.kind == kind)
    }

    /// The first box down a path of child kinds, e.g. the sample
    /// description from `moov`: `[b"trak", b"mdia", b"minf", b"stbl", b"stsd"]`.
    pub fn descend(&self, path: &[&[u8; 4]]) -> Option<&Node> {
        path.iter().try_fold(self, |node, kind| node.child(kind))
    }

    pub fn child_mut(&mut self, kind: &[u8; 4]) -> Option<&mut Node> {
        self.children.iter_mut().find(|c| &c.kind == kind)
    }
}

pub fn write_all(nodes: &[Node]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.iter().map(Node::size).sum());
    for n in nodes {
        n.write(&mut out);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| malformed("a field is cut short"))
}

fn full_box(version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.push(version);
    v.extend_from_slice(&flags.to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v
}

/// How one track is protected.
#[derive(Debug, Clone)]
pub struct Protection {
    pub track_id: u32,
    pub scheme: Scheme,
    pub kid: Key16,
    pub key: Key16,
    /// 'cbcs': the constant IV (in `tenc`). 'cenc': the first sample's
    /// 8-byte IV in the first half; each sample after it counts up.
    pub iv: [u8; 16],
}

impl Protection {
    fn tenc(&self) -> Node {
        let mut body = Vec::new();
        match self.scheme {
            Scheme::Cenc => {
                body.extend_from_slice(&[0, 0, 1, 8]);
                body.extend_from_slice(&self.kid);
                Node::leaf(b"tenc", full_box(0, 0, &body))
            }
            Scheme::Cbcs => {
                let pattern = ((cenc::CBCS_CRYPT_BLOCKS as u8) << 4) | cenc::CBCS_SKIP_BLOCKS as u8;
                body.extend_from_slice(&[0, pattern, 1, 0]);
                body.extend_from_slice(&self.kid);
                body.push(16);
                body.extend_from_slice(&self.iv);
                Node::leaf(b"tenc", full_box(1, 0, &body))
            }
        }
    }

    /// Bytes of per-sample IV in `senc`.
    fn iv_size(&self) -> usize {
        match self.scheme {
            Scheme::Cenc => 8,
            Scheme::Cbcs => 0,
        }
    }
}

/// The CommonSystem `pssh` box (version 1, the KID listed, no data).
pub fn pssh(kid: &Key16) -> Node {
    let mut body = Vec::new();
    body.extend_from_slice(&COMMON_SYSTEM_ID);
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(kid);
    body.extend_from_slice(&0u32.to_be_bytes());
    Node::leaf(b"pssh", full_box(1, 0, &body))
}

fn track_id(trak: &Node) -> Result<u32, Error> {
    let tkhd = trak
        .child(b"tkhd")
        .ok_or_else(|| malformed("trak without tkhd"))?;
    let at = if tkhd.prefix.first() == Some(&1) {
        4 + 16
    } else {
        4 + 8
    };
    u32_at(&tkhd.prefix, at)
}

/// Rewrites an init segment so that `p.track_id`'s sample entry is
/// protected, and adds the CommonSystem `pssh` to `moov`.
pub fn protect_init(init: &[u8], p: &Protection) -> Result<Vec<u8>, Error> {
    let mut top = Node::parse_all(init)?;
    let moov = top
        .iter_mut()
        .find(|n| &n.kind == b"moov")
        .ok_or_else(|| malformed("no moov"))?;
    let mut found = false;
    for trak in moov.children.iter_mut().filter(|c| &c.kind == b"trak") {
        if track_id(trak)? != p.track_id {
            continue;
        }
        let stsd = trak
            .child_mut(b"mdia")
            .and_then(|m| m.child_mut(b"minf"))
            .and_then(|m| m.child_mut(b"stbl"))
            .and_then(|m| m.child_mut(b"stsd"))
            .ok_or_else(|| malformed("trak without stsd"))?;
        let entry = stsd
            .children
            .first_mut()
            .ok_or_else(|| malformed("empty stsd"))?;
        let (original, protected) = match &entry.kind {
            b"avc1" | b"avc3" => (entry.kind, *b"encv"),
            b"mp4a" => (entry.kind, *b"enca"),
            k => {
                return Err(Error::Unsupported(format!(
                    "sample entry '{}'",
                    String::from_utf8_lossy(k)
                )))
            }
        };
        entry.kind = protected;
        let mut schm = Vec::new();
        schm.extend_from_slice(&p.scheme.fourcc());
        schm.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        entry.children.push(Node {
            kind: *b"sinf",
            prefix: Vec::new(),
            children: vec![
                Node::leaf(b"frma", original.to_vec()),
                Node::leaf(b"schm", full_box(0, 0, &schm)),
                Node {
                    kind: *b"schi",
                    prefix: Vec::new(),
                    children: vec![p.tenc()],
                },
            ],
        });
        found = true;
    }
    if !found {
        return Err(malformed(format!("no track {}", p.track_id)));
    }
    moov.children.push(pssh(&p.kid));
    Ok(write_all(&top))
}

/// Sample table of one `trun`, resolved.
struct Run {
    data_offset: i64,
    sizes: Vec<u32>,
}

fn parse_trun(
    body: &[u8],
    default_size: Option<u32>,
) -> Result<(Option<usize>, i64, Vec<u32>), Error> {
    let flags = u32_at(body, 0)? & 0x00ff_ffff;
    let count = u32_at(body, 4)? as usize;
    let mut at = 8;
    let mut offset_field = None;
    let mut data_offset = 0i64;
    if flags & 0x1 != 0 {
        offset_field = Some(at);
        data_offset = i64::from(u32_at(body, at)? as i32);
        at += 4;
    }
    if flags & 0x4 != 0 {
        at += 4;
    }
    let per = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|f| flags & **f != 0)
        .count()
        * 4;
    if count.checked_mul(per).is_none_or(|n| at + n > body.len()) {
        return Err(malformed("trun sample table cut short"));
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let mut f = at + i * per;
        if flags & 0x100 != 0 {
            f += 4;
        }
        let size = if flags & 0x200 != 0 {
            u32_at(body, f)?
        } else {
            default_size.ok_or_else(|| malformed("sample size given nowhere"))?
        };
        sizes.push(size);
    }
    Ok((offset_field, data_offset, sizes))
}

/// Encrypts fragments of one protected track, keeping the running 'cenc'
/// IV between them.
pub struct FragmentProtector<F> {
    p: Protection,
    next_iv: u64,
    /// Clear bytes at the start of each NAL unit (length prefix and NAL
    /// header included) for video; `None` for audio (whole sample
    /// protected).
    subsamples: F,
}

impl<F> FragmentProtector<F>
where
    F: FnMut(&[u8]) -> Result<Vec<Subsample>, String>,
{
    /// `subsamples(sample)`: the sample's subsample map (empty: the whole
    /// sample is protected).
    pub fn new(p: Protection, subsamples: F) -> Self {
        let next_iv = u64::from_be_bytes(p.iv[..8].try_into().unwrap_or([0; 8]));
        FragmentProtector {
            p,
            next_iv,
            subsamples,
        }
    }

    /// Rewrites a media segment (any of `styp`, `sidx`, `moof`+`mdat`
    /// pairs, `prft`...), encrypting the protected track's samples.
    pub fn protect_segment(&mut self, segment: &[u8]) -> Result<Vec<u8>, Error> {
        let mut top = Node::parse_all(segment)?;
        // Growth of each moof, in order, for sidx.
        let mut growth = Vec::new();
        let mut i = 0;
        while i < top.len() {
            if &top[i].kind != b"moof" {
                i += 1;
                continue;
            }
            let mdat_index = i + 1;
            if top.get(mdat_index).map(|n| &n.kind) != Some(b"mdat") {
                return Err(Error::Unsupported("a moof not followed by its mdat".into()));
            }
            let (before, after) = top.split_at_mut(mdat_index);
            let moof = &mut before[i];
            let mdat = &mut after[0];
            let old = moof.size();
            self.protect_moof(moof, mdat)?;
            growth.push(moof.size() - old);
            i += 2;
        }
        // sidx: each reference covers one moof+mdat (as FFmpeg and most
        // packagers write it).
        if let Some(sidx) = top.iter_mut().find(|n| &n.kind == b"sidx") {
            fix_sidx(sidx, &growth)?;
        }
        Ok(write_all(&top))
    }

    fn protect_moof(&mut self, moof: &mut Node, mdat: &mut Node) -> Result<(), Error> {
        // Offsets inside the fragment: moof starts at 0, mdat's body at
        // moof.size() + 8.
        let moof_size = moof.size();
        let mdat_body_at = moof_size + 8;
        // Per protected traf: its index, and its new saiz and senc.
        let mut sencs: Vec<(usize, Node, Node)> = Vec::new();
        for (ti, traf) in moof.children.iter().enumerate() {
            if &traf.kind != b"traf" {
                continue;
            }
            let tfhd = traf
                .child(b"tfhd")
                .ok_or_else(|| malformed("traf without tfhd"))?;
            let flags = u32_at(&tfhd.prefix, 0)? & 0x00ff_ffff;
            if u32_at(&tfhd.prefix, 4)? != self.p.track_id {
                continue;
            }
            if flags & 0x1 != 0 {
                return Err(Error::Unsupported("tfhd with a base data offset".into()));
            }
            let mut at = 8;
            if flags & 0x2 != 0 {
                at += 4;
            }
            if flags & 0x8 != 0 {
                at += 4;
            }
            let default_size = if flags & 0x10 != 0 {
                Some(u32_at(&tfhd.prefix, at)?)
            } else {
                None
            };
            let mut runs = Vec::new();
            for c in &traf.children {
                if &c.kind == b"trun" {
                    let (_, data_offset, sizes) = parse_trun(&c.prefix, default_size)?;
                    runs.push(Run { data_offset, sizes });
                }
            }
            // Encrypt each sample in mdat; collect senc entries.
            let mut entries = Vec::new();
            let mut info_sizes = Vec::new();
            let mut count = 0u32;
            for r in &runs {
                let mut at = usize::try_from(r.data_offset)
                    .ok()
                    .and_then(|o| o.checked_sub(mdat_body_at))
                    .ok_or_else(|| Error::Unsupported("trun data outside its mdat".into()))?;
                for &size in &r.sizes {
                    let size = size as usize;
                    let sample = mdat
                        .prefix
                        .get_mut(at..at + size)
                        .ok_or_else(|| malformed("sample past the end of mdat"))?;
                    let subs = (self.subsamples)(sample).map_err(malformed)?;
                    let mut iv = [0u8; 16];
                    if self.p.scheme == Scheme::Cenc {
                        iv[..8].copy_from_slice(&self.next_iv.to_be_bytes());
                    } else {
                        iv = self.p.iv;
                    }
                    cenc::encrypt_sample(self.p.scheme, &self.p.key, &iv, sample, &subs)?;
                    let mut e = Vec::new();
                    e.extend_from_slice(&iv[..self.p.iv_size()]);
                    if self.p.scheme == Scheme::Cenc {
                        self.next_iv = self.next_iv.wrapping_add(1);
                    }
                    if !subs.is_empty() {
                        e.extend_from_slice(&(subs.len() as u16).to_be_bytes());
                        for s in &subs {
                            e.extend_from_slice(&s.clear.to_be_bytes());
                            e.extend_from_slice(&s.protected.to_be_bytes());
                        }
                    }
                    // saiz has one byte per sample for its aux info: an IV
                    // and about 40 subsamples. Leaving slices in the clear
                    // to fit would be a silent weakening; refuse instead.
                    let info_size = u8::try_from(e.len()).map_err(|_| {
                        Error::Unsupported(format!(
                            "a picture in {} subsamples (about one per slice) \
                             needs {} bytes of encryption info, past the 255 that \
                             CENC's saiz box can describe (about 40 slices per picture)",
                            subs.len(),
                            e.len()
                        ))
                    })?;
                    info_sizes.push(info_size);
                    entries.extend_from_slice(&e);
                    count += 1;
                    at += size;
                }
            }
            let uses_subsamples = entries.len() > count as usize * self.p.iv_size();
            let mut senc_body = Vec::new();
            senc_body.extend_from_slice(&count.to_be_bytes());
            senc_body.extend_from_slice(&entries);
            let senc = Node::leaf(
                b"senc",
                full_box(0, if uses_subsamples { 0x2 } else { 0 }, &senc_body),
            );
            let mut saiz_body = Vec::new();
            let uniform = info_sizes.windows(2).all(|w| w[0] == w[1]);
            if uniform {
                saiz_body.push(info_sizes.first().copied().unwrap_or(0));
                saiz_body.extend_from_slice(&count.to_be_bytes());
            } else {
                saiz_body.push(0);
                saiz_body.extend_from_slice(&count.to_be_bytes());
                saiz_body.extend_from_slice(&info_sizes);
            }
            let saiz = Node::leaf(b"saiz", full_box(0, 0, &saiz_body));
            sencs.push((ti, saiz, senc));
        }
        if sencs.is_empty() {
            return Ok(());
        }
        // Insert saiz, saio (offset filled below), senc at each traf's end.
        for (ti, saiz, senc) in sencs {
            let traf = &mut moof.children[ti];
            traf.children.push(saiz);
            let mut saio_body = Vec::new();
            saio_body.extend_from_slice(&1u32.to_be_bytes());
            saio_body.extend_from_slice(&0u32.to_be_bytes());
            traf.children
                .push(Node::leaf(b"saio", full_box(0, 0, &saio_body)));
            traf.children.push(senc);
        }
        // The mdat moved by the moof's growth: every trun's data offset too.
        let delta = (moof.size() - moof_size) as i64;
        for traf in moof.children.iter_mut().filter(|c| &c.kind == b"traf") {
            for trun in traf.children.iter_mut().filter(|c| &c.kind == b"trun") {
                let default_size = Some(0);
                let (field, offset, _) = parse_trun(&trun.prefix, default_size)?;
                if let Some(f) = field {
                    let v = i32::try_from(offset + delta)
                        .map_err(|_| Error::Unsupported("data offset overflow".into()))?;
                    trun.prefix[f..f + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        // saio: where the senc's first sample info sits, from moof's start.
        let mut at = 8usize;
        for traf in moof.children.iter_mut() {
            if &traf.kind != b"traf" {
                at += traf.size();
                continue;
            }
            let mut inner = at + 8;
            let mut senc_info = None;
            for c in &traf.children {
                if &c.kind == b"senc" {
                    // Header 8, full box 4, sample_count 4.
                    senc_info = Some(inner + 8 + 4 + 4);
                }
                inner += c.size();
            }
            if let (Some(off), Some(saio)) = (senc_info, traf.child_mut(b"saio")) {
                let v = u32::try_from(off).map_err(|_| malformed("moof too large"))?;
                let n = saio.prefix.len();
                saio.prefix[n - 4..].copy_from_slice(&v.to_be_bytes());
            }
            at += traf.size();
        }
        Ok(())
    }
}

fn fix_sidx(sidx: &mut Node, growth: &[usize]) -> Result<(), Error> {
    let b = &mut sidx.prefix;
    let version = *b.first().ok_or_else(|| malformed("empty sidx"))?;
    // version/flags 4, reference_ID 4, timescale 4, then times (4+4 or
    // 8+8), reserved 2, reference_count 2.
    let at = 12 + if version == 0 { 8 } else { 16 };
    let count = b
        .get(at + 2..at + 4)
        .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
        .ok_or_else(|| malformed("sidx cut short"))?;
    if count != growth.len() {
        return Err(Error::Unsupported(format!(
            "sidx with {count} references for {} fragments",
            growth.len()
        )));
    }
    for (i, g) in growth.iter().enumerate() {
        let f = at + 4 + i * 12;
        let word = u32_at(b, f)?;
        let size = (word & 0x7fff_ffff) as usize + g;
        let size = u32::try_from(size)
            .ok()
            .filter(|s| *s <= 0x7fff_ffff)
            .ok_or_else(|| malformed("sidx size overflow"))?;
        b[f..f + 4].copy_from_slice(&((word & 0x8000_0000) | size).to_be_bytes());
    }
    Ok(())
}

/// The subsample map of an H.264 sample (AVCC, NAL units prefixed by
/// `length_size` bytes): in each slice NAL unit the length, the NAL header
/// and the slice header stay clear and the rest, in whole 16-byte blocks,
/// is protected (the odd bytes before it join the clear part); every other
/// NAL unit stays clear. Parameter sets found in band are taken in.
pub fn h264_subsamples(
    params: &mut super::h264::ParamSets,
    length_size: usize,
    sample: &[u8],
) -> Result<Vec<Subsample>, String> {
    let mut out = Vec::new();
    let mut clear = 0usize;
    let mut end = 0usize;
    for unit in super::h264::nal_units(sample, length_size) {
        let unit = unit.map_err(|e| e.to_string())?;
        let nal = &sample[unit.range()];
        end = unit.offset + unit.len;
        match super::h264::nal_unit_type(nal) {
            Some(1 | 5) => {
                let header = params.slice_header_len(nal).map_err(|e| e.to_string())?;
                let rest = unit.len.saturating_sub(header);
                let protected = rest / cenc::BLOCK * cenc::BLOCK;
                clear += length_size + unit.len - protected;
                if protected > 0 {
                    cenc::push_subsample(&mut out, clear, protected);
                    clear = 0;
                }
            }
            Some(7 | 8) => {
                params.add_nal(nal).map_err(|e| e.to_string())?;
                clear += length_size + unit.len;
            }
            _ => clear += length_size + unit.len,
        }
    }
    // Bytes after the last whole NAL unit (none in a valid sample) and the
    // trailing clear NAL units close the map.
    clear += sample.len() - end;
    if clear > 0 || out.is_empty() {
        cenc::push_subsample(&mut out, clear, 0);
    }
    Ok(out)
}
