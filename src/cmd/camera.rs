//! `camflow camera`: runs the simulated camera until Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpListener;

use crate::camera::{self, CameraFault, CameraProtocol, CameraSettings};
use crate::cli::CameraArgs;
use crate::pipeline::synth::SynthSettings;
use crate::shutdown::Shutdown;

pub fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| anyhow!("--size {s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| anyhow!("--size {s:?}: bad width"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| anyhow!("--size {s:?}: bad height"))?;
    // H.264 in 4:2:0 wants even sizes; the counter band wants some room.
    if w < 32 || h < 32 || w > 7680 || h > 4320 || !w.is_multiple_of(2) || !h.is_multiple_of(2) {
        bail!("--size {s:?}: width and height must be even, from 32x32 to 7680x4320");
    }
    Ok((w, h))
}

pub async fn run(args: CameraArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let (width, height) = parse_size(args.size.as_deref().unwrap_or("640x480"))?;
    let fps = args.fps.unwrap_or(25.0);
    if !(fps.is_finite() && (0.1..=240.0).contains(&fps)) {
        bail!("--fps must be between 0.1 and 240");
    }
    let mjpeg = matches!(
        args.protocol,
        CameraProtocol::TcpMjpeg | CameraProtocol::Vbc | CameraProtocol::MjpegHttp
    );
    if args.auth.is_some() && args.protocol != CameraProtocol::MjpegHttp {
        bail!("--auth applies to --protocol mjpeg-http");
    }
    if let Some(a) = &args.auth {
        if !a.contains(':') {
            bail!("--auth {a:?} is not user:password");
        }
    }
    if let Some(input) = &args.input {
        match (input.is_dir(), mjpeg) {
            (true, false) => bail!(
                "{}: a folder of JPEGs is served with --protocol tcp-mjpeg or vbc",
                input.display()
            ),
            (false, true) => bail!(
                "{}: --protocol tcp-mjpeg and vbc serve the test pattern or a folder of JPEGs",
                input.display()
            ),
            (false, false) if !input.is_file() => bail!("{}: no such file", input.display()),
            (false, false) if args.fps.is_some() => {
                bail!("--fps applies to the test pattern and to a folder of JPEGs, not to a video file")
            }
            _ => {}
        }
    }
    if args.exif_thumbnail && !mjpeg {
        bail!("--exif-thumbnail applies to --protocol tcp-mjpeg and vbc");
    }
    if mjpeg {
        if let Some(f) = args.fault.filter(|f| {
            !matches!(
                f,
                CameraFault::DropMidFragment | CameraFault::Stall | CameraFault::Garbage
            )
        }) {
            bail!("--fault {f:?} is for the WebSocket protocols; tcp-mjpeg and vbc take drop-mid-fragment, stall and garbage");
        }
        if args.protocol == CameraProtocol::MjpegHttp
            && args
                .fault
                .is_some_and(|f| f != CameraFault::DropMidFragment)
        {
            bail!("mjpeg-http takes --fault drop-mid-fragment only");
        }
        if args.require_header.is_some() || args.expect_text.is_some() {
            bail!("--require-header and --expect-text are for the WebSocket protocols");
        }
    }
    let settings = Arc::new(CameraSettings {
        synth: SynthSettings {
            input: args.input.clone(),
            width,
            height,
            fps,
            frames: args.frames,
        },
        protocol: args.protocol,
        exif_thumbnail: args.exif_thumbnail,
        auth: args.auth.clone(),
        digest_nonce: args.digest.then(|| format!("{:016x}", fastrand::u64(..))),
        fault: args.fault,
        fault_after: args.fault_after,
        fault_once: args.fault_once,
        clients: Default::default(),
        require_header: match &args.require_header {
            None => None,
            Some(h) => {
                let (n, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow!("--require-header {h:?} is not `Name: value`"))?;
                Some((n.trim().to_string(), v.trim().to_string()))
            }
        },
        expect_text: args.expect_text.clone(),
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let url = match args.protocol {
        CameraProtocol::EvostreamWs | CameraProtocol::Fmp4Ws => {
            format!("ws://{addr}{}", camera::PATH)
        }
        CameraProtocol::TcpMjpeg => format!("tcp://{addr}"),
        CameraProtocol::Vbc => format!("vbc://{addr}"),
        CameraProtocol::MjpegHttp => format!("http://{addr}{}", camera::MJPEG_PATH),
    };
    // The URL is the first line on stdout, for scripts and tests to read.
    let mut out = std::io::stdout();
    writeln!(out, "{url}")?;
    out.flush()?;
    eprintln!(
        "camera: serving {} on {url} (Ctrl-C to stop)",
        match &args.input {
            Some(p) => p.display().to_string(),
            None => format!("a {width}x{height} test pattern at {fps} fps"),
        }
    );
    if args.protocol == CameraProtocol::MjpegHttp {
        camera::serve_http(listener, settings, shutdown.subscribe()).await;
    } else if mjpeg {
        camera::serve_tcp(listener, settings, shutdown.subscribe()).await;
    } else {
        camera::serve(listener, settings, shutdown.subscribe()).await;
    }
    Ok(ExitCode::SUCCESS)
}
