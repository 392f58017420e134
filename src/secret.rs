//! A value that must never reach a log: tokens, passwords, database URLs. `Debug` and
//! `Display` print `***`; only [`Secret::expose`] gives the value, at the point of use.
//! [`read`] fetches one from where the configuration says it is ([`SecretSource`]). Needs
//! nothing of the configuration module, which uses it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret (a bearer token, a database URL) is read from, when a delivery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the configuration itself.
    Inline(Secret),
    /// An environment variable of the daemon.
    Env(String),
    /// A file: `given` as written; a relative one is looked up in `$CREDENTIALS_DIRECTORY`
    /// (systemd's `LoadCredential=`) when that is set, else at `in_config_dir`.
    File { given: String, in_config_dir: PathBuf },
}

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be read. Names the variable or file and the key that points at
/// it, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the environment variable {var} ({key}) is not set")]
    EnvNotSet { var: String, key: &'static str },
    #[error("reading {} ({key}): {source}", path.display())]
    File {
        path: PathBuf,
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a secret from where the configuration says it is: inline, an environment variable,
/// or a file (a relative one among systemd's credentials when the service has them, else
/// beside the configuration). `env_key` and `file_key` name the keys in messages
/// (`token_env`/`token_file`). Read at the point of use, so a rotated file needs no restart.
pub fn read(
    source: &SecretSource,
    env_key: &'static str,
    file_key: &'static str,
) -> Result<Secret, SecretError> {
    match source {
        SecretSource::Inline(s) => Ok(s.clone()),
        SecretSource::Env(var) => {
            std::env::var(var)
                .map(|v| Secret::new(v.trim()))
                .map_err(|_| SecretError::EnvNotSet {
                    var: var.clone(),
                    key: env_key,
                })
        }
        SecretSource::File { given, in_config_dir } => {
            let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) if Path::new(given).is_relative() => Path::new(&dir).join(given),
                _ => in_config_dir.clone(),
            };
            std::fs::read_to_string(&path)
                .map(|v| Secret::new(v.trim()))
                .map_err(|source| SecretError::File {
                    path,
                    key: file_key,
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(format!("{:?}", Some(vec![s.clone()])), "Some([Secret(***)])");
        assert_eq!(s.expose(), "hunter2");
    }
}
