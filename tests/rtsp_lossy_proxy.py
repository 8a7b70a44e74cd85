#!/usr/bin/python3
"""A TCP proxy for RTSP with interleaved RTP (RFC 2326 section 10.12) that
loses video packets on purpose, for camflow's packet-loss tests.

    /usr/bin/python3 tests/rtsp_lossy_proxy.py --upstream HOST:PORT
        [--drop-every N] [--skip K] [--drop-idr-heads M]

Listens on 127.0.0.1, on a port the kernel picks, and prints exactly one
line to stdout, `PORT <n>`, flushed, once it listens. Everything else
(one line per request, per drop, per connection end) goes to stderr,
prefixed `rtsp_lossy_proxy:`.

Each client connection gets its own connection to the upstream server
(many clients in sequence, or at once, are fine):

* client -> server: passed through unchanged, byte for byte (the URL path
  the client asks for reaches the server as is). The bytes are parsed on
  the side, to learn which request (method, URL) each CSeq stands for.
* server -> client: parsed into items. `$`, a channel byte and a 16-bit
  big-endian length, then that many bytes, is an interleaved frame;
  anything else is an RTSP message: headers up to CRLF CRLF, then
  Content-Length bytes of body. Items may be split across reads in any
  way; they are forwarded whole, in order, unchanged, except the dropped
  ones.

Which channel is the video's RTP: the DESCRIBE answer's SDP names the
first `m=video` section's `a=control`; the client's SETUP whose URL ends
in that control gets, in the server's answer, `Transport: ...;
interleaved=a-b`; channel `a` carries the video's RTP (b its RTCP). So
channel numbers are whatever the client asked for and the server agreed
to (retina asks for 0-1 for the first track it sets up). Until that is
known, nothing is dropped.

Absolute URLs: gst-rtsp-server builds Content-Base (and so the SETUP and
PLAY URLs) from the request's URL, so they name the proxy's port; and
retina sends SETUP, PLAY and TEARDOWN on the connection it described on,
whatever host and port the URLs name (the proxy logs each request).

Dropping: of the video's RTP packets on a connection, numbered 1, 2, ...
in arrival order, the first K (--skip) always go through, and after them
every Nth one is dropped: packets K+N, K+2N, ... (--drop-every N; 0, the
default, drops nothing). RTCP and other channels are never touched.

--drop-idr-heads M (H.264, RFC 6184): of the first M IDR access units
that begin after the first K video RTP packets, the head is dropped: every
packet before the first one that carries an IDR slice (access unit
delimiter, SPS, PPS, SEI...) and that one too (a whole single-NAL slice, or
the start of a fragmented one). What arrives is an access unit that still
holds IDR slices, but not its first: a receiver that only looks at "does
it contain an IDR" takes it for a key frame and decodes a picture with a
hole where the first slice was. To know where an access unit begins, the
packets after each marker bit are held back until the first slice NAL
shows what kind of picture it is (a few small packets, no real delay).

At the end of each connection one line goes to stderr:
`rtsp_lossy_proxy: connection C closed: video channel X, F RTP packets
forwarded, D dropped`.

SIGTERM or SIGINT: stops listening, closes every connection, exits 0.
"""

import argparse
import re
import signal
import socket
import sys
import threading

HOST = "127.0.0.1"
RECV_SIZE = 65536


def log(msg):
    print(f"rtsp_lossy_proxy: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="lossy RTSP interleaved proxy")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the RTSP server")
    p.add_argument("--drop-every", type=int, default=0,
                   help="drop every Nth video RTP packet after the first K (0: none)")
    p.add_argument("--refuse-partial-play", action="store_true",
                   help="answer a PLAY that follows fewer than two SETUPs with "
                        "459 Aggregate Operation Not Allowed, as cameras that "
                        "insist on every track being set up do")
    p.add_argument("--skip", type=int, default=0,
                   help="video RTP packets always forwarded first (default 0)")
    p.add_argument("--drop-idr-heads", type=int, default=0, metavar="M",
                   help="H.264: drop the head (up to its first IDR slice) of "
                        "the first M IDR access units after the first K packets")
    a = p.parse_args(argv)
    host, sep, port = a.upstream.rpartition(":")
    if not sep or not host or not port.isdigit():
        p.error("--upstream must be HOST:PORT")
    a.upstream = (host, int(port))
    if a.drop_every < 0 or a.skip < 0 or a.drop_idr_heads < 0:
        p.error("--drop-every, --skip and --drop-idr-heads must not be negative")
    return a


class Splitter:
    """Splits a byte stream of RTSP messages and interleaved frames into
    whole items, whatever the read boundaries. feed() returns the items
    completed so far: ("data", channel, raw) or ("msg", head, body, raw),
    where head is the start line and headers as text."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, chunk):
        self.buf += chunk
        items = []
        while True:
            item = self._one()
            if item is None:
                return items
            items.append(item)

    def _one(self):
        buf = self.buf
        if not buf:
            return None
        if buf[0] == 0x24:  # '$'
            if len(buf) < 4:
                return None
            n = 4 + ((buf[2] << 8) | buf[3])
            if len(buf) < n:
                return None
            raw = bytes(buf[:n])
            del buf[:n]
            return ("data", raw[1], raw)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).decode("latin-1")
        m = re.search(r"^content-length\s*:\s*(\d+)\s*$", head, re.I | re.M)
        length = int(m.group(1)) if m else 0
        n = end + 4 + length
        if len(buf) < n:
            return None
        raw = bytes(buf[:n])
        del buf[:n]
        return ("msg", head, raw[end + 4:], raw)


def header(head, name):
    m = re.search(r"^" + re.escape(name) + r"\s*:\s*(.*?)\s*$", head, re.I | re.M)
    return m.group(1) if m else None


def first_video_control(sdp):
    """The a=control of the SDP's first m=video section, or None."""
    in_video = None
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            if in_video:
                return None  # the first video section had no control
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=control:"):
            return line[len("a=control:"):].strip()
    return None


def url_path(url):
    m = re.match(r"^[a-z][a-z0-9+.-]*://[^/]*(.*)$", url, re.I)
    return (m.group(1) if m else url).split("?")[0].rstrip("/")


def is_control(setup_url, control):
    """Whether a SETUP for setup_url is for the track with this control."""
    if control == "*":
        return False
    if re.match(r"^[a-z][a-z0-9+.-]*://", control, re.I):
        # Absolute: hosts and ports may differ (the proxy is in between).
        return url_path(setup_url) == url_path(control)
    path = url_path(setup_url)
    control = control.strip("/")
    return path == control or path.endswith("/" + control)


class Connection:
    counter = 0
    counter_lock = threading.Lock()

    def __init__(self, client, args):
        with Connection.counter_lock:
            Connection.counter += 1
            self.id = Connection.counter
        self.client = client
        self.args = args
        self.upstream = None
        self.lock = threading.Lock()
        self.requests = {}  # CSeq -> (method, url), from the client
        self.video_control = None
        self.video_channel = None
        self.seen = 0  # video RTP packets seen
        self.forwarded = 0
        self.dropped = 0
        self.closed = False
        self.setups = 0
        # Both directions write to the client (--refuse-partial-play).
        self.client_send = threading.Lock()
        # --drop-idr-heads: packets of the access unit begun so far, held
        # back until its first slice is seen (None: not at a start).
        self.head = []
        self.idr_heads_dropped = 0
        # Whether the next video packet begins an access unit (it follows
        # a marker bit). The first one after PLAY is taken to: if it is
        # not, it has no slice start, is held up to the marker, and then
        # let go untouched.
        self.at_start = True

    def run(self):
        try:
            self.upstream = socket.create_connection(self.args.upstream, timeout=10)
            self.upstream.settimeout(None)
        except OSError as e:
            log(f"connection {self.id}: cannot reach upstream {self.args.upstream}: {e}")
            self.close()
            return
        t = threading.Thread(target=self.client_to_server, daemon=True)
        t.start()
        self.server_to_client()
        t.join()
        log(f"connection {self.id} closed: video channel {self.video_channel}, "
            f"{self.forwarded} RTP packets forwarded, {self.dropped} dropped")

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def client_to_server(self):
        splitter = Splitter()
        try:
            while True:
                chunk = self.client.recv(RECV_SIZE)
                if not chunk:
                    break
                # Note the requests first: the answer may come back (and be
                # looked up) as soon as the bytes are sent.
                refused = False
                for item in splitter.feed(chunk):
                    if item[0] == "msg":
                        self.on_request(item[1])
                        refused = refused or self.refuse(item[1])
                if not refused:
                    self.upstream.sendall(chunk)  # unchanged
        except OSError:
            pass
        finally:
            self.close()

    def server_to_client(self):
        splitter = Splitter()
        try:
            while True:
                chunk = self.upstream.recv(RECV_SIZE)
                if not chunk:
                    break
                out = []
                for item in splitter.feed(chunk):
                    if item[0] == "data":
                        out.extend(self.on_data(item[1], item[2]))
                    else:
                        self.on_response(item[1], item[2])
                        out.append(item[3])
                if out:
                    with self.client_send:
                        self.client.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            self.close()

    def refuse(self, head):
        """--refuse-partial-play: answers a PLAY after fewer than two SETUPs
        itself (the chunk holding it is not forwarded)."""
        method = head.split(" ", 1)[0]
        if method == "SETUP":
            self.setups += 1
        if not (self.args.refuse_partial_play and method == "PLAY" and self.setups < 2):
            return False
        cseq = (header(head, "CSeq") or "0").strip()
        log(f"connection {self.id}: refusing PLAY after {self.setups} SETUP(s)")
        with self.client_send:
            self.client.sendall(
                f"RTSP/1.0 459 Aggregate Operation Not Allowed\r\nCSeq: {cseq}\r\n\r\n".encode())
        with self.lock:
            self.requests.pop(cseq, None)
        return True

    def on_request(self, head):
        start = head.split("\r\n", 1)[0]
        parts = start.split()
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            return
        method, url = parts[0], parts[1]
        log(f"connection {self.id}: {method} {url}")
        cseq = header(head, "CSeq")
        if cseq is not None:
            with self.lock:
                self.requests[cseq.strip()] = (method, url)

    def on_response(self, head, body):
        start = head.split("\r\n", 1)[0]
        if not start.startswith("RTSP/"):
            return  # a request from the server (e.g. GET_PARAMETER)
        cseq = header(head, "CSeq")
        with self.lock:
            method, url = self.requests.pop((cseq or "").strip(), (None, None))
        if method == "DESCRIBE" and body:
            base = header(head, "Content-Base")
            if base:
                log(f"connection {self.id}: Content-Base {base}")
            control = first_video_control(body.decode("latin-1"))
            if control is not None:
                self.video_control = control
                log(f"connection {self.id}: video track control {control}")
        elif method == "SETUP":
            transport = header(head, "Transport") or ""
            m = re.search(r"interleaved=(\d+)(?:-(\d+))?", transport)
            if m is None:
                log(f"connection {self.id}: SETUP {url} without interleaved "
                    f"channels ({transport!r}): nothing to drop")
                return
            video = (is_control(url, self.video_control)
                     if self.video_control is not None
                     else self.video_channel is None)  # no SDP: the first track
            log(f"connection {self.id}: SETUP {url} -> interleaved={m.group(0)[12:]}"
                f"{' (video)' if video else ''}")
            if video:
                self.video_channel = int(m.group(1))

    def on_data(self, channel, raw):
        """The interleaved frames to forward now, for this one."""
        if self.video_channel is not None and channel == self.video_channel + 1:
            # The video's RTCP: say when the server ends the stream.
            if has_rtcp_bye(raw[4:]):
                log(f"connection {self.id}: RTCP BYE on the video's channel {channel}")
            return [raw]
        if self.video_channel is None or channel != self.video_channel:
            return [raw]
        rtp = raw[4:]
        if len(rtp) < 12:
            return [raw]
        self.seen += 1
        seq = (rtp[2] << 8) | rtp[3]
        n = self.args.drop_every
        k = self.seen - self.args.skip
        if n > 0 and k > 0 and k % n == 0:
            self.dropped += 1
            log(f"connection {self.id}: dropped video RTP packet #{self.seen} (seq {seq})")
            return []
        if self.args.drop_idr_heads > 0:
            return self.idr_heads(raw, rtp, seq)
        self.forwarded += 1
        return [raw]

    def idr_heads(self, raw, rtp, seq):
        """--drop-idr-heads: hold the packets of an access unit up to its
        first slice, then forward or drop them."""
        marker = rtp[1] & 0x80
        slice_type = first_slice_type(rtp_payload(rtp))
        armed = (bool(self.at_start or self.head)
                 and self.seen > self.args.skip
                 and self.idr_heads_dropped < self.args.drop_idr_heads)
        self.at_start = bool(marker)
        if slice_type is None and armed:
            if not marker:
                self.head.append((raw, seq))
                return []
            slice_type = 0  # an access unit without slices: let it go
        held, self.head = self.head + [(raw, seq)], []
        if slice_type == 5 and armed:
            self.idr_heads_dropped += 1
            self.dropped += len(held)
            log(f"connection {self.id}: dropped the head of an IDR access unit: "
                f"{len(held)} video RTP packets, seq {held[0][1]}..{held[-1][1]}")
            return []
        self.forwarded += len(held)
        return [r for r, _ in held]


def has_rtcp_bye(buf):
    """Whether a compound RTCP packet holds a BYE (packet type 203)."""
    i = 0
    while i + 4 <= len(buf):
        if buf[i + 1] == 203:
            return True
        i += 4 * (((buf[i + 2] << 8) | buf[i + 3]) + 1)
    return False


def rtp_payload(rtp):
    """The payload of an RTP packet (after CSRCs and extension, before
    padding), or b"" if it is malformed."""
    cc = rtp[0] & 0x0F
    pos = 12 + 4 * cc
    if rtp[0] & 0x10:  # extension
        if len(rtp) < pos + 4:
            return b""
        pos += 4 + 4 * ((rtp[pos + 2] << 8) | rtp[pos + 3])
    end = len(rtp)
    if rtp[0] & 0x20 and end > pos:  # padding
        end -= rtp[-1]
    return bytes(rtp[pos:end]) if end > pos else b""


def first_slice_type(payload):
    """1 or 5 when an H.264 RTP payload (RFC 6184) starts a coded slice
    NAL (non-IDR or IDR), else None."""
    if not payload:
        return None
    t = payload[0] & 0x1F
    if t in (1, 5):
        return t
    if t in (28, 29) and len(payload) > 1 and payload[1] & 0x80:  # FU start
        inner = payload[1] & 0x1F
        return inner if inner in (1, 5) else None
    if t == 24:  # STAP-A: 16-bit sizes, then NALs
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            inner = payload[pos + 2] & 0x1F
            if inner in (1, 5):
                return inner
            pos += 2 + size
    return None


def main(argv):
    args = parse_args(argv)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, 0))
        listener.listen(16)
    except OSError as e:
        log(f"cannot listen: {e}")
        return 1
    listener.settimeout(0.1)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"{signal.Signals(signum).name}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log(f"forwarding 127.0.0.1:{listener.getsockname()[1]} to "
        f"{args.upstream[0]}:{args.upstream[1]}, after {args.skip} video RTP packets "
        f"dropping every {args.drop_every}th and the heads of {args.drop_idr_heads} "
        f"IDR access units")
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    connections = []
    threads = []
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            if stop.is_set():
                break
            raise
        client.settimeout(None)
        conn = Connection(client, args)
        log(f"connection {conn.id} accepted")
        t = threading.Thread(target=conn.run, daemon=True)
        t.start()
        connections.append(conn)
        threads.append(t)
        # Forget the finished ones.
        alive = [(c, th) for c, th in zip(connections, threads) if th.is_alive()]
        connections = [c for c, _ in alive]
        threads = [th for _, th in alive]

    listener.close()
    for c in connections:
        c.close()
    for t in threads:
        t.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
