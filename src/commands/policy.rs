//! `s3-importd policy NAME [--new-external-id] [--json]`: prints the IAM documents a
//! connection needs, each ready to paste into the AWS console: for an `s3` source the
//! permission policy and, with a `role_arn`, the role's trust policy; for an `s3` target the
//! destination's bucket policy and, with a `role_arn` of its own, that role's permission and
//! trust policies; in event mode, the queue's access policy and the bucket's notification
//! configuration, and reading the queue in the source's permission policy. The documents themselves are built by `s3_importd::policy`; this handler
//! finds the daemon's principal and prints.
//!
//! It loads the configuration without the external-ID rules (`ExternalIds::Deferred`):
//! `--new-external-id` is how a role without one, or sharing one, gets its own.

use super::{EXIT_FAILED, EXIT_USAGE, pick_one};
use s3_importd::aws::caller_arn;
use s3_importd::config::{Config, S3Location};
use s3_importd::policy;
use serde_json::{Value, json};
use std::process::ExitCode;

/// The documents of one assumed role: what it may do, who may assume it.
struct Role<'a> {
    /// `source` or `target`: the table of the connection file it is set in.
    table: &'static str,
    arn: &'a str,
    /// A fresh ID from `--new-external-id`, else the configured one.
    fresh_id: Option<String>,
    external_id: Option<String>,
    permission: Value,
    trust: Value,
}

impl<'a> Role<'a> {
    /// The documents of the role `spec` assumes, if it assumes one; `daemon` is the principal
    /// that assumes it.
    fn of(
        table: &'static str,
        spec: &'a S3Location,
        permission: Value,
        daemon: &str,
        fresh: bool,
    ) -> Option<Role<'a>> {
        let arn = spec.role_arn.as_deref()?;
        let fresh_id = fresh.then(policy::new_external_id);
        let external_id = fresh_id.clone().or_else(|| spec.external_id.clone());
        let trust = policy::trust_policy(daemon, external_id.as_deref());
        Some(Role {
            table,
            arn,
            fresh_id,
            external_id,
            permission,
            trust,
        })
    }
}

pub async fn command(config: &Config, name: &str, new_external_id: bool, as_json: bool) -> ExitCode {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = connection.source.location();
    let target = connection.target.location();
    // The bucket whose region and STS endpoint the daemon's identity is asked at.
    let Some(home) = source.or(target) else {
        eprintln!(
            "error: {name} reads a local folder (type = \"dir\") and writes no bucket; IAM policies are for s3 sources and targets"
        );
        return ExitCode::from(EXIT_USAGE);
    };

    // The trust policies and the destination's bucket policy (unless the target assumes a
    // role of its own) name the daemon's own identity: configured, or asked of STS.
    let needs_principal = source.is_some_and(|s| s.role_arn.is_some()) || target.is_some();
    let principal = if needs_principal {
        match &config.settings.aws_principal {
            Some(p) => Some((p.clone(), "aws_principal in s3-importd.toml")),
            None => match caller_arn(home).await {
                Ok(arn) => Some((
                    policy::principal_of_caller(&arn),
                    "the identity s3-importd runs as, from sts:GetCallerIdentity",
                )),
                Err(e) => {
                    eprintln!(
                        "error: cannot tell which AWS identity s3-importd runs as ({e}); set aws_principal in s3-importd.toml to the daemon's role or user ARN"
                    );
                    return ExitCode::from(EXIT_FAILED);
                }
            },
        }
    } else {
        None
    };
    let daemon = principal.as_ref().map(|(p, _)| p.as_str()).unwrap_or_default();
    // Event mode: the queue's ARN, read from its URL.
    let queue = s3_importd::daemon::queue_of(connection)
        .zip(source)
        .and_then(|(events, s)| policy::queue_arn(&events.queue_url, &s.region));
    let permission_of = |s: &S3Location| {
        let mut doc = policy::permission_policy(&s.bucket, &s.prefix, &s.region);
        if let (Some(q), Some(statements)) = (&queue, doc["Statement"].as_array_mut()) {
            statements.push(policy::queue_statement(q));
        }
        doc
    };
    // S3 sends the bucket's events; the bucket's owner is `expected_bucket_owner` when set,
    // else taken to be the queue's account.
    let queue_docs = queue.as_ref().zip(source).map(|(q, s)| {
        let owner = s
            .expected_bucket_owner
            .clone()
            .unwrap_or_else(|| q.account.clone());
        (
            q,
            owner.clone(),
            policy::queue_policy(q, &s.bucket, &s.region, &owner),
            policy::bucket_notification(q, &s.prefix, &connection.name),
        )
    });
    let source_role = source.and_then(|s| Role::of("source", s, permission_of(s), daemon, new_external_id));
    let target_role = target.and_then(|t| {
        let permission = policy::writer_policy(&t.bucket, &t.prefix, &t.region);
        Role::of("target", t, permission, daemon, new_external_id)
    });
    let bucket = target.map(|t| {
        let writer = t.role_arn.clone().unwrap_or_else(|| daemon.to_string());
        let doc = policy::bucket_policy(&t.bucket, &t.prefix, &t.region, &writer);
        (t, writer, doc)
    });

    if as_json {
        let doc = json!({
            "connection": connection.name,
            "role_arn": source.and_then(|s| s.role_arn.as_deref()),
            "new_external_id": source_role.as_ref().and_then(|r| r.fresh_id.as_deref()),
            "permission_policy": source.map(permission_of),
            "trust_policy": source_role.as_ref().map(|r| &r.trust),
            "bucket_policy": bucket.as_ref().map(|(_, _, doc)| doc),
            "target_role_arn": target_role.as_ref().map(|r| r.arn),
            "target_new_external_id": target_role.as_ref().and_then(|r| r.fresh_id.as_deref()),
            "target_permission_policy": target_role.as_ref().map(|r| &r.permission),
            "target_trust_policy": target_role.as_ref().map(|r| &r.trust),
            "queue_policy": queue_docs.as_ref().map(|(_, _, doc, _)| doc),
            "bucket_notification": queue_docs.as_ref().map(|(_, _, _, doc)| doc),
        });
        println!("{doc}");
        return ExitCode::SUCCESS;
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    for role in [&source_role, &target_role].into_iter().flatten() {
        if let Some(id) = &role.fresh_id {
            println!(
                "# A new external ID for {}. Put it in [{}] of connections/{name}.toml:",
                role.arn, role.table
            );
            println!("#   external_id = \"{id}\"");
            println!("# The trust policy below already uses it.");
            println!();
        }
    }
    let mut first = true;
    let mut section = |heading: String, doc: &Value| {
        if !first {
            println!();
        }
        first = false;
        println!("{heading}");
        println!("{}", pretty(doc));
    };
    let trust_heading = |role: &Role<'_>| {
        let mut heading = format!(
            "# Trust policy of {}\n# (IAM > Roles > the role > Trust relationships > Edit trust policy)",
            role.arn
        );
        if let Some((p, note)) = &principal {
            heading.push_str(&format!("\n# {p} is {note}"));
        }
        if role.external_id.is_none() {
            heading.push_str(&format!(
                "\n# No external_id is set: anyone this principal lets assume roles can use it, and validate refuses the connection until [{}] has one (or external_id_required = false for a role of your own); use --new-external-id",
                role.table
            ));
        }
        heading
    };
    if let Some(s) = source {
        let heading = match &s.role_arn {
            Some(role) => format!(
                "# Permission policy of {role}\n# (IAM > Roles > the role > Add permissions > Create inline policy > JSON)"
            ),
            None => "# Permission policy of the identity s3-importd runs as (no role_arn is set)\n# (IAM > the role or user > Add permissions > Create inline policy > JSON)".to_string(),
        };
        section(heading, &permission_of(s));
    }
    if let Some(role) = &source_role {
        section(trust_heading(role), &role.trust);
    }
    if let Some((q, owner, queue_policy, notification)) = &queue_docs {
        section(
            format!(
                "# Access policy of the queue {}
# (SQS > the queue > Access policy > Edit): S3 may send it the events of this bucket only,
# owned by account {owner} (expected_bucket_owner in [source], else the queue's account)",
                q.arn
            ),
            queue_policy,
        );
        section(
            "# Event notifications of the bucket (S3 > the bucket > Properties > Event notifications, or
# aws s3api put-bucket-notification-configuration --bucket BUCKET --notification-configuration file://this.json,
# which replaces the bucket's other notifications: merge them in first)"
                .to_string(),
            notification,
        );
    }
    if let Some((t, writer, doc)) = &bucket {
        section(
            format!(
                "# Bucket policy of the destination bucket {}\n# (S3 > the bucket > Permissions > Bucket policy > Edit)\n# it lets {writer} write loads under {:?}",
                t.bucket, t.prefix
            ),
            doc,
        );
    }
    if let Some(role) = &target_role {
        section(
            format!(
                "# Permission policy of the destination's role {}\n# (IAM > Roles > the role > Add permissions > Create inline policy > JSON)",
                role.arn
            ),
            &role.permission,
        );
        section(trust_heading(role), &role.trust);
    }
    ExitCode::SUCCESS
}
