//! `[source]`: an S3 bucket (its location keys shared with the `s3` target) or a local folder,
//! and the external-ID rules across connections.

use super::*;

pub(super) fn source(
    dir: &Path,
    s: RawSource,
    p: &mut Problems<'_>,
) -> (Option<SourceSpec>, Option<Filters>) {
    let filters = Filters {
        include: globs(&s.include, "source.include", p),
        exclude: globs(&s.exclude, "source.exclude", p),
    };
    let kind = s.kind.as_deref().unwrap_or("s3");
    let s3_keys = [
        ("bucket", s.bucket.is_some()),
        ("region", s.region.is_some()),
        ("prefix", s.prefix.is_some()),
        ("role_arn", s.role_arn.is_some()),
        ("external_id", s.external_id.is_some()),
        ("external_id_required", s.external_id_required.is_some()),
        ("expected_bucket_owner", s.expected_bucket_owner.is_some()),
        ("endpoint", s.endpoint.is_some()),
        ("sts_endpoint", s.sts_endpoint.is_some()),
        ("force_path_style", s.force_path_style.is_some()),
        ("challenge_file", s.challenge_file.is_some()),
        ("allow_insecure_http", s.allow_insecure_http.is_some()),
        ("max_concurrent_listings", s.max_concurrent_listings.is_some()),
    ];
    let spec = match kind {
        "s3" => {
            for (k, set) in [
                ("path", s.path.is_some()),
                ("follow_symlinks", s.follow_symlinks.is_some()),
            ] {
                if set {
                    p.add(
                        &format!("source.{k}"),
                        "is a key of a dir source; an s3 source reads `bucket` and `prefix` (or set type = \"dir\")",
                    );
                }
            }
            s3_source(s, p).map(SourceSpec::S3)
        }
        "dir" => {
            for k in set_keys(&s3_keys) {
                p.add(
                    &format!("source.{k}"),
                    "is a key of an s3 source; a dir source reads only `path`, `follow_symlinks`, `include` and `exclude`",
                );
            }
            match s.path {
                Some(path) if !path.is_empty() => Some(SourceSpec::Dir(DirSpec {
                    path: resolve(dir, &path),
                    follow_symlinks: s.follow_symlinks.unwrap_or(false),
                })),
                _ => {
                    p.add(
                        "source.path",
                        "missing; a dir source needs the folder to read, e.g. path = \"inbox\"",
                    );
                    None
                }
            }
        }
        other => {
            p.add(
                "source.type",
                format!("{other:?} is not a source type; use \"s3\" or \"dir\""),
            );
            None
        }
    };
    (spec, Some(filters))
}

/// The external-ID rules across a checked configuration (issue 13): every `role_arn` comes
/// with an `external_id` unless `external_id_required = false` says the role is the
/// operator's own, and no two different roles share one ID. The second rule is what defeats
/// the confused deputy: a partner who hands over another partner's role ARN cannot make the
/// daemon assume it, because that role's trust policy expects an ID the partner's own
/// connection does not send. Two connections that assume the same role may share its ID.
pub fn external_id_problems(config: &Config) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    // (external ID) -> (role, connection file, table) of its first use, in name order.
    let mut seen: BTreeMap<&str, (&str, &str, &str)> = BTreeMap::new();
    for c in &config.connections {
        let mut roles: Vec<(&str, &S3Spec)> = Vec::new();
        if let SourceSpec::S3(s) = &c.source {
            roles.push(("source", s));
        }
        if let TargetSpec::S3(t) = &c.target {
            roles.push(("target", &t.s3));
        }
        for (table, spec) in roles {
            let Some(role) = spec.role_arn.as_deref() else {
                continue;
            };
            match spec.external_id.as_deref() {
                None if spec.external_id_required => problems.push(ConfigError {
                    file: c.file.clone(),
                    key: format!("{table}.external_id"),
                    message: format!(
                        "missing: role_arn {role:?} is assumed without an external ID, so anyone who learns the role's name can have s3-importd use it for them; run `s3-importd policy {name} --new-external-id`, put the ID here and in the role's trust policy (or set external_id_required = false in [{table}] if the role belongs to you)",
                        name = c.name
                    ),
                }),
                None => {}
                Some(id) => match seen.get(id) {
                    Some((first_role, first_file, first_table)) if *first_role != role => {
                        problems.push(ConfigError {
                            file: c.file.clone(),
                            key: format!("{table}.external_id"),
                            message: format!(
                                "is also the external ID of {first_role:?} ([{first_table}] of {first_file}); each role needs an ID of its own: run `s3-importd policy {name} --new-external-id`",
                                name = c.name
                            ),
                        })
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(id, (role, &c.file, table));
                    }
                },
            }
        }
    }
    problems
}

/// Checks a bucket name, returning the problem and the fix.
pub fn bucket_problem(b: &str) -> Option<String> {
    if let Some(rest) = b.strip_prefix("s3://") {
        let bare = rest.split('/').next().unwrap_or(rest);
        return Some(format!(
            "{b:?} is an s3:// URL; give the bare bucket name, bucket = {bare:?}, and put any folder in prefix"
        ));
    }
    if b.starts_with("http://") || b.starts_with("https://") {
        return Some(format!(
            "{b:?} is a URL; give the bare bucket name, and the URL of an S3-compatible service as endpoint"
        ));
    }
    if let Some((bare, path)) = b.split_once('/') {
        return Some(format!(
            "{b:?} has a path; give the bare bucket name, bucket = {bare:?}, and put the folder in prefix = \"{path}\""
        ));
    }
    if !BUCKET.is_match(b)
        || b.contains("..")
        || IPV4.is_match(b)
        || b.starts_with("xn--")
        || b.ends_with("-s3alias")
    {
        return Some(format!(
            "{b:?} is not a valid bucket name; bucket names are 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// The S3 keys a source and a target share, as written.
pub(super) struct RawS3 {
    pub(super) bucket: Option<String>,
    pub(super) region: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) role_arn: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) external_id_required: Option<bool>,
    pub(super) expected_bucket_owner: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) sts_endpoint: Option<String>,
    pub(super) force_path_style: Option<bool>,
    pub(super) challenge_file: Option<String>,
    pub(super) allow_insecure_http: Option<bool>,
    pub(super) max_concurrent_listings: Option<i64>,
}

pub(super) fn s3_source(s: RawSource, p: &mut Problems<'_>) -> Option<S3Spec> {
    let raw = RawS3 {
        bucket: s.bucket,
        region: s.region,
        prefix: s.prefix,
        role_arn: s.role_arn,
        external_id: s.external_id,
        external_id_required: s.external_id_required,
        expected_bucket_owner: s.expected_bucket_owner,
        endpoint: s.endpoint,
        sts_endpoint: s.sts_endpoint,
        force_path_style: s.force_path_style,
        challenge_file: s.challenge_file,
        allow_insecure_http: s.allow_insecure_http,
        max_concurrent_listings: s.max_concurrent_listings,
    };
    s3_location(raw, "source", "read", p)
}

/// Checks a bucket, its region and folder, and the identity to reach it with; `at` is the
/// table (`source` or `target`) the keys are reported under, `verb` what is done there.
pub(super) fn s3_location(s: RawS3, at: &str, verb: &str, p: &mut Problems<'_>) -> Option<S3Spec> {
    let before = p.out.len();
    let bucket = match s.bucket {
        Some(b) => {
            if let Some(problem) = bucket_problem(&b) {
                p.add(&format!("{at}.bucket"), problem);
            }
            b
        }
        None => {
            p.add(
                &format!("{at}.bucket"),
                format!("missing; name the bucket to {verb}, e.g. bucket = \"acme-exports\""),
            );
            String::new()
        }
    };
    let region = match s.region {
        Some(r) if REGION.is_match(&r) => r,
        Some(r) => {
            p.add(
                &format!("{at}.region"),
                format!("{r:?} is not an AWS region; use a name like \"us-east-1\""),
            );
            r
        }
        None => {
            p.add(
                &format!("{at}.region"),
                "missing; give the bucket's region, e.g. region = \"us-east-1\"",
            );
            String::new()
        }
    };
    let prefix = s.prefix.unwrap_or_default();
    if prefix.starts_with('/') {
        p.add(
            &format!("{at}.prefix"),
            format!(
                "{prefix:?} starts with `/`; S3 keys have no leading slash, use {:?}",
                prefix.trim_start_matches('/')
            ),
        );
    }
    if let Some(arn) = &s.role_arn
        && !ROLE_ARN.is_match(arn)
    {
        p.add(
                &format!("{at}.role_arn"),
                format!("{arn:?} is not an IAM role ARN; it looks like \"arn:aws:iam::123456789012:role/s3-importd-acme\""),
            );
    }
    if let Some(id) = &s.external_id {
        if !EXTERNAL_ID.is_match(id) {
            p.add(
                &format!("{at}.external_id"),
                "must be 2 to 1224 characters of letters, digits and + = , . @ : / _ -",
            );
        }
        if s.role_arn.is_none() {
            p.add(
                &format!("{at}.external_id"),
                "is sent with AssumeRole, so it needs role_arn as well",
            );
        }
    }
    if s.external_id_required.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.external_id_required"),
            "applies to the role of role_arn, which is not set; remove it",
        );
    }
    if let Some(owner) = &s.expected_bucket_owner
        && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
    {
        p.add(
            &format!("{at}.expected_bucket_owner"),
            format!(
                "{owner:?} is not an AWS account ID; give the 12 digits of the account that owns the bucket"
            ),
        );
    }
    for (key, url) in [("endpoint", &s.endpoint), ("sts_endpoint", &s.sts_endpoint)] {
        let Some(e) = url else { continue };
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.contains(char::is_whitespace) {
            p.add(
                &format!("{at}.{key}"),
                format!("{e:?} is not an http:// or https:// URL"),
            );
        }
        // Every S3 and STS request carries credentials (signatures, session tokens).
        if !s.allow_insecure_http.unwrap_or(false)
            && let Some(host) = crate::text::plaintext_to_remote(e)
        {
            p.add(
                &format!("{at}.{key}"),
                format!("sends AWS credentials (signed requests, session tokens) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    if s.sts_endpoint.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.sts_endpoint"),
            "is where AssumeRole goes, and no role_arn is set; remove it",
        );
    }
    if s.challenge_file.as_deref() == Some("") {
        p.add(
            &format!("{at}.challenge_file"),
            "is empty; name the object `check` should find, or remove the key",
        );
    }
    let max_concurrent_listings = in_range(
        p,
        &format!("{at}.max_concurrent_listings"),
        s.max_concurrent_listings,
        8,
        1,
        64,
    ) as usize;
    (p.out.len() == before).then_some(S3Spec {
        bucket,
        region,
        prefix,
        max_concurrent_listings,
        role_arn: s.role_arn,
        external_id: s.external_id,
        external_id_required: s.external_id_required.unwrap_or(true),
        expected_bucket_owner: s.expected_bucket_owner,
        endpoint: s.endpoint,
        sts_endpoint: s.sts_endpoint,
        force_path_style: s.force_path_style.unwrap_or(false),
        challenge_file: s.challenge_file,
    })
}
