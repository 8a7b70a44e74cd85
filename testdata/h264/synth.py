#!/usr/bin/env python3
"""Writes synth.h264: hand-built parameter sets and slice headers for the
syntax x264 never writes (PAFF fields, picture order count type 1, SPS
scaling lists, separate colour planes, FMO slice groups, SP/SI slices,
redundant_pic_cnt, long-term references and every MMCO, emulation
prevention inside and right after a slice header). The slice data after each
header is filler: the file is for header parsers (FFmpeg's trace_headers is
the reference, see expected.py), not for decoding.
"""


class W:
    def __init__(self):
        self.b = []

    def u(self, n, v):
        self.b += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def f(self, v):
        self.u(1, int(v))

    def ue(self, v):
        v += 1
        n = v.bit_length()
        self.u(n - 1, 0)
        self.u(n, v)

    def se(self, v):
        self.ue(2 * v - 1 if v > 0 else -2 * v)


def nal(ref_idc, typ, w, data=None):
    """NAL unit: header, w's bits, then filler slice data or trailing bits."""
    bits = [0] + [(ref_idc >> 1) & 1, ref_idc & 1] + [(typ >> i) & 1 for i in (4, 3, 2, 1, 0)] + w.b
    if data is not None:  # slice: align with ones (cabac_alignment_one_bit too), then data
        while len(bits) % 8:
            bits.append(1)
        raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)) + data
    else:
        bits.append(1)
        while len(bits) % 8:
            bits.append(0)
        raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
    out = bytearray()
    zeros = 0
    for b in raw:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return b"\x00\x00\x00\x01" + bytes(out)


FILLER = b"\xa5\x5a\x80"


def scaling_list(w, deltas):
    for d in deltas:
        w.se(d)


def sps(sid, profile, *, chroma=1, sep=False, lists=None, log2_fn=4, poc=0, log2_poc=4,
        poc1=None, frame_mbs_only=True, mbaff=False, w_mbs=4, h_units=3, crop=None):
    w = W()
    w.u(8, profile)
    w.u(8, 0)
    w.u(8, 40)
    w.ue(sid)
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        w.ue(chroma)
        if chroma == 3:
            w.f(sep)
        w.ue(2)  # bit_depth_luma_minus8
        w.ue(2)
        w.f(0)
        w.f(lists is not None)
        if lists is not None:
            for deltas in lists:
                w.f(deltas is not None)
                if deltas is not None:
                    scaling_list(w, deltas)
    w.ue(log2_fn - 4)
    w.ue(poc)
    if poc == 0:
        w.ue(log2_poc - 4)
    elif poc == 1:
        always_zero, offsets = poc1
        w.f(always_zero)
        w.se(-3)
        w.se(5)
        w.ue(len(offsets))
        for o in offsets:
            w.se(o)
    w.ue(4)  # max_num_ref_frames
    w.f(1)  # gaps_in_frame_num_value_allowed_flag
    w.ue(w_mbs - 1)
    w.ue(h_units - 1)
    w.f(frame_mbs_only)
    if not frame_mbs_only:
        w.f(mbaff)
    w.f(1)
    w.f(crop is not None)
    if crop:
        for c in crop:
            w.ue(c)
    w.f(0)  # vui_parameters_present_flag
    return nal(3, 7, w)


def pps(pid, sid, *, cabac=False, bottom=False, groups=None, refs=(1, 1), wp=False, wb=0,
        deblock=True, redundant=False):
    w = W()
    w.ue(pid)
    w.ue(sid)
    w.f(cabac)
    w.f(bottom)
    if groups is None:
        w.ue(0)
    else:
        n, mtype, params = groups
        w.ue(n - 1)
        w.ue(mtype)
        if mtype == 0:
            for r in params:
                w.ue(r)
        elif mtype == 2:
            for tl, br in params:
                w.ue(tl)
                w.ue(br)
        elif mtype in (3, 4, 5):
            w.f(1)
            w.ue(params - 1)
        elif mtype == 6:
            bits = (n - 1).bit_length()
            w.ue(len(params) - 1)
            for g in params:
                w.u(bits, g)
    w.ue(refs[0] - 1)
    w.ue(refs[1] - 1)
    w.f(wp)
    w.u(2, wb)
    w.se(-4)
    w.se(3)
    w.se(-2)
    w.f(deblock)
    w.f(0)
    w.f(redundant)
    return nal(3, 8, w)


def mods(w, ops):
    w.f(bool(ops))
    if ops:
        for idc, v in ops:
            w.ue(idc)
            w.ue(v)
        w.ue(3)


def weights(w, n, chroma, seed):
    for i in range(n):
        lw = (i + seed) % 2 == 0
        w.f(lw)
        if lw:
            w.se(-3 + i)
            w.se(7 - i)
        if chroma:
            cw = (i + seed) % 3 == 0
            w.f(cw)
            if cw:
                for j in range(2):
                    w.se(i - j)
                    w.se(-i)


out = []
# --- A: PAFF (frame_mbs_only = 0, no MBAFF), POC type 1, SPS scaling lists.
out.append(sps(0, 100, lists=[[3, -2, 0, 5] + [1] * 12, None, [-8], None, [0] * 16, None,
                              [1] * 64, [-8]],
               log2_fn=8, poc=1, poc1=(False, [2, -1, 4]), frame_mbs_only=False))
out.append(pps(0, 0, bottom=True, refs=(2, 1), wp=True, wb=1, redundant=True))
# IDR frame (field_pic_flag 0): delta_pic_order_cnt[0] and [1], redundant_pic_cnt.
w = W(); w.ue(0); w.ue(7); w.ue(0); w.u(8, 0); w.f(0); w.ue(3); w.se(-5); w.se(6); w.ue(1)
w.f(0); w.f(1); w.se(-3); w.ue(0); w.se(2); w.se(-1)
out.append(nal(3, 5, w, FILLER))
# P bottom field, 20 refs (over 15: fields only), all modification kinds, weights, every MMCO.
w = W(); w.ue(0); w.ue(0); w.ue(0); w.u(8, 1); w.f(1); w.f(1); w.se(-1); w.ue(0)
w.f(1); w.ue(19); mods(w, [(0, 2), (1, 0), (2, 1), (0, 30)])
w.ue(5); w.ue(3); weights(w, 20, True, 0)
w.f(1)
for op, args in [(1, [4]), (2, [1]), (3, [2, 0]), (6, [0]), (4, [2]), (5, [])]:
    w.ue(op)
    for a in args:
        w.ue(a)
w.ue(0)
w.se(4); w.ue(1)
out.append(nal(2, 1, w, FILLER))
# Non-reference B frame: both lists overridden, modified and weighted.
w = W(); w.ue(0); w.ue(1); w.ue(0); w.u(8, 2); w.f(0); w.se(2); w.se(-2); w.ue(0); w.f(0)
w.f(1); w.ue(1); w.ue(2); mods(w, [(1, 3)]); mods(w, [(0, 0), (0, 1)])
w.ue(0); w.ue(7); weights(w, 2, True, 1); weights(w, 3, True, 2)
w.se(-7); w.ue(2); w.se(-6); w.se(6)
out.append(nal(0, 1, w, FILLER))
# I top field of a reference picture, no MMCO.
w = W(); w.ue(0); w.ue(2); w.ue(0); w.u(8, 3); w.f(1); w.f(0); w.se(1); w.ue(0)
w.f(0); w.se(0); w.ue(0); w.se(0); w.se(0)
out.append(nal(1, 1, w, FILLER))

# --- B: 4:4:4 with separate colour planes (ChromaArrayType 0), 12 scaling lists, CABAC.
out.append(sps(5, 244, chroma=3, sep=True, lists=[[-8]] * 6 + [None, [2] * 64] + [None] * 3 + [[-8]],
               log2_fn=5, poc=0, log2_poc=6, w_mbs=3, h_units=2))
out.append(pps(9, 5, cabac=True, wp=True, refs=(3, 1), deblock=False))
for plane in range(3):
    w = W(); w.ue(0); w.ue(7); w.ue(9); w.u(2, plane); w.u(5, 0); w.ue(1); w.u(6, 0)
    w.f(0); w.f(0); w.se(-1)
    out.append(nal(3, 5, w, FILLER))
for plane in range(3):
    w = W(); w.ue(0); w.ue(5); w.ue(9); w.u(2, plane); w.u(5, 1); w.u(6, 2)
    w.f(0); w.f(0); w.ue(2); weights(w, 3, False, plane)
    w.f(0); w.ue(2); w.se(3)
    out.append(nal(2, 1, w, FILLER))

# --- C: Extended profile: FMO map types 0 to 6, SP and SI slices, cropping.
out.append(sps(1, 88, poc=2, w_mbs=4, h_units=3, crop=(1, 2, 0, 1)))
out.append(pps(1, 1, groups=(4, 4, 3)))
out.append(pps(2, 1, groups=(3, 6, [0, 1, 2, 2, 1, 0, 0, 1, 2, 0, 1, 2])))
out.append(pps(3, 1, groups=(3, 0, [3, 2, 1])))
out.append(pps(4, 1, groups=(3, 2, [(0, 5), (6, 11)])))
out.append(pps(5, 1, groups=(2, 3, 1), redundant=True))
out.append(pps(6, 1, groups=(2, 5, 12), deblock=False))
out.append(pps(7, 1, groups=(8, 1, None), refs=(4, 4)))
# SP slice (PPS 1: 3 bits of slice_group_change_cycle).
w = W(); w.ue(0); w.ue(3); w.ue(1); w.u(4, 1); w.f(0); mods(w, [])
w.f(0); w.se(1); w.f(1); w.se(-2); w.ue(0); w.se(0); w.se(0); w.u(3, 3)
out.append(nal(2, 1, w, FILLER))
# SI slice (PPS 5: 4 bits of cycle, redundant_pic_cnt).
w = W(); w.ue(3); w.ue(9); w.ue(5); w.u(4, 2); w.ue(1); w.f(0); w.se(0); w.se(3); w.ue(1); w.u(4, 11)
out.append(nal(1, 1, w, FILLER))
# P slice on PPS 2 (map type 6: no cycle), IDR on PPS 3, 4, 6 (1 bit), 7.
w = W(); w.ue(4); w.ue(5); w.ue(2); w.u(4, 3); w.f(0); mods(w, [(2, 0)]); w.f(0); w.se(0); w.ue(0); w.se(1); w.se(1)
out.append(nal(2, 1, w, FILLER))
for p, extra in [(3, None), (4, None), (6, 1), (7, None)]:
    w = W(); w.ue(0); w.ue(2); w.ue(p); w.u(4, 0); w.ue(p); w.f(1); w.f(0); w.se(-4)
    if p != 6:
        w.ue(0); w.se(-1); w.se(1)
    if extra is not None:
        w.u(1, extra)
    out.append(nal(3, 5, w, FILLER))

# --- D: emulation prevention. 16-bit frame_num and POC LSB of 0 put three
# zero bytes inside the header (an 0x03 is inserted); then a header whose last
# two bytes are zero, so an 0x03 follows it (not counted).
out.append(sps(2, 77, log2_fn=16, poc=0, log2_poc=16, w_mbs=1000, h_units=8))
out.append(pps(8, 2, groups=None, deblock=False))
out.append(pps(10, 2, groups=(2, 3, 1), deblock=False))
w = W(); w.ue(0); w.ue(5); w.ue(8); w.u(16, 0); w.u(16, 0); w.f(0); w.f(0); w.se(1)
out.append(nal(2, 1, w, FILLER))
for first_mb in range(8):
    # 8000 map units, rate 1: a 13-bit cycle, all zero, after slice_qp_delta
    # 4 (0001000): 16 zero bits, byte aligned for one of these first_mb.
    w = W(); w.ue(first_mb); w.ue(7); w.ue(10); w.u(16, 1); w.ue(0); w.u(16, 0); w.f(0); w.f(0)
    w.se(4); w.u(13, 0)
    out.append(nal(3, 5, w, b"\x01" + FILLER))

open("synth.h264", "wb").write(b"".join(out))
