//! A source's settings as plain data: [`SourceOptions`] (checked, what the
//! receivers read) and [`SourceConfig`] (what a caller writes: the CLI's
//! flags, a relay's TOML table, a Python call's keyword arguments), with
//! `SourceOptions::try_from(config)` doing every check in one place.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{reconnect::ReconnectPolicy, rtsp::RtspTransport, tls, SourceSpec, WsFraming};
use crate::proto::rtp_h264::OnLoss;
use crate::redact::redact_arg;

/// Default bound on one network message or fragment. A 1080p H.264 keyframe
/// is rarely over 1 MiB; EvoStream's 3-byte length field tops out at 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 8 << 20;

/// The default connect and read timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default Canon VB handshake: four newlines.
pub const DEFAULT_VBC_HELLO: &str = r"\n\n\n\n";

/// A source's settings, checked. Build one with [`SourceOptions::new`] and
/// set what differs from the defaults, or from a [`SourceConfig`].
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Where the video comes from.
    pub spec: SourceSpec,
    /// Connect timeout, and the longest wait for a whole item (a JPEG, a
    /// fragment, a picture) while streaming.
    pub timeout: Duration,
    /// Extra request headers (HTTP, WebSocket), in order.
    pub headers: Vec<(String, String)>,
    /// Text messages sent after a WebSocket connects.
    pub ws_send: Vec<String>,
    /// How WebSocket binary messages carry the video.
    pub ws_framing: WsFraming,
    /// Largest network message or fMP4 fragment accepted, in bytes.
    pub max_message: usize,
    /// `vbc://`: the handshake sent after connecting.
    pub vbc_hello: Vec<u8>,
    /// Largest picture accepted, in bytes (JPEGs, RTSP access units).
    pub max_frame: usize,
    /// User name for cameras that ask for one (also taken from the URL).
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// When a live source is reconnected.
    pub reconnect: ReconnectPolicy,
    /// `rtsp://`: how RTP travels.
    pub rtsp_transport: RtspTransport,
    /// `rtsp://` H.264 and H.265: what happens to a picture a lost packet
    /// damaged.
    pub on_loss: OnLoss,
    /// Which certificates https:// and wss:// sources accept.
    pub tls: tls::TlsSettings,
    /// HTTP cameras that serve one JPEG per request: pictures asked for per
    /// second (a command's `--fps`); `None` asks as fast as the camera
    /// answers, at most once a second.
    pub poll_fps: Option<f64>,
}

impl SourceOptions {
    /// The defaults (those of the CLI's flags) for `spec`.
    pub fn new(spec: SourceSpec) -> Self {
        SourceOptions {
            spec,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
            ws_send: Vec::new(),
            ws_framing: WsFraming::default(),
            max_message: DEFAULT_MAX_MESSAGE,
            vbc_hello: b"\n\n\n\n".to_vec(),
            max_frame: crate::proto::jpeg::DEFAULT_MAX_FRAME,
            user: None,
            password: None,
            reconnect: ReconnectPolicy::default(),
            rtsp_transport: RtspTransport::default(),
            on_loss: OnLoss::default(),
            tls: tls::TlsSettings::default(),
            poll_fps: None,
        }
    }

    /// A warning about the source (what a receiver noticed and dealt
    /// with), logged with the source's name in front.
    pub fn say(&self, text: &str) {
        log::warn!("{}: {text}", self.spec.display_name());
    }
}

/// What is wrong with a setting: which one, and a one-line message
/// naming it as the CLI's flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionError {
    /// The setting, as the config key (`timeout`, `headers`, `source`).
    pub option: &'static str,
    /// The message a user sees.
    pub message: String,
}

fn invalid(option: &'static str, message: String) -> OptionError {
    OptionError { option, message }
}

/// A source's settings as a caller writes them, before checking. Every
/// field has the CLI's default, so a TOML table or a keyword-argument map
/// names only what differs. The names are the CLI's flags with `_` for `-`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SourceConfig {
    /// A file path, `-` for stdin, or a URL.
    pub source: String,
    /// Seconds.
    pub timeout: f64,
    /// `Name: value` each.
    pub headers: Vec<String>,
    /// WebSocket text messages to send after connecting.
    pub ws_send: Vec<String>,
    /// `auto`, `evostream` or `raw`.
    #[serde(deserialize_with = "from_text")]
    pub ws_framing: WsFraming,
    /// Bytes.
    pub max_message_bytes: usize,
    /// With escapes: `\n \r \t \0 \\ \xNN`.
    pub vbc_hello: String,
    /// `on-error`, `always` or `never`.
    #[serde(deserialize_with = "from_text")]
    pub reconnect: ReconnectPolicy,
    /// User name for cameras that ask for one.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// `auto`, `tcp` or `udp`.
    #[serde(deserialize_with = "from_text")]
    pub rtsp_transport: RtspTransport,
    /// `skip-to-keyframe` or `conceal`.
    #[serde(deserialize_with = "from_text")]
    pub on_loss: OnLoss,
    /// Bytes.
    pub max_frame_bytes: usize,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Trust the certificates in this PEM file instead of the system's.
    pub ca_cert: Option<PathBuf>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            source: String::new(),
            timeout: DEFAULT_TIMEOUT.as_secs_f64(),
            headers: Vec::new(),
            ws_send: Vec::new(),
            ws_framing: WsFraming::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE,
            vbc_hello: DEFAULT_VBC_HELLO.into(),
            reconnect: ReconnectPolicy::default(),
            user: None,
            password: None,
            rtsp_transport: RtspTransport::default(),
            on_loss: OnLoss::default(),
            max_frame_bytes: crate::proto::jpeg::DEFAULT_MAX_FRAME,
            insecure: false,
            ca_cert: None,
        }
    }
}

/// Serde for the policy enums: they parse from their flag spelling.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl TryFrom<SourceConfig> for SourceOptions {
    type Error = OptionError;

    fn try_from(c: SourceConfig) -> Result<SourceOptions, OptionError> {
        let spec = SourceSpec::parse(&c.source)
            .map_err(|e| invalid("source", format!("{}: {e}", redact_arg(&c.source))))?;
        let timeout = Duration::try_from_secs_f64(c.timeout)
            .ok()
            .filter(|t| !t.is_zero() && t.as_secs() <= 86_400)
            .ok_or_else(|| {
                invalid(
                    "timeout",
                    "--timeout must be more than 0 and at most 86400 seconds".into(),
                )
            })?;
        let headers = c
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid("headers", m))?;
        if c.max_message_bytes < 1024 {
            return Err(invalid(
                "max_message_bytes",
                "--max-message-bytes must be at least 1024".into(),
            ));
        }
        if c.max_frame_bytes < 1024 {
            return Err(invalid(
                "max_frame_bytes",
                "--max-frame-bytes must be at least 1024".into(),
            ));
        }
        let vbc_hello = unescape(&c.vbc_hello)
            .map_err(|e| invalid("vbc_hello", format!("--vbc-hello {:?}: {e}", c.vbc_hello)))?;
        if c.password.is_some() && c.user.is_none() {
            return Err(invalid("password", "a password needs a user".into()));
        }
        if c.insecure && c.ca_cert.is_some() {
            return Err(invalid(
                "insecure",
                "--insecure and --ca-cert cannot be used together".into(),
            ));
        }
        if let Some(path) = &c.ca_cert {
            // Read now so that a bad file is one line before anything starts.
            tls::load_ca_file(path).map_err(|e| invalid("ca_cert", e.to_string()))?;
        }
        Ok(SourceOptions {
            spec,
            timeout,
            headers,
            ws_send: c.ws_send,
            ws_framing: c.ws_framing,
            max_message: c.max_message_bytes,
            vbc_hello,
            max_frame: c.max_frame_bytes,
            user: c.user,
            password: c.password,
            reconnect: c.reconnect,
            rtsp_transport: c.rtsp_transport,
            on_loss: c.on_loss,
            tls: tls::TlsSettings {
                insecure: c.insecure,
                ca_cert: c.ca_cert,
            },
            poll_fps: None,
        })
    }
}

/// `Name: value` → (`Name`, `value`), both trimmed; the message says what
/// is wrong otherwise.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("header {h:?} has no name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Bytes from text with C-style escapes: `\n`, `\r`, `\t`, `\0`, `\\` and
/// `\xNN`.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x needs two hex digits")?;
                out.push(v);
            }
            _ => return Err(r"unknown escape (use \n \r \t \0 \\ \xNN)".into()),
        }
    }
    if out.is_empty() {
        return Err("empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_escapes() {
        assert_eq!(unescape(r"\n\n\n\n").unwrap(), b"\n\n\n\n");
        assert_eq!(unescape(r"a\x0Ab\0").unwrap(), b"a\nb\0");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape("").is_err());
    }

    #[test]
    fn defaults_are_the_flags_defaults() {
        let c = SourceConfig {
            source: "rtsp://cam/x".into(),
            ..Default::default()
        };
        let o = SourceOptions::try_from(c).unwrap();
        let n = SourceOptions::new(SourceSpec::parse("rtsp://cam/x").unwrap());
        assert_eq!(o.timeout, n.timeout);
        assert_eq!(o.vbc_hello, n.vbc_hello);
        assert_eq!(o.max_frame, n.max_frame);
        assert_eq!(o.max_message, n.max_message);
        assert_eq!(o.reconnect, n.reconnect);
        assert_eq!(o.rtsp_transport, n.rtsp_transport);
    }

    #[test]
    fn a_config_table_deserializes_with_policy_spellings() {
        let c: SourceConfig = serde_json::from_str(
            r#"{"source": "rtsp://cam/x", "rtsp_transport": "udp", "reconnect": "always",
                "headers": ["Origin: https://site"], "timeout": 2.5}"#,
        )
        .unwrap();
        let o = SourceOptions::try_from(c).unwrap();
        assert_eq!(o.rtsp_transport, RtspTransport::Udp);
        assert_eq!(o.reconnect, ReconnectPolicy::Always);
        assert_eq!(o.headers, vec![("Origin".into(), "https://site".into())]);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        let bad = serde_json::from_str::<SourceConfig>(r#"{"reconnect": "sometimes"}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("unknown reconnect policy"));
    }

    #[test]
    fn each_bad_setting_is_named() {
        let with = |f: &dyn Fn(&mut SourceConfig)| {
            let mut c = SourceConfig {
                source: "http://cam/x".into(),
                ..Default::default()
            };
            f(&mut c);
            SourceOptions::try_from(c).unwrap_err()
        };
        assert_eq!(with(&|c| c.timeout = 0.0).option, "timeout");
        assert_eq!(with(&|c| c.headers = vec!["x".into()]).option, "headers");
        assert_eq!(with(&|c| c.max_frame_bytes = 1).option, "max_frame_bytes");
        assert_eq!(with(&|c| c.vbc_hello = r"\q".into()).option, "vbc_hello");
        assert_eq!(with(&|c| c.password = Some("p".into())).option, "password");
        let e = with(&|c| c.source = "foo://u:secret@h/".into());
        assert_eq!(e.option, "source");
        assert!(!e.message.contains("secret"), "{e}");
    }
}
