//! The `postgres` target: rows loaded into a table, one transaction per object.
//!
//! Each object's rows go by binary COPY into a temporary table, then into the target table
//! with `INSERT … SELECT`: in `append` mode `ON CONFLICT (_source_key, _source_version,
//! _source_line) DO NOTHING`, in `upsert` mode `ON CONFLICT (key…) DO UPDATE` with the last row
//! of the file winning among its duplicates. Loading an object again is therefore harmless,
//! which is how this target is exactly once: [`PostgresTarget::recover`] says "not delivered"
//! and the next run loads the objects again, changing nothing that was already there.
//!
//! The connection URL is a secret, read at delivery; connecting (TLS by `sslmode`) is
//! [`crate::pg_client`]'s, shared with the PostgreSQL state store.

mod config;
pub use config::*;

use super::{Delivery, LoadInfo, LoadPart, Refused, Target, TargetError};
use crate::template::{Field, FieldType};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// The provenance columns, in the order they follow the template's fields.
const PROVENANCE: [(&str, &str, Type); 3] = [
    ("_source_key", "text", Type::TEXT),
    ("_source_version", "text", Type::TEXT),
    ("_source_line", "bigint", Type::INT8),
];

/// The temporary table each object is copied into first.
const STAGING: &str = "s3_importd_staging";

/// Loads rows into a PostgreSQL table.
pub struct PostgresTarget {
    spec: PostgresTargetSpec,
    fields: Vec<Field>,
}

/// A value ready for COPY.
type Cell = Box<dyn ToSql + Sync + Send>;

/// The advisory lock that serialises creating `table` (its quoted, qualified name): a stable
/// 63-bit number from its BLAKE3 hash, the same in every process.
fn advisory_key(table: &str) -> i64 {
    let hash = blake3::hash(format!("s3-importd create table {table}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 1) as i64
}

/// A double-quoted identifier.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The SQL type a field is stored as, and its wire type for binary COPY.
fn sql_type(kind: &FieldType) -> (&'static str, Type) {
    match kind {
        FieldType::String => ("text", Type::TEXT),
        FieldType::Integer => ("bigint", Type::INT8),
        FieldType::Decimal(_) => ("numeric", Type::NUMERIC),
        FieldType::Float => ("double precision", Type::FLOAT8),
        FieldType::Boolean => ("boolean", Type::BOOL),
        FieldType::Date(_) => ("date", Type::DATE),
        FieldType::Timestamp { .. } => ("timestamptz", Type::TIMESTAMPTZ),
        FieldType::Json => ("jsonb", Type::JSONB),
    }
}

impl PostgresTarget {
    pub fn new(spec: PostgresTargetSpec, fields: Vec<Field>) -> PostgresTarget {
        PostgresTarget { spec, fields }
    }

    /// The table as SQL: `"schema"."table"` or `"table"`.
    fn table_sql(&self) -> String {
        match &self.spec.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.spec.table)),
            None => quote(&self.spec.table),
        }
    }

    /// The table as people write it.
    fn table_name(&self) -> String {
        match &self.spec.schema {
            Some(s) => format!("{s}.{}", self.spec.table),
            None => self.spec.table.clone(),
        }
    }

    fn error(&self, fault: impl Into<PostgresFault>) -> TargetError {
        TargetError::Postgres {
            table: self.table_name(),
            fault: Box::new(fault.into()),
        }
    }

    fn db_error(&self, doing: &str, e: tokio_postgres::Error) -> TargetError {
        let detail = match e.as_db_error() {
            Some(db) => {
                let mut text = format!("{} ({})", db.message(), db.code().code());
                if let Some(hint) = db.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
                if db.code().code() == "42P10" {
                    text.push_str(match &self.spec.mode {
                        WriteMode::Append => "; append mode needs UNIQUE (_source_key, _source_version, _source_line) on the table",
                        WriteMode::Upsert(_) => "; upsert mode needs a unique constraint on the key columns",
                    });
                }
                text
            }
            None => crate::aws::cause_chain(&e),
        };
        self.error(PostgresFault::Db {
            doing: doing.to_string(),
            code: e.as_db_error().map(|db| db.code().code().to_string()),
            detail,
        })
    }

    /// Every column the target writes: the template's fields, then the provenance.
    fn columns(&self) -> Vec<(String, &'static str, Type)> {
        let mut columns: Vec<(String, &'static str, Type)> = self
            .fields
            .iter()
            .map(|f| {
                let (sql, wire) = sql_type(&f.kind);
                (f.name.clone(), sql, wire)
            })
            .collect();
        columns.extend(
            PROVENANCE
                .iter()
                .map(|(name, sql, wire)| (name.to_string(), *sql, wire.clone())),
        );
        columns
    }

    /// `step` within `timeout_s`, or a [`PostgresFault::TimedOut`] naming what was being done.
    async fn within<T>(
        &self,
        doing: impl Into<String>,
        step: impl std::future::Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        match tokio::time::timeout(self.spec.timeout, step).await {
            Ok(done) => done,
            Err(_) => Err(self.error(PostgresFault::TimedOut {
                doing: doing.into(),
                seconds: self.spec.timeout.as_secs(),
            })),
        }
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, TargetError> {
        let url = crate::secret::read(&self.spec.url, "url_env", "url_file").map_err(|e| self.error(e))?;
        let (mut config, tls) = crate::pg_client::client_config(&url)
            .map_err(|reason| self.error(PostgresFault::Url { reason }))?;
        // A peer that vanished (a host down, a dropped route) is noticed by TCP keepalives; a
        // server that stalls with the connection open, by `within`.
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(60));
        let connecting = async {
            config.connect(tls).await.map_err(|e| {
                self.error(PostgresFault::Connecting {
                    cause: crate::aws::cause_chain(&e),
                })
            })
        };
        let (client, connection) = self.within("connecting", connecting).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Creates the table when asked to, then checks that it has every column the load
    /// writes; a missing one fails with the `ALTER TABLE` that would add it.
    async fn ensure_table(&self, client: &tokio_postgres::Client) -> Result<(), TargetError> {
        let columns = self.columns();
        if self.spec.create_table {
            let mut defs: Vec<String> = columns
                .iter()
                .map(|(name, sql, _)| format!("{} {sql}", quote(name)))
                .collect();
            for (name, _, _) in &PROVENANCE {
                if let Some(d) = defs.iter_mut().find(|d| d.starts_with(&quote(name))) {
                    d.push_str(" NOT NULL");
                }
            }
            defs.push("\"_imported_at\" timestamptz NOT NULL DEFAULT now()".to_string());
            defs.push("UNIQUE (\"_source_key\", \"_source_version\", \"_source_line\")".to_string());
            if let WriteMode::Upsert(key) = &self.spec.mode {
                defs.push(format!(
                    "UNIQUE ({})",
                    key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")
                ));
            }
            // Two loads creating the same table at once (two connections into one table, or
            // two daemons) both pass IF NOT EXISTS and one fails on PostgreSQL's catalog
            // ("duplicate key … pg_type_typname_nsp_index"): creation holds an advisory lock
            // named after the table, for the transaction, so the second waits and finds it.
            let mut sql = format!(
                "BEGIN;\nSELECT pg_advisory_xact_lock({});\n",
                advisory_key(&self.table_sql())
            );
            if let Some(schema) = &self.spec.schema {
                sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote(schema)));
            }
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\n  {}\n);\nCOMMIT;",
                self.table_sql(),
                defs.join(",\n  ")
            ));
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| self.db_error("creating the table", e))?;
        }
        self.ensure_columns(client).await
    }

    /// Checks that the table exists and has every column the load writes.
    async fn ensure_columns(&self, client: &tokio_postgres::Client) -> Result<(), TargetError> {
        let columns = self.columns();
        let rows = client
            .query(
                "SELECT column_name FROM information_schema.columns
                 WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
                &[&self.spec.schema, &self.spec.table],
            )
            .await
            .map_err(|e| self.db_error("reading the table's columns", e))?;
        let present: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if present.is_empty() {
            return Err(self.error(PostgresFault::NoTable));
        }
        let mut wanted: Vec<(String, &str)> = columns.iter().map(|(n, sql, _)| (n.clone(), *sql)).collect();
        wanted.push(("_imported_at".into(), "timestamptz"));
        let missing: Vec<&(String, &str)> = wanted.iter().filter(|(n, _)| !present.contains(n)).collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
            let alter = format!(
                "ALTER TABLE {} {};",
                self.table_sql(),
                missing
                    .iter()
                    .map(|(n, sql)| format!("ADD COLUMN {} {sql}", quote(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(self.error(PostgresFault::MissingColumns {
                names: names.iter().map(|n| n.to_string()).collect(),
                alter,
            }));
        }
        Ok(())
    }

    /// For `check`: connects, and checks that the table can be written as configured (it
    /// exists with every column and the privileges, or can be created). Creates nothing.
    pub async fn probe(&self) -> Result<String, TargetError> {
        let client = self.connect().await?;
        let schema = match &self.spec.schema {
            Some(s) => s.clone(),
            None => client
                .query_one("SELECT current_schema()", &[])
                .await
                .map_err(|e| self.db_error("reading the current schema", e))?
                .get(0),
        };
        let qualified = format!("{}.{}", quote(&schema), quote(&self.spec.table));
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
            .await
            .map_err(|e| self.db_error("looking for the table", e))?
            .get(0);
        if !exists {
            if !self.spec.create_table {
                return Err(self.error(PostgresFault::NoTable));
            }
            let can_create: bool = client
                .query_one(
                    "SELECT coalesce(has_schema_privilege($1, 'CREATE'), false)",
                    &[&schema],
                )
                .await
                .map_err(|e| self.db_error("checking privileges", e))?
                .get(0);
            return if can_create {
                Ok(format!(
                    "connected; {} will be created on the first load",
                    self.table_name()
                ))
            } else {
                Err(self.error(PostgresFault::CannotCreate { schema }))
            };
        }
        self.ensure_columns(&client).await?;
        let mut privileges = vec!["INSERT"];
        if matches!(self.spec.mode, WriteMode::Upsert(_)) {
            privileges.push("UPDATE");
        }
        for privilege in privileges {
            let granted: bool = client
                .query_one("SELECT has_table_privilege($1, $2)", &[&qualified, &privilege])
                .await
                .map_err(|e| self.db_error("checking privileges", e))?
                .get(0);
            if !granted {
                return Err(self.error(PostgresFault::NoPrivilege {
                    privilege,
                    table: self.table_sql(),
                }));
            }
        }
        Ok(format!(
            "connected; {} has every column and the privileges",
            self.table_name()
        ))
    }

    /// Why PostgreSQL refused a row of `part` (its data, not the connection): a data
    /// exception or an integrity violation, with the row's source line when the server named
    /// the row.
    async fn data_refusal(&self, part: &LoadPart, e: &tokio_postgres::Error) -> Option<String> {
        let db = e.as_db_error()?;
        let code = db.code().code();
        if !(code.starts_with("22") || code.starts_with("23")) {
            return None;
        }
        // COPY names the row it failed on as "COPY <table>, line N": the N-th spooled row.
        let row: Option<u64> = db
            .where_()
            .and_then(|w| w.split("line ").nth(1))
            .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok());
        let line = match row {
            Some(n) => self.source_line(part, n).await.map(|l| format!(" (line {l})")),
            None => None,
        };
        Some(format!(
            "postgres table {} refused a row{}: {} ({code})",
            self.table_name(),
            line.unwrap_or_default(),
            crate::text::excerpt(db.message())
        ))
    }

    /// The source line of the `n`-th (1-based) spooled row of a part.
    async fn source_line(&self, part: &LoadPart, n: u64) -> Option<u64> {
        let mut lines = super::SpoolLines::open(&part.spool).await.ok()?;
        let mut row = None;
        for _ in 0..n {
            row = lines.next().await.ok()?;
        }
        let row: Map<String, Value> = serde_json::from_str(&row?).ok()?;
        row.get("_source_line").and_then(Value::as_u64)
    }

    /// Loads one object's rows in one transaction; a refusal of its data is told apart from
    /// a failure of the target.
    async fn load_part(
        &self,
        client: &mut tokio_postgres::Client,
        part: &LoadPart,
    ) -> Result<u64, PartError> {
        match self.try_load_part(client, part).await {
            Ok(written) => Ok(written),
            Err(PartFailure::Db(doing, e)) => match self.data_refusal(part, &e).await {
                Some(reason) => Err(PartError::Data(reason)),
                None => Err(PartError::Target(
                    self.db_error(&format!("{} {doing}", part.key), e),
                )),
            },
            Err(PartFailure::Cell(reason)) => Err(PartError::Data(reason)),
            Err(PartFailure::Target(e)) => Err(PartError::Target(e)),
        }
    }

    async fn try_load_part(
        &self,
        client: &mut tokio_postgres::Client,
        part: &LoadPart,
    ) -> Result<u64, PartFailure> {
        let columns = self.columns();
        let names = columns
            .iter()
            .map(|(n, _, _)| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        let defs = columns
            .iter()
            .map(|(n, sql, _)| format!("{} {sql}", quote(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let types: Vec<Type> = columns.iter().map(|(_, _, t)| t.clone()).collect();
        let tx = client
            .transaction()
            .await
            .map_err(|e| PartFailure::Db("starting a transaction", e))?;
        tx.batch_execute(&format!("CREATE TEMP TABLE {STAGING} ({defs}) ON COMMIT DROP"))
            .await
            .map_err(|e| PartFailure::Db("creating the staging table", e))?;
        let sink = tx
            .copy_in(&format!("COPY {STAGING} ({names}) FROM STDIN (FORMAT binary)"))
            .await
            .map_err(|e| PartFailure::Db("starting COPY", e))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        let mut lines = super::SpoolLines::open(&part.spool)
            .await
            .map_err(PartFailure::Target)?;
        while let Some(line) = lines.next().await.map_err(PartFailure::Target)? {
            let row: Map<String, Value> = serde_json::from_str(&line).map_err(|e| {
                PartFailure::Target(self.error(PostgresFault::SpoolRow {
                    key: part.key.clone(),
                    error: e.to_string(),
                }))
            })?;
            let cells = self.cells(&row).map_err(|e| {
                PartFailure::Cell(format!(
                    "postgres table {} cannot store line {}: {e}",
                    self.table_name(),
                    row.get("_source_line").unwrap_or(&Value::Null)
                ))
            })?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                cells.iter().map(|c| c.as_ref() as &(dyn ToSql + Sync)).collect();
            writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(|e| PartFailure::Db("copying rows", e))?;
        }
        writer
            .finish()
            .await
            .map_err(|e| PartFailure::Db("finishing COPY", e))?;
        let insert = self.insert_sql(&names);
        let written = tx
            .execute(&insert, &[])
            .await
            .map_err(|e| PartFailure::Db("inserting the rows", e))?;
        tx.commit().await.map_err(|e| PartFailure::Db("committing", e))?;
        Ok(written)
    }

    /// The statement that moves the staged rows into the table.
    fn insert_sql(&self, names: &str) -> String {
        let table = self.table_sql();
        match &self.spec.mode {
            WriteMode::Append => format!(
                "INSERT INTO {table} ({names}, \"_imported_at\") SELECT {names}, now() FROM {STAGING}
                 ON CONFLICT (\"_source_key\", \"_source_version\", \"_source_line\") DO NOTHING"
            ),
            WriteMode::Upsert(key) => {
                let key_sql = key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
                let updates = self
                    .columns()
                    .iter()
                    .map(|(n, _, _)| n.clone())
                    .chain(std::iter::once("_imported_at".to_string()))
                    .filter(|n| !key.contains(n))
                    .map(|n| format!("{} = EXCLUDED.{}", quote(&n), quote(&n)))
                    .collect::<Vec<_>>()
                    .join(", ");
                // A file may hold a key twice; one statement may not update a row twice, so
                // the last such row of the file is kept.
                format!(
                    "INSERT INTO {table} ({names}, \"_imported_at\")
                     SELECT DISTINCT ON ({key_sql}) {names}, now() FROM {STAGING} ORDER BY {key_sql}, \"_source_line\" DESC
                     ON CONFLICT ({key_sql}) DO UPDATE SET {updates}"
                )
            }
        }
    }

    /// One spooled row as COPY values, in column order.
    fn cells(&self, row: &Map<String, Value>) -> Result<Vec<Cell>, String> {
        let mut cells: Vec<Cell> = Vec::with_capacity(self.fields.len() + PROVENANCE.len());
        for f in &self.fields {
            let v = row.get(&f.name).filter(|v| !v.is_null());
            let bad = || {
                format!(
                    "field {} holds {} for a {} column",
                    f.name,
                    crate::text::excerpt(&v.map(Value::to_string).unwrap_or_default()),
                    sql_type(&f.kind).0
                )
            };
            let cell: Cell = match (&f.kind, v) {
                (FieldType::Json, v) => Box::new(v.cloned()),
                (FieldType::String, v) => {
                    Box::new(v.map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                }
                (FieldType::Integer, v) => Box::new(v.map(|v| v.as_i64().ok_or_else(bad)).transpose()?),
                (FieldType::Decimal(_), v) => Box::new(
                    v.map(|v| v.as_str().and_then(|s| s.parse::<Decimal>().ok()).ok_or_else(bad))
                        .transpose()?,
                ),
                (FieldType::Float, v) => Box::new(v.map(|v| v.as_f64().ok_or_else(bad)).transpose()?),
                (FieldType::Boolean, v) => Box::new(v.map(|v| v.as_bool().ok_or_else(bad)).transpose()?),
                (FieldType::Date(_), v) => Box::new(
                    v.map(|v| {
                        v.as_str()
                            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                            .ok_or_else(bad)
                    })
                    .transpose()?,
                ),
                (FieldType::Timestamp { .. }, v) => Box::new(
                    v.map(|v| {
                        v.as_str()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                            .map(|t| t.with_timezone(&Utc))
                            .ok_or_else(bad)
                    })
                    .transpose()?,
                ),
            };
            cells.push(cell);
        }
        let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        cells.push(Box::new(text("_source_key")));
        cells.push(Box::new(text("_source_version")));
        cells.push(Box::new(
            row.get("_source_line").and_then(Value::as_i64).unwrap_or(0),
        ));
        Ok(cells)
    }
}

/// Why loading into the table failed: a value, turned into words in messages. `Db` keeps the
/// server's SQLSTATE apart, for code that must tell causes apart.
#[derive(Debug, thiserror::Error)]
pub enum PostgresFault {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("{reason}")]
    Url { reason: String },
    #[error("connecting: {cause}")]
    Connecting { cause: String },
    #[error(
        "{doing}: no answer within timeout_s = {seconds} s; the database may be stalled or overloaded (raise timeout_s in [target] for objects that take longer)"
    )]
    TimedOut { doing: String, seconds: u64 },
    #[error("{doing}: {detail}")]
    Db {
        /// What was being done, with the object's key where there is one.
        doing: String,
        code: Option<String>,
        detail: String,
    },
    #[error("the table does not exist; create it, or set create_table = true in [target]")]
    NoTable,
    #[error(
        "the table lacks the column{} {}; add {} with: {alter}",
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        if names.len() > 1 { "them" } else { "it" }
    )]
    MissingColumns { names: Vec<String>, alter: String },
    #[error(
        "the table does not exist and this user may not create tables in schema {schema}; GRANT CREATE ON SCHEMA {schema} TO the user, or create the table"
    )]
    CannotCreate { schema: String },
    #[error("this user lacks {privilege} on the table; GRANT {privilege} ON {table} TO the user")]
    NoPrivilege { privilege: &'static str, table: String },
    #[error("a spooled row of {key} is unreadable: {error}")]
    SpoolRow { key: String, error: String },
}

/// Why one object's load failed: its data, or the target.
enum PartError {
    Data(String),
    Target(TargetError),
}

/// A failure inside one object's transaction, before it is told apart.
enum PartFailure {
    Db(&'static str, tokio_postgres::Error),
    Cell(String),
    Target(TargetError),
}

#[async_trait]
impl Target for PostgresTarget {
    async fn prepare(&self, _load: &LoadInfo<'_>) -> Result<Delivery, TargetError> {
        Ok(Delivery {
            output: format!("postgres table {}", self.table_name()),
            detail: Value::Null,
        })
    }

    async fn deliver(&self, _delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError> {
        let mut client = self.connect().await?;
        self.within("checking the table", self.ensure_table(&client))
            .await?;
        let mut refused = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let loaded = tokio::time::timeout(self.spec.timeout, self.load_part(&mut client, part)).await;
            let loaded = loaded.unwrap_or_else(|_| {
                Err(PartError::Target(self.error(PostgresFault::TimedOut {
                    doing: format!("loading {}", part.key),
                    seconds: self.spec.timeout.as_secs(),
                })))
            });
            match loaded {
                Ok(written) => {
                    tracing::debug!(key = %part.key, rows = written, table = %self.table_name(), "object loaded");
                }
                // The object's transaction was rolled back: nothing of it is in the table,
                // and the other objects go on.
                Err(PartError::Data(reason)) => {
                    tracing::warn!(key = %part.key, table = %self.table_name(), reason = %reason, "object refused by the table");
                    refused.push(Refused { part: i, reason });
                }
                Err(PartError::Target(e)) => return Err(e),
            }
        }
        Ok(refused)
    }

    async fn recover(&self, _delivery: &Delivery) -> Result<bool, TargetError> {
        // Loading again changes nothing already loaded (ON CONFLICT), so say "not delivered"
        // and let the next run load the objects again.
        Ok(false)
    }
}
