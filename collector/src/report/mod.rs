//! The leadership evidence report: figures from the store (`data`), recommendations from fixed
//! rules (`rules`), rendered as self-contained HTML, PDF (krilla), CSV (one file per table) or JSON
//! (docs/report.schema.json). docs/REPORTS.md describes every figure and rule.
//!
//! Architecture invariants:
//! - Every figure is computed once, in `data`; renderers only lay out [`data::Report`], so all
//!   formats show the same numbers.
//! - Nothing in a report is fetched from outside: no URL, font or script is referenced.
//! - Endpoint strings are data: escaped by askama in HTML, drawn as glyphs in the PDF (no markup
//!   language in between), quoted and formula-guarded in CSV.
//! - Pseudonymised reports never contain a real user or host name (`pseudonym`).

pub mod data;
pub mod email;
pub mod html;
pub mod pdf;
pub mod pseudonym;
pub mod rules;
pub mod schedule;
pub mod tables;

use std::path::Path;
use std::str::FromStr;

pub use data::{Report, ReportRequest};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
    Csv,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    /// The media type of a one-file output.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!(
                "unknown format `{text}`: use html, pdf, csv or json"
            )),
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot render the HTML: {0}")]
    Html(#[from] askama::Error),
    #[error("cannot typeset the PDF: {0}")]
    Pdf(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A rendered report: one file, or (CSV) one file per table.
#[derive(Debug, Clone)]
pub enum Rendered {
    File(Vec<u8>),
    Tables(Vec<(String, Vec<u8>)>),
}

/// Renders `report` as `format`.
pub fn render(report: &Report, format: Format) -> Result<Rendered, ReportError> {
    let tables = tables::tables(report);
    Ok(match format {
        Format::Json => Rendered::File(data::to_json(report)),
        Format::Html => Rendered::File(html::render(report, &tables)?),
        Format::Pdf => Rendered::File(pdf::render(report, &tables)?),
        Format::Csv => Rendered::Tables(
            tables
                .iter()
                .map(|table| (format!("{}.csv", table.name), tables::csv(table)))
                .collect(),
        ),
    })
}

/// Writes a rendered report to `path`: the file itself, or for CSV a directory of `<table>.csv`
/// (created if missing). Files are written whole to a temporary name and renamed.
pub fn write(rendered: &Rendered, path: &Path) -> Result<Vec<String>, ReportError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReportError::Write { path, source }
    };
    match rendered {
        Rendered::File(bytes) => {
            write_atomically(path, bytes).map_err(failed(path))?;
            Ok(vec![path.display().to_string()])
        }
        Rendered::Tables(files) => {
            std::fs::create_dir_all(path).map_err(failed(path))?;
            let mut written = Vec::new();
            for (name, bytes) in files {
                let file = path.join(name);
                write_atomically(&file, bytes).map_err(failed(&file))?;
                written.push(file.display().to_string());
            }
            Ok(written)
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".part");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Parses a period length: `30d`, `12h`, `90m`, `2w`.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}`: use e.g. 30d, 12h, 2w");
    // The unit is the last character, which may be more than one byte in hostile input.
    let last = text.char_indices().next_back().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(last);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    if number <= 0 || number > 3_660 * 86_400_000 / unit_ms {
        return Err(format!("`{text}` must be positive and at most 10 years"));
    }
    Ok(number * unit_ms)
}

/// Parses a point in time: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`, midnight UTC),
/// or a duration before `now_ms` (`7d`).
pub fn parse_time_ms(text: &str, now_ms: i64) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(text, &date_format) {
        return Ok(date.midnight().assume_utc().unix_timestamp() * 1000);
    }
    parse_duration_ms(text)
        .map(|ago| now_ms - ago)
        .map_err(|_| format!("`{text}`: use RFC 3339, YYYY-MM-DD, or a duration like 7d"))
}

/// The report period `[since, until)` from `--since` and `--until`. `since` is a duration back
/// from `until` (e.g. `30d`) or a point in time; `until` defaults to now.
pub fn period(since: &str, until: Option<&str>, now_ms: i64) -> Result<(i64, i64), String> {
    let until_ms = match until {
        Some(text) => parse_time_ms(text, now_ms)?,
        None => now_ms,
    };
    let since_ms = match parse_duration_ms(since) {
        Ok(length) => until_ms - length,
        Err(_) => parse_time_ms(since, now_ms)?,
    };
    if since_ms >= until_ms {
        return Err("the period is empty: --since must be before --until".into());
    }
    if until_ms - since_ms > 3_660 * 86_400_000 {
        return Err("the period is longer than 10 years".into());
    }
    Ok((since_ms, until_ms))
}

/// A group name as given on the command line or in a query: 1 to 128 bytes, no control
/// characters (PostgreSQL refuses NUL in text; no group name has them).
pub fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > 128 || group.chars().any(char::is_control) {
        return Err("the group must be 1 to 128 bytes without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let now = 1_700_000_000_000;
        assert_eq!(period("30d", None, now), Ok((now - 30 * 86_400_000, now)));
        assert_eq!(
            period("2026-11-01", Some("2026-11-08"), now),
            Ok((1_793_491_200_000, 1_794_096_000_000))
        );
        assert_eq!(
            period("1w", Some("2026-11-08T00:00:00Z"), now),
            Ok((1_793_491_200_000, 1_794_096_000_000))
        );
        assert!(period("2026-11-08", Some("2026-11-01"), now).is_err());
        assert!(period("0d", None, now).is_err());
        assert!(period("30x", None, now).is_err());
        assert!(period("-3d", None, now).is_err());
        assert!("docx".parse::<Format>().is_err());
    }

    #[test]
    fn durations_ending_in_a_multibyte_character_are_refused() {
        // These once panicked (a byte split inside the last character).
        for text in ["é", "7é", "30d\u{1F600}", "\u{0080}", ""] {
            assert!(parse_duration_ms(text).is_err(), "{text:?}");
            assert!(period(text, None, 1_700_000_000_000).is_err(), "{text:?}");
        }
    }
}
