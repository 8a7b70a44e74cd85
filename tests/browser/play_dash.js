#!/usr/bin/env node
// Plays a DASH stream in a real browser: Debian's Chromium (/usr/bin/chromium),
// driven by playwright-core, with Shaka Player (MSE, and EME with Chromium's
// built-in ClearKey CDM for encrypted streams), all from tests/browser's
// node_modules (scripts/setup installs them). The twin of play_hls.js.
//
//   node tests/browser/play_dash.js DIR [--manifest stream.mpd] [--seconds 2] [--timeout 60]
//        [--stall 10] [--key KID_HEX:KEY_HEX]... [--expect-fail]
//
// Serves DIR (fresh from disk on every request, no caching, byte ranges
// honoured, CORS open, DASH MIME types) on http://127.0.0.1:<free port>/, with
// a player page that installs Shaka's polyfills, gives Shaka the keys as
// `drm.clearKeys` (KID and key: 32 hex digits each; any number of --key),
// loads DIR/MANIFEST into a muted <video> and plays it. Succeeds once the
// video has played SECONDS (its currentTime has advanced by that much since
// playback started: for VOD that is currentTime > SECONDS; a live manifest
// starts near its live edge) with no `error` event on the video, no critical
// Shaka error and no exception in the page, all within TIMEOUT seconds from
// start (browser start-up included). Waits for the manifest to appear in DIR
// if it is not there yet.
//
// Fails as soon as Shaka reports a critical error (what Chromium 156 and
// Shaka 5.2 do here: no --key for a manifest with ContentProtection, 6012
// NO_LICENSE_SERVER_GIVEN at load; encrypted segments and neither keys nor
// ContentProtection, 6010 ENCRYPTED_CONTENT_WITHOUT_DRM_INFO; a key for
// another KID, 4012 RESTRICTIONS_CANNOT_BE_MET with missingKeys; the right
// KID with a wrong key, 3016 VIDEO_ERROR, PIPELINE_ERROR_DECODE, once the
// decoder chokes on the garbage; all within 1-3 s), 3 s after the video
// fired `waitingforkey` with no progress since (a key for another KID and
// no ContentProtection in the manifest: the CDM just waits), when currentTime
// has not moved for STALL seconds after the page loaded ("stalled:
// currentTime stuck at X for 10 s ..."), or at TIMEOUT.
//
// Prints exactly one JSON line on stdout:
//   {"ok":true,"currentTime":2.1,"played":2.1,"videoWidth":320,"videoHeight":240,
//    "audioTracks":1,"codecs":"avc1.64000d,mp4a.40.2","keySystem":"org.w3.clearkey",
//    "encrypted":true,"waitingForKey":false,"decodedFrames":53,"droppedFrames":0,"elapsed":3.4,
//    "errors":[],"notFound":[],"expectFail":false}
//   {"ok":false,"reason":"...","failure":"drm",...same fields...}
// `errors` lists every Shaka error event (critical or not; code, name,
// category, data), video error, failed play() and page exception; `notFound`
// the paths the page asked for and DIR does not have. `failure` says what
// kind of failure it was: "drm" (a Shaka DRM error, category 6, a 4012 for
// missing keys, or the CDM waiting for a key), "media" (a Shaka MEDIA error
// or a video element error: the decoder refused the samples), "stall" (no
// progress for STALL seconds), "ended" (the video ended too early), "stream"
// (Shaka could not fetch or parse the manifest or the segments, or another
// critical Shaka error), "timeout" (TIMEOUT came first: too slow), or
// "setup" (bad arguments, no MANIFEST in DIR, Chromium, the page, Shaka
// itself, a signal: the fixture's trouble, or nothing there to play).
//
// Exits 0 when ok and 1 otherwise; with --expect-fail, 0 when it did NOT
// play for a reason of the stream (failure other than "setup") and 1
// otherwise, the JSON line unchanged. The browser, its temporary profile and
// the server are always cleaned up (by common.js, shared with play_hls.js,
// which also serves DIR and starts Chromium).
'use strict';

const fs = require('fs');
const path = require('path');
const common = require('./common');

const { sleep, within } = common;

const HERE = __dirname;
const SHAKA_JS = path.join(HERE, 'node_modules', 'shaka-player', 'dist', 'shaka-player.compiled.js');
// Where the player page and Shaka live on the server (outside DIR's names).
const PREFIX = '/__play_dash/';
// Seconds without progress after a `waitingforkey` event before giving up
// (ClearKey answers at once; a key that has not come will not).
const KEY_WAIT = 3;
// How far currentTime must move to count as progress.
const MOVE = 0.5;

// What common.js serves, and DASH's own types.
const MIME = Object.assign({}, common.MIME, {
  '.mpd': 'application/dash+xml',
  '.cmfv': 'video/mp4',
  '.cmfa': 'audio/mp4',
});

const USAGE = 'usage: play_dash.js DIR [--manifest stream.mpd] [--seconds 2] [--timeout 60] [--stall 10] ' +
  '[--key KID_HEX:KEY_HEX]... [--expect-fail]';

function usage(msg) {
  finish({ ok: false, failure: 'setup', reason: `${msg}; ${USAGE}` });
}

function parseArgs(argv) {
  const opts = {
    dir: null, manifest: 'stream.mpd', seconds: 2, timeout: 60, stall: 10, keys: {}, expectFail: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--manifest' || a === '--seconds' || a === '--timeout' || a === '--stall' || a === '--key') {
      const v = argv[++i];
      if (v === undefined) return usage(`${a} needs a value`);
      if (a === '--manifest') {
        opts.manifest = v;
      } else if (a === '--key') {
        const m = /^([0-9a-fA-F]{32}):([0-9a-fA-F]{32})$/.exec(v);
        if (!m) return usage(`--key ${v}: want KID_HEX:KEY_HEX, 32 hex digits each`);
        const kid = m[1].toLowerCase();
        const key = m[2].toLowerCase();
        if (kid in opts.keys && opts.keys[kid] !== key) return usage(`--key: two keys for KID ${kid}`);
        opts.keys[kid] = key;
      } else {
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0) return usage(`${a} ${v}: not a number`);
        opts[a.slice(2)] = n;
      }
    } else if (a === '--expect-fail') {
      opts.expectFail = true;
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

let expectFail = false;
// Prints the one JSON line, expectFail added, and exits (once) with the
// status the header describes.
function finish(result) {
  result.expectFail = expectFail;
  const good = expectFail ? (!result.ok && result.failure !== 'setup') : result.ok;
  common.finish(result, good);
}

function playerPage(manifest, keys) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>play_dash</title></head>
<body>
<video id="v" muted autoplay playsinline></video>
<script src="${PREFIX}shaka-player.compiled.js"></script>
<script>
'use strict';
const MANIFEST = ${JSON.stringify(manifest)};
const KEYS = ${JSON.stringify(keys)};
const state = window.__state = {
  errors: [], fatal: null, failure: null, start: null, loaded: false, keyWaits: 0, encrypted: false,
};
const v = document.getElementById('v');
const fail = (failure, what) => {
  if (state.fatal === null) {
    state.fatal = what;
    state.failure = failure;
  }
};
// Shaka's error data as JSON: numbers and strings kept, errors as their
// message, plain objects (4012's restriction details) as JSON, anything
// else by its type; at most 300 characters each.
const short = x => {
  if (x === null || x === undefined || typeof x === 'number' || typeof x === 'boolean') return x;
  let s;
  if (typeof x === 'string') s = x;
  else if (x instanceof Error || (x && typeof x.message === 'string')) s = x.message;
  else if (x && Object.getPrototypeOf(x) === Object.prototype) {
    try { s = JSON.stringify(x); } catch (e) { s = 'Object'; }
  } else s = String((x && x.constructor && x.constructor.name) || x);
  return s.length > 300 ? s.slice(0, 300) + '...' : s;
};
const nameOf = (table, n) => {
  try {
    return Object.keys(table).find(k => table[k] === n) || null;
  } catch (e) {
    return null;
  }
};
const seen = new Set();
// Records a shaka.util.Error (from an 'error' event or a rejected load()),
// once; a critical one ends the run.
function shakaError(e, where) {
  if (!e || e.code === undefined) {
    state.errors.push({ type: 'shaka', where, details: short(e), fatal: true });
    fail('setup', 'Shaka ' + where + ': ' + short(e));
    return;
  }
  const data = (e.data || []).map(short);
  const key = e.code + ' ' + JSON.stringify(data);
  if (seen.has(key)) return;
  seen.add(key);
  const E = shaka.util.Error;
  const rec = {
    type: 'shaka', where, code: e.code, name: nameOf(E.Code, e.code),
    category: nameOf(E.Category, e.category), severity: e.severity, data,
    fatal: e.severity === E.Severity.CRITICAL,
  };
  state.errors.push(rec);
  if (!rec.fatal) return;
  // 4012 RESTRICTIONS_CANNOT_BE_MET with missing or unusable keys: the CDM
  // has no key for the stream's KID (a wrong KID given).
  const keyTrouble = e.code === E.Code.RESTRICTIONS_CANNOT_BE_MET && e.data && e.data[0] &&
    ((e.data[0].missingKeys || []).length || (e.data[0].restrictedKeyStatuses || []).length);
  const failure = e.category === E.Category.DRM || keyTrouble ? 'drm'
    : e.category === E.Category.MEDIA ? 'media' : 'stream';
  const brief = data.map(d => (typeof d === 'string' && d.length > 100 ? d.slice(0, 100) + '...' : d));
  fail(failure, 'Shaka error ' + e.code + ' ' + rec.name + ' (' + rec.category + ')' +
    (brief.length ? ': ' + JSON.stringify(brief) : '') + ' during ' + where);
}
v.addEventListener('error', () => {
  const e = v.error;
  const what = e ? 'video error: MediaError ' + e.code + (e.message ? ' (' + e.message + ')' : '') : 'video error';
  state.errors.push({ type: 'video', details: what, fatal: true });
  // Shaka turns this into 3016 VIDEO_ERROR too, with the same message; give
  // it a moment to, so the reason names the Shaka code.
  setTimeout(() => fail('media', what), 300);
});
v.addEventListener('playing', () => {
  if (state.start === null) state.start = v.currentTime;
});
v.addEventListener('encrypted', () => { state.encrypted = true; });
v.addEventListener('waitingforkey', () => { state.keyWaits++; });
(async () => {
  if (typeof shaka === 'undefined') return fail('setup', 'Shaka Player did not load');
  shaka.polyfill.installAll();
  if (!shaka.Player.isBrowserSupported()) return fail('setup', 'Shaka: this browser is not supported (no MSE?)');
  const player = new shaka.Player();
  window.__player = player;
  player.addEventListener('error', ev => shakaError(ev.detail, 'playback'));
  await player.attach(v);
  if (Object.keys(KEYS).length) player.configure({ drm: { clearKeys: KEYS } });
  try {
    await player.load(MANIFEST);
  } catch (e) {
    // 7000 LOAD_INTERRUPTED only when something else already failed.
    return shakaError(e, 'load');
  }
  state.loaded = true;
  v.play().catch(e => state.errors.push({ type: 'play', details: short(e), fatal: false }));
})().catch(e => {
  state.errors.push({ type: 'page', details: short(e), fatal: true });
  fail('setup', 'player script: ' + short(e));
});
window.__report = () => {
  const p = window.__player;
  const out = { audioTracks: null, codecs: null, keySystem: null, decodedFrames: null, droppedFrames: null };
  if (!p || !state.loaded) return out;
  try {
    const variants = p.getVariantTracks();
    const audio = p.getAudioTracks ? p.getAudioTracks().length
      : new Set(variants.filter(t => t.audioId !== null).map(t => t.audioId)).size;
    out.audioTracks = audio;
    const active = variants.find(t => t.active) || variants[0];
    if (active) out.codecs = [active.videoCodec, active.audioCodec].filter(Boolean).join(',') || null;
    out.keySystem = p.keySystem() || null;
    const s = p.getStats();
    out.decodedFrames = Number.isFinite(s.decodedFrames) ? s.decodedFrames : null;
    out.droppedFrames = Number.isFinite(s.droppedFrames) ? s.droppedFrames : null;
  } catch (e) {
    out.reportError = short(e);
  }
  return out;
};
</script>
</body></html>
`;
}

// An Error that says what kind of failure it is (see the header).
function failure(kind, msg) {
  const e = new Error(msg);
  e.failure = kind;
  return e;
}

// Polls the page until the video has played opts.seconds, filling `result`
// in; throws why not, as a failure() of its kind (see the header).
async function watch(opts, result, page, pageErrors, left) {
  // Progress watch: where currentTime was when it last moved by MOVE
  // seconds or more (or back), since when, and how many `waitingforkey`
  // events there had been by then. Shaka's stall handling nudges a stuck
  // video on by 0.1 s a few times: that is no progress. After a new
  // `waitingforkey`: since when no frame has been decoded.
  let lastTime = null;
  let lastMove = Date.now();
  let keyWaitsThen = 0;
  let keyWaitAt = null;
  let framesThen = 0;
  let st = null;
  for (;;) {
    st = await within(page.evaluate(() => {
      const v = document.getElementById('v');
      const s = window.__state;
      return Object.assign({
        currentTime: v.currentTime, start: s.start, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
        readyState: v.readyState, paused: v.paused, ended: v.ended, errors: s.errors, fatal: s.fatal,
        failure: s.failure, loaded: s.loaded, keyWaits: s.keyWaits, encrypted: s.encrypted,
        buffered: Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
      }, window.__report ? window.__report() : {});
    }), Math.max(1000, left()), 'the page stopped answering');
    const now = Date.now();
    result.currentTime = st.currentTime;
    result.played = st.start === null ? 0 : Math.round((st.currentTime - st.start) * 1e6) / 1e6;
    result.videoWidth = st.videoWidth;
    result.videoHeight = st.videoHeight;
    for (const k of ['audioTracks', 'codecs', 'keySystem', 'decodedFrames', 'droppedFrames']) {
      if (st[k] !== undefined && st[k] !== null) result[k] = st[k];
    }
    result.encrypted = !!(st.encrypted || result.keySystem);
    result.waitingForKey = st.keyWaits > 0;
    result.errors = st.errors.concat(pageErrors.map(e => ({ type: 'page', details: e, fatal: true })));
    if (st.fatal) throw failure(st.failure || 'stream', st.fatal);
    if (pageErrors.length) throw failure('setup', `exception in the page: ${pageErrors[0]}`);
    if (st.start !== null && result.played > opts.seconds) break;
    const where = () => `(currentTime ${st.currentTime}, readyState ${st.readyState}, paused ${st.paused}, ` +
      `buffered ${JSON.stringify(st.buffered)}, manifest ${st.loaded ? 'loaded' : 'not loaded'}, ` +
      `keySystem ${st.keySystem || 'none'}, waitingforkey events ${st.keyWaits}, ` +
      `decodedFrames ${st.decodedFrames})`;
    if (st.ended) {
      throw failure('ended', `the video ended after playing ${result.played.toFixed(3)} s of ${opts.seconds} ${where()}`);
    }
    const stuck = () => `currentTime stuck at ${lastTime}` +
      (st.currentTime !== lastTime ? ` (now ${st.currentTime}, nudged)` : '');
    const frames = st.decodedFrames || 0;
    if (lastTime === null || st.currentTime < lastTime || st.currentTime - lastTime >= MOVE) {
      lastTime = st.currentTime;
      lastMove = now;
      keyWaitsThen = st.keyWaits;
      keyWaitAt = null;
    } else if (st.keyWaits > keyWaitsThen) {
      if (keyWaitAt === null || frames > framesThen) {
        keyWaitAt = now;
        framesThen = frames;
      } else if (now - keyWaitAt >= Math.min(opts.stall, KEY_WAIT) * 1000) {
        // ClearKey's licence is a data: URI, there in milliseconds: a CDM
        // still waiting has been given no key for this KID.
        throw failure('drm', `stalled waiting for a key: ${stuck()}, no frame decoded for ` +
          `${Math.min(opts.stall, KEY_WAIT)} s since a waitingforkey event: the CDM has no key for the ` +
          `stream's KID ${where()}`);
      }
    }
    if (now - lastMove >= opts.stall * 1000) {
      throw failure('stall', `stalled: ${stuck()} for ${opts.stall} s ` +
        `after playing ${result.played.toFixed(3)} s of ${opts.seconds} ${where()}`);
    }
    if (left() <= 0) {
      throw failure('timeout', `timeout after ${opts.timeout} s: played ${result.played.toFixed(3)} s ` +
        `of ${opts.seconds} ${where()}`);
    }
    await sleep(100);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!opts) return;
  expectFail = opts.expectFail;
  const result = {
    ok: false, currentTime: null, played: null, videoWidth: null, videoHeight: null, audioTracks: null,
    codecs: null, keySystem: null, encrypted: null, waitingForKey: null, decodedFrames: null, droppedFrames: null,
    elapsed: null, errors: [], notFound: [],
  };
  // ClearKey is built into Chromium (no component download, unlike
  // Widevine), so the --disable-component-update common.js starts Chromium
  // with does not take it away.
  await common.check({
    name: 'play_dash',
    opts,
    waitFor: opts.manifest,
    result,
    end: finish,
    failureKinds: true,
    server: {
      prefix: PREFIX,
      page: playerPage(common.urlPath(opts.manifest), opts.keys),
      lib: { name: 'shaka-player.compiled.js', file: SHAKA_JS, label: 'Shaka Player' },
      mime: MIME,
      cors: true,
    },
    watch: (page, pageErrors, left) => watch(opts, result, page, pageErrors, left),
  });
}

main().catch(e => finish({ ok: false, failure: 'setup', reason: `play_dash.js: ${e && e.stack || e}` }));
