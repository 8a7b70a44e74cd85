#!/usr/bin/env node
// Plays an HLS stream in a real browser: Debian's Chromium (/usr/bin/chromium),
// driven by playwright-core, with hls.js (MSE), all from tests/browser's
// node_modules (scripts/setup installs them).
//
//   node tests/browser/play_hls.js DIR [--playlist index.m3u8] [--seconds 2] [--timeout 60]
//
// Serves DIR (fresh from disk on every request, no caching, byte ranges
// honoured) on http://127.0.0.1:<free port>/, with a player page that loads
// hls.js into a muted, autoplaying <video> and plays DIR/PLAYLIST. Succeeds
// once the video has played SECONDS (its currentTime has advanced by that much
// since playback started: for VOD that is currentTime > SECONDS; a live
// playlist without ENDLIST starts near its live edge) with no `error` event on
// the video, no fatal hls.js error and no exception in the page, all within
// TIMEOUT seconds from start (browser start-up included). Waits for the
// playlist to appear in DIR if it is not there yet.
//
// Prints exactly one JSON line on stdout and exits 0 when ok, 1 otherwise:
//   {"ok":true,"currentTime":2.3,"played":2.3,"videoWidth":320,"videoHeight":240,
//    "codecs":"avc1.64000d","elapsed":4.1,"errors":[],"notFound":[]}
//   {"ok":false,"reason":"...",...same fields...}
// `errors` lists every hls.js ERROR event (fatal or not), video error and page
// exception; `notFound` the paths the page asked for and DIR does not have.
// The browser, its temporary profile and the server are always cleaned up.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const HERE = __dirname;
const HLS_JS = path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.min.js');
const CHROMIUM = '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying to reach
// Google's hosts, which this closed network refuses; autoplay must not wait
// for a user gesture. Playwright adds --headless (headless: true).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];
// Where the player page and hls.js live on the server (outside DIR's names).
const PREFIX = '/__play_hls/';

const MIME = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.m3u': 'application/vnd.apple.mpegurl',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.ts': 'video/mp2t',
  '.aac': 'audio/aac',
  '.vtt': 'text/vtt',
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
};

function usage(msg) {
  finish({ ok: false, reason: `${msg}; usage: play_hls.js DIR [--playlist index.m3u8] [--seconds 2] [--timeout 60]` });
}

function parseArgs(argv) {
  const opts = { dir: null, playlist: 'index.m3u8', seconds: 2, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--playlist' || a === '--seconds' || a === '--timeout') {
      const v = argv[++i];
      if (v === undefined) return usage(`${a} needs a value`);
      if (a === '--playlist') opts.playlist = v;
      else {
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0) return usage(`${a} ${v}: not a number`);
        opts[a.slice(2)] = n;
      }
    } else if (a.startsWith('--')) {
      return usage(`unknown option ${a}`);
    } else if (opts.dir === null) {
      opts.dir = a;
    } else {
      return usage(`unexpected argument ${a}`);
    }
  }
  if (opts.dir === null) return usage('no DIR');
  opts.dir = path.resolve(opts.dir);
  if (!fs.existsSync(opts.dir) || !fs.statSync(opts.dir).isDirectory()) return usage(`${opts.dir}: not a directory`);
  return opts;
}

let finished = false;
// Prints the one JSON line and exits (once).
function finish(result) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
}

function playerPage(playlist) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>play_hls</title></head>
<body>
<video id="v" muted autoplay playsinline></video>
<script src="${PREFIX}hls.min.js"></script>
<script>
'use strict';
const state = window.__state = { errors: [], fatal: null, start: null, codecs: null };
const v = document.getElementById('v');
v.addEventListener('error', () => {
  const e = v.error;
  const what = e ? 'video error: MediaError ' + e.code + (e.message ? ' (' + e.message + ')' : '') : 'video error';
  state.errors.push({ type: 'video', details: what, fatal: true });
  state.fatal = state.fatal || what;
});
v.addEventListener('playing', () => {
  if (state.start === null) state.start = v.currentTime;
});
if (typeof Hls === 'undefined') {
  state.fatal = 'hls.js did not load';
} else if (!Hls.isSupported()) {
  state.fatal = 'hls.js: this browser has no MSE';
} else {
  const hls = new Hls();
  window.__hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) => {
    const rec = { type: d.type, details: d.details, fatal: !!d.fatal };
    if (d.reason) rec.reason = String(d.reason);
    if (d.error) rec.error = String(d.error.message || d.error);
    if (d.response && d.response.code !== undefined) rec.code = d.response.code;
    const url = (d.frag && d.frag.url) || d.url || (d.context && d.context.url);
    if (url) rec.url = String(url);
    if (d.mimeType) rec.mimeType = d.mimeType;
    state.errors.push(rec);
    const why = rec.reason || rec.error;
    if (d.fatal) state.fatal = state.fatal || ('hls.js fatal ' + d.type + ': ' + d.details + (why ? ' (' + why + ')' : ''));
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
    state.codecs = (d.levels || []).map(l => [l.videoCodec, l.audioCodec].filter(Boolean).join(',')).join(' ') || null;
    v.play().catch(e => state.errors.push({ type: 'play', details: String(e), fatal: false }));
  });
  hls.on(Hls.Events.BUFFER_CODECS, (_, d) => {
    const c = Object.keys(d).map(k => d[k] && (d[k].codec || d[k].levelCodec)).filter(Boolean);
    if (c.length) state.codecs = c.join(',');
  });
  hls.loadSource(${JSON.stringify(playlist)});
  hls.attachMedia(v);
}
</script>
</body></html>
`;
}

// The static server: DIR at /, the page and hls.js under PREFIX.
function makeServer(dir, playlist, notFound) {
  const page = playerPage('/' + playlist.split('/').map(encodeURIComponent).join('/'));
  return http.createServer((req, res) => {
    const send = (status, type, body, extra) => {
      res.writeHead(status, Object.assign({
        'Content-Type': type,
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
      }, extra || {}));
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    } catch (e) {
      return send(400, 'text/plain', 'bad path\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
    if (pathname === PREFIX + 'index.html') return send(200, MIME['.html'], page);
    if (pathname === PREFIX + 'hls.min.js') {
      return fs.readFile(HLS_JS, (err, data) =>
        err ? send(500, 'text/plain', `hls.js: ${err.message}\n`) : send(200, MIME['.js'], data));
    }
    if (pathname === '/favicon.ico') return send(404, 'text/plain', 'none\n');
    const file = path.join(dir, path.normalize(pathname));
    if (file !== dir && !file.startsWith(dir + path.sep)) return send(403, 'text/plain', 'outside DIR\n');
    fs.readFile(file, (err, data) => {
      if (err) {
        if (!notFound.includes(pathname)) notFound.push(pathname);
        return send(404, 'text/plain', 'not found\n');
      }
      const type = MIME[path.extname(file).toLowerCase()] || 'application/octet-stream';
      const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
      if (range && (range[1] !== '' || range[2] !== '')) {
        let start, end;
        if (range[1] === '') {
          start = Math.max(0, data.length - Number(range[2]));
          end = data.length - 1;
        } else {
          start = Number(range[1]);
          end = range[2] === '' ? data.length - 1 : Math.min(Number(range[2]), data.length - 1);
        }
        if (start > end || start >= data.length) {
          return send(416, 'text/plain', 'bad range\n', { 'Content-Range': `bytes */${data.length}` });
        }
        return send(206, type, data.subarray(start, end + 1), {
          'Content-Range': `bytes ${start}-${end}/${data.length}`,
          'Accept-Ranges': 'bytes',
        });
      }
      send(200, type, data, { 'Accept-Ranges': 'bytes' });
    });
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

// Resolves `p`, or rejects with `what` after `ms`.
function within(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(what)), Math.max(0, ms)); }),
  ]).finally(() => clearTimeout(t));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!opts) return;
  const t0 = Date.now();
  const deadline = t0 + opts.timeout * 1000;
  const left = () => deadline - Date.now();

  const result = {
    ok: false, currentTime: null, played: null, videoWidth: null, videoHeight: null,
    codecs: null, elapsed: null, errors: [], notFound: [],
  };
  let server = null;
  let context = null;
  let profile = null;
  // A Chromium still starting when we gave up, closed once it has: the
  // profile goes only after that (it would write into it again).
  let launching = null;
  let abandoned = null;
  const sockets = new Set();
  const cleanup = async () => {
    if (context) {
      const c = context;
      context = null;
      await within(c.close(), 10000, 'close').catch(() => {});
    }
    if (launching && !abandoned) abandoned = launching.then(c => c.close()).catch(() => {});
    if (abandoned) await within(abandoned, 10000, 'close').catch(() => {});
    if (server) {
      for (const s of sockets) s.destroy();
      server.close();
      server = null;
    }
    if (profile) {
      try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
      profile = null;
    }
  };
  let killedBy = null;
  const onSignal = sig => {
    killedBy = sig;
    result.reason = `killed by ${sig}`;
    result.elapsed = (Date.now() - t0) / 1000;
    cleanup().finally(() => finish(result));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  try {
    if (!fs.existsSync(HLS_JS)) throw new Error(`${HLS_JS} missing: run scripts/setup`);
    const { chromium } = require('playwright-core');

    server = makeServer(opts.dir, opts.playlist, result.notFound);
    server.on('connection', s => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const port = server.address().port;

    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'play_hls-'));
    launching = chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: Math.max(1000, left()),
    });
    // Handled when awaited below; this keeps an early failure from counting
    // as an unhandled rejection (fatal in node) while we wait.
    launching.catch(() => {});
    const abandon = () => { abandoned = launching.then(c => c.close()).catch(() => {}); };
    // The playlist may still be on its way (a live stream starting).
    const playlistFile = path.join(opts.dir, opts.playlist);
    while (!fs.existsSync(playlistFile)) {
      if (left() <= 0) {
        abandon();
        throw new Error(`no ${opts.playlist} in ${opts.dir} within ${opts.timeout} s`);
      }
      await sleep(100);
    }
    try {
      context = await within(launching, left(), `Chromium did not start within ${opts.timeout} s`);
    } catch (e) {
      abandon();
      throw e;
    }

    const page = context.pages()[0] || await context.newPage();
    const pageErrors = [];
    page.on('pageerror', e => pageErrors.push(String(e && e.message || e)));
    page.on('crash', () => pageErrors.push('the page crashed'));
    await within(page.goto(`http://127.0.0.1:${port}${PREFIX}index.html`, { timeout: Math.max(1000, left()) }),
      left(), 'the player page did not load in time');

    let st = null;
    for (;;) {
      st = await within(page.evaluate(() => {
        const v = document.getElementById('v');
        const s = window.__state;
        return {
          currentTime: v.currentTime, start: s.start, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
          readyState: v.readyState, paused: v.paused, ended: v.ended, errors: s.errors, fatal: s.fatal, codecs: s.codecs,
          buffered: Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
        };
      }), Math.max(1000, left()), 'the page stopped answering');
      result.currentTime = st.currentTime;
      result.played = st.start === null ? 0 : Math.round((st.currentTime - st.start) * 1e6) / 1e6;
      result.videoWidth = st.videoWidth;
      result.videoHeight = st.videoHeight;
      result.codecs = st.codecs;
      result.errors = st.errors.concat(pageErrors.map(e => ({ type: 'page', details: e, fatal: true })));
      if (st.fatal) throw new Error(st.fatal);
      if (pageErrors.length) throw new Error(`exception in the page: ${pageErrors[0]}`);
      if (st.start !== null && result.played > opts.seconds) break;
      if (st.ended) throw new Error(`the video ended after playing ${result.played.toFixed(3)} s of ${opts.seconds}`);
      if (left() <= 0) {
        throw new Error(`timeout after ${opts.timeout} s: played ${result.played.toFixed(3)} s of ${opts.seconds} ` +
          `(currentTime ${st.currentTime}, readyState ${st.readyState}, paused ${st.paused}, ` +
          `buffered ${JSON.stringify(st.buffered)})`);
      }
      await sleep(100);
    }
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.reason = killedBy ? `killed by ${killedBy}` : String(e && e.message || e);
    if (result.notFound.length) result.reason += `; not found: ${result.notFound.slice(0, 5).join(' ')}`;
  } finally {
    result.elapsed = (Date.now() - t0) / 1000;
    await cleanup();
  }
  finish(result);
}

main().catch(e => finish({ ok: false, reason: `play_hls.js: ${e && e.stack || e}` }));
