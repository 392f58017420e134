//! `[source]`: its kind reads its keys (`sources/<kind>/config.rs`); here are the globs every
//! kind takes, and the external-ID rules across connections.

use super::*;

/// Checks `[source]`: the kind's keys (by the kind), and the include and exclude globs.
pub(super) fn source(
    dir: &Path,
    table: toml::Table,
    p: &mut Problems<'_>,
) -> (Option<SourceSpec>, Option<Filters>) {
    let (spec, raw) = SourceSpec::validate(table, &crate::sources::SourceContext { dir }, p);
    let raw = raw.unwrap_or_default();
    let filters = Filters {
        include: globs(&raw.include, "source.include", p),
        exclude: globs(&raw.exclude, "source.exclude", p),
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
        let mut roles: Vec<(&str, &S3Location)> = Vec::new();
        if let Some(s) = c.source.location() {
            roles.push(("source", s));
        }
        if let Some(t) = c.target.location() {
            roles.push(("target", t));
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
