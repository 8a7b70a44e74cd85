//! Sinks: where frames and streams end up on disk.
//!
//! In: decoded [`BgrFrame`](crate::packet::BgrFrame)s, or JPEGs as
//! received, for [`npy`] (a folder of `.npy` files and `frames.csv`); a
//! receiver's fMP4 [`Chunk`](crate::packet::Chunk)s for [`fmp4_file`] (one
//! MP4, written exactly as received, [`fmp4_file::record`]). Out: files a
//! reader never sees half-written: each `.npy` is renamed into place before
//! its row is written, and an MP4 takes the output's name only once it
//! holds video ([`fmp4_file::PendingFile`], which the pipeline's muxers use
//! too). `sink` imports the waist (`packet`), never `source`.

pub mod fmp4_file;
pub mod npy;

use std::path::{Path, PathBuf};

/// Removes the files in `dir` whose names `ours` claims: an earlier run's
/// output in a folder that is used again, so that nothing from two runs is
/// mixed. Only names camflow writes itself are ever claimed, so a user's own
/// files in the folder stay. Names that are not UTF-8 are never ours.
/// An error names the file (or the folder) that could not be handled.
pub fn remove_own(
    dir: &Path,
    ours: impl Fn(&str) -> bool,
) -> Result<(), (PathBuf, std::io::Error)> {
    for entry in std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))? {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        if entry.file_name().to_str().is_some_and(&ours) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| (path, e))?;
        }
    }
    Ok(())
}

/// One or more ASCII digits, nothing else: the numbers in camflow's file
/// names (`frame_000012.npy`, `seg3.m4s`, `chunk-0-00005.m4s`).
pub fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claimed_names_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.npy", "b.txt", "c.npy"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.npy.dir")).unwrap();
        remove_own(dir.path(), |n| n.ends_with(".npy")).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["b.txt", "d.npy.dir"]);
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let (path, _) = remove_own(&gone, |_| true).unwrap_err();
        assert_eq!(path, gone);
    }

    #[test]
    fn numbers() {
        assert!(is_number("0") && is_number("000123"));
        assert!(!is_number("") && !is_number("12a") && !is_number("-1") && !is_number("１"));
    }
}
