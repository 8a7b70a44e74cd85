#!/usr/bin/env python3
"""Prints, as Rust, the slice header lengths FFmpeg's trace_headers reports.

For every .h264 file given, runs
    ffmpeg -v trace -i FILE -c copy -bsf:v trace_headers -f null -
and, for each slice NAL unit in file order, takes the bit position just past
the last slice_header() syntax element (trace positions count RBSP bits from
the start of the NAL unit, NAL header byte included, after emulation
prevention bytes are removed), rounds it up to whole RBSP bytes, and maps that
back to the escaped bytes as stored (the 0x03 emulation prevention bytes
before the header's last byte count). Prints one `(file, slice index, NAL
type, RBSP bits, stored bytes)` row per slice, as Rust, for the FFMPEG table
in src/proto/h264.rs.
"""
import re
import subprocess
import sys

ELEM = re.compile(r"^\[trace_headers @ [0-9a-fx]+\] (\d+)\s+(\S+)\s+([01]+) = (-?\d+)$")


def nal_units(data):
    """Annex B -> list of NAL units (trailing zero bytes dropped)."""
    starts = []
    i = 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    out = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        out.append(data[s:e].rstrip(b"\x00"))
    return out


def escaped_len(nal, rbsp_bytes):
    """Escaped byte count up to and including RBSP byte rbsp_bytes - 1."""
    zeros = 0
    seen = 0
    for i, b in enumerate(nal):
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        zeros = zeros + 1 if b == 0 else 0
        seen += 1
        if seen == rbsp_bytes:
            return i + 1
    raise ValueError("header past end of NAL")


def headers(path):
    """Yields, per slice header traced, its end bit and element names."""
    log = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "trace", "-f", "h264", "-i", path, "-c", "copy",
         "-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True, text=True, check=True).stderr
    assert "Failed to read unit" not in log, (path, "FFmpeg could not parse it")
    cur = None
    for line in log.splitlines():
        if line.endswith("] Slice Header"):
            if cur is not None:
                yield cur
            cur = []
            continue
        if cur is None:
            continue
        m = ELEM.match(line)
        if not m:
            yield cur
            cur = None
            continue
        pos, name, bits = int(m[1]), m[2], m[3]
        if cur:
            ppos, pname, pbits, _ = cur[-1]
            assert ppos + len(pbits) == pos, (path, line)
        cur.append((pos, name, bits, int(m[4])))
    if cur is not None:
        yield cur


def main():
    for path in sys.argv[1:]:
        data = open(path, "rb").read()
        slices = [n for n in nal_units(data) if n[0] & 0x1F in (1, 5)]
        traced = list(headers(path))
        assert len(traced) == len(slices), (path, len(traced), len(slices))
        name = path.rsplit("/", 1)[-1]
        for idx, (nal, elems) in enumerate(zip(slices, traced)):
            elems = [e for e in elems if e[1] != "cabac_alignment_one_bit"]
            pos, _, bits, _ = elems[-1]
            end_bit = pos + len(bits)
            n = escaped_len(nal, (end_bit + 7) // 8)
            print(f'    ("{name}", {idx}, {nal[0] & 0x1F}, {end_bit}, {n}), // {elems[-1][1]}')


main()
