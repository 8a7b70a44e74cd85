//! The simulated camera's policies: which protocol it speaks, and how it
//! misbehaves. Plain enums, spelled in flags and config files by their
//! [`Display`](std::fmt::Display) and [`FromStr`](std::str::FromStr) names
//! (`evostream-ws`, `drop-mid-fragment`, ...); each variant's doc comment is
//! also its help text ([`CameraProtocol::describe`]), so a caller that lists
//! the values (the CLI's `--help`) says what this code says.

use std::fmt;
use std::str::FromStr;

/// A spelling that names no value of a policy enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {got:?} (possible values: {})", .possible.join(", "))]
pub struct UnknownValue {
    /// What was given.
    pub got: String,
    /// The spellings there are.
    pub possible: Vec<&'static str>,
}

/// Declares a policy enum with the spelling of each variant, and gives it
/// `ALL`, `name`, `describe` (the variant's doc comment, lines joined),
/// `Display` and `FromStr`, so the spellings and the help live in one place.
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:literal])+ $variant:ident = $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl $name {
            /// Every value, in the order help lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value's spelling in flags and config files.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $spelling,)+
                }
            }

            /// What the value does: its doc comment, as one line.
            pub fn describe(self) -> String {
                let doc = match self {
                    $(Self::$variant => concat!($($doc, "\n"),+),)+
                };
                doc.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| UnknownValue {
                        got: s.to_string(),
                        possible: Self::ALL.iter().map(|v| v.name()).collect(),
                    })
            }
        }
    };
}

spelled_enum! {
    /// The protocol the camera serves.
    pub enum CameraProtocol {
        /// Fragmented MP4 inside EvoStream's tagged framing, over a WebSocket.
        EvostreamWs = "evostream-ws",
        /// Plain fragmented MP4 over a WebSocket: one binary message per init
        /// segment or fragment, as many browser players' servers send it.
        Fmp4Ws = "fmp4-ws",
        /// Raw JPEGs back to back on a TCP connection (cheap cameras, encoders).
        TcpMjpeg = "tcp-mjpeg",
        /// Canon VB-C10 port: the client sends a 4-byte hello, the camera
        /// answers "100", then raw JPEGs follow.
        Vbc = "vbc",
        /// MJPEG over HTTP: multipart/x-mixed-replace with Content-Length and
        /// X-Timestamp in every part.
        MjpegHttp = "mjpeg-http",
    }
}

/// EvoStream: the protocol the camera was first written to stand in for.
impl Default for CameraProtocol {
    fn default() -> Self {
        Self::EvostreamWs
    }
}

spelled_enum! {
    /// Misbehaviours the simulated camera can put on, to test clients against.
    /// No default: a camera misbehaves only when asked to.
    pub enum CameraFault {
        /// Close the TCP connection in the middle of a fragment (or of a JPEG),
        /// without a WebSocket close.
        DropMidFragment = "drop-mid-fragment",
        /// Send a message shorter than its header declares.
        Truncated = "truncated",
        /// Send a message header declaring the largest possible length.
        Oversized = "oversized",
        /// Send bytes that are neither EvoStream-framed nor fMP4 as the first message.
        Garbage = "garbage",
        /// Send a fragment's messages out of order (a recoverable fault).
        OutOfOrder = "out-of-order",
        /// Stop sending video but keep the connection alive with pings.
        Stall = "stall",
        /// Restart the stream: a new init segment, timestamps from zero.
        Restart = "restart",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for p in CameraProtocol::ALL {
            assert_eq!(p.to_string().parse::<CameraProtocol>(), Ok(*p));
        }
        for f in CameraFault::ALL {
            assert_eq!(f.to_string().parse::<CameraFault>(), Ok(*f));
        }
        assert_eq!("mjpeg-http".parse(), Ok(CameraProtocol::MjpegHttp));
        assert_eq!("out-of-order".parse(), Ok(CameraFault::OutOfOrder));
        assert_eq!(CameraProtocol::default().name(), "evostream-ws");
    }

    #[test]
    fn unknown_spelling_lists_the_possible_values() {
        let err = "MjpegHttp".parse::<CameraProtocol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"MjpegHttp\" (possible values: evostream-ws, fmp4-ws, tcp-mjpeg, vbc, mjpeg-http)"
        );
    }

    #[test]
    fn describe_joins_the_doc_comment_lines() {
        assert_eq!(
            CameraProtocol::Vbc.describe(),
            "Canon VB-C10 port: the client sends a 4-byte hello, the camera answers \"100\", then raw JPEGs follow."
        );
        assert_eq!(
            CameraFault::Stall.describe(),
            "Stop sending video but keep the connection alive with pings."
        );
    }
}
