//! Passwords out of everything camflow shows: URLs, and error texts from
//! lower layers that quote them.

use url::Url;

/// The URL as text with any password replaced.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
        return u.to_string();
    }
    // `ws://admin:123/secret@host/` parses as host "admin", port 123: the
    // password hides in the path. Any `@` after the scheme is masked.
    let s = u.to_string();
    mask_userinfo(&s).unwrap_or(s)
}

/// `scheme://***@rest` when `s` has an `@` after its scheme: everything up
/// to the last `@` is masked (masking too much is harmless).
fn mask_userinfo(s: &str) -> Option<String> {
    let start = s.find("://")? + 3;
    let at = s.get(start..)?.rfind('@')? + start;
    Some(format!("{}***{}", s.get(..start)?, s.get(at..)?))
}

/// Masks the password of every URL quoted in `text` (`scheme://user:***@…`),
/// and nothing else. Error texts from lower layers (HTTP and WebSocket
/// clients) sometimes quote the URL they were given. Only the credential
/// part of a URL is touched: replacing the password's text wherever it
/// occurs would mangle the message (a password `e` would star every `e`) and
/// the pattern of stars would give the password away.
pub fn redact_text(text: &str, url: Option<&Url>) -> String {
    let mut t = text.to_string();
    // A URL whose password hides in what parsed as its path
    // (`ws://admin:123/secret@host/`) is masked whole, as `redact` shows it.
    if let Some(u) = url {
        let raw = u.as_str();
        if raw.contains('@') {
            let shown = redact(u);
            if shown != raw {
                t = t.replace(raw, &shown);
            }
        }
    }
    mask_url_passwords(&t)
}

/// `scheme://user:pass@host` → `scheme://user:***@host` for every URL in
/// `text`. A URL's authority ends at `/`, `?`, `#`, white space or a quote;
/// its userinfo is everything before the authority's last `@`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "/?#\"'<>`()".contains(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Password removal for a source argument that may not parse as a URL:
/// anything between `://` and the `@` of the authority is masked.
pub fn redact_arg(s: &str) -> String {
    if let Ok(u) = Url::parse(s) {
        return redact(&u);
    }
    mask_userinfo(s).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted() {
        let u = Url::parse("wss://me:s3cret@example.com:8420/x.vod?progressive").unwrap();
        let s = redact(&u);
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("me:***@example.com"), "{s}");
    }

    #[test]
    fn password_is_redacted_even_in_a_url_that_does_not_parse() {
        let s = redact_arg("ws://admin:hunter2@cam.example:99999/live");
        assert_eq!(s, "ws://***@cam.example:99999/live");
        for weird in [
            "ws://admin:se/cret@cam.example:99999/live",
            "ws://admin:se?cret@cam.example:99999/live",
            "ws://admin:se#cret@cam.example/live",
            "ws://admin:123/secret@127.0.0.1:1/live",
        ] {
            let s = redact_arg(weird);
            assert!(!s.contains("cret"), "{weird} → {s}");
        }
    }

    #[test]
    fn only_the_url_password_is_masked_in_a_message() {
        let spec = Url::parse("rtsp://admin:e@127.0.0.1:554/live").ok();
        let msg = "rtsp://admin:e@127.0.0.1:554/live: Unable to connect to RTSP server: \
                   Connection refused";
        assert_eq!(
            redact_text(msg, spec.as_ref()),
            "rtsp://admin:***@127.0.0.1:554/live: Unable to connect to RTSP server: \
             Connection refused"
        );
        // Any URL quoted by a lower layer, in parentheses or at the end.
        assert_eq!(
            mask_url_passwords(
                "error sending request for url (http://u:p%40ss@h:1/x) or ws://a:b@c"
            ),
            "error sending request for url (http://u:***@h:1/x) or ws://a:***@c"
        );
        // A user name alone is no secret; text without URLs is untouched.
        assert_eq!(mask_url_passwords("http://u@h/ fine"), "http://u@h/ fine");
        assert_eq!(mask_url_passwords("a :// b @ c"), "a :// b @ c");
        // A password that parsed as a path is masked with the whole URL.
        let odd = "ws://admin:123/secret@127.0.0.1:1/live";
        let spec = Url::parse(odd).ok();
        let s = redact_text(&format!("{odd}: refused"), spec.as_ref());
        assert!(!s.contains("secret"), "{s}");
        assert!(s.ends_with(": refused"), "{s}");
    }
}
