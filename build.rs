//! Fails early, in one line, when FFmpeg's development files are missing,
//! instead of letting ffmpeg-sys-next's bindgen step fail with pages of output.

use std::process::Command;

const LIBS: [&str; 5] = [
    "libavformat",
    "libavcodec",
    "libswscale",
    "libavutil",
    "libturbojpeg",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let missing: Vec<&str> = LIBS
        .iter()
        .copied()
        .filter(|lib| {
            !Command::new("pkg-config")
                .args(["--exists", lib])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "error: development files not found ({}): run scripts/setup",
            missing.join(", ")
        );
        std::process::exit(1);
    }
}
