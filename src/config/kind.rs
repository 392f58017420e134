//! How a kind of source, format or target owns its keys: the table it is given (`[target]`
//! with `type` taken out) is read into the kind's own `deny_unknown_fields` structs, and
//! every key none of them names is reported with its line.
//!
//! A family (sources, targets) describes its kinds with a [`Family`]; a key that belongs to
//! another kind of the family is told apart from a typo, so that `path` under an `s3` source
//! says it is a `dir` source's key. Pure: no I/O.

use super::validate::Problems;
use super::{PathStep, Unread, deserialize_each};
use serde::de::{self, DeserializeOwned, Visitor};

/// The kinds of one family, for messages: what `type` may say, and each kind's keys.
pub struct Family {
    /// The table the family's keys sit in: `source`, `target`.
    pub table: &'static str,
    /// Each kind, as `type` names it, with every key it reads (`type` aside).
    pub kinds: Vec<(&'static str, Vec<&'static str>)>,
}

impl Family {
    /// `"file", "stdout", "s3", …`: the kinds as a message lists them.
    pub fn listed(&self) -> String {
        let names: Vec<String> = self.kinds.iter().map(|(k, _)| format!("{k:?}")).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

/// One kind's table, as written, with `type` taken out: read a part at a time.
pub struct KindTable<'f> {
    table: toml::Table,
    family: &'f Family,
    kind: &'static str,
}

impl<'f> KindTable<'f> {
    pub fn new(table: toml::Table, family: &'f Family, kind: &'static str) -> KindTable<'f> {
        KindTable { table, family, kind }
    }

    /// The kind being read.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Takes the keys `T` names out of the table and reads them (problems of type, with their
    /// key paths and lines, go to `p`). Keys `T` does not name stay for the next part.
    pub fn part<T: DeserializeOwned>(&mut self, p: &mut Problems<'_>) -> Option<T> {
        let keys = keys_of::<T>();
        let mut mine = toml::Table::new();
        for k in keys {
            if let Some(v) = self.table.remove(*k) {
                mine.insert((*k).to_string(), v);
            }
        }
        self.read(mine, p)
    }

    /// Reads what is left into `T`; any key `T` does not name either is reported: as a key of
    /// another kind of the family, or as unknown, with the keys this kind reads. The rest is
    /// read all the same, so that its problems are reported too: a kind's `validate` tells
    /// whether it passed by the count of problems.
    pub fn rest<T: DeserializeOwned>(mut self, p: &mut Problems<'_>) -> Option<T> {
        let keys = keys_of::<T>();
        let stray: Vec<String> = self
            .table
            .keys()
            .filter(|k| !keys.contains(&k.as_str()))
            .cloned()
            .collect();
        let path = |k: &str| vec![PathStep::Key(self.family.table.into()), PathStep::Key(k.into())];
        for k in &stray {
            self.table.remove(k);
            let mine = self
                .family
                .kinds
                .iter()
                .find(|(kind, _)| *kind == self.kind)
                .map(|(_, keys)| keys.clone())
                .unwrap_or_default();
            let owner = self
                .family
                .kinds
                .iter()
                .find(|(kind, keys)| *kind != self.kind && keys.contains(&k.as_str()));
            let message = match owner {
                Some((other, _)) => {
                    let reads = match mine.split_last() {
                        None => "has no key but `type`".to_string(),
                        Some((last, [])) => format!("reads only `{last}`"),
                        Some((last, rest)) => format!(
                            "reads only {} and `{last}`",
                            rest.iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "is a key of {} {other} {family}; {} {kind} {family} {reads}",
                        article(other),
                        article(self.kind),
                        family = self.family.table,
                        kind = self.kind,
                    )
                }
                None => {
                    let expected: Vec<String> = std::iter::once("type")
                        .chain(mine.iter().copied())
                        .map(|k| format!("`{k}`"))
                        .collect();
                    let unknown = format!("unknown field `{k}`, expected one of {}", expected.join(", "));
                    match foreign_name(self.family.table, k) {
                        Some(hint) => format!("{unknown}; {hint}"),
                        None => unknown,
                    }
                }
            };
            p.add_at(&path(k), message);
        }
        let table = std::mem::take(&mut self.table);
        self.read(table, p)
    }

    fn read<T: DeserializeOwned>(&self, table: toml::Table, p: &mut Problems<'_>) -> Option<T> {
        let prefix = [PathStep::Key(self.family.table.into())];
        match deserialize_each::<T>(toml::Value::Table(table), p.text, &prefix) {
            Ok(t) => Some(t),
            Err(problems) => {
                for Unread { path, message, .. } in problems {
                    p.add_at(&path, message);
                }
                None
            }
        }
    }
}

/// `a` or `an`, as a kind's name is read aloud (`an s3 source`, `a dir source`).
pub fn article(kind: &str) -> &'static str {
    match kind.as_bytes().first() {
        _ if kind == "s3" => "an",
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    }
}

/// The keys of a struct, as its `Deserialize` implementation names them (renames applied);
/// empty for anything that is not a struct.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut found = KeyNames(None);
    // The error is how the deserializer stops once it has seen the names.
    let _ = T::deserialize(&mut found);
    found.0.unwrap_or(&[])
}

/// A deserializer that reads nothing: it records the field names a struct asks for.
struct KeyNames(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut KeyNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// What a key of another well-known reader (pyarrow's and DuckDB's CSV options, Python's
/// `csv`) does here: the unknown key stays an error, with the way to say it.
fn foreign_name(family: &str, key: &str) -> Option<&'static str> {
    Some(match (family, key) {
        ("format", "autogenerate_column_names") => {
            "pyarrow's autogenerate_column_names is has_header = false here, with each field's `column` its 1-based index"
        }
        ("format", "column_names" | "names") => "columns are named in the template: each field's `column`",
        ("format", "newlines_in_values") => "quoted values may always hold line breaks here; remove it",
        ("format", "escapechar" | "escape") => "the escape character is escape_char",
        ("format", "quotechar" | "quote") => "the quote character is quote_char",
        ("format", "doublequote") => "doubled quotes are double_quote",
        ("format", "header") => "a header row is has_header",
        ("format", "sep" | "delim") => "the separator is delimiter",
        ("format", "skip_rows" | "skip") => "rows above the header are skip_rows_before_header",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        #[serde(rename = "type")]
        kind: Option<String>,
        path: Option<String>,
    }

    #[test]
    fn names_the_keys_of_a_struct() {
        assert_eq!(keys_of::<Two>(), &["type", "path"]);
        assert!(keys_of::<String>().is_empty());
    }

    #[test]
    fn articles() {
        let cases = [
            ("s3", "an"),
            ("http", "a"),
            ("dir", "a"),
            ("stdout", "a"),
            ("avro", "an"),
        ];
        for (kind, want) in cases {
            assert_eq!(article(kind), want, "{kind}");
        }
    }
}
