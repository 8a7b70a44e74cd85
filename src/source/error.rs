//! The parsers' errors and socket errors as [`SourceError`] kinds. In: an
//! error of a `proto` parser or of a connect; out: the kind a caller acts
//! on, with the parser's own words as the message.

use std::io;

use super::SourceError;
use crate::proto::{bmff, evostream, fmp4, jpeg, multipart};

/// A connect that failed: refused when the server said so, else
/// unreachable. `message` is the text to show.
pub(crate) fn connect_failed(e: &io::Error, message: String) -> SourceError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        SourceError::Refused(message)
    } else {
        SourceError::Unreachable(message)
    }
}

/// The `io::Error` somewhere in `e`'s chain of sources, if any.
pub(crate) fn find_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

impl From<jpeg::Error> for SourceError {
    fn from(e: jpeg::Error) -> Self {
        match e {
            jpeg::Error::TooLarge { .. } => SourceError::TooLarge(e.to_string()),
        }
    }
}

impl From<multipart::Error> for SourceError {
    fn from(e: multipart::Error) -> Self {
        let message = e.to_string();
        match e {
            multipart::Error::TooLarge { .. } => SourceError::TooLarge(message),
            multipart::Error::Truncated { .. } => SourceError::Ended(message),
            // Headers that never end are most often a wrong boundary.
            multipart::Error::HeadersTooLarge { pos }
            | multipart::Error::BadContentLength { pos, .. } => {
                SourceError::protocol("multipart", Some(pos), message)
            }
        }
    }
}

impl From<evostream::Error> for SourceError {
    fn from(e: evostream::Error) -> Self {
        let message = e.to_string();
        match e {
            evostream::Error::Oversized { .. } | evostream::Error::FragmentOversized { .. } => {
                SourceError::TooLarge(message)
            }
            evostream::Error::UnfinishedFragment { .. } => SourceError::Ended(message),
            evostream::Error::NotEvoStream { pos, .. }
            | evostream::Error::Truncated { pos, .. } => {
                SourceError::protocol("EvoStream", Some(pos), message)
            }
        }
    }
}

impl From<fmp4::Error> for SourceError {
    fn from(e: fmp4::Error) -> Self {
        let message = e.to_string();
        match e {
            fmp4::Error::Oversized { .. }
            | fmp4::Error::InitOversized { .. }
            | fmp4::Error::Box {
                source: bmff::Error::TooLarge { .. },
                ..
            } => SourceError::TooLarge(message),
            fmp4::Error::NotFmp4(_) => SourceError::NotVideo(message),
            fmp4::Error::Box { pos, .. } | fmp4::Error::FragmentBeforeInit { pos, .. } => {
                SourceError::protocol("fMP4", Some(pos), message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_errors_keep_their_words_and_get_a_kind() {
        let e = SourceError::from(jpeg::Error::TooLarge { pos: 5, max: 1024 });
        assert_eq!(e.to_string(), "jpeg at byte 5 is over the 1024-byte limit");
        assert!(matches!(e, SourceError::TooLarge(_)));
        let e = SourceError::from(multipart::Error::BadContentLength {
            pos: 9,
            value: "x".into(),
        });
        assert!(matches!(
            e,
            SourceError::Protocol {
                what: "multipart",
                pos: Some(9),
                ..
            }
        ));
        let e = SourceError::from(evostream::Error::UnfinishedFragment { pos: 3 });
        assert_eq!(
            e,
            SourceError::Ended("stream ended inside the fragment begun at byte 3".into())
        );
    }

    #[test]
    fn a_refused_connect_is_refused_and_others_unreachable() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            connect_failed(&refused, "x".into()),
            SourceError::Refused(_)
        ));
        let other = io::Error::from(io::ErrorKind::HostUnreachable);
        assert!(matches!(
            connect_failed(&other, "x".into()),
            SourceError::Unreachable(_)
        ));
    }
}
