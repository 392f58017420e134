//! Text for people: an error with its causes on one line, and bounded excerpts of partner
//! data for messages, logs and state (docs/design.md §4.5: no message holds more than a bounded
//! excerpt of what a partner sent).
//!
//! Pure functions of their inputs; nothing here prints or logs.

/// How many characters of partner data a message quotes at most.
pub const EXCERPT_CHARS: usize = 256;

/// An error and its causes in one line (`a: b: c`), for people: the SDK's own context display
/// also prints the raw response, which is no help in a terminal.
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers often repeat their cause's text; keep each piece once.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `text` whole when it has at most [`EXCERPT_CHARS`] characters, else its first ones
/// followed by `… (N bytes in all)`.
pub fn excerpt(text: &str) -> String {
    excerpt_of(text, EXCERPT_CHARS)
}

/// [`excerpt`] with a limit of `max` characters.
pub fn excerpt_of(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// Names quoted as Rust debug strings and joined with `, `, at most [`EXCERPT_CHARS`] of
/// them shown and each an [`excerpt`], with the count of the others.
pub fn quoted_list(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{:?}", excerpt(n)))
        .collect();
    if names.len() > SHOWN {
        out.push(format!("and {} more", names.len() - SHOWN));
    }
    excerpt_of(&out.join(", "), EXCERPT_CHARS * 4)
}

/// `text` with its control characters (line breaks, tabs, ESC and the other C0 and C1
/// codes, DEL) written as escapes (`\n`, `\t`, `\u{1b}`), for text output: an object key or a
/// value a partner wrote can then neither forge a log line nor drive a terminal.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A URL as messages may show it: userinfo and the query string (where credentials travel)
/// replaced by `***`, the fragment dropped.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(a URL that cannot be parsed)".to_string(),
    }
}

/// Why sending credentials to `url` is refused: plain `http://` to a host that is not
/// loopback. `None` when it is fine (https, or a loopback host).
pub fn plaintext_to_remote(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    if u.scheme() != "http" {
        return None;
    }
    let loopback = match u.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!loopback).then(|| u.host_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let cases = [
            (
                "https://ingest.example.com/rows",
                "https://ingest.example.com/rows",
            ),
            (
                "https://user:pw@h.example/p?api_key=s3cret#x",
                "https://***@h.example/p?***",
            ),
            ("http://h:8080/p?a=1&b=2", "http://h:8080/p?***"),
            ("nonsense", "(a URL that cannot be parsed)"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
        let remote = [
            ("http://ingest.example.com/x", Some("ingest.example.com")),
            ("http://10.1.2.3/x", Some("10.1.2.3")),
            ("https://ingest.example.com/x", None),
            ("http://127.0.0.1:9/x", None),
            ("http://127.8.9.10/x", None),
            ("http://localhost/x", None),
            ("http://[::1]:80/x", None),
        ];
        for (url, want) in remote {
            assert_eq!(plaintext_to_remote(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("plain/key.csv", "plain/key.csv"),
            ("a\nb", "a\\nb"),
            ("x\r\n2026-11-30 INFO forged", "x\\r\\n2026-11-30 INFO forged"),
            ("\u{1b}[2J\u{1b}]0;title\u{7}", "\\u{1b}[2J\\u{1b}]0;title\\u{7}"),
            ("tab\there", "tab\\there"),
            ("del\u{7f} c1\u{9b}", "del\\u{7f} c1\\u{9b}"),
            ("é \" \\ ok", "é \" \\ ok"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt_of("abc", 3), "abc");
        assert_eq!(excerpt_of("abcd", 3), "abc… (4 bytes in all)");
        assert_eq!(excerpt_of("ééé", 2), "éé… (6 bytes in all)");
        assert_eq!(
            excerpt(&"x".repeat(10_000)).len(),
            256 + "… (10000 bytes in all)".len()
        );
    }

    #[test]
    fn lists() {
        assert_eq!(quoted_list(&["a".into(), "b\"".into()]), "\"a\", \"b\\\"\"");
        let many: Vec<String> = (0..100_000).map(|i| format!("column {i}")).collect();
        let shown = quoted_list(&many);
        assert!(shown.len() < 1200, "{}", shown.len());
        assert!(shown.starts_with("\"column 0\", \"column 1\""), "{shown}");
        assert!(shown.ends_with("and 99980 more"), "{shown}");
        let huge = vec!["h".repeat(1 << 20)];
        assert!(quoted_list(&huge).len() < 400);
    }
}
