//! Output key templates (docs/design.md §2): `[integration_name]/[table_name]/[table_version]/[timestamp_loaded].jsonl`.
//!
//! A template is parsed once, at configuration time, into literal text and elements; expanding
//! it for a load is then infallible apart from the length limit. This module is pure: it does
//! no I/O and knows nothing about where the key is written (the `file` and `s3` targets share
//! it).

use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fmt;

/// The longest key a template may expand to.
pub const MAX_KEY_LEN: usize = 500;

/// Characters a key may not contain, besides white space.
const FORBIDDEN: &[char] = &['!', '@', '#', '$', '%', '^', '&', '*'];

/// Widest expansion assumed for `[table_version]` when checking the length limit up front.
const VERSION_WIDTH: usize = 10;

/// One element of a key template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    IntegrationName,
    TableName,
    TableVersion,
    TimestampLoaded,
    YearLoaded,
    MonthLoaded,
    DayLoaded,
    HourLoaded,
}

impl Element {
    const ALL: [(Element, &'static str); 8] = [
        (Element::IntegrationName, "integration_name"),
        (Element::TableName, "table_name"),
        (Element::TableVersion, "table_version"),
        (Element::TimestampLoaded, "timestamp_loaded"),
        (Element::YearLoaded, "year_loaded"),
        (Element::MonthLoaded, "month_loaded"),
        (Element::DayLoaded, "day_loaded"),
        (Element::HourLoaded, "hour_loaded"),
    ];
    const REQUIRED: [Element; 4] = [
        Element::IntegrationName,
        Element::TableName,
        Element::TableVersion,
        Element::TimestampLoaded,
    ];

    fn from_name(name: &str) -> Option<Element> {
        Element::ALL.iter().find(|(_, n)| *n == name).map(|(e, _)| *e)
    }

    fn name(self) -> &'static str {
        Element::ALL
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Element(Element),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a key template was refused. Each message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTemplateError {
    #[error("unknown element [{0}]; the elements are {list}", list = element_list())]
    UnknownElement(String),
    #[error("a `[` at character {0} is never closed; elements are written like [table_name]")]
    Unclosed(usize),
    #[error("the required element{} {} missing; every key needs [integration_name], [table_name], [table_version] and [timestamp_loaded]", if .0.len() > 1 { "s" } else { "" }, missing_list(.0))]
    MissingRequired(Vec<String>),
    #[error("contains {0:?}; keys may not contain spaces or any of ! @ # $ % ^ & *")]
    ForbiddenChar(char),
    #[error(
        "expands to up to {0} characters; keys are limited to {MAX_KEY_LEN}: shorten the text or the names"
    )]
    TooLong(usize),
    #[error("must not start with `/`; keys are relative to the target's folder")]
    LeadingSlash,
}

fn element_list() -> String {
    Element::ALL
        .iter()
        .map(|(_, n)| format!("[{n}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_list(names: &[String]) -> String {
    let list = names
        .iter()
        .map(|n| format!("[{n}]"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{list} {}", if names.len() > 1 { "are" } else { "is" })
}

/// What a template is expanded with for one load.
#[derive(Debug, Clone)]
pub struct KeyValues<'a> {
    pub integration_name: &'a str,
    pub table_name: &'a str,
    pub table_version: u64,
    pub loaded_at: DateTime<Utc>,
}

impl KeyTemplate {
    /// The default template for an output format's file extension (`jsonl` or `csv`).
    pub fn default_for(extension: &str) -> KeyTemplate {
        let text = format!("[integration_name]/[table_name]/[table_version]/[timestamp_loaded].{extension}");
        match KeyTemplate::parse(&text) {
            Ok(t) => t,
            // The default is a constant that satisfies every rule; this arm is unreachable.
            Err(_) => KeyTemplate {
                source: text,
                pieces: Vec::new(),
            },
        }
    }

    /// Parses a template, checking the elements, the required ones and the characters.
    pub fn parse(text: &str) -> Result<KeyTemplate, KeyTemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find('[') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find(']')
                .ok_or(KeyTemplateError::Unclosed(offset + open + 1))?;
            let name = &after[..close];
            let element =
                Element::from_name(name).ok_or_else(|| KeyTemplateError::UnknownElement(name.to_string()))?;
            pieces.push(Piece::Element(element));
            offset += open + close + 2;
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if text.starts_with('/') {
            return Err(KeyTemplateError::LeadingSlash);
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || FORBIDDEN.contains(c)) {
            return Err(KeyTemplateError::ForbiddenChar(c));
        }
        let missing: Vec<String> = Element::REQUIRED
            .iter()
            .filter(|e| !pieces.contains(&Piece::Element(**e)))
            .map(|e| e.name().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(KeyTemplateError::MissingRequired(missing));
        }
        Ok(KeyTemplate {
            source: text.to_string(),
            pieces,
        })
    }

    /// Checks that the template, expanded for this connection and table, stays within
    /// [`MAX_KEY_LEN`] whatever the version and load time, and that the names are allowed in
    /// a key.
    pub fn check_for(&self, integration_name: &str, table_name: &str) -> Result<(), KeyTemplateError> {
        for name in [integration_name, table_name] {
            if let Some(c) = name.chars().find(|c| c.is_whitespace() || FORBIDDEN.contains(c)) {
                return Err(KeyTemplateError::ForbiddenChar(c));
            }
        }
        let longest: usize = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.chars().count(),
                Piece::Element(Element::IntegrationName) => integration_name.chars().count(),
                Piece::Element(Element::TableName) => table_name.chars().count(),
                Piece::Element(Element::TableVersion) => VERSION_WIDTH,
                Piece::Element(Element::TimestampLoaded) => 10,
                Piece::Element(Element::YearLoaded) => 4,
                Piece::Element(_) => 2,
            })
            .sum();
        if longest > MAX_KEY_LEN {
            return Err(KeyTemplateError::TooLong(longest));
        }
        Ok(())
    }

    /// Expands the template for one load. Month, day and hour are zero-padded to two digits.
    pub fn expand(&self, v: &KeyValues<'_>) -> Result<String, KeyTemplateError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Element(e) => match e {
                    Element::IntegrationName => out.push_str(v.integration_name),
                    Element::TableName => out.push_str(v.table_name),
                    Element::TableVersion => out.push_str(&v.table_version.to_string()),
                    Element::TimestampLoaded => out.push_str(&v.loaded_at.timestamp().to_string()),
                    Element::YearLoaded => out.push_str(&format!("{:04}", v.loaded_at.year())),
                    Element::MonthLoaded => out.push_str(&format!("{:02}", v.loaded_at.month())),
                    Element::DayLoaded => out.push_str(&format!("{:02}", v.loaded_at.day())),
                    Element::HourLoaded => out.push_str(&format!("{:02}", v.loaded_at.hour())),
                },
            }
        }
        let len = out.chars().count();
        if len > MAX_KEY_LEN {
            return Err(KeyTemplateError::TooLong(len));
        }
        Ok(out)
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Makes a key unique by inserting `-N` before the file extension of its last segment:
/// `a/b/17.jsonl` with `n = 2` becomes `a/b/17-2.jsonl`. `n = 1` returns the key unchanged.
pub fn with_suffix(key: &str, n: u32) -> String {
    if n <= 1 {
        return key.to_string();
    }
    let name_start = key.rfind('/').map_or(0, |i| i + 1);
    match key[name_start..].find('.') {
        Some(dot) if dot > 0 => {
            let at = name_start + dot;
            format!("{}-{n}{}", &key[..at], &key[at..])
        }
        _ => format!("{key}-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parse_table() {
        use KeyTemplateError::*;
        let req = "[integration_name]/[table_name]/[table_version]/[timestamp_loaded]";
        let cases: Vec<(String, Result<(), KeyTemplateError>)> = vec![
            (format!("{req}.jsonl"), Ok(())),
            (
                "[table_name]/[timestamp_loaded]-[table_version]-[integration_name]".into(),
                Ok(()),
            ),
            (
                format!("x/[year_loaded]/[month_loaded]/[day_loaded]/[hour_loaded]/{req}"),
                Ok(()),
            ),
            (
                format!("{req}/[minute_loaded]"),
                Err(UnknownElement("minute_loaded".into())),
            ),
            (format!("{req}/[table_name"), Err(Unclosed(68))),
            (
                "[integration_name]/[table_name].jsonl".into(),
                Err(MissingRequired(vec![
                    "table_version".into(),
                    "timestamp_loaded".into(),
                ])),
            ),
            (format!("{req} x"), Err(ForbiddenChar(' '))),
            (format!("{req}!"), Err(ForbiddenChar('!'))),
            (format!("{req}@"), Err(ForbiddenChar('@'))),
            (format!("{req}#"), Err(ForbiddenChar('#'))),
            (format!("{req}$"), Err(ForbiddenChar('$'))),
            (format!("{req}%"), Err(ForbiddenChar('%'))),
            (format!("{req}^"), Err(ForbiddenChar('^'))),
            (format!("{req}&"), Err(ForbiddenChar('&'))),
            (format!("{req}*"), Err(ForbiddenChar('*'))),
            (format!("/{req}"), Err(LeadingSlash)),
        ];
        for (text, want) in cases {
            assert_eq!(KeyTemplate::parse(&text).map(|_| ()), want, "template {text:?}");
        }
    }

    #[test]
    fn expands_every_element() {
        let t = KeyTemplate::parse(
            "[integration_name]/[table_name]/v[table_version]/[year_loaded]-[month_loaded]-[day_loaded]T[hour_loaded]/[timestamp_loaded].jsonl",
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let key = t
            .expand(&KeyValues {
                integration_name: "acme",
                table_name: "products",
                table_version: 3,
                loaded_at: at,
            })
            .unwrap();
        assert_eq!(
            key,
            format!("acme/products/v3/2026-03-04T05/{}.jsonl", at.timestamp())
        );
    }

    #[test]
    fn length_limit_counts_names() {
        let t = KeyTemplate::default_for("jsonl");
        assert!(t.check_for("acme", "products").is_ok());
        let long = "x".repeat(480);
        assert!(matches!(
            t.check_for(&long, "products"),
            Err(KeyTemplateError::TooLong(_))
        ));
        assert_eq!(t.check_for("a b", "t"), Err(KeyTemplateError::ForbiddenChar(' ')));
    }

    #[test]
    fn suffixes() {
        assert_eq!(with_suffix("a/b/17.jsonl", 1), "a/b/17.jsonl");
        assert_eq!(with_suffix("a/b/17.jsonl", 2), "a/b/17-2.jsonl");
        assert_eq!(with_suffix("a.d/b/17", 3), "a.d/b/17-3");
        assert_eq!(with_suffix("a/.hidden", 2), "a/.hidden-2");
    }
}
