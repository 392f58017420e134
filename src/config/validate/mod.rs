//! The second phase of configuration: a pure function from [`RawConfig`] to [`Config`] that
//! checks every value and reports every problem, each with its file, key path and fix.
//!
//! It does no I/O: paths are resolved against the configuration folder but never opened, and
//! templates named by connections are looked up in the map the loader read.

use super::raw::{CountOrText, RawConnection, RawField, RawSettings, RawTemplate};
use super::*;
use crate::secret::Secret;
use crate::template::{BadRowLimit, Column, DecimalShape, Field, FieldType, TimeFormat, UnknownFields};
use chrono_tz::Tz;
use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use std::sync::LazyLock;

mod connection;
mod settings;
mod source;
mod template;

// One module per section of the files; their items are this module's, so that each section
// calls the others' checks by name.
use connection::*;
use settings::*;
pub use source::*;
pub use template::*;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("constant regex"));
static PRINCIPAL_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$")
        .expect("constant regex")
});
static TABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$").expect("constant regex"));

/// Resolves a configured path against the configuration folder, removing `.` and `..`
/// lexically so that messages show the path an operator would write.
pub fn resolve(dir: &Path, path: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in dir.join(path).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Collects the problems of one file; what each kind's validation reports into.
pub struct Problems<'a> {
    pub file: &'a str,
    /// The file's text, for the lines of keys (empty when there is none to point into).
    pub text: &'a str,
    pub out: &'a mut Vec<ConfigError>,
}

impl Problems<'_> {
    /// A problem of the key at the dotted path `key`.
    pub fn add(&mut self, key: &str, message: impl Into<String>) {
        self.out.push(ConfigError {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// A problem of the key at `path`, with the line the key is on.
    pub fn add_at(&mut self, path: &[super::PathStep], message: impl Into<String>) {
        let message = message.into();
        let message = match super::line_of(self.text, path) {
            Some(line) => format!("{message} (line {line})"),
            None => message,
        };
        self.add(&super::show_path(path), message);
    }

    /// How many problems have been found so far: compared before and after a part is
    /// checked, to tell whether that part passed.
    pub fn count(&self) -> usize {
        self.out.len()
    }
}

/// Checks the text of a template file (`templates/NAME.toml`) for a connection whose files
/// have a header row or not: the template, or every problem found (reported against `file`).
pub fn template_file(
    text: &str,
    file: &str,
    connection: &str,
    has_header: bool,
) -> Result<crate::template::Template, Vec<ConfigError>> {
    let raw: RawTemplate = super::parse_toml_all(text).map_err(|problems| {
        problems
            .into_iter()
            .map(|(key, message)| ConfigError {
                file: file.to_string(),
                key,
                message,
            })
            .collect::<Vec<_>>()
    })?;
    let mut out = Vec::new();
    let mut p = Problems {
        file,
        text,
        out: &mut out,
    };
    match template(&raw, connection, "", has_header, &mut p) {
        Some(t) => Ok(t),
        None => Err(out),
    }
}

/// Checks a configuration folder as read. Returns every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    match validate_each(raw) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(errors),
    }
}

/// [`validate`], keeping what is valid: the configuration with the connections that passed
/// (none when `s3-importd.toml` itself has problems), and every problem found.
pub fn validate_each(raw: RawConfig) -> (Option<Config>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let settings = settings(
        &raw.dir,
        raw.settings,
        &mut Problems {
            file: "s3-importd.toml",
            text: "",
            out: &mut errors,
        },
    );
    let mut templates = BTreeMap::new();
    for (name, t) in &raw.templates {
        let file = format!("templates/{name}.toml");
        let mut p = Problems {
            file: &file,
            text: "",
            out: &mut errors,
        };
        if let Some(t) = template(t, name, "", true, &mut p) {
            templates.insert(name.clone(), t);
        }
    }
    let mut connections = Vec::new();
    for (name, file, text, c, choice) in raw.connections {
        let mut p = Problems {
            file: &file,
            text: &text,
            out: &mut errors,
        };
        let known = Templates {
            raw: &raw.templates,
            checked: &templates,
        };
        if let Some(c) = connection(&raw.dir, &name, &file, c, choice, known, &mut p) {
            connections.push(c);
        }
    }
    connections.sort_by(|a, b| a.name.cmp(&b.name));
    // A format read out of order copies objects into the spool folder.
    if let Some(settings) = &settings {
        for c in &mut connections {
            c.format.scratch = Some(settings.spool_dir.clone());
        }
    }
    let config = settings.map(|settings| Config {
        dir: raw.dir,
        settings,
        connections,
        fingerprint: String::new(),
    });
    (config, errors)
}

/// A count from the files, or its default; out of `min..=max` it is a problem.
pub fn in_range(
    p: &mut Problems<'_>,
    key: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            p.add(key, format!("{v} is out of range; use {min} to {max}"));
            default
        }
    }
}

/// The range of `load_max_objects`, in `s3-importd.toml` and in a connection.
pub const LOAD_MAX_OBJECTS: (i64, i64) = (1, 1_000_000);
/// The range of `load_max_bytes`: 1 MiB to 1 TiB.
pub const LOAD_MAX_BYTES: (u64, u64) = (1 << 20, 1 << 40);

/// A number of bytes as written: an integer, or a string with a unit (`"512MiB"`, `"1 GiB"`,
/// `"100MB"`, `"4096"`; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000).
pub fn byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A size key (`byte_size`), or its default; out of `min..=max` it is a problem.
pub fn size_in_range(
    p: &mut Problems<'_>,
    key: &str,
    value: Option<&toml::Value>,
    default: u64,
    (min, max): (u64, u64),
) -> u64 {
    let bytes = match value {
        None => return default,
        Some(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
        Some(toml::Value::String(s)) => byte_size(s),
        Some(_) => None,
    };
    match bytes {
        Some(n) if (min..=max).contains(&n) => n,
        Some(n) => {
            p.add(
                key,
                format!("{n} bytes is out of range; use {min} to {max} bytes"),
            );
            default
        }
        None => {
            p.add(
                key,
                "is not a size; write bytes as a number, or with a unit: \"512MiB\", \"2GiB\"",
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn sizes_with_and_without_units() {
        let cases = [
            ("512MiB", Some(512 << 20)),
            ("1 GiB", Some(1 << 30)),
            ("100MB", Some(100_000_000)),
            ("4096", Some(4096)),
            ("7B", Some(7)),
            ("1.5GiB", None),
            ("MiB", None),
            ("-1", None),
            ("99999999999TiB", None),
            ("12 parsecs", None),
        ];
        for (text, want) in cases {
            assert_eq!(super::byte_size(text), want, "{text}");
        }
    }
    use std::path::{Path, PathBuf};

    #[test]
    fn resolves_paths_lexically() {
        let cases = [
            ("config", "../target/x", "target/x"),
            ("config", "./a/./b", "config/a/b"),
            (
                "/etc/s3-importd",
                "/var/lib/s3-importd/state.db",
                "/var/lib/s3-importd/state.db",
            ),
            ("/etc/s3-importd", "state.db", "/etc/s3-importd/state.db"),
            ("..", "../x", "../../x"),
        ];
        for (dir, path, want) in cases {
            assert_eq!(
                resolve(Path::new(dir), path),
                PathBuf::from(want),
                "{dir} + {path}"
            );
        }
    }

    /// A connection `name` over bucket `b` whose source and target say `source` and `target`.
    fn connection(source: &str, target: &str) -> String {
        format!(
            "[source]\nbucket = \"src-bucket\"\nregion = \"eu-west-1\"\n{source}\n[format]\ntype = \"jsonl\"\n[template]\ntable = \"t\"\nunknown_fields = \"keep\"\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"s3\"\nbucket = \"dst-bucket\"\nregion = \"eu-west-1\"\n{target}\n"
        )
    }

    /// The problems (`file: key`) a folder of connections has under the external-ID rules.
    fn external_id_problems(connections: &[(&str, String)]) -> Vec<String> {
        let files = crate::config::Files {
            settings: None,
            templates: Vec::new(),
            connections: connections
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        };
        let dir = Path::new("/etc/s3-importd");
        let lenient = crate::config::check_with(dir, &files, crate::config::ExternalIds::Deferred);
        assert!(lenient.is_ok(), "{lenient:?}");
        match crate::config::check(dir, &files) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| format!("{}: {}", e.file, e.key)).collect(),
        }
    }

    #[test]
    fn every_role_has_an_external_id_of_its_own() {
        let role = |n: &str| format!("role_arn = \"arn:aws:iam::111122223333:role/{n}\"");
        let with = |n: &str, id: &str| format!("{}\nexternal_id = \"{id}\"", role(n));
        type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("no roles", vec![("a", connection("", ""))], vec![]),
            (
                "source role with its id",
                vec![("a", connection(&with("r", "id-1"), ""))],
                vec![],
            ),
            (
                "source role without an id",
                vec![("a", connection(&role("r"), ""))],
                vec!["connections/a.toml: source.external_id"],
            ),
            (
                "target role without an id",
                vec![("a", connection("", &role("w")))],
                vec!["connections/a.toml: target.external_id"],
            ),
            (
                "turned off for roles the operator owns",
                vec![(
                    "a",
                    connection(
                        &format!("{}\nexternal_id_required = false", role("r")),
                        &format!("{}\nexternal_id_required = false", role("w")),
                    ),
                )],
                vec![],
            ),
            (
                "two roles share an id: the second is refused",
                vec![
                    ("a", connection(&with("r1", "shared"), "")),
                    ("b", connection(&with("r2", "shared"), "")),
                ],
                vec!["connections/b.toml: source.external_id"],
            ),
            (
                "a source and a target role share an id within one connection",
                vec![("a", connection(&with("r1", "shared"), &with("w", "shared")))],
                vec!["connections/a.toml: target.external_id"],
            ),
            (
                "one role, one id, two connections",
                vec![
                    ("a", connection(&with("r", "same"), "")),
                    (
                        "b",
                        connection(&format!("{}\nprefix = \"b/\"", with("r", "same")), ""),
                    ),
                ],
                vec![],
            ),
        ];
        for (what, connections, want) in cases {
            assert_eq!(external_id_problems(&connections), want, "{what}");
        }
    }

    #[test]
    fn max_bad_rows_reads_a_count_a_share_or_both() {
        use crate::template::BadRowLimit;
        let limit = |value: &str| {
            let files = crate::config::Files {
                settings: None,
                templates: Vec::new(),
                connections: vec![(
                    "c".into(),
                    format!(
                        "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n{value}\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n"
                    ),
                )],
            };
            crate::config::check(Path::new("/etc/s3-importd"), &files)
                .map(|c| c.connections[0].template.max_bad_rows)
                .map_err(|e| e.to_string())
        };
        assert_eq!(limit(""), Ok(super::DEFAULT_MAX_BAD_ROWS));
        assert_eq!(limit("max_bad_rows = \"7\""), Ok(BadRowLimit::Count(7)));
        assert_eq!(limit("max_bad_rows = \"2.5%\""), Ok(BadRowLimit::Share(0.025)));
        assert_eq!(
            limit("max_bad_rows = \"1% or 5\""),
            Ok(BadRowLimit::ShareOrCount(0.01, 5))
        );
        assert_eq!(
            limit("max_bad_rows = \"5 or 1%\""),
            Ok(BadRowLimit::ShareOrCount(0.01, 5))
        );
        for bad in ["1% or 2%", "5 or 6", "1% and 5", "or", "120%"] {
            let err = limit(&format!("max_bad_rows = \"{bad}\"")).unwrap_err();
            assert!(err.contains("template.max_bad_rows"), "{bad}: {err}");
        }
    }
}
