//! `camflow package`: a file → MPEG-DASH with the video encrypted; the
//! work is [`crate::package`]'s.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};

use crate::cli::{CencScheme, PackageArgs};
use crate::cmd::decode::join;
use crate::cmd::progress::Progress;
use crate::package::{self, PackageSpec};
use crate::pipeline;
use crate::proto::cenc::{self, Scheme};
use crate::shutdown::Shutdown;

pub async fn run(args: PackageArgs, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let name = args.input.display().to_string();
    let key =
        cenc::parse_key16(&args.key).map_err(|e| anyhow!("--key: {}", hide(&e, &args.key)))?;
    let kid = cenc::parse_key16(&args.kid).map_err(|e| anyhow!("--kid: {e}"))?;
    let seg = args.segment_seconds;
    if !(seg.is_finite() && (0.5..=60.0).contains(&seg)) {
        bail!("--segment-seconds must be between 0.5 and 60");
    }
    if !args.input.is_file() {
        bail!("{name}: no such file");
    }
    let spec = PackageSpec {
        input: args.input.clone(),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| package::default_out(&args.input)),
        segment_seconds: seg,
        hls: args.hls,
        scheme: match args.scheme {
            CencScheme::Cbcs => Scheme::Cbcs,
            CencScheme::Cenc => Scheme::Cenc,
        },
        key,
        kid,
        transcode: args.transcode,
    };
    let stop = shutdown.flag();
    let quiet = args.quiet;
    let worker = pipeline::spawn("camflow-package", move || {
        let mut progress = Progress::new(quiet, "s");
        let r = package::package(
            &spec,
            &stop,
            &mut |done, total| {
                progress.show(|| {
                    if total > 0.0 {
                        format!(
                            "packaging: {done:.1} of {total:.1} s ({:.0}%)",
                            100.0 * done / total
                        )
                    } else {
                        format!("packaging: {done:.1} s")
                    }
                })
            },
            &mut |_| {},
        );
        progress.clear();
        r.map(|s| (s, spec))
    })
    .context("cannot start the package thread")?;
    match join(worker).await? {
        Ok((s, spec)) => {
            let mut text = format!(
                "packaged {:.1} s to {} (video encrypted with {}, KID {}{})",
                s.duration,
                s.mpd.display(),
                String::from_utf8_lossy(&spec.scheme.fourcc()),
                cenc::hex(&spec.kid),
                if s.audio { ", AAC audio clear" } else { "" }
            );
            if !s.skipped_audio.is_empty() {
                text.push_str(&format!("; audio left out: {}", s.skipped_audio.join(", ")));
            }
            Progress::summary(quiet, &text);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow!("{name}: {}", hide(&format!("{e:#}"), &args.key))),
    }
}

/// Never prints the key, whatever an error quotes.
fn hide(text: &str, key: &str) -> String {
    // The key as given and as parsed (without the spaces around it, which
    // the parser's message leaves out).
    [key, key.trim()]
        .into_iter()
        .filter(|k| !k.is_empty())
        .fold(text.to_string(), |t, k| t.replace(k, "***"))
}
