#!/usr/bin/python3
"""A small GStreamer RTSP server (gst-rtsp-server through PyGObject), the
peer that camflow's end-to-end RTSP tests pull video from.

Run it with Debian's interpreter, /usr/bin/python3: the `python3` on PATH
may be a build without the `gi` module. Debian packages:
gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,ugly,bad}.

    /usr/bin/python3 tests/rtsp_server.py [--port N] [--codec mjpeg|h264|h265]
        [--width W] [--height H] [--fps F] [--audio | --no-audio]
        [--user U --password P [--auth basic|digest]] [--frames N]
    /usr/bin/python3 tests/rtsp_server.py --input FILE [--port N]
        [--codec mjpeg|h264|h265] [--user U --password P [--auth basic|digest]]

What it serves
--------------
* One mount, `/stream`, at rtsp://127.0.0.1:PORT/stream (loopback only).
* Track 0, video, `videotestsrc is-live=true pattern=smpte` (SMPTE colour
  bars), W x H (default 320x240) at F fps (default 25):
    - mjpeg: RTP/JPEG, payload type 26 (jpegenc ! rtpjpegpay);
    - h264:  payload type 96, x264enc tune=zerolatency with a key frame
      every F frames (one per second), SPS/PPS repeated in band before
      every key frame (rtph264pay config-interval=1) and also in the SDP.
* Track 1, audio (unless --no-audio): a 440 Hz sine as G.711 mu-law
  (PCMU), 8 kHz mono, on its static payload type 0.
* Both transports that clients ask for: RTP over the RTSP TCP connection
  (interleaved) and RTP over UDP (unicast).
* With --user/--password the mount needs credentials (Basic by default, or
  Digest with --auth digest); anonymous requests get 401.
* The media is shared: every client sees the same pipeline, joining it
  where it is (an H.264 client that joins a running stream waits up to one
  second for the next key frame). When the last client leaves, the pipeline
  is torn down and the next client gets a fresh one, starting with a key
  frame (so connect, disconnect, reconnect works, also after a client was
  killed without TEARDOWN).
* The media is not seekable: a client's `PLAY` with `Range: npt=0.000-`
  (ffmpeg sends one) gets `Range: npt=now-` and does not disturb the others.
* --frames N: the video source stops after N frames (and the audio after
  the same duration); clients then get RTCP BYE on every track, which
  ffmpeg treats as end of stream. Over TCP ffmpeg sees all N frames; over
  UDP it may see N-1 (the BYE can overtake the last RTP packets). Once
  every client has left, the next client gets a fresh N frames.

--input FILE: a pre-encoded file, as fast as the client reads
------------------------------------------------------------------
For benchmarks (scripts/bench): instead of the test pattern, serve the
video track of FILE (any container GStreamer's parsebin takes apart:
Matroska, MP4, ...) as it is, without re-encoding, and without pacing it
at its frame rate: over TCP a client gets the frames as fast as it reads
them (the server's TCP send blocks when the client falls behind, so
nothing is dropped). Over UDP, which has no flow control, the packets keep
the file's pace (real time).
* The codec is read from the file (H.264 or MJPEG; anything else: exit
  status 2); --codec, if given, must match it. No audio track (--audio is
  refused); --width, --height, --fps and --frames are refused too (the
  file says what they are).
* MJPEG files must suit RTP/JPEG (RFC 2435 carries no Huffman tables, and
  only 4:2:0 and 4:2:2): standard Huffman tables (ffmpeg's mjpeg encoder:
  `-huffman default`), `-pix_fmt yuvj420p`, sizes in multiples of 8 up to
  2040 (checked here). H.264: no B-frames, like a camera (`-bf 0`);
  rtph264pay repeats SPS/PPS before every IDR picture (config-interval=-1),
  and they are in the SDP too.
* The media is not shared: every client gets its own pipeline, starting at
  the file's first frame, torn down when that client leaves; so one server
  serves any number of runs in a row (or at once). The media is seekable;
  a PLAY with `Range: npt=0.000-` (ffmpeg sends one) seeks to the start,
  where the new pipeline already is.
* At the end of the file the clients get RTCP BYE, as with --frames.
* How the pacing is switched off: gst-rtsp-server sends TCP-interleaved RTP
  through an appsink that syncs on the pipeline clock (its "rate control",
  the ONVIF `Rate-Control: yes` default). GstRTSPMedia.set_rate_control()
  is not enough: every PLAY sets rate control on again (setup_play_mode()
  in rtsp-client.c, through the adjust_play_mode hook) just before the
  pipeline goes to PLAYING. So every appsink of the media's pipeline gets
  sync=false when it is added, and again whenever something sets it back
  (a notify::sync handler, which runs in the thread that set it, before
  PLAYING). The UDP sinks (multiudpsink) are left alone.

What the picture looks like (pattern=smpte)
-------------------------------------------
Measured by decoding with ffmpeg to bgr24, at 320x240 and 640x480, for both
codecs (values within +-3 of these). The top two thirds (rows 0 .. 2H/3-1)
hold seven bars of equal width, 100% saturated, left to right: white,
yellow, cyan, green, magenta, red, blue. At the middle of each bar,
x = (2i+1)W/14, of the top row, in B, G, R order:

    bar  colour    B    G    R
     0   white    255  255  255
     1   yellow     0  255  255
     2   cyan     255  255    0
     3   green      0  255    0
     4   magenta  255    0  255
     5   red        0    0  255
     6   blue     255    0    0

so a decoder that swaps R and B shows yellow (bar 1) as (255, 255, 0) and
red (bar 5) as (255, 0, 0). Stay a few pixels away from bar edges
(x = iW/7): chroma is subsampled, so edges blend. The bars never change from
frame to frame. Below them: a strip of reversed bars (rows 2H/3 .. 3H/4-1),
then the PLUGE area; its bottom-right quarter (x >= 3W/4, y >= 3H/4) is
random noise that changes every frame.

Protocol with the test harness
------------------------------
* Exactly one line goes to stdout, `PORT <n>`, flushed, once the server is
  attached and its socket is listening (about 0.05 s after start here).
  Everything else goes to stderr. Bad arguments: exit status 2; a port that
  cannot be bound: exit status 1; in both cases no `PORT` line.
* --port 0 (the default) lets the kernel pick a free port; the line tells
  which one. To restart on the same port, pass it back with --port.
* SIGTERM or SIGINT: leaves the main loop and exits with status 0, within
  a few tens of milliseconds even with clients streaming; clients see the
  connection close. The listening socket is bound with SO_REUSEADDR
  (gst-rtsp-server passes allow_reuse to g_socket_bind), so a new server
  binds the same port right after this one is killed (SIGTERM or SIGKILL),
  even while the old connections sit in FIN-WAIT-2 or TIME-WAIT. The RTP/RTCP
  UDP ports are picked afresh by each server, so they never collide with a
  dying predecessor's.

Pitfalls (found while writing this)
-----------------------------------
* MJPEG: the raw caps must name `format=I420` before jpegenc; without it the
  pipeline cannot negotiate, the mount never answers DESCRIBE, and the
  whole server stalls.
* MJPEG colour range: jpegenc writes limited-range I420 as is into a JPEG,
  which decoders read as full range (white 235, black 16). Hence the RGB ->
  full-range I420 conversion in the MJPEG pipeline below.
* RTP/JPEG (RFC 2435) carries width and height in 8-pixel units in one
  byte each: MJPEG sizes must be multiples of 8 and at most 2040 (a 330x250
  stream arrives as 336x256), so other sizes are refused here.
* A seekable shared media restarts for everybody whenever a new client
  PLAYs with a Range header (gst-rtsp-server does a flushing seek to 0, and
  every connected client sees its timestamps jump back to 0). videotestsrc
  is seekable, so the media is made non-seekable (see main()).
* The session pool is only cleaned (timed-out UDP sessions removed) when
  someone calls cleanup(); a timer below does it every 2 s.
"""

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtsp, GstRtspServer  # noqa: E402

MOUNT = "/stream"
ADDRESS = "127.0.0.1"
# The role that credentials map to; the mount grants it access.
ROLE = "user"
AUDIO_RATE = 8000
AUDIO_SAMPLES_PER_BUFFER = 160  # 20 ms of 8 kHz audio per RTP packet


def log(msg):
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="GStreamer RTSP test server (mount /stream)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    # The defaults of --codec, --width, --height, --fps and --audio are
    # filled in below (they depend on --input).
    p.add_argument("--codec", choices=["mjpeg", "h264", "h265"], default=None,
                   help="default mjpeg; with --input, read from the file")
    p.add_argument("--width", type=int, default=None, help="default 320")
    p.add_argument("--height", type=int, default=None, help="default 240")
    p.add_argument("--fps", type=int, default=None, help="default 25")
    p.add_argument("--audio", dest="audio", action="store_true", default=None,
                   help="add a PCMU audio track (default, except with --input)")
    p.add_argument("--no-audio", dest="audio", action="store_false")
    p.add_argument("--user", help="require credentials: user name")
    p.add_argument("--password", help="require credentials: password")
    p.add_argument("--auth", choices=["basic", "digest"], default="basic",
                   help="authentication scheme when --user is given (default basic)")
    p.add_argument("--frames", type=int, default=None,
                   help="end the stream (EOS, RTCP BYE) after N video frames")
    p.add_argument("--bframes", type=int, default=0, metavar="N",
                   help="h264: N B-frames between reference pictures (default 0)")
    p.add_argument("--input", metavar="FILE",
                   help="serve this file's H.264 or MJPEG video as is, as fast as "
                        "TCP clients read it, instead of the test pattern")
    a = p.parse_args(argv)
    if (a.user is None) != (a.password is None):
        p.error("--user and --password go together")
    if a.input is not None:
        for name in ("width", "height", "fps"):
            if getattr(a, name) is not None:
                p.error(f"--{name} does not go with --input (the file says)")
        if a.frames is not None:
            p.error("--frames does not go with --input (the stream ends with the file)")
        if a.audio:
            p.error("--audio does not go with --input (video only)")
        a.audio = False
        probe_input(p, a)
    if a.codec is None:
        a.codec = "mjpeg"
    if a.width is None:
        a.width = 320
    if a.height is None:
        a.height = 240
    if a.fps is None:
        a.fps = 25
    if a.audio is None:
        a.audio = True
    if a.width <= 0 or a.height <= 0 or a.fps <= 0:
        p.error("--width, --height and --fps must be positive")
    if a.codec == "mjpeg" and (a.width > 2040 or a.height > 2040
                               or a.width % 8 or a.height % 8):
        p.error("RTP/JPEG carries sizes in 8-pixel units up to 2040: "
                "--width and --height must be multiples of 8, at most 2040")
    if a.frames is not None and a.frames <= 0:
        p.error("--frames must be positive")
    return a


def probe_input(p, a):
    """--input: the file's video codec, size and frame rate (into a), or
    p.error() (exit status 2) when it has none that this server can send."""
    Gst.init(None)
    try:
        uri = Gst.filename_to_uri(a.input)
        info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(uri)
    except GLib.Error as e:
        p.error(f"--input {a.input}: {e.message}")
    videos = info.get_video_streams()
    if not videos:
        p.error(f"--input {a.input}: no video track")
    v = videos[0]
    kind = v.get_caps().get_structure(0).get_name()
    codec = {"video/x-h264": "h264", "image/jpeg": "mjpeg"}.get(kind)
    if codec is None:
        p.error(f"--input {a.input}: {kind} is neither H.264 nor MJPEG")
    if a.codec is not None and a.codec != codec:
        p.error(f"--input {a.input} is {codec}, not {a.codec}")
    a.codec = codec
    a.input = os.path.abspath(a.input)
    a.input_width, a.input_height = v.get_width(), v.get_height()
    num, den = v.get_framerate_num(), v.get_framerate_denom()
    a.input_fps = f"{num / den:g}" if num and den else "?"
    if codec == "mjpeg" and (a.input_width > 2040 or a.input_height > 2040
                             or a.input_width % 8 or a.input_height % 8):
        p.error(f"--input {a.input}: {a.input_width}x{a.input_height}: RTP/JPEG "
                "carries sizes in 8-pixel units up to 2040")


def input_launch_line(a):
    """--input: the file's video track as is (parsebin demuxes and parses)."""
    location = a.input.replace("\\", "\\\\").replace('"', '\\"')
    if a.codec == "mjpeg":
        pay = "rtpjpegpay name=pay0 pt=26"
    else:
        pay = "rtph264pay name=pay0 pt=96 config-interval=-1"
    return f'( filesrc location="{location}" ! parsebin ! {pay} )'


def unpace(pipeline):
    """--input: TCP clients get RTP as fast as they read it (see the doc
    comment): every appsink in the media's pipeline (RTP and RTCP over TCP)
    gets sync=false now and whenever it is set back to true."""
    def keep_unsynced(sink, _pspec):
        if sink.get_property("sync"):
            sink.set_property("sync", False)

    def on_added(_bin, _sub, element):
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "appsink":
            element.set_property("sync", False)
            element.connect("notify::sync", keep_unsynced)

    pipeline.connect("deep-element-added", on_added)


def launch_line(a):
    """The gst-launch description of the media: pay0 (video), pay1 (audio)."""
    if a.input is not None:
        return input_launch_line(a)
    num_buffers = f" num-buffers={a.frames}" if a.frames else ""
    video = f"videotestsrc is-live=true pattern=smpte{num_buffers} "
    raw = f"width={a.width},height={a.height},framerate={a.fps}/1,pixel-aspect-ratio=1/1"
    if a.codec == "mjpeg":
        # JPEG (JFIF) is full-range YCbCr, but jpegenc copies its input
        # as is and videotestsrc paints I420 in limited range (Y 16..235):
        # decoders would then see white as 235 and black as 16. So paint RGB
        # and let videoconvert make full-range I420 (colorimetry range 1 =
        # 0..255, matrix 4 = BT.601). format=I420 must be named in these caps
        # (see the pitfalls above).
        video += (
            f"! video/x-raw,format=RGB,{raw} ! videoconvert "
            "! video/x-raw,format=I420,colorimetry=1:4:0:0 "
            "! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26"
        )
    elif a.codec == "h265":
        # x265 (Main profile), parameter sets in band with every keyframe as
        # well as in the SDP, as cameras send them.
        video += (
            f"! video/x-raw,format=I420,{raw} "
            f"! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
            "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1"
        )
    else:
        # Limited-range I420, which H.264 signals as such: decoders expand it.
        if a.bframes:
            # Main profile with B-frames (pictures sent out of order), as
            # some cameras do; zerolatency would turn them off.
            enc = (f"! x264enc speed-preset=ultrafast bframes={a.bframes} b-adapt=false "
                   f"key-int-max={a.fps} ! video/x-h264,profile=main ")
        else:
            enc = (f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
                   "! video/x-h264,profile=constrained-baseline ")
        video += (
            f"! video/x-raw,format=I420,{raw} "
            + enc
            + "! rtph264pay name=pay0 pt=96 config-interval=1"
        )
    parts = [video]
    if a.audio:
        audio_buffers = ""
        if a.frames:
            # The same duration as the video, so both tracks end together.
            samples = a.frames * AUDIO_RATE / a.fps
            n = max(1, -(-int(samples) // AUDIO_SAMPLES_PER_BUFFER))
            audio_buffers = f" num-buffers={n}"
        parts.append(
            f"audiotestsrc is-live=true wave=sine freq=440 volume=0.3 "
            f"samplesperbuffer={AUDIO_SAMPLES_PER_BUFFER}{audio_buffers} "
            f"! audio/x-raw,rate={AUDIO_RATE},channels=1 "
            "! mulawenc ! rtppcmupay name=pay1 pt=0"
        )
    return "( " + " ".join(parts) + " )"


def make_auth(a, factory):
    """Credentials → a token carrying ROLE; the factory lets ROLE in.
    Without a default token, anonymous requests are refused with 401."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
    if a.auth == "digest":
        auth.add_digest(a.user, a.password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    auth.set_realm("camflow-test")
    # add_role() is variadic (not callable from Python): use its structure form.
    factory.add_role_from_structure(Gst.Structure.new_from_string(
        f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    ))
    return auth


def main(argv):
    a = parse_args(argv)
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(ADDRESS)
    server.set_service(str(a.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(a))
    if a.input is None:
        factory.set_shared(True)
        # Not seekable (see the pitfalls above): with this clock mode,
        # gst-rtsp-media reports the media as unseekable and ignores PLAY
        # ranges. The SDP stays the same (the pipeline runs on the system clock:
        # a=ts-refclk:local, a=mediaclk:sender).
        factory.set_publish_clock_mode(GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET)
    else:
        # One pipeline per client, from the file's start (see --input above).
        factory.set_shared(False)
    # Both TCP-interleaved and UDP unicast (the default, made explicit).
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
    if a.user is not None:
        server.set_auth(make_auth(a, factory))
    server.get_mount_points().add_factory(MOUNT, factory)

    def on_client(_server, client):
        conn = client.get_connection()
        ip = conn.get_ip() if conn else "?"
        log(f"client connected from {ip}")
        client.connect("closed", lambda _c: log(f"client from {ip} closed"))
        # Tests check that clients end their sessions properly.
        client.connect("teardown-request", lambda _c, _ctx: log(f"TEARDOWN from {ip}"))

    server.connect("client-connected", on_client)

    def on_media_configure(_factory, media):
        log("media configured (new pipeline)")
        if a.input is not None:
            # The pipeline that gst-rtsp-media adds the sinks to holds the
            # launch line's bin.
            unpace(media.get_element().get_parent())

    factory.connect("media-configure", on_media_configure)

    loop = GLib.MainLoop()

    # attach() creates, binds (SO_REUSEADDR) and listens synchronously; it
    # returns 0 when it cannot (GStreamer logs the reason at ERROR level,
    # which is off by default).
    if server.attach(None) == 0:
        log(f"cannot listen on {ADDRESS}:{a.port} (port in use?)")
        return 1
    port = server.get_bound_port()
    if port <= 0:
        log(f"cannot listen on {ADDRESS}:{a.port}")
        return 1

    # Remove sessions whose clients vanished without TEARDOWN (UDP).
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: (pool.cleanup(), True)[1])

    def on_signal(signame):
        log(f"{signame}: stopping")
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_signal, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_signal, "SIGINT")

    if a.input is not None:
        log(f"{a.input}: {a.codec} {a.input_width}x{a.input_height}@{a.input_fps}, "
            "unpaced over TCP"
            f"{f', {a.auth} auth' if a.user is not None else ''}"
            f" at rtsp://{ADDRESS}:{port}{MOUNT}")
    else:
        log(f"{a.codec} {a.width}x{a.height}@{a.fps}"
            f"{' +PCMU' if a.audio else ''}"
            f"{f' {a.auth} auth' if a.user is not None else ''}"
            f"{f' {a.frames} frames' if a.frames else ''}"
            f" at rtsp://{ADDRESS}:{port}{MOUNT}")
    print(f"PORT {port}", flush=True)

    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
