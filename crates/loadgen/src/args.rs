//! A small `--flag value` parser shared by the subcommands: every flag takes a value except the
//! switches a subcommand names, an unknown flag is refused with the known ones listed, and a
//! value is parsed where it is read so the message names the flag.

use std::collections::BTreeMap;
use std::str::FromStr;

/// The flags of one command line, by name (with the leading `--`).
#[derive(Debug, Default)]
pub struct Flags {
    values: BTreeMap<String, String>,
}

impl Flags {
    /// Parses `args` knowing `valued` flags (which take a value) and `switches` (which do not).
    pub fn parse(args: &[String], valued: &[&str], switches: &[&str]) -> anyhow::Result<Flags> {
        let mut values = BTreeMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag.as_str(), None),
            };
            let value = if switches.contains(&name) {
                anyhow::ensure!(inline.is_none(), "{name} takes no value");
                "true".to_string()
            } else if valued.contains(&name) {
                match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?,
                }
            } else {
                let mut known: Vec<&str> = valued.iter().chain(switches).copied().collect();
                known.sort_unstable();
                anyhow::bail!("unknown option {flag} (known: {})", known.join(", "));
            };
            anyhow::ensure!(
                values.insert(name.to_string(), value).is_none(),
                "{name} given twice"
            );
        }
        Ok(Flags { values })
    }

    /// The raw value of `name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether the switch `name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The value of `name` parsed as `T`, if given.
    pub fn get<T: FromStr>(&self, name: &str) -> anyhow::Result<Option<T>> {
        self.text(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| anyhow::anyhow!("{name}: `{v}` is not a valid value"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_switches_and_inline_values_parse() {
        let flags = Flags::parse(
            &args("--users 5 --rate=2.5 --allow-remote"),
            &["--users", "--rate"],
            &["--allow-remote"],
        )
        .unwrap();
        assert_eq!(flags.get::<u64>("--users").unwrap(), Some(5));
        assert_eq!(flags.get::<f64>("--rate").unwrap(), Some(2.5));
        assert!(flags.switch("--allow-remote"));
        assert_eq!(flags.get::<u64>("--seed").unwrap(), None);
    }

    #[test]
    fn unknown_missing_repeated_and_bad_values_are_refused() {
        let known = ["--users"];
        let err = Flags::parse(&args("--usres 5"), &known, &[]).unwrap_err();
        assert!(err.to_string().contains("--users"), "{err}");
        assert!(Flags::parse(&args("--users"), &known, &[]).is_err());
        assert!(Flags::parse(&args("--users 1 --users 2"), &known, &[]).is_err());
        let flags = Flags::parse(&args("--users many"), &known, &[]).unwrap();
        let err = flags.get::<u64>("--users").unwrap_err();
        assert!(err.to_string().contains("--users"), "{err}");
    }
}
