#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs from testdata/frag.mp4.

Coverage-guided fuzzing alone takes long to stumble on a valid init segment
or a fragment whose pieces fit together; these seeds start it there. Each
seed is a control byte and a split byte (see the fuzz targets) then a stream.
Run from anywhere: python3 fuzz/seeds/make_seeds.py
"""
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"


def boxes(data):
    at = 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        yield kind, data[at:at + size]
        at += size


def msg(tag, body):
    return bytes([tag]) + len(body).to_bytes(3, "big") + body


def evostream(init, fragments):
    out = msg(250, b"\xf1\x42\xc0\x1e" + init)
    for moof, mdat in fragments:
        third = len(moof) // 3
        out += msg(249, b"") + msg(252, mdat[8:])
        out += msg(251, moof[:third]) + msg(251, moof[third:2 * third]) + msg(251, moof[2 * third:])
        out += msg(254, mdat[:8]) + msg(255, b"")
    return out


def write(target, name, control, split, stream):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([control, split]) + stream)


def main():
    top = list(boxes((ROOT / "testdata" / "frag.mp4").read_bytes()))
    init = b"".join(b for k, b in top[:2])
    pairs = [(top[i][1], top[i + 1][1]) for i in range(2, len(top) - 1, 2)]
    # The smallest fragments: the 4.8 KB keyframe would dominate the seeds.
    small = sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))[:3]

    write("evostream_deframe", "stream", 0x03, 0x80, evostream(init, small))
    write("evostream_deframe", "stream-ws-messages", 0x0B, 0x40, evostream(init, small))
    frag_only = evostream(init, small)[4 + 4 + len(init):]
    write("evostream_deframe", "fragments-after-prefix", 0x07, 0x80, frag_only)

    write("bmff_split", "init", 0x03, 0x80, init)
    write("bmff_split", "fragment", 0x03, 0x80, b"".join(small[0]))
    write("bmff_split", "stream", 0x02, 0x80, init + b"".join(b"".join(p) for p in small))


main()
