//! Refusing keys no setting has. The known keys are the leaves of the serialized defaults (the
//! platform sections merged with the service's own); a key given in the file or as a `MALL__`
//! variable must be one of them, lie under a map that takes any key ([`OPEN_MAPS`]), or belong
//! to a section another service owns ([`super::SERVICE_SECTIONS`]).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{ConfigError, ENV_PREFIX, SERVICE_SECTIONS, Source};

/// Settings that are maps keyed by the operator (service names, method names, flag names).
pub const OPEN_MAPS: &[&str] = &["discovery.static", "client.method_timeout", "features"];

/// `extra` merged into `base`, objects key by key; `extra` wins elsewhere.
pub fn merge(base: Value, extra: Value) -> Value {
    match (base, extra) {
        (Value::Object(mut base), Value::Object(extra)) => {
            for (key, value) in extra {
                let merged = match base.remove(&key) {
                    Some(existing) => merge(existing, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (_, extra) => extra,
    }
}

/// Defaults that cannot be written out are a bug in a settings type.
pub fn serialize_error(e: serde_json::Error) -> ConfigError {
    ConfigError::invalid("<defaults>", format!("cannot serialize the defaults: {e}"))
}

/// The keys the defaults know, and the judgement of a given key against them.
struct Known<'a> {
    known: BTreeSet<String>,
    owned: BTreeSet<&'a str>,
}

impl<'a> Known<'a> {
    fn of(defaults: &'a Value) -> Self {
        let mut known = BTreeSet::new();
        leaves(defaults, String::new(), &mut known);
        let owned = match defaults {
            Value::Object(sections) => sections.keys().map(String::as_str).collect(),
            _ => BTreeSet::new(),
        };
        Known { known, owned }
    }

    fn accepts(&self, key: &str) -> bool {
        let top = key.split('.').next().unwrap_or_default();
        self.known.contains(key)
            || self.known.iter().any(|k| k.starts_with(&format!("{key}.")))
            || OPEN_MAPS
                .iter()
                .any(|open| key.starts_with(&format!("{open}.")) || key == *open)
            || (SERVICE_SECTIONS.contains(&top) && !self.owned.contains(top))
    }

    fn unknown(&self, key: String, origin: String) -> ConfigError {
        ConfigError::UnknownKey {
            suggestion: nearest(&key, &self.known),
            key,
            origin,
        }
    }

    /// Fails on the first key of the YAML `tree` this does not accept.
    fn check_tree<S>(&self, tree: S, origin: String) -> Result<(), ConfigError>
    where
        S: config::Source + Send + Sync + 'static,
    {
        let tree: Value = config::Config::builder()
            .add_source(tree)
            .build()?
            .try_deserialize()?;
        let mut given = BTreeSet::new();
        leaves(&tree, String::new(), &mut given);
        match given.into_iter().find(|k| !self.accepts(k)) {
            Some(key) => Err(self.unknown(key, origin)),
            None => Ok(()),
        }
    }
}

/// Fails on the first key in `source`'s file or environment that `defaults` does not know.
pub fn check(defaults: &Value, source: &Source) -> Result<(), ConfigError> {
    let known = Known::of(defaults);
    if let Some(file) = source.file_source() {
        let origin = source
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        known.check_tree(file, origin)?;
    }
    let prefix = format!("{ENV_PREFIX}__");
    for name in source.env.keys() {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let key = rest
            .split("__")
            .collect::<Vec<_>>()
            .join(".")
            .to_lowercase();
        if !known.accepts(&key) {
            return Err(known.unknown(key, name.clone()));
        }
    }
    Ok(())
}

/// Fails on the first key in `service`'s config-centre YAML that `defaults` does not know.
pub fn check_kv(defaults: &Value, source: &Source, service: &str) -> Result<(), ConfigError> {
    match source.kv_source(service) {
        Some(kv) => Known::of(defaults).check_tree(kv, super::centre::origin(service)),
        None => Ok(()),
    }
}

/// The dotted paths of every non-object value (an empty object counts as a leaf).
fn leaves(value: &Value, path: String, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(child, child_path, out);
            }
        }
        _ if !path.is_empty() => {
            out.insert(path);
        }
        _ => {}
    }
}

/// The known key closest to `key`, when it is close enough to be a likely typo.
fn nearest(key: &str, known: &BTreeSet<String>) -> Option<String> {
    let (distance, best) = known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .min_by_key(|(d, _)| *d)?;
    let tolerance = (key.chars().count() / 3).max(2);
    (distance <= tolerance).then(|| best.clone())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("databse.url", "database.url"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let known: BTreeSet<String> = ["database.url", "cache.url", "server.port"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            nearest("databse.url", &known).as_deref(),
            Some("database.url")
        );
        assert_eq!(nearest("telemetry.otlp_endpoint", &known), None);
    }

    #[test]
    fn merge_is_deep() {
        let merged = merge(
            serde_json::json!({"auth": {"a": 1, "b": 2}, "x": 1}),
            serde_json::json!({"auth": {"b": 3, "c": 4}}),
        );
        assert_eq!(
            merged,
            serde_json::json!({"auth": {"a": 1, "b": 3, "c": 4}, "x": 1})
        );
    }
}
