//! Presentation helpers shared by pages and the API: time formats, safe display of hostile text,
//! and rendering of askama templates.

use std::fmt;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;
use time::macros::format_description;

/// The HTML escaper of every `.html` template (configured in `collector/askama.toml`): the five
/// characters that matter in text and quoted attributes become named entities.
#[derive(Debug, Clone, Copy)]
pub struct HtmlEscaper;

impl askama::filters::Escaper for HtmlEscaper {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        let mut copied = 0;
        for (index, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            // ASCII bytes are always char boundaries, so these slices are valid UTF-8.
            dest.write_str(&text[copied..index])?;
            dest.write_str(entity)?;
            copied = index + 1;
        }
        dest.write_str(&text[copied..])
    }
}

/// Renders a page, or a plain 500 when the template fails (which would be a bug, logged).
pub(super) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A small page with a title and a sentence, e.g. for 404 or 500.
pub(super) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

/// The 500 page; the cause has been logged by the caller.
pub(super) fn internal_error_page() -> Response {
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "Something went wrong; the error has been logged.",
    )
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-01-31T08:15:00.123Z`; `None` outside years 0..=9999.
pub(super) fn rfc3339_ms(unix_ms: i64) -> Option<String> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).ok()?;
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .ok()
}

/// RFC 3339 UTC to the second, for tables, e.g. `2025-01-31T08:15:00Z`.
pub(super) fn rfc3339_seconds(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "(invalid time)".to_owned())
}

/// Text from an endpoint made safe to look at: control characters and the invisible characters
/// that reorder or hide text (bidi overrides, zero-width) are replaced by `\u{..}` escapes, so a
/// responder sees exactly what was sent. HTML escaping is the template's job, not this one's.
pub(super) fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_deceptive(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `visible(text)`, cut to at most `max_chars` characters with an ellipsis when it was longer.
pub(super) fn visible_truncated(text: &str, max_chars: usize) -> String {
    let shown = visible(text);
    match shown.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None => shown,
    }
}

/// `visible(text)` for multi-line notes: newlines and tabs are kept (the page shows them with
/// `white-space: pre-wrap`), every other hidden character is made visible.
pub(super) fn visible_note(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && c != '\t' && is_deceptive(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value&...` with every byte outside the URL-unreserved set percent-encoded; pairs with an
/// empty value are left out. The result goes into `href` attributes (the template escapes `&`).
pub(super) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs.iter().filter(|(_, value)| !value.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode(&mut out, key);
        out.push('=');
        percent_encode(&mut out, value);
    }
    out
}

/// `text` with every byte outside the URL-unreserved set percent-encoded (a path segment).
pub(super) fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    percent_encode(&mut out, text);
    out
}

fn percent_encode(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// What every signed-in page shows around its content: the navigation, the user, the logout form.
#[derive(Debug, Clone)]
pub(super) struct Chrome {
    pub user_name: String,
    pub role: &'static str,
    pub csrf: String,
    pub is_admin: bool,
    pub can_triage: bool,
}

impl Chrome {
    pub(super) fn new(user: &crate::store::SessionUser) -> Self {
        use crate::store::Role;
        Chrome {
            user_name: visible(&user.user_name),
            role: user.role.as_str(),
            csrf: user.csrf_token.clone(),
            is_admin: user.role >= Role::Admin,
            can_triage: user.role >= Role::Responder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_encoded() {
        assert_eq!(
            query_string(&[("host", "a b&c=<d>"), ("empty", ""), ("sort", "host")]),
            "host=a%20b%26c%3D%3Cd%3E&sort=host"
        );
        assert_eq!(query_string(&[("u", "日")]), "u=%E6%97%A5");
    }

    #[test]
    fn notes_keep_line_breaks_only() {
        assert_eq!(visible_note("a\nb\tc\u{1b}"), "a\nb\tc\\u{1b}");
    }

    fn escape(text: &str) -> String {
        let mut out = String::new();
        askama::filters::Escaper::write_escaped_str(&HtmlEscaper, &mut out, text).unwrap();
        out
    }

    #[test]
    fn html_escaping_uses_named_entities() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("日本<語>🤖"), "日本&lt;語&gt;🤖");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape(""), "");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn templates_escape_what_they_show() {
        let page = MessagePage {
            title: "<b>\"x\"</b>",
            message: "a & 'b'",
        };
        let html = page.render().unwrap();
        assert!(
            html.contains("<h1>&lt;b&gt;&quot;x&quot;&lt;/b&gt;</h1>"),
            "{html}"
        );
        assert!(html.contains("a &amp; &#39;b&#39;"), "{html}");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            rfc3339_ms(1_738_311_300_123).as_deref(),
            Some("2025-01-31T08:15:00.123Z")
        );
        assert_eq!(rfc3339_seconds(1_738_311_300_999), "2025-01-31T08:15:00Z");
        assert_eq!(rfc3339_ms(i64::MAX), None);
    }

    #[test]
    fn hidden_characters_become_visible() {
        assert_eq!(visible("ollama serve"), "ollama serve");
        assert_eq!(visible("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(visible("evil\u{202E}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(visible("line\nbreak\0"), "line\\u{a}break\\u{0}");
        assert_eq!(visible("日本語 <b>"), "日本語 <b>");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(visible_truncated("ééééé", 3), "ééé…");
        assert_eq!(visible_truncated("abc", 3), "abc");
        assert_eq!(visible_truncated("", 3), "");
    }
}
