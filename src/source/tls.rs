//! TLS for `https://` and `wss://` cameras: which certificates are trusted,
//! and the words for a certificate that is not.
//!
//! Cameras mostly present a certificate they made themselves (self-signed,
//! often for a name or address they no longer have) or one from their
//! maker's own CA; the system's authorities trust neither. `--ca-cert FILE`
//! trusts the certificates in FILE instead of the system's (as curl's
//! `--cacert`), and a camera presenting exactly one of them is trusted
//! whatever it is (a self-signed certificate is its own CA, which the
//! WebPKI rules refuse as a server's certificate). `--insecure` checks no
//! certificate at all (as curl's `-k`); the connection is still encrypted.
//!
//! In: [`TlsSettings`]. Out: a rustls `ClientConfig` for the HTTP client and
//! the WebSocket connector, or `None` for the default (the system's roots
//! for HTTP, the bundled WebPKI roots for WebSocket).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::SourceError;

/// Which server certificates a TLS source accepts: plain settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Accept any certificate (`--insecure`).
    pub insecure: bool,
    /// Trust the PEM certificates in this file instead of the system's
    /// authorities (`--ca-cert`).
    pub ca_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether these differ from the default trust.
    pub fn is_custom(&self) -> bool {
        self.insecure || self.ca_cert.is_some()
    }
}

/// The certificates of a PEM file: at least one, each usable as a root.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--ca-cert {shown}: not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca-cert {shown}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("--ca-cert {shown}: a certificate cannot be read ({e})"))?;
    }
    Ok(certs)
}

/// The TLS configuration for `settings`, or `None` for the default.
pub fn client_config(
    settings: &TlsSettings,
) -> Result<Option<Arc<rustls::ClientConfig>>, SourceError> {
    if !settings.is_custom() {
        return Ok(None);
    }
    // The provider is named rather than taken from the process default, so
    // that the library works for callers that installed none.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let trust = if settings.insecure {
        Trust::Any
    } else {
        let path = settings.ca_cert.as_deref().unwrap_or(Path::new(""));
        let certs = load_ca_file(path).map_err(SourceError::Settings)?;
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            // Checked by load_ca_file.
            let _ = roots.add(cert.clone());
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| SourceError::Settings(format!("--ca-cert {}: {e}", path.display())))?;
        Trust::Pinned {
            pinned: certs,
            webpki,
        }
    };
    let verifier = Arc::new(Verifier {
        trust,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Local(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// Which server certificates pass. Either way the handshake's signatures
/// are checked, so the session is encrypted to whoever holds the key.
#[derive(Debug)]
enum Trust {
    /// `--insecure`: every certificate.
    Any,
    /// `--ca-cert`: a server presenting one of the file's certificates
    /// itself (the camera's self-signed certificate, pinned); any other is
    /// checked by the WebPKI rules against the file's certificates as roots.
    Pinned {
        pinned: Vec<CertificateDer<'static>>,
        webpki: Arc<WebPkiServerVerifier>,
    },
}

#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Any => Ok(ServerCertVerified::assertion()),
            Trust::Pinned { pinned, .. }
                if pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Trust::Pinned { webpki, .. } => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What to try, said after every refused certificate.
const HINT: &str = "use --ca-cert FILE with the camera's certificate or its CA, \
                    or --insecure to skip the check";

/// The rustls error somewhere in `e`'s chain (I/O errors carry it inside:
/// `io::Error::source` skips the error it wraps, so it is looked up there).
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(r) = find_rustls(inner) {
                return Some(r);
            }
        }
        cur = err.source();
    }
    None
}

/// One line for a TLS failure in `e`'s chain, in words rather than rustls'
/// debug names, or `None` if the failure is not about TLS.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let r = find_rustls(e)?;
    let cert = match r {
        rustls::Error::InvalidCertificate(c) => c,
        other => return Some(format!("TLS failure: {other}")),
    };
    // A certificate for another name is not fixed by trusting another CA:
    // the URL has to name what the certificate is for.
    if matches!(
        cert,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    ) {
        return Some(
            "the camera's TLS certificate is for another name or address than the URL's: \
             use the name or address it was issued for in the URL, or --insecure to skip the \
             check"
                .into(),
        );
    }
    let what = match cert {
        CertificateError::UnknownIssuer => {
            "is not signed by an authority camflow trusts (the system's, or those in \
             --ca-cert FILE when given; it is self-signed, or from the camera maker's own CA)"
        }
        // webpki's words for a self-signed certificate: it is its own CA,
        // and a CA may not be a server's certificate. rustls passes webpki's
        // error on as an opaque `Other`, known only by its name.
        CertificateError::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
            "is self-signed (a CA certificate used as the camera's own)"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (is the clock right?)"
        }
        CertificateError::Revoked => "has been revoked",
        CertificateError::BadSignature | CertificateError::BadEncoding => {
            "is malformed or its signature does not verify"
        }
        _ => "is not trusted",
    };
    Some(format!("the camera's TLS certificate {what}: {HINT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_in_words_through_io_errors() {
        let cert = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        let text = describe(&io).expect("a TLS failure");
        assert!(text.contains("not signed by an authority"), "{text}");
        assert!(text.contains("--insecure") && text.contains("--ca-cert"));
        assert!(!text.contains("UnknownIssuer"), "{text}");
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let text = describe(&name).expect("a TLS failure");
        assert!(
            text.contains("another name") && !text.contains("--ca-cert"),
            "{text}"
        );
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(describe(&plain), None);
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("camflow-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = load_ca_file(&empty).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = load_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(
            e.starts_with("--ca-cert ") && e.contains("missing.pem"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let insecure = TlsSettings {
            insecure: true,
            ca_cert: None,
        };
        assert!(client_config(&insecure).unwrap().is_some());
        assert!(client_config(&TlsSettings::default()).unwrap().is_none());
    }
}
