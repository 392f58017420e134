//! The one list of `s3-importd.toml`'s keys, each with its default and what it does, and the
//! commented settings file rendered from it (the Debian package's `/etc/s3-importd/
//! s3-importd.toml`, kept in `deploy/debian/`).
//!
//! Tests hold the list to [`super::raw::RawSettings`] (the same keys, in the same order) and
//! to validation (every example is accepted), and the packaged file to what [`render`] makes,
//! so none of the three can drift from the others. Pure: no I/O.

/// One key of `s3-importd.toml`.
pub struct Setting {
    pub key: &'static str,
    /// A value as the file would hold it (TOML); the default where there is one.
    pub example: &'static str,
    /// What it does, a line per element.
    pub doc: &'static [&'static str],
}

/// Every key of `s3-importd.toml`, in the order of [`super::raw::RawSettings`].
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "state",
        example: "\"/var/lib/s3-importd/state.db\"",
        doc: &[
            "The state store: a SQLite file (relative paths are relative to this folder;",
            "systemd's StateDirectory= gives the service /var/lib/s3-importd), or a",
            "postgres:// URL for fleet mode, where several daemons share one database.",
        ],
    },
    Setting {
        key: "state_url_env",
        example: "\"S3_IMPORTD_STATE_URL\"",
        doc: &[
            "Fleet mode with the PostgreSQL URL (which holds a password) read from this",
            "environment variable instead of `state`.",
        ],
    },
    Setting {
        key: "state_url_file",
        example: "\"state-url\"",
        doc: &[
            "Or read from this file: relative to $CREDENTIALS_DIRECTORY under systemd's",
            "LoadCredential=, else to this folder.",
        ],
    },
    Setting {
        key: "lease_ttl_s",
        example: "60",
        doc: &[
            "Fleet mode: how long a run's lease on its connection lasts unless renewed (every",
            "third of it); a daemon that dies mid-run is taken over after this (5-3600).",
        ],
    },
    Setting {
        key: "spool_dir",
        example: "\"/var/lib/s3-importd/spool\"",
        doc: &[
            "Local scratch for the load in flight (default: spool/ beside a SQLite state file,",
            "/var/lib/s3-importd/spool in fleet mode).",
        ],
    },
    Setting {
        key: "timezone",
        example: "\"UTC\"",
        doc: &["The IANA time zone of schedules."],
    },
    Setting {
        key: "max_concurrent_runs",
        example: "2",
        doc: &["Connections running at once (1-64)."],
    },
    Setting {
        key: "max_concurrent_objects",
        example: "4",
        doc: &["Objects fetched and parsed at once within a run (1-64)."],
    },
    Setting {
        key: "load_max_objects",
        example: "10000",
        doc: &["A run delivers and commits in loads of at most this many objects (1-1000000)..."],
    },
    Setting {
        key: "load_max_bytes",
        example: "1073741824",
        doc: &["...and about this many bytes of spooled rows (1 MiB-1 TiB)."],
    },
    Setting {
        key: "shutdown_timeout_s",
        example: "30",
        doc: &["How long SIGTERM waits for runs to reach a safe point (0-3600)."],
    },
    Setting {
        key: "log_format",
        example: "\"text\"",
        doc: &["Log lines as \"text\" or \"json\"."],
    },
    Setting {
        key: "aws_principal",
        example: "\"arn:aws:iam::111122223333:role/s3-importd\"",
        doc: &[
            "The daemon's own AWS identity, which `policy` names in trust policies (default:",
            "asked of sts:GetCallerIdentity).",
        ],
    },
    Setting {
        key: "metrics_listen",
        example: "\"127.0.0.1:9464\"",
        doc: &["Serve Prometheus metrics (/metrics) and a liveness check (/healthz) here."],
    },
];

/// The commented settings file: every key, each commented out with its default or an
/// example, so that the file changes nothing until a line is uncommented.
pub fn render() -> String {
    let mut out = String::from(
        "# s3-importd daemon settings. Every key is optional and has a default; uncomment a line to
# change it. Connections go in connections/NAME.toml (see
# connections/acme-products.toml.example), templates in templates/NAME.toml. Then:
#   s3-importd --config /etc/s3-importd validate
#   systemctl enable --now s3-importd
# The full reference: /usr/share/doc/s3-importd/README.md.
#
# This file is generated from the list of settings in the source (src/config/settings_file.rs).
",
    );
    for s in SETTINGS {
        out.push('\n');
        for line in s.doc {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("# {} = {}\n", s.key, s.example));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Files, check};
    use serde::de::{self, Visitor};

    /// The names of a struct's fields as its derived `Deserialize` declares them: a
    /// deserializer that records them and stops.
    struct FieldNames(&'static [&'static str]);

    impl<'de> de::Deserializer<'de> for &mut FieldNames {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    #[test]
    fn the_list_has_every_key_of_the_settings_file_in_order() {
        let mut names = FieldNames(&[]);
        let _ = <crate::config::raw::RawSettings as serde::Deserialize>::deserialize(&mut names);
        let listed: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        assert_eq!(listed, names.0);
    }

    #[test]
    fn every_example_is_valid() {
        for s in SETTINGS {
            let files = Files {
                settings: Some(format!("{} = {}\n", s.key, s.example)),
                ..Files::default()
            };
            // A relative `state_url_file` is read at start-up, not by validation.
            if let Err(e) = check(std::path::Path::new("/etc/s3-importd"), &files) {
                panic!("{} = {}: {e:?}", s.key, s.example);
            }
        }
    }

    /// The file says each line holds the default where there is one: uncommenting it changes
    /// nothing. The keys without a default hold an example.
    #[test]
    fn every_example_of_a_key_with_a_default_is_that_default() {
        let dir = std::path::Path::new("/etc/s3-importd");
        let settings_of = |text: Option<String>| {
            let files = Files {
                settings: text,
                ..Files::default()
            };
            match check(dir, &files) {
                Ok(config) => format!("{:?}", config.settings),
                Err(e) => panic!("{e:?}"),
            }
        };
        let defaults = settings_of(None);
        let examples_only = [
            "state_url_env",
            "state_url_file",
            "aws_principal",
            "metrics_listen",
        ];
        for s in SETTINGS.iter().filter(|s| !examples_only.contains(&s.key)) {
            let set = settings_of(Some(format!("{} = {}\n", s.key, s.example)));
            assert_eq!(set, defaults, "{} = {} is not the default", s.key, s.example);
        }
    }

    /// The packaged file is what [`render`] makes. After changing the list, write it again:
    /// `S3_IMPORTD_BLESS=1 cargo test --lib settings_file`.
    #[test]
    fn the_packaged_settings_file_is_rendered_from_the_list() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/s3-importd.toml");
        let want = render();
        if std::env::var_os("S3_IMPORTD_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let got = std::fs::read_to_string(&path).unwrap();
        assert!(
            got == want,
            "{} is not what the list of settings renders; run S3_IMPORTD_BLESS=1 cargo test --lib settings_file",
            path.display()
        );
    }
}
