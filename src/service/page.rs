//! The page at `/`: every input and packaged item with its status, and a
//! Shaka Player that plays a Ready item with its ClearKey. Rendered on the
//! server from the records (no API call hands out keys); the keys of Ready
//! items are in the page, which is why the service belongs on a trusted
//! network. Shaka comes from `/static/shaka-player.compiled.js`, served by
//! the service itself, never from a CDN.

use super::api::mpd_url;
use super::db::{Input, Packaged, Status};

/// HTML-escapes text (file names come from clients).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only hex goes into attributes the script reads; anything else (a
/// damaged row) is dropped rather than written into the page.
fn hex_only(s: &str) -> &str {
    if s.chars().all(|c| c.is_ascii_hexdigit()) {
        s
    } else {
        ""
    }
}

pub fn render(inputs: &[Input], packaged: &[Packaged]) -> String {
    let mut rows_in = String::new();
    for i in inputs {
        let video = i.probe.get("video_track");
        let size = match (
            video.and_then(|v| v.get("width")).and_then(|v| v.as_u64()),
            video.and_then(|v| v.get("height")).and_then(|v| v.as_u64()),
        ) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => String::new(),
        };
        rows_in.push_str(&format!(
            "<tr id=\"input-{id}\"><td>{id}</td><td>{name}</td><td>{bytes}</td><td>{size}</td><td class=\"status\">{status}</td></tr>\n",
            id = i.id,
            name = esc(&i.original_name),
            bytes = i.size,
            status = i.status,
        ));
    }
    let mut rows_pk = String::new();
    for p in packaged {
        let action = match p.status {
            Status::Ready => format!(
                "<button class=\"play\" data-mpd=\"{}\" data-kid=\"{}\" data-key=\"{}\">Play</button> <a href=\"{}\">MPD</a>",
                esc(&mpd_url(p.id)),
                hex_only(&p.kid_hex),
                hex_only(&p.key_hex),
                esc(&mpd_url(p.id)),
            ),
            Status::Failed => esc(p.error.as_deref().unwrap_or_default()),
            _ => String::new(),
        };
        rows_pk.push_str(&format!(
            "<tr id=\"packaged-{id}\"><td>{id}</td><td>{input}</td><td>{scheme}</td><td class=\"status\">{status}</td><td>{action}</td></tr>\n",
            id = p.id,
            input = p.input_id,
            scheme = esc(&p.scheme),
            status = p.status,
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>camflow packager</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
video {{ width: 640px; max-width: 100%; background: #000; }}
#player-error {{ color: #b00; }}
</style>
</head>
<body>
<h1>camflow packager</h1>
<h2>Inputs</h2>
<table id="inputs">
<tr><th>id</th><th>name</th><th>bytes</th><th>video</th><th>status</th></tr>
{rows_in}</table>
<h2>Packaged content</h2>
<table id="packaged">
<tr><th>id</th><th>input</th><th>scheme</th><th>status</th><th></th></tr>
{rows_pk}</table>
<video id="video" controls muted></video>
<p id="player-error"></p>
<script src="/static/shaka-player.compiled.js"></script>
<script>
let player = null;
async function play(button) {{
  const out = document.getElementById('player-error');
  out.textContent = '';
  if (!window.shaka) {{
    out.textContent = 'Shaka Player is not available: start the service with --shaka-js.';
    return;
  }}
  if (!player) {{
    shaka.polyfill.installAll();
    player = new shaka.Player();
    await player.attach(document.getElementById('video'));
  }}
  const clearKeys = {{}};
  clearKeys[button.dataset.kid] = button.dataset.key;
  player.configure({{ drm: {{ clearKeys }} }});
  try {{
    await player.load(button.dataset.mpd);
    await document.getElementById('video').play();
  }} catch (e) {{
    out.textContent = 'cannot play: ' + (e.code || e);
  }}
}}
for (const b of document.querySelectorAll('button.play')) {{
  b.addEventListener('click', () => play(b));
}}
</script>
</body>
</html>
"#
    )
}
