//! The `http` target's keys: the endpoint (a secret), batches, headers and token, time-out
//! and retries; their checks, among them the refusal to send credentials over plain http;
//! and its `check` probe (a HEAD request).

use super::super::config::{RawUrl, TargetContext, url_source};
use super::super::{Target, TargetKind};
use crate::config::Connection;
use crate::config::kind::{KindTable, keys_of};
use crate::config::validate::{Problems, in_range, resolve};
use crate::probe::Report;
use crate::secret::{Secret, SecretSource};
use serde::Deserialize;
use std::time::Duration;

/// `[target]` of `type = "http"`, as written (the URL keys aside).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTarget {
    pub batch_size: Option<i64>,
    pub headers: Option<toml::Table>,
    pub headers_env: Option<String>,
    pub headers_file: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub timeout_s: Option<i64>,
    pub max_retries: Option<i64>,
}

/// An HTTP endpoint that receives batches of rows as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTargetSpec {
    /// The endpoint: a secret, since userinfo and query strings carry credentials.
    pub url: SecretSource,
    /// The endpoint as messages, logs and state show it: userinfo and query redacted, or
    /// where it is read from.
    pub shown_url: String,
    pub batch_size: usize,
    /// Extra request headers; values are treated as secrets (an API key often sits here).
    pub headers: Vec<(String, Secret)>,
    /// More headers, `Name: value` a line, from an environment variable or a file, read at
    /// every delivery.
    pub headers_from: Option<SecretSource>,
    /// Whether credentials may be sent over plain `http://` to a host that is not loopback.
    pub allow_insecure_http: bool,
    pub token: Option<SecretSource>,
    pub timeout: Duration,
    pub max_retries: usize,
}

#[async_trait::async_trait]
impl TargetKind for HttpTargetSpec {
    fn keys() -> Vec<&'static str> {
        [keys_of::<RawUrl>(), keys_of::<RawHttpTarget>()].concat()
    }

    fn validate(mut table: KindTable<'_>, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let url: RawUrl = table.part(p).unwrap_or_default();
        let t: RawHttpTarget = table.rest(p)?;
        let spec = http_target(cx, url, t, p);
        (p.count() == before).then_some(spec)
    }

    async fn open(&self, connection: &Connection) -> Box<dyn Target> {
        Box::new(super::HttpTarget::new(connection, self.clone()))
    }

    async fn check(&self, connection: &Connection, report: &mut Report) {
        let target = super::HttpTarget::new(connection, self.clone());
        match target.probe().await {
            Ok(status) => report.ok("target", format!("{} answers (HTTP {status} to HEAD)", self.shown_url)),
            Err(e) => report.failed(
                "target",
                e,
                "check `url` (or url_env, url_file) in [target], that this host may reach it, and the token's and headers' environment variables or files",
            ),
        }
    }
}

/// The keys of an `http` target, checked.
fn http_target(
    cx: &TargetContext<'_>,
    raw_url: RawUrl,
    t: RawHttpTarget,
    p: &mut Problems<'_>,
) -> HttpTargetSpec {
    let url = url_source(cx.dir, raw_url, p);
    let shown_url = match &url {
        SecretSource::Inline(u) => {
            let u = u.expose();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
                || reqwest::Url::parse(u).is_err()
            {
                p.add(
                    "target.url",
                    format!(
                        "{:?} is not an http:// or https:// URL",
                        crate::text::redact_url(u)
                    ),
                );
            }
            crate::text::redact_url(u)
        }
        SecretSource::Env(var) => format!("the URL in ${var}"),
        SecretSource::File { given, .. } => format!("the URL in {given}"),
    };
    let allow_insecure_http = t.allow_insecure_http.unwrap_or(false);
    let batch_size = in_range(p, "target.batch_size", t.batch_size, 500, 1, 100_000) as usize;
    let timeout = Duration::from_secs(in_range(p, "target.timeout_s", t.timeout_s, 30, 1, 3600) as u64);
    let max_retries = in_range(p, "target.max_retries", t.max_retries, 5, 0, 100) as usize;
    let mut headers = Vec::new();
    for (name, value) in t.headers.unwrap_or_default() {
        let key = format!("target.headers.{name}");
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            p.add(&key, "is not an HTTP header name");
            continue;
        }
        match value {
            toml::Value::String(v) if !v.contains(['\r', '\n']) => headers.push((name, Secret::new(v))),
            _ => p.add(&key, "must be a string on one line"),
        }
    }
    let token = match (t.token_env, t.token_file) {
        (Some(_), Some(_)) => {
            p.add("target.token_file", "give token_env or token_file, not both");
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(cx.dir, &file),
            given: file,
        }),
        (Some(_), None) => {
            p.add(
                "target.token_env",
                "is empty; name the environment variable that holds the token",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                "target.token_file",
                "is empty; name the file that holds the token",
            );
            None
        }
        (None, None) => None,
    };
    let headers_from = match (t.headers_env, t.headers_file) {
        (Some(_), Some(_)) => {
            p.add(
                "target.headers_file",
                "give headers_env or headers_file, not both",
            );
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(cx.dir, &file),
            given: file,
        }),
        (Some(_), None) | (None, Some(_)) => {
            p.add(
                "target.headers_file",
                "is empty; name the environment variable or file that holds `Name: value` lines",
            );
            None
        }
        (None, None) => None,
    };
    // Credentials over plain http to another host: refused unless the connection says so.
    if let SecretSource::Inline(u) = &url
        && !allow_insecure_http
        && let Some(host) = crate::text::plaintext_to_remote(u.expose())
    {
        let userinfo =
            reqwest::Url::parse(u.expose()).is_ok_and(|u| !u.username().is_empty() || u.password().is_some());
        if token.is_some() || !headers.is_empty() || headers_from.is_some() || userinfo {
            p.add(
                "target.url",
                format!("sends credentials (a token, headers or userinfo) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    HttpTargetSpec {
        url,
        shown_url,
        batch_size,
        headers,
        headers_from,
        allow_insecure_http,
        token,
        timeout,
        max_retries,
    }
}
