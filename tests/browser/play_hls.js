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
// The browser, its temporary profile and the server are always cleaned up
// (by common.js, shared with play_dash.js, which also serves DIR and starts
// Chromium).
'use strict';

const fs = require('fs');
const path = require('path');
const common = require('./common');

const { MIME, sleep, within } = common;

const HERE = __dirname;
const HLS_JS = path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.min.js');
// Where the player page and hls.js live on the server (outside DIR's names).
const PREFIX = '/__play_hls/';

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

// Prints the one JSON line and exits, 0 when ok and 1 otherwise (once).
function finish(result) {
  common.finish(result, result.ok);
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

// Polls the page until the video has played opts.seconds, filling `result`
// in; throws why not (a fatal error, an exception in the page, the end of
// the video, the timeout).
async function watch(opts, result, page, pageErrors, left) {
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
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!opts) return;
  const result = {
    ok: false, currentTime: null, played: null, videoWidth: null, videoHeight: null,
    codecs: null, elapsed: null, errors: [], notFound: [],
  };
  await common.check({
    name: 'play_hls',
    opts,
    waitFor: opts.playlist,
    result,
    end: finish,
    failureKinds: false,
    server: {
      prefix: PREFIX,
      page: playerPage(common.urlPath(opts.playlist)),
      lib: { name: 'hls.min.js', file: HLS_JS, label: 'hls.js' },
      mime: MIME,
      cors: false,
    },
    watch: (page, pageErrors, left) => watch(opts, result, page, pageErrors, left),
  });
}

main().catch(e => finish({ ok: false, reason: `play_hls.js: ${e && e.stack || e}` }));
