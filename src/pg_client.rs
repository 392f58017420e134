//! Connecting to PostgreSQL, for the `postgres` target and the PostgreSQL state store alike:
//! a URL (a secret) into tokio-postgres's settings and a rustls connector. Not a client of
//! its own: callers connect and pool as they need.
//!
//! TLS follows the URL's `sslmode` (libpq's names, `verify-ca` and `verify-full` included),
//! with the webpki roots or the URL's `sslrootcert`; without one, `require` for a host that
//! is not loopback or a Unix socket — a password never goes to a server that offers no TLS —
//! else `prefer`. Pure but for reading `sslrootcert`.

/// What connecting to the database of `url` takes: tokio-postgres's settings (without our
/// `sslmode` and `sslrootcert`) and the TLS connector they call for. Shared by the target and
/// the PostgreSQL state store. The error never repeats the URL, which may hold a password.
pub fn client_config(
    url: &crate::secret::Secret,
) -> Result<(tokio_postgres::Config, tokio_postgres_rustls::MakeRustlsConnect), String> {
    let plan = tls_plan(url.expose())?;
    let mut config: tokio_postgres::Config =
        plan.url.expose().parse().map_err(|e: tokio_postgres::Error| {
            format!("the URL cannot be read: {}", crate::aws::cause_chain(&e))
        })?;
    config.ssl_mode(match plan.mode {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    // The server's NOTICEs (`schema "public" already exists, skipping` from every
    // `CREATE … IF NOT EXISTS`) say nothing an operator can act on: the session asks for
    // warnings and up only, so they are never sent, whatever the log filter.
    add_session_option(&mut config, "client_min_messages=warning");
    let tls = tls_config(&plan)?;
    Ok((config, tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
}

/// Adds `-c SETTING` to the session options, after any the URL's `options` gave.
pub fn add_session_option(config: &mut tokio_postgres::Config, setting: &str) {
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} -c {setting}"),
        _ => format!("-c {setting}"),
    };
    config.options(options);
}

/// Whether `url` is a PostgreSQL URL this program can connect with: `postgres://` or
/// `postgresql://`, a known `sslmode`, settings tokio-postgres reads (pure: `sslrootcert` is
/// read only when connecting). The error never repeats the URL, which may hold a password.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("is not a postgres:// or postgresql:// URL".into());
    }
    let plan = tls_plan(url)?;
    plan.url
        .expose()
        .parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("the URL cannot be read: {}", crate::aws::cause_chain(&e)))
}

/// How a connection uses TLS: the URL's `sslmode` (libpq's names), or by default `require`
/// for any host that is not loopback or a Unix socket, `prefer` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    /// TLS or no connection; the certificate is verified (chain and host name), which is
    /// stricter than libpq's `require`.
    Require,
    /// The chain is verified against the roots, the host name is not.
    VerifyCa,
    VerifyFull,
}

/// The URL tokio-postgres is given (without `sslmode` and `sslrootcert`, which are ours) and
/// the TLS to use.
#[derive(Debug)]
struct TlsPlan {
    url: crate::secret::Secret,
    mode: TlsMode,
    /// `sslrootcert`: a PEM file of the CAs to trust instead of the webpki roots.
    root_cert: Option<String>,
}

/// Reads the TLS settings of a `postgres://` URL (pure).
fn tls_plan(url: &str) -> Result<TlsPlan, String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Several hosts, or a form the url crate does not read: tokio-postgres reads it,
        // with TLS required.
        return Ok(TlsPlan {
            url: crate::secret::Secret::new(url),
            mode: TlsMode::Require,
            root_cert: None,
        });
    };
    let (mut mode, mut root_cert, mut host_param) = (None, None, None);
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                mode = Some(match v.as_ref() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not a TLS mode; use disable, prefer, require, verify-ca or verify-full"
                        ));
                    }
                })
            }
            "sslrootcert" => root_cert = Some(v.into_owned()),
            _ => {
                if k == "host" {
                    host_param = Some(v.to_string());
                }
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
    }
    let host = host_param
        .or_else(|| parsed.host_str().map(str::to_string))
        .unwrap_or_default();
    let local = host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mode = mode.unwrap_or(if local { TlsMode::Prefer } else { TlsMode::Require });
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        // Form encoding writes a space as `+`, which tokio-postgres keeps as a `+` (`options=-c
        // x=1` would reach the server as `-c+x=1`); a literal `+` is written `%2B`, so every
        // `+` left stands for a space.
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish()
            .replace('+', "%20");
        parsed.set_query(Some(&query));
    }
    Ok(TlsPlan {
        url: crate::secret::Secret::new(parsed.as_str()),
        mode,
        root_cert,
    })
}

/// The rustls configuration for a plan: the webpki roots or the `sslrootcert` CAs, and for
/// `verify-ca` a verifier that checks the chain but not the host name.
fn tls_config(plan: &TlsPlan) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &plan.root_cert {
        Some(path) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("reading sslrootcert {path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("reading sslrootcert {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: a certificate is not a CA: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {path} holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder();
    if plan.mode == TlsMode::VerifyCa {
        let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .map_err(|e| format!("setting up TLS: {e}"))?;
        return Ok(config
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(ChainOnly(verifier)))
            .with_no_client_auth());
    }
    Ok(config.with_root_certificates(roots).with_no_client_auth())
}

/// `verify-ca`: the certificate must chain to a trusted root; its host name is not checked
/// (as libpq's `verify-ca`, for servers reached by an address their certificate does not
/// name).
#[derive(Debug)]
struct ChainOnly(std::sync::Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_connecting() {
        let cases = [
            ("postgres://u:pw@db.example.com:5432/state", Ok(())),
            ("postgresql://u@127.0.0.1/state?sslmode=disable", Ok(())),
            (
                "postgres://u@db/state?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                Ok(()),
            ),
            (
                "postgres://u:pw@db/state?sslmode=requir",
                Err(
                    "sslmode=requir is not a TLS mode; use disable, prefer, require, verify-ca or verify-full",
                ),
            ),
            (
                "mysql://u:pw@db/state",
                Err("is not a postgres:// or postgresql:// URL"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(check_url(url), want.map_err(str::to_string), "{url}");
        }
        let unreadable = check_url("postgres://u:pw@db/state?connect_timeout=soon").unwrap_err();
        assert!(unreadable.starts_with("the URL cannot be read"), "{unreadable}");
        assert!(!unreadable.contains("pw"), "{unreadable}");
    }

    #[test]
    fn sessions_ask_for_warnings_only_after_the_urls_own_options() {
        let plain = crate::secret::Secret::new("postgres://u@127.0.0.1/db?sslmode=disable");
        let (config, _) = client_config(&plain).unwrap();
        assert_eq!(config.get_options(), Some("-c client_min_messages=warning"));
        let given = crate::secret::Secret::new(
            "postgres://u@127.0.0.1/db?sslmode=disable&options=-c%20statement_timeout%3D5000",
        );
        let (mut config, _) = client_config(&given).unwrap();
        add_session_option(&mut config, "search_path=s3_importd");
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=5000 -c client_min_messages=warning -c search_path=s3_importd")
        );
    }

    #[test]
    fn tls_plans() {
        let cases = [
            (
                "postgres://u:p@db.example.com/x",
                TlsMode::Require,
                "postgres://u:p@db.example.com/x",
                None,
            ),
            (
                "postgres://u:p@127.0.0.1:5432/x",
                TlsMode::Prefer,
                "postgres://u:p@127.0.0.1:5432/x",
                None,
            ),
            (
                "postgres://u@localhost/x",
                TlsMode::Prefer,
                "postgres://u@localhost/x",
                None,
            ),
            (
                "postgres://u@[::1]/x",
                TlsMode::Prefer,
                "postgres://u@[::1]/x",
                None,
            ),
            (
                "postgres://u@db/x?host=/var/run/postgresql",
                TlsMode::Prefer,
                "postgres://u@db/x?host=%2Fvar%2Frun%2Fpostgresql",
                None,
            ),
            (
                "postgres://u@db.example.com/x?sslmode=prefer",
                TlsMode::Prefer,
                "postgres://u@db.example.com/x",
                None,
            ),
            (
                "postgres://u@127.0.0.1/x?sslmode=require",
                TlsMode::Require,
                "postgres://u@127.0.0.1/x",
                None,
            ),
            (
                "postgres://u@10.0.0.5/x?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=a",
                TlsMode::VerifyFull,
                "postgres://u@10.0.0.5/x?application_name=a",
                Some("/etc/ca.pem"),
            ),
            (
                "postgresql://u@db/x?sslmode=verify-ca",
                TlsMode::VerifyCa,
                "postgresql://u@db/x",
                None,
            ),
            (
                "postgres://u@db/x?sslmode=disable",
                TlsMode::Disable,
                "postgres://u@db/x",
                None,
            ),
        ];
        for (url, mode, stripped, root) in cases {
            let plan = tls_plan(url).unwrap();
            assert_eq!(plan.mode, mode, "{url}");
            assert_eq!(plan.url.expose(), stripped, "{url}");
            assert_eq!(plan.root_cert.as_deref(), root, "{url}");
        }
        let err = tls_plan("postgres://u@db/x?sslmode=sometimes").unwrap_err();
        assert!(err.starts_with("sslmode=sometimes is not a TLS mode"), "{err}");
        let err = tls_config(&TlsPlan {
            url: crate::secret::Secret::new("postgres://db/x"),
            mode: TlsMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err();
        assert!(
            err.starts_with("reading sslrootcert /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
