#!/bin/sh
# Regenerates the x264 test streams in this folder (FFmpeg 5.1 with libx264
# 0.164, Debian 12). See README.md for what each one covers.
set -eu
cd "$(dirname "$0")"
enc() { # enc OUT SIZE FRAMES [ffmpeg output options...]
    out=$1 size=$2 frames=$3; shift 3
    ffmpeg -nostdin -v error -f lavfi -i "testsrc2=size=$size:rate=25" \
        -frames:v "$frames" -c:v libx264 -crf 30 "$@" -y "$out"
}
enc baseline.h264           64x48 8 -profile:v baseline -g 4
enc main-cabac-b.h264       64x48 10 -profile:v main -bf 2 -g 10 -x264-params aud=1
enc main-cavlc-b-nodeblock.h264 64x48 10 -profile:v main -coder 0 -bf 2 -x264-params no-deblock=1
enc high-cqm-jvt.h264       64x48 6 -profile:v high -bf 1 -x264-params cqm=jvt:8x8dct=1
enc high-cqm-custom.h264    64x48 6 -profile:v high -bf 1 \
    -x264-params "cqm4iy=6,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26:cqm8p=$(seq -s, 8 71)"
enc weighted.h264           64x48 10 -vf fade=in:0:10 -bf 3 -x264-params weightp=2:weightb=1:ref=3
enc slices4.h264            128x96 5 -bf 2 -x264-params slices=4:deblock=-3,2
enc interlaced-mbaff.h264   64x64 8 -bf 2 -x264-params interlaced=1:ref=3
enc refs-pyramid.h264       64x48 12 -bf 3 -x264-params ref=4:b-pyramid=normal:b-adapt=0:weightp=1
enc odd-size-crop.h264      66x50 5 -profile:v high
enc high444-cqm-odd.h264    66x50 5 -vf format=yuv444p,crop=65:49 -bf 2 -x264-params cqm=jvt
enc high444-lossless.h264   64x48 4 -pix_fmt yuv444p -crf 0
enc high422-10bit-weighted.h264 64x48 8 -pix_fmt yuv422p10le -vf fade=in:0:8 -bf 2 -x264-params weightp=2
enc gray-weighted.h264      64x48 8 -pix_fmt gray -vf fade=in:0:8 -bf 2 -x264-params weightp=2

# The avcC record FFmpeg's MP4 muxer writes for one of them (the body of the
# avcC box: AVCDecoderConfigurationRecord).
tmp=$(mktemp --suffix=.mp4)
ffmpeg -nostdin -v error -f h264 -i high422-10bit-weighted.h264 -c copy -y "$tmp"
python3 -c '
import sys
d = open(sys.argv[1], "rb").read()
i = d.index(b"avcC")
size = int.from_bytes(d[i - 4:i], "big")
open(sys.argv[2], "wb").write(d[i + 4:i - 4 + size])
' "$tmp" high422-10bit-weighted.avcC
rm -f "$tmp"

# Hand-built headers for what x264 never writes.
python3 synth.py
