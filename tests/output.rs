//! `transcode --to flv` and `hls`: outputs checked by ffprobe and ffmpeg,
//! from real peers: ffmpeg as an MJPEG camera, H.264 files, nginx-rtmp for
//! RTMP pushes, headless Chromium with hls.js for playback.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mpjpeg::mjpeg_camera;
use common::*;

/// `ffprobe` of the first video stream: `codec_name,width,height` and the
/// container's format name.
fn probe_codec_and_format(path: &Path) -> (String, String) {
    let out = run_limited(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=codec_name,width,height:format=format_name",
            ])
            .args(["-of", "default=nw=1"])
            .arg(path),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "ffprobe {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    (
        format!("{},{},{}", get("codec_name"), get("width"), get("height")),
        get("format_name"),
    )
}

/// What a playlist says: target duration, segment lengths and names.
struct Playlist {
    text: String,
    target: u64,
    segments: Vec<(f64, String)>,
}

impl Playlist {
    fn read(dir: &Path) -> Playlist {
        let text = std::fs::read_to_string(dir.join("index.m3u8")).expect("index.m3u8");
        Playlist::parse(&text)
    }

    fn parse(text: &str) -> Playlist {
        let mut target = 0;
        let mut segments = Vec::new();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if let Some(t) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = t.trim().parse().expect("target duration");
            }
            if let Some(d) = l.strip_prefix("#EXTINF:") {
                let d: f64 = d.trim_end_matches(',').parse().expect("EXTINF");
                let uri = lines.next().expect("segment URI").to_string();
                segments.push((d, uri));
            }
        }
        Playlist {
            text: text.to_string(),
            target,
            segments,
        }
    }

    fn ended(&self) -> bool {
        self.text.contains("#EXT-X-ENDLIST")
    }

    /// RFC 8216 4.3.3.1: every EXTINF, rounded, is at most the target.
    fn assert_honest(&self) {
        assert!(self.target > 0, "{}", self.text);
        for (d, uri) in &self.segments {
            assert!(
                d.round() as u64 <= self.target,
                "{uri} lasts {d} s, past EXT-X-TARGETDURATION {}",
                self.target
            );
        }
        assert!(
            self.text.contains("#EXT-X-MAP:URI=\"init.mp4\""),
            "{}",
            self.text
        );
    }
}

/// Asserts each listed segment starts on a keyframe (init + segment, as a
/// player joins there).
fn assert_segments_start_on_keyframes(dir: &Path, list: &Playlist) {
    let init = std::fs::read(dir.join("init.mp4")).expect("init.mp4");
    let joined = dir.join("joined.mp4");
    for (_, uri) in &list.segments {
        let mut bytes = init.clone();
        bytes.extend(std::fs::read(dir.join(uri)).expect("segment"));
        std::fs::write(&joined, &bytes).expect("write");
        let out = run_limited(
            Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
                .args(["packet=flags", "-of", "csv=p=0", "-read_intervals", "%+#1"])
                .arg(&joined),
            Duration::from_secs(30),
        );
        let flags = String::from_utf8_lossy(&out.stdout);
        assert!(
            flags.lines().next().is_some_and(|f| f.starts_with('K')),
            "{uri} does not start on a keyframe: {flags:?}"
        );
    }
    let _ = std::fs::remove_file(joined);
}

fn segments_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".m4s"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn flv_file_from_an_mjpeg_camera_at_4_fps() {
    let (_camera, url) = mjpeg_camera("320x240", 10);
    let dir = tempdir();
    let out = dir.path().join("cam.flv");
    let run = camflow_run(&[
        "transcode",
        &url,
        "--to",
        "flv",
        "-o",
        path_str(&out),
        "--fps",
        "4",
        "--duration",
        "5",
    ]);
    assert_ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("encoded to H.264"), "{stderr}");
    let (codec, format) = probe_codec_and_format(&out);
    assert_eq!(codec, "h264,320,240");
    assert_eq!(format, "flv");
    let frames = ffprobe_frames(&out);
    assert!(
        (19..=21).contains(&frames),
        "{frames} frames for 5 s at 4 fps"
    );
    ffmpeg_decodes_cleanly(&out);
}

#[test]
fn flv_copy_of_an_h264_file_keeps_every_packet() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "320x240", 3);
    let out = dir.path().join("out.flv");
    let run = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("H.264 copied"));
    assert_eq!(probe_codec_and_format(&out).1, "flv");
    let want = video_packet_hashes(&src);
    assert_eq!(want.len(), 75);
    assert_eq!(video_packet_hashes(&out), want, "the copy changed packets");
}

#[test]
fn size_and_bitrate_re_encode_an_h264_file() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "320x240", 2);
    let out = dir.path().join("small.flv");
    let run = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&out),
        "--size",
        "160x120",
        "--bitrate",
        "200k",
    ]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("encoded to H.264"));
    assert_eq!(probe_codec_and_format(&out).0, "h264,160,120");
    assert_eq!(ffprobe_frames(&out), 50);
    ffmpeg_decodes_cleanly(&out);
}

#[test]
fn vod_hls_from_an_h264_file_by_stream_copy_keeps_every_frame() {
    let dir = tempdir();
    // Keyframes every 3 s while segments are asked for every 2 s: a copy
    // can only cut at keyframes, and the target duration must say 3.
    let src = dir.path().join("in.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 10 -c:v libx264 -preset veryfast \
         -g 75 -keyint_min 75 -sc_threshold 0 -pix_fmt yuv420p",
    );
    let hls = dir.path().join("vod");
    let run = camflow_run(&["hls", path_str(&src), "--out", path_str(&hls), "--vod"]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("H.264 copied"));
    let list = Playlist::read(&hls);
    assert!(
        list.text.contains("#EXT-X-PLAYLIST-TYPE:VOD"),
        "{}",
        list.text
    );
    assert!(list.ended(), "{}", list.text);
    list.assert_honest();
    assert_eq!(list.target, 3, "{}", list.text);
    assert_eq!(list.segments.len(), 4, "{}", list.text);
    assert_eq!(segments_on_disk(&hls), 4);
    assert_segments_start_on_keyframes(&hls, &list);
    let playlist = hls.join("index.m3u8");
    assert_eq!(video_packet_hashes(&playlist), video_packet_hashes(&src));
    ffmpeg_decodes_cleanly(&playlist);
}

#[test]
fn a_reused_hls_folder_holds_only_the_new_run() {
    let dir = tempdir();
    let (long, short) = (dir.path().join("long.mp4"), dir.path().join("short.mp4"));
    for (file, seconds) in [(&long, 10), (&short, 4)] {
        ffmpeg_make(
            file,
            &format!(
                "-f lavfi -i testsrc2=size=160x120:rate=25 -t {seconds} -c:v libx264 \
                 -preset veryfast -g 50 -pix_fmt yuv420p"
            ),
        );
    }
    let hls = dir.path().join("hls");
    std::fs::create_dir_all(&hls).unwrap();
    std::fs::write(hls.join("notes.txt"), b"mine").unwrap();
    let out = path_str(&hls);
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&long),
        "--out",
        out,
        "--vod",
    ]));
    let before = Playlist::read(&hls);
    assert!(before.segments.len() >= 4, "{}", before.text);
    // A run that cannot start leaves the earlier output alone.
    let missing = dir.path().join("missing.mp4");
    let failed = camflow_run(&["hls", path_str(&missing), "--out", out, "--vod"]);
    assert!(!failed.status.success());
    assert_eq!(Playlist::read(&hls).text, before.text);
    assert_eq!(segments_on_disk(&hls), before.segments.len());
    // A shorter run: nothing of the long one is left behind.
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&short),
        "--out",
        out,
        "--vod",
    ]));
    let after = Playlist::read(&hls);
    assert!(
        after.segments.len() < before.segments.len(),
        "{}",
        after.text
    );
    assert_eq!(segments_on_disk(&hls), after.segments.len());
    assert_eq!(std::fs::read(hls.join("notes.txt")).unwrap(), b"mine");
    ffmpeg_decodes_cleanly(&hls.join("index.m3u8"));
}

#[test]
fn a_pause_in_the_source_is_cut_out_of_the_hls_timeline() {
    let dir = tempdir();
    // Five seconds, ten seconds of nothing, five more: a camera that
    // stalled. Keyframes every 2 s, none right after the pause.
    let src = dir.path().join("paused.mkv");
    ffmpeg_make(
        &src,
        "-f lavfi -t 10 -i testsrc2=size=160x120:rate=25 -vf setpts=PTS+gte(N\\,125)*10/TB \
         -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p",
    );
    // Copied, and encoded (a keyframe per segment, on stream time).
    for extra in [&[][..], &["--bitrate", "300k"][..]] {
        let hls = dir.path().join(format!("out{}", extra.len()));
        let mut args = vec!["hls", path_str(&src), "--out", path_str(&hls), "--vod"];
        args.extend_from_slice(extra);
        let run = camflow_run(&args);
        assert_ok(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("s of pauses cut out"), "{stderr}");
        // Without the cut, the segment before the pause would last 11 s
        // and EXT-X-TARGETDURATION would say so.
        let list = Playlist::read(&hls);
        list.assert_honest();
        assert_eq!(list.target, 2, "{}", list.text);
        let total: f64 = list.segments.iter().map(|(d, _)| d).sum();
        assert!((total - 10.0).abs() < 0.5, "{}", list.text);
        let playlist = hls.join("index.m3u8");
        assert_eq!(ffprobe_frames(&playlist), 250, "{extra:?}");
        if extra.is_empty() {
            assert_eq!(video_packet_hashes(&playlist), video_packet_hashes(&src));
        }
    }
}

#[test]
fn live_hls_from_an_mjpeg_camera_keeps_its_window_and_ends_the_list() {
    let (_camera, url) = mjpeg_camera("320x240", 9);
    let dir = tempdir();
    let hls = dir.path().join("live");
    let window = 3;
    let mut child = Command::new(camflow())
        .args([
            "hls",
            &url,
            "--out",
            path_str(&hls),
            "--segment-seconds",
            "1",
        ])
        .args(["--window", &window.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow hls");
    // While it runs: the playlist is always whole (replaced by rename),
    // lists at most the window, and the disk holds at most the window plus
    // one segment of grace (plus one just renamed, before its deletion).
    let start = Instant::now();
    let mut reads = 0;
    let mut most_listed = 0;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "hls did not end");
        if let Ok(text) = std::fs::read_to_string(hls.join("index.m3u8")) {
            reads += 1;
            assert!(text.starts_with("#EXTM3U\n"), "torn playlist: {text:?}");
            let list = Playlist::parse(&text);
            assert!(
                list.text.ends_with(".m4s\n") || list.ended(),
                "torn playlist: {text:?}"
            );
            assert!(list.segments.len() <= window, "{text}");
            most_listed = most_listed.max(list.segments.len());
            let on_disk = segments_on_disk(&hls);
            assert!(on_disk <= window + 2, "{on_disk} segments on disk");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    assert!(reads > 20, "only {reads} looks at the playlist");
    assert_eq!(most_listed, window);
    let list = Playlist::read(&hls);
    assert!(
        list.ended(),
        "no ENDLIST after the stream ended: {}",
        list.text
    );
    assert!(!list.text.contains("PLAYLIST-TYPE"), "{}", list.text);
    assert!(
        !list.text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"),
        "{}",
        list.text
    );
    list.assert_honest();
    assert!(segments_on_disk(&hls) <= window + 1);
    assert_segments_start_on_keyframes(&hls, &list);
    // ffprobe decodes every frame and reports any decoder error. (The
    // camera sends no timestamps: frames are timed by arrival, and a run
    // of `ffmpeg -f null` would round them to its guessed 25 fps and call
    // two close ones out of order, which is its muxer's view, not the
    // stream's.)
    assert!(ffprobe_frames(&hls.join("index.m3u8")) >= 25);
}

#[test]
fn ctrl_c_ends_a_live_playlist_cleanly() {
    let camera = Camera::start(&[
        "--protocol",
        "mjpeg-http",
        "--size",
        "320x240",
        "--fps",
        "25",
    ]);
    let dir = tempdir();
    let hls = dir.path().join("live");
    let child = Command::new(camflow())
        .args([
            "hls",
            &camera.url,
            "--out",
            path_str(&hls),
            "--segment-seconds",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow hls");
    let start = Instant::now();
    while Playlist::parse(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default())
        .segments
        .len()
        < 2
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no segments");
        std::thread::sleep(Duration::from_millis(50));
    }
    send_ctrl_c(&child);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Playlist::read(&hls);
    assert!(list.ended(), "{}", list.text);
    // As above: ffprobe decodes every frame, without errors.
    assert!(ffprobe_frames(&hls.join("index.m3u8")) > 0);
}

#[test]
fn bad_outputs_are_one_clear_line() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "160x120", 1);
    let src = path_str(&src);
    // Nothing listens: one line naming the source and the server.
    let port = closed_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/cam");
    let out = camflow_run(&["transcode", src, "--to", "flv", "-o", &url]);
    let line = assert_one_line_error(&out, src, "refused");
    // The stream key is a secret on most services: never printed.
    assert!(
        line.contains(&format!("rtmp://127.0.0.1:{port}/live/***")),
        "{line}"
    );
    assert!(!line.contains("/live/cam"), "{line}");
    // No such folder.
    let out = camflow_run(&["transcode", src, "--to", "flv", "-o", "/nonexistent/x.flv"]);
    assert_one_line_error(&out, src, "no such folder");
    // Not something camflow pushes to.
    let out = camflow_run(&["transcode", src, "--to", "flv", "-o", "ftp://host/x.flv"]);
    assert_one_line_error(&out, "ftp://host/x.flv", "rtmp://");
    // A password in the push URL is never printed.
    let secret = format!("rtmp://u:hunter2@127.0.0.1:{}/live/cam", closed_port());
    let out = camflow_run(&["transcode", src, "--to", "flv", "-o", &secret]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    // HLS into a path that is a file.
    let file = dir.path().join("afile");
    std::fs::write(&file, b"x").unwrap();
    let out = camflow_run(&["hls", src, "--out", path_str(&file)]);
    assert_one_line_error(&out, src, "cannot create");
    // Odd sizes cannot be 4:2:0 H.264.
    let out = camflow_run(&[
        "transcode",
        src,
        "--to",
        "flv",
        "-o",
        "x.flv",
        "--size",
        "333x200",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("even"));
    // A source that fails leaves no output file behind.
    let flv = dir.path().join("never.flv");
    let missing = dir.path().join("missing.mp4");
    let out = camflow_run(&[
        "transcode",
        path_str(&missing),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]);
    assert!(!out.status.success());
    assert!(!flv.exists());
    // ... nor an HLS folder it would have made.
    let hls = dir.path().join("never");
    let out = camflow_run(&["hls", path_str(&missing), "--out", path_str(&hls)]);
    assert!(!out.status.success());
    assert!(!hls.exists());
}

#[test]
fn the_summary_says_audio_was_left_out() {
    let dir = tempdir();
    let src = dir.path().join("av.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=160x120:rate=25 -f lavfi -i sine=frequency=440 -t 1 \
         -c:v libx264 -c:a aac -shortest",
    );
    let out = dir.path().join("av.flv");
    let run = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("audio left out"));
}

#[test]
fn an_rtmp_server_that_hangs_up_gets_a_reason_in_one_line() {
    // nginx-rtmp refuses by closing the connection, with no message: at
    // connect for an application it does not have, after `publish` for a
    // stream it may not take.
    let nginx = common::nginx::NginxRtmp::start_with("allow publish 192.0.2.1; deny publish all;");
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "160x120", 1);
    let src = path_str(&src);
    let wrong_app = format!("rtmp://127.0.0.1:{}/nosuchapp/key", nginx.port());
    let out = camflow_run(&["transcode", src, "--to", "flv", "-o", &wrong_app]);
    let line = assert_one_line_error(&out, src, "application name");
    assert!(line.contains("/nosuchapp/***"), "{line}");
    // Paced, so that the push is still going when nginx hangs up: a second
    // of video sent at once can sit whole in the socket's buffer first.
    let long = make_h264_file(dir.path(), "long.mp4", "160x120", 4);
    let refused = nginx.url("secretkey");
    let out = camflow_run(&[
        "transcode",
        path_str(&long),
        "--to",
        "flv",
        "-o",
        &refused,
        "--realtime",
    ]);
    let line = assert_one_line_error(&out, path_str(&long), "stream key");
    assert!(!line.contains("secretkey"), "{line}");
    assert!(
        nginx.error_log().contains("access forbidden"),
        "{}",
        nginx.error_log()
    );
}

#[test]
fn rtmp_push_to_nginx_reads_back_as_h264_flv() {
    let nginx = common::nginx::NginxRtmp::start();
    let url = nginx.url("cam");
    let dir = tempdir();
    // A file pushed at its own pace (--realtime), as a live camera would;
    // keyframes every second, as a reader joins the stream at one.
    let src = dir.path().join("in.mp4");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 8 -c:v libx264 -preset veryfast -g 25 \
         -pix_fmt yuv420p",
    );
    let started = Instant::now();
    let push = Command::new(camflow())
        .args([
            "transcode",
            path_str(&src),
            "--to",
            "flv",
            "-o",
            &url,
            "--realtime",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow transcode");
    // A reader joins the live stream while it is pushed.
    std::thread::sleep(Duration::from_millis(500));
    let probe = common::nginx::ffprobe_live(&url, 3.0);
    let out = push.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", nginx.error_log());
    assert!(stderr.contains("H.264 copied"), "{stderr}");
    // Paced: eight seconds of video cannot have gone out much faster.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "--realtime pushed 8 s of video in {:?}",
        started.elapsed()
    );
    assert_eq!(probe.format_name, "flv", "{probe:?}");
    let video = probe
        .video()
        .unwrap_or_else(|| panic!("no video: {probe:?}"));
    assert_eq!(video.codec_name, "h264");
    assert_eq!((video.width, video.height), (Some(320), Some(240)));
    assert!(video.frames >= 25, "{probe:?}");
}

#[test]
fn rtmp_push_of_an_mjpeg_camera_is_encoded_live() {
    let nginx = common::nginx::NginxRtmp::start();
    let url = nginx.url("mjpeg");
    let (_camera, cam) = mjpeg_camera("320x240", 8);
    let push = Command::new(camflow())
        .args(["transcode", &cam, "--to", "flv", "-o", &url, "--fps", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow transcode");
    std::thread::sleep(Duration::from_millis(500));
    let probe = common::nginx::ffprobe_live(&url, 3.0);
    let out = push.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", nginx.error_log());
    let video = probe
        .video()
        .unwrap_or_else(|| panic!("no video: {probe:?}"));
    assert_eq!(video.codec_name, "h264");
    // About 3 s at 10 fps, less up to a GOP (2 s) for joining at a keyframe.
    assert!((8..=35).contains(&video.frames), "{probe:?}");
}

#[test]
fn live_hls_from_a_camera_plays_in_chromium() {
    let camera = Camera::start(&[
        "--protocol",
        "mjpeg-http",
        "--size",
        "320x240",
        "--fps",
        "25",
    ]);
    let dir = tempdir();
    let hls = dir.path().join("live");
    let mut child = Command::new(camflow())
        .args([
            "hls",
            &camera.url,
            "--out",
            path_str(&hls),
            "--segment-seconds",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("camflow hls");
    // The player serves the folder; camflow makes it once it has started,
    // which on a loaded machine takes a moment.
    let made_by = std::time::Instant::now() + Duration::from_secs(30);
    while !hls.is_dir() && std::time::Instant::now() < made_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    let played = common::browser::play_hls_with(&hls, "index.m3u8", 2.0, Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let played = played.unwrap_or_else(|e| panic!("Chromium did not play it: {e}"));
    assert!(played.current_time > 2.0, "{played:?}");
}

#[test]
fn vod_hls_plays_in_chromium() {
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "320x240", 6);
    let hls = dir.path().join("vod");
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&src),
        "--out",
        path_str(&hls),
        "--vod",
    ]));
    let t = common::browser::play_hls(&hls, 2.0).unwrap_or_else(|e| panic!("{e}"));
    assert!(t > 2.0);
}

#[test]
fn what_a_copy_would_break_is_encoded_or_refused() {
    let dir = tempdir();
    let d = dir.path();
    // Raw H.264 with B-frames has no timestamps: a copy could not be timed,
    // so it is decoded (in presentation order) and encoded.
    let raw = d.join("bf.h264");
    ffmpeg_make(
        &raw,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -bf 3 -g 50",
    );
    let out = d.join("raw.flv");
    let run = camflow_run(&[
        "transcode",
        path_str(&raw),
        "--to",
        "flv",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("encoded to H.264"));
    assert_eq!(ffprobe_frames(&out), 50);
    ffmpeg_decodes_cleanly(&out);
    // 4:4:4 H.264 plays in no browser: encoded to 4:2:0 for HLS.
    let x444 = d.join("x444.mp4");
    ffmpeg_make(
        &x444,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -pix_fmt yuv444p",
    );
    let hls = d.join("h444");
    let run = camflow_run(&["hls", path_str(&x444), "--out", path_str(&hls), "--vod"]);
    assert_ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("encoded to H.264"));
    let fmt = run_limited(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=pix_fmt",
                "-of",
                "csv=p=0",
            ])
            .arg(hls.join("index.m3u8")),
        Duration::from_secs(30),
    );
    let fmt = String::from_utf8_lossy(&fmt.stdout).to_string();
    assert_eq!(fmt.lines().next(), Some("yuv420p"), "{fmt}");
    // A stream joined in the middle: the copy starts at its first keyframe.
    let ts = d.join("long.ts");
    ffmpeg_make(
        &ts,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -c:v libx264 -g 25 -bf 0 -f mpegts",
    );
    let bytes = std::fs::read(&ts).unwrap();
    let cut = d.join("mid.ts");
    // Whole TS packets (188 bytes), a third of the way in.
    std::fs::write(&cut, &bytes[(bytes.len() / 3 / 188) * 188..]).unwrap();
    let hls = d.join("mid");
    assert_ok(&camflow_run(&[
        "hls",
        path_str(&cut),
        "--out",
        path_str(&hls),
        "--vod",
    ]));
    let list = Playlist::read(&hls);
    assert_segments_start_on_keyframes(&hls, &list);
    ffmpeg_decodes_cleanly(&hls.join("index.m3u8"));
    // The output is the input: refused before anything is written.
    let flv = d.join("same.flv");
    let src = make_h264_file(d, "src.mp4", "160x120", 1);
    assert_ok(&camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]));
    let before = std::fs::read(&flv).unwrap();
    let run = camflow_run(&[
        "transcode",
        path_str(&flv),
        "--to",
        "flv",
        "-o",
        path_str(&flv),
    ]);
    assert_one_line_error(&run, path_str(&flv), "the input itself");
    assert_eq!(std::fs::read(&flv).unwrap(), before);
}

#[test]
fn a_percent_in_the_hls_folder_name_is_refused() {
    // The hls muxer would take it for a number pattern and lose segments.
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "160x120", 1);
    let hls = dir.path().join("cam%d");
    let run = camflow_run(&["hls", path_str(&src), "--out", path_str(&hls), "--vod"]);
    assert_one_line_error(&run, path_str(&src), "must not contain '%'");
    assert!(!hls.exists());
}

#[test]
fn a_stalled_rtmp_server_is_given_up_on_ctrl_c() {
    // Accepts the TCP connection, never answers the RTMP handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "160x120", 1);
    let url = format!("rtmp://127.0.0.1:{port}/live/s");
    let child = Command::new(camflow())
        .args([
            "transcode",
            path_str(&src),
            "--to",
            "flv",
            "-o",
            &url,
            "--timeout",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("camflow transcode");
    let (_conn, _) = listener.accept().expect("camflow connects");
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    send_ctrl_c(&child);
    let out = child.wait_with_output().expect("wait");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "Ctrl-C took {:?} against a stalled server",
        asked.elapsed()
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn mp4_file_from_an_mjpeg_file_and_no_mp4_over_rtmp() {
    let dir = tempdir();
    let src = dir.path().join("in.avi");
    ffmpeg_make(
        &src,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v mjpeg -q:v 3",
    );
    let out = dir.path().join("out.mp4");
    let run = camflow_run(&[
        "transcode",
        path_str(&src),
        "--to",
        "mp4",
        "-o",
        path_str(&out),
    ]);
    assert_ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("encoded to H.264"), "{stderr}");
    let (codec, format) = probe_codec_and_format(&out);
    assert_eq!(codec, "h264,320,240");
    assert!(format.contains("mp4"), "{format}");
    assert_eq!(ffprobe_frames(&out), 50);
    ffmpeg_decodes_cleanly(&out);

    // RTMP carries FLV only: refused before connecting.
    let url = format!("rtmp://127.0.0.1:{}/live/cam", closed_port());
    let run = camflow_run(&["transcode", path_str(&src), "--to", "mp4", "-o", &url]);
    assert_one_line_error(&run, "rtmp://127.0.0.1", "use --to flv");
}

/// Bytes no output could produce, standing for an earlier file at the
/// output path.
fn earlier_file(path: &Path) -> Vec<u8> {
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &bytes).expect("write the earlier file");
    bytes
}

/// Names in `dir` other than `keep`: a temporary file left behind, or a
/// new file that should not be there.
fn files_besides(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// The camera sends its init segment, so the input opens and so does the
/// output, then drops in the first fragment: the earlier file used to be
/// truncated to an FLV or MP4 header. A closed port fails before that.
#[test]
fn a_failing_transcode_leaves_an_earlier_file_as_it_was() {
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fault",
        "drop-mid-fragment",
        "--fault-after",
        "0",
    ]);
    let closed = format!("ws://127.0.0.1:{}/live", closed_port());
    let dir = tempdir();
    for to in ["flv", "mp4"] {
        let name = format!("old.{to}");
        let out_path = dir.path().join(&name);
        let before = earlier_file(&out_path);
        for (url, what) in [(&cam.url, "dropped"), (&closed, "refused")] {
            let out = camflow_run(&[
                "transcode",
                url,
                "--to",
                to,
                "-o",
                path_str(&out_path),
                "--reconnect",
                "never",
            ]);
            let line = assert_one_line_error(&out, "ws://127.0.0.1", what);
            assert!(!line.contains("before it"), "{line}");
            assert!(
                std::fs::read(&out_path).expect("the earlier file") == before,
                "{url} --to {to}: {name} changed"
            );
            assert_eq!(
                files_besides(dir.path(), &["old.flv", "old.mp4"]),
                Vec::<String>::new()
            );
        }
    }
}

/// Ctrl-C while the camera sends nothing after its init segment: a clean
/// stop (the input opens at the stop, and so did the output, which used to
/// truncate the earlier file and say it wrote 0 frames).
#[test]
fn a_transcode_stopped_before_any_video_leaves_an_earlier_file_as_it_was() {
    let cam = Camera::start(&[
        "--size",
        "320x240",
        "--fault",
        "stall",
        "--fault-after",
        "0",
    ]);
    let dir = tempdir();
    for to in ["flv", "mp4"] {
        let name = format!("old.{to}");
        let out_path = dir.path().join(&name);
        let before = earlier_file(&out_path);
        let mut child = Command::new(camflow())
            .args(["transcode", &cam.url, "--to", to, "-o", path_str(&out_path)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("camflow transcode");
        std::thread::sleep(Duration::from_millis(1500));
        let status = ctrl_c_and_wait(&mut child);
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(status.success(), "--to {to}: {status:?}: {stderr}");
        assert!(!stderr.contains("wrote"), "--to {to}: {stderr}");
        assert!(
            std::fs::read(&out_path).expect("the earlier file") == before,
            "--to {to}: {name} changed"
        );
        assert_eq!(
            files_besides(dir.path(), &["old.flv", "old.mp4"]),
            Vec::<String>::new()
        );
    }
}

/// A run that succeeds replaces the earlier file, keeps its permissions,
/// and leaves no temporary file.
#[test]
fn a_successful_transcode_replaces_an_earlier_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let src = make_h264_file(dir.path(), "in.mp4", "320x240", 2);
    for to in ["flv", "mp4"] {
        let name = format!("old.{to}");
        let out_path = dir.path().join(&name);
        earlier_file(&out_path);
        std::fs::set_permissions(&out_path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let run = camflow_run(&[
            "transcode",
            path_str(&src),
            "--to",
            to,
            "-o",
            path_str(&out_path),
        ]);
        assert_ok(&run);
        assert_eq!(ffprobe_frames(&out_path), 50, "--to {to}");
        let mode = std::fs::metadata(&out_path)
            .expect("output")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "--to {to}");
    }
    assert_eq!(
        files_besides(dir.path(), &["in.mp4", "old.flv", "old.mp4"]),
        Vec::<String>::new()
    );
}
