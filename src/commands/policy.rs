//! `s3-importd policy NAME [--new-external-id] [--json]`: prints the IAM documents a
//! connection needs, each ready to paste into the AWS console. The documents themselves are
//! built by `s3_importd::policy`; this handler finds the daemon's principal and prints.

use super::{EXIT_FAILED, EXIT_USAGE, pick_one};
use s3_importd::aws::caller_arn;
use s3_importd::config::{Config, SourceSpec, TargetSpec};
use s3_importd::policy;
use serde_json::{Value, json};
use std::process::ExitCode;

pub async fn command(config: &Config, name: &str, new_external_id: bool, as_json: bool) -> ExitCode {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let SourceSpec::S3(source) = &connection.source else {
        eprintln!("error: {name} reads a local folder (type = \"dir\"); IAM policies are for s3 sources");
        return ExitCode::from(EXIT_USAGE);
    };
    let fresh_id = new_external_id.then(policy::new_external_id);
    let external_id = fresh_id.as_deref().or(source.external_id.as_deref());
    let permission = policy::permission_policy(&source.bucket, &source.prefix, &source.region);

    // The trust policy (and an S3 destination's bucket policy, unless the target assumes a
    // role of its own) names the daemon's own identity: configured, or asked of STS.
    let target = match &connection.target {
        TargetSpec::S3(t) => Some(&t.s3),
        _ => None,
    };
    let needs_principal = source.role_arn.is_some() || target.is_some_and(|t| t.role_arn.is_none());
    let principal = if needs_principal {
        match &config.settings.aws_principal {
            Some(p) => Some((p.clone(), "aws_principal in s3-importd.toml")),
            None => match caller_arn(&source.region).await {
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
    let (trust, principal_note) = match (&source.role_arn, &principal) {
        (Some(_), Some((p, note))) => (
            Some(policy::trust_policy(p, external_id)),
            Some(format!("{p} is {note}")),
        ),
        _ => (None, None),
    };
    let bucket = target.map(|t| {
        let writer = match (&t.role_arn, &principal) {
            (Some(role), _) => role.clone(),
            (None, Some((p, _))) => p.clone(),
            (None, None) => String::new(),
        };
        (
            t,
            writer.clone(),
            policy::bucket_policy(&t.bucket, &t.prefix, &t.region, &writer),
        )
    });

    if as_json {
        let doc = json!({
            "connection": connection.name,
            "role_arn": source.role_arn,
            "new_external_id": fresh_id,
            "permission_policy": permission,
            "trust_policy": trust,
            "bucket_policy": bucket.as_ref().map(|(_, _, doc)| doc),
        });
        println!("{doc}");
        return ExitCode::SUCCESS;
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    if let Some(id) = &fresh_id {
        println!("# A new external ID. Put it in [source] of connections/{name}.toml:");
        println!("#   external_id = \"{id}\"");
        println!("# The trust policy below already uses it.");
        println!();
    }
    match &source.role_arn {
        Some(role) => println!(
            "# Permission policy of {role}\n# (IAM > Roles > the role > Add permissions > Create inline policy > JSON)"
        ),
        None => println!(
            "# Permission policy of the identity s3-importd runs as (no role_arn is set)\n# (IAM > the role or user > Add permissions > Create inline policy > JSON)"
        ),
    }
    println!("{}", pretty(&permission));
    if let (Some(trust), Some(note), Some(role)) = (&trust, &principal_note, &source.role_arn) {
        println!();
        println!(
            "# Trust policy of {role}\n# (IAM > Roles > the role > Trust relationships > Edit trust policy)"
        );
        println!("# {note}");
        if external_id.is_none() {
            println!(
                "# No external_id is set: anyone this principal lets assume roles can use it; consider --new-external-id"
            );
        }
        println!("{}", pretty(trust));
    }
    if let Some((t, writer, doc)) = &bucket {
        println!();
        println!(
            "# Bucket policy of the destination bucket {}\n# (S3 > the bucket > Permissions > Bucket policy > Edit)",
            t.bucket
        );
        println!("# it lets {writer} write loads under {:?}", t.prefix);
        println!("{}", pretty(doc));
    }
    ExitCode::SUCCESS
}
