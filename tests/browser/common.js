// What play_dash.js and play_hls.js share: the static server for DIR and the
// player page, Debian's Chromium (/usr/bin/chromium) started by
// playwright-core, and the run around one check (the deadline, signals, the
// report, and the cleanup of the browser, its temporary profile and the
// server on every way out). Each script keeps its own arguments, player page,
// watch over playback and exit status.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

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

// The MIME types both scripts serve; play_dash.js adds DASH's own.
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

// Sent with every answer when the server is made with `cors`.
const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, Date',
};

let finished = false;
// Prints the one JSON line and exits, 0 when `good` and 1 otherwise (once).
function finish(result, good) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(good ? 0 : 1));
}

// The URL path of `rel`, a path relative to DIR, each part percent-encoded.
function urlPath(rel) {
  return '/' + rel.split('/').map(encodeURIComponent).join('/');
}

// The static server: DIR at /, the player page and the player library under
// `prefix` (`page` is the page's HTML, served as `prefix`index.html; `lib`
// is the library: its `name` under `prefix`, its `file` on disk and a
// `label` for a read error). `mime` maps extensions to types. With `cors`,
// every answer carries the CORS headers and OPTIONS gets a preflight answer;
// without, OPTIONS is refused like any method but GET and HEAD. The paths
// asked for that DIR does not have go into `notFound`.
function makeServer({ dir, prefix, page, lib, mime, cors, notFound }) {
  return http.createServer((req, res) => {
    const send = (status, type, body, extra) => {
      res.writeHead(status, Object.assign({
        'Content-Type': type,
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
      }, cors ? CORS : {}, extra || {}));
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    } catch (e) {
      return send(400, 'text/plain', 'bad path\n');
    }
    if (cors && req.method === 'OPTIONS') {
      res.writeHead(204, Object.assign({ 'Access-Control-Max-Age': '600' }, CORS));
      return res.end();
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
    if (pathname === prefix + 'index.html') return send(200, mime['.html'], page);
    if (pathname === prefix + lib.name) {
      return fs.readFile(lib.file, (err, data) =>
        err ? send(500, 'text/plain', `${lib.label}: ${err.message}\n`) : send(200, mime['.js'], data));
    }
    if (pathname === '/favicon.ico') return send(404, 'text/plain', 'none\n');
    const file = path.join(dir, path.normalize(pathname));
    if (file !== dir && !file.startsWith(dir + path.sep)) return send(403, 'text/plain', 'outside DIR\n');
    fs.readFile(file, (err, data) => {
      if (err) {
        if (!notFound.includes(pathname)) notFound.push(pathname);
        return send(404, 'text/plain', 'not found\n');
      }
      const type = mime[path.extname(file).toLowerCase()] || 'application/octet-stream';
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

// Runs one check and ends by calling `end(result)`, the script's way to
// print the report and exit:
//   - serves opts.dir as makeServer does, with `server` giving `prefix`,
//     `page`, `lib`, `mime` and `cors`;
//   - starts Chromium with a temporary profile named after `name`;
//   - waits for opts.dir/`waitFor` to appear;
//   - loads the player page;
//   - then awaits `watch(page, pageErrors, left)`, which fills `result` in,
//     returns once playback is good and throws why not. `left()` is how many
//     milliseconds remain of opts.timeout (counted from this call, browser
//     start-up included).
// A failure sets `result.reason` (with the first paths not found); with
// `failureKinds`, also `result.failure`: the thrown error's own `failure`,
// or "setup". A SIGTERM or SIGINT ends the check as a failure, "killed by
// SIGTERM". The browser, its profile and the server are always cleaned up.
async function check({ name, opts, waitFor, result, end, failureKinds, server: serve, watch }) {
  const t0 = Date.now();
  const deadline = t0 + opts.timeout * 1000;
  const left = () => deadline - Date.now();

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
    if (failureKinds) result.failure = 'setup';
    result.elapsed = (Date.now() - t0) / 1000;
    cleanup().finally(() => end(result));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  try {
    if (!fs.existsSync(serve.lib.file)) throw new Error(`${serve.lib.file} missing: run scripts/setup`);
    const { chromium } = require('playwright-core');

    server = makeServer(Object.assign({ dir: opts.dir, notFound: result.notFound }, serve));
    server.on('connection', s => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const port = server.address().port;

    profile = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
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
    // The manifest or playlist may still be on its way (a live stream
    // starting).
    const waitFile = path.join(opts.dir, waitFor);
    while (!fs.existsSync(waitFile)) {
      if (left() <= 0) {
        abandon();
        throw new Error(`no ${waitFor} in ${opts.dir} within ${opts.timeout} s`);
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
    await within(page.goto(`http://127.0.0.1:${port}${serve.prefix}index.html`, { timeout: Math.max(1000, left()) }),
      left(), 'the player page did not load in time');

    await watch(page, pageErrors, left);
    result.ok = true;
  } catch (e) {
    result.ok = false;
    if (failureKinds) result.failure = killedBy ? 'setup' : (e && e.failure) || 'setup';
    result.reason = killedBy ? `killed by ${killedBy}` : String(e && e.message || e);
    if (result.notFound.length) result.reason += `; not found: ${result.notFound.slice(0, 5).join(' ')}`;
  } finally {
    result.elapsed = (Date.now() - t0) / 1000;
    await cleanup();
  }
  end(result);
}

module.exports = { MIME, check, finish, sleep, urlPath, within };
