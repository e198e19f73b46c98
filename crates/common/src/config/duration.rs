//! Durations in settings, written with a unit: `250ms`, `5s`, `15m`, `7d`, `1h 30m`
//! (humantime's syntax). Use with `#[serde(with = "crate::config::duration")]`; maps of durations
//! use [`map`].
//!
//! A bare number is refused rather than guessed at: `5000` could mean milliseconds or seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `value` as humantime text (`1s 500ms`).
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Reads humantime text.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Parses `text` as a duration with a unit.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit (write e.g. `{text}ms` or `{text}s`)"
        ));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// Maps of durations (`client.method_timeout`: service → method → duration).
pub mod map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    type Nested = BTreeMap<String, BTreeMap<String, Duration>>;

    /// Writes every duration as humantime text.
    pub fn serialize<S: Serializer>(value: &Nested, serializer: S) -> Result<S::Ok, S::Error> {
        let mut outer = serializer.serialize_map(Some(value.len()))?;
        for (key, inner) in value {
            let texts: BTreeMap<&str, String> = inner
                .iter()
                .map(|(k, d)| (k.as_str(), humantime::format_duration(*d).to_string()))
                .collect();
            outer.serialize_entry(key, &texts)?;
        }
        outer.end()
    }

    /// Reads humantime text at every leaf.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Nested, D::Error> {
        let raw = BTreeMap::<String, BTreeMap<String, String>>::deserialize(deserializer)?;
        raw.into_iter()
            .map(|(key, inner)| {
                let inner = inner
                    .into_iter()
                    .map(|(k, text)| {
                        super::parse(&text)
                            .map(|d| (k, d))
                            .map_err(serde::de::Error::custom)
                    })
                    .collect::<Result<_, _>>()?;
                Ok((key, inner))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse("5000").unwrap_err().contains("no unit"));
        assert!(parse("fast").is_err());
        assert!(parse("").is_err());
    }
}
