//! The `http` target: POSTs each object's rows in batches of `batch_size` as
//! `{"connection", "table", "source": {"bucket", "key", "version", "last_modified"}, "rows"}`.
//!
//! Delivery is at least once, made safe by an `Idempotency-Key` header derived from
//! (connection, key, version, batch index): a batch sent again after a retry or a crash
//! carries the same key, so the receiver can drop the repeat. Requests that fail with 408,
//! 429, 5xx or a network error are retried with exponential backoff and jitter (honouring
//! `Retry-After`) up to `max_retries`; any other status fails the object at once.

mod config;
pub use config::*;

use super::{Delivery, LoadInfo, LoadPart, Refused, Target, TargetError};
use crate::config::{Connection, SourceSpec};
use crate::secret::Secret;
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::SecondsFormat;
use std::error::Error as _;
use std::time::Duration;
use tracing::warn;

/// The most of a refusing response's body kept in the error.
const BODY_SHOWN: usize = 512;

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// POSTs batches of rows to an endpoint.
pub struct HttpTarget {
    /// The client, or why it could not be built (reported at delivery).
    client: Result<reqwest::Client, String>,
    spec: HttpTargetSpec,
    connection: String,
    table: String,
    /// The source's bucket (or folder), for the `source` object of each batch.
    bucket: String,
}

impl HttpTarget {
    pub fn new(connection: &Connection, spec: HttpTargetSpec) -> HttpTarget {
        let client = reqwest::Client::builder()
            // A redirect would carry the batch and its headers (an API key, say) to wherever
            // the endpoint points: none is followed; a 3xx fails the delivery.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(spec.timeout)
            .user_agent(concat!("s3-importd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"));
        let bucket = match &connection.source {
            SourceSpec::S3(s) => s.location.bucket.clone(),
            SourceSpec::Dir(d) => d.path.display().to_string(),
        };
        HttpTarget {
            client,
            spec,
            connection: connection.name.clone(),
            table: connection.template.table.clone(),
            bucket,
        }
    }

    fn error(&self, fault: impl Into<HttpFault>) -> TargetError {
        TargetError::Http {
            url: self.spec.shown_url.clone(),
            fault: Box::new(fault.into()),
        }
    }

    /// Reads the bearer token, when one is configured; at delivery time, so a rotated token
    /// file is picked up.
    fn token(&self) -> Result<Option<Secret>, TargetError> {
        self.spec
            .token
            .as_ref()
            .map(|source| crate::secret::read(source, "token_env", "token_file").map_err(|e| self.error(e)))
            .transpose()
    }

    /// The endpoint and the headers read from `headers_env` / `headers_file`, read at each
    /// delivery (so a rotated file is picked up) and checked as the configuration is: an
    /// http(s) URL, and no credentials over plain http to another host unless allowed.
    fn endpoint(&self, token: Option<&Secret>) -> Result<Endpoint, TargetError> {
        let url = crate::secret::read(&self.spec.url, "url_env", "url_file").map_err(|e| self.error(e))?;
        let parsed = reqwest::Url::parse(url.expose())
            .ok()
            .filter(|u| u.scheme() == "http" || u.scheme() == "https")
            .ok_or_else(|| self.error(HttpFault::NotHttp))?;
        let headers = match &self.spec.headers_from {
            Some(source) => {
                let text =
                    crate::secret::read(source, "headers_env", "headers_file").map_err(|e| self.error(e))?;
                parse_header_lines(text.expose())
                    .map_err(|reason| self.error(HttpFault::Headers { reason }))?
            }
            None => Vec::new(),
        };
        let credentials = token.is_some()
            || !self.spec.headers.is_empty()
            || !headers.is_empty()
            || !parsed.username().is_empty()
            || parsed.password().is_some();
        if credentials
            && !self.spec.allow_insecure_http
            && let Some(host) = crate::text::plaintext_to_remote(url.expose())
        {
            return Err(self.error(HttpFault::PlainHttpCredentials {
                host: host.to_string(),
            }));
        }
        Ok(Endpoint { url, headers })
    }

    /// For `check`: whether the token, URL and headers can be read and the endpoint answers
    /// at all (any HTTP status counts; a HEAD request changes nothing). Returns the status.
    pub async fn probe(&self) -> Result<u16, String> {
        let token = self.token().map_err(|e| e.to_string())?;
        let endpoint = self.endpoint(token.as_ref()).map_err(|e| e.to_string())?;
        let client = self.client.as_ref().map_err(Clone::clone)?;
        match client.head(endpoint.url.expose()).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            // reqwest's error names the URL: only its cause is shown.
            Err(e) => Err(format!(
                "{}: {}",
                self.spec.shown_url,
                e.source()
                    .map(crate::aws::cause_chain)
                    .unwrap_or_else(|| "the request failed".to_string())
            )),
        }
    }

    /// POSTs one batch, once.
    async fn post(
        &self,
        endpoint: &Endpoint,
        body: &str,
        idempotency_key: &str,
        token: Option<&Secret>,
    ) -> Result<(), Refusal> {
        let client = self.client.as_ref().map_err(|e| Refusal::Network(e.clone()))?;
        let mut request = client
            .post(endpoint.url.expose())
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .body(body.to_string());
        for (name, value) in self.spec.headers.iter().chain(&endpoint.headers) {
            request = request.header(name, value.expose());
        }
        if let Some(t) = token {
            request = request.bearer_auth(t.expose());
        }
        // reqwest's error names the URL, which may hold credentials: only its cause is shown.
        let response = request.send().await.map_err(|e| {
            Refusal::Network(
                e.source()
                    .map(crate::aws::cause_chain)
                    .unwrap_or_else(|| "the request failed".to_string()),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(Refusal::Redirect {
                status: status.as_u16(),
                location: crate::text::excerpt(&location),
            });
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.unwrap_or_default();
        let mut cut = text.len().min(BODY_SHOWN);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Err(Refusal::Status {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            body: text[..cut].to_string(),
            retry_after,
        })
    }

    /// POSTs one batch, retrying what may succeed later.
    async fn send_batch(
        &self,
        endpoint: &Endpoint,
        body: String,
        idempotency_key: String,
        token: Option<&Secret>,
    ) -> Result<(), Refusal> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.spec.max_retries)
            .with_jitter();
        (|| self.post(endpoint, &body, &idempotency_key, token))
            .retry(backoff)
            .when(Refusal::retryable)
            // A Retry-After from the server replaces the computed wait; when the retries are
            // used up (no next wait), it stays that way.
            .adjust(|refusal, next| next.map(|wait| refusal.retry_after().unwrap_or(wait)))
            .notify(|refusal, wait| {
                warn!(url = %self.spec.shown_url, idempotency_key = %idempotency_key, error = %refusal, wait_ms = wait.as_millis() as u64, "batch refused; trying again");
            })
            .await
    }
}

/// Where batches go, read at delivery time.
struct Endpoint {
    url: Secret,
    /// The headers from `headers_env` / `headers_file`.
    headers: Vec<(String, Secret)>,
}

/// `Name: value` lines (blank lines and `#` comments skipped) as headers.
fn parse_header_lines(text: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {} of the headers is not `Name: value`", i + 1));
        };
        let name = name.trim();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "line {} of the headers does not start with a header name",
                i + 1
            ));
        }
        headers.push((name.to_string(), Secret::new(value.trim())));
    }
    Ok(headers)
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The idempotency key of one batch: the same for the same rows of the same object version.
pub fn idempotency_key(connection: &str, key: &str, version: &str, batch: u64) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [connection, key, version] {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    hasher.update(&batch.to_le_bytes());
    hasher.finalize().to_hex()[..32].to_string()
}

/// Why a delivery to the endpoint failed: a value, turned into words in messages.
#[derive(Debug, thiserror::Error)]
pub enum HttpFault {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("is not an http:// or https:// URL")]
    NotHttp,
    #[error("{reason}")]
    Headers { reason: String },
    #[error(
        "would send credentials over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"
    )]
    PlainHttpCredentials { host: String },
    #[error("batch {batch} of {key} (rows from line {line}) was refused: {refusal}")]
    Refused {
        batch: u64,
        key: String,
        line: u64,
        refusal: Refusal,
    },
}

/// Why a batch was not accepted.
#[derive(Debug)]
pub enum Refusal {
    Network(String),
    Status {
        status: u16,
        reason: String,
        body: String,
        retry_after: Option<Duration>,
    },
    /// A 3xx answer: never followed, never retried.
    Redirect {
        status: u16,
        location: String,
    },
}

impl Refusal {
    fn retryable(&self) -> bool {
        match self {
            Refusal::Network(_) => true,
            Refusal::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Refusal::Redirect { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::Status { retry_after, .. } => *retry_after,
            Refusal::Network(_) | Refusal::Redirect { .. } => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Network(e) => write!(f, "{e}"),
            Refusal::Status {
                status, reason, body, ..
            } => write!(f, "HTTP {status} {reason}: {body}"),
            Refusal::Redirect { status, location } => write!(
                f,
                "HTTP {status} redirect to {location:?}, not followed (it would carry the rows and their headers elsewhere); set `url` to the address that accepts the batches"
            ),
        }
    }
}

#[async_trait]
impl Target for HttpTarget {
    async fn prepare(&self, _load: &LoadInfo<'_>) -> Result<Delivery, TargetError> {
        Ok(Delivery {
            output: self.spec.shown_url.clone(),
            detail: serde_json::Value::Null,
        })
    }

    async fn deliver(&self, _delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError> {
        let token = self.token()?;
        let endpoint = self.endpoint(token.as_ref())?;
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        for part in parts {
            let head = format!(
                "{{\"connection\":{},\"table\":{},\"source\":{{\"bucket\":{},\"key\":{},\"version\":{},\"last_modified\":{}}},\"rows\":[",
                quote(&self.connection),
                quote(&self.table),
                quote(&self.bucket),
                quote(&part.key),
                quote(&part.version),
                quote(&part.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            let mut lines = super::SpoolLines::open(&part.spool).await?;
            let mut batch: u64 = 0;
            let mut rows = 0;
            let mut body = head.clone();
            loop {
                let line = lines.next().await?;
                let end = line.is_none();
                if let Some(line) = line {
                    if rows > 0 {
                        body.push(',');
                    }
                    body.push_str(&line);
                    rows += 1;
                }
                if rows == self.spec.batch_size || (end && rows > 0) {
                    body.push_str("]}");
                    let key = idempotency_key(&self.connection, &part.key, &part.version, batch);
                    self.send_batch(
                        &endpoint,
                        std::mem::replace(&mut body, head.clone()),
                        key,
                        token.as_ref(),
                    )
                    .await
                    .map_err(|refusal| {
                        self.error(HttpFault::Refused {
                            batch,
                            key: part.key.clone(),
                            line: batch * self.spec.batch_size as u64 + 1,
                            refusal,
                        })
                    })?;
                    batch += 1;
                    rows = 0;
                }
                if end {
                    break;
                }
            }
        }
        Ok(Vec::new())
    }

    async fn recover(&self, _delivery: &Delivery) -> Result<bool, TargetError> {
        // The receiver cannot be asked what it holds: send the load again, with the same
        // idempotency keys, and let it drop what it has seen.
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines() {
        let parsed = parse_header_lines("# keys\nX-Api-Key: abc:def\n\n  X-Tenant :acme \n").unwrap();
        let shown: Vec<(String, String)> = parsed
            .iter()
            .map(|(n, v)| (n.clone(), v.expose().to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                ("X-Api-Key".into(), "abc:def".into()),
                ("X-Tenant".into(), "acme".into())
            ]
        );
        assert_eq!(
            parse_header_lines("nonsense").unwrap_err(),
            "line 1 of the headers is not `Name: value`"
        );
        assert!(parse_header_lines("bad name: x").is_err());
    }

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        let a = idempotency_key("c", "k", "v1", 0);
        assert_eq!(a, idempotency_key("c", "k", "v1", 0));
        assert_eq!(a.len(), 32);
        let others = [
            idempotency_key("c", "k", "v1", 1),
            idempotency_key("c", "k", "v2", 0),
            idempotency_key("c", "k2", "v1", 0),
            idempotency_key("c2", "k", "v1", 0),
            // The separator keeps ("ab", "c") apart from ("a", "bc").
            idempotency_key("c", "kv", "1", 0),
        ];
        for o in others {
            assert_ne!(a, o);
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("99999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
