//! The command line every service binary shares: `--config FILE` (or `MALL_CONFIG`), `--help`
//! and `--version`. Everything else a service reads comes from its settings (see the crate's
//! `config` module), so the command line stays this small. `--help` and `--version` print and
//! exit 0 before anything is opened or bound; an unknown argument is a usage error (exit 2).

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

/// What follows the settings table in every service's `--help`.
const SETTINGS_HELP: &str = "\
Settings layer: built-in defaults, then the file (--config or MALL_CONFIG), then the config
centre (Consul KV, when configured), then MALL__SECTION__KEY environment variables, e.g.
MALL__SERVER__PORT=9000 or MALL__DATABASE__URL=mysql://root@127.0.0.1:3306. The keys are listed
in docs/configuration.md.";

/// A service binary's arguments.
#[derive(Debug, Clone, Parser)]
pub struct ServiceArgs {
    /// Settings file (YAML or TOML), layered over the defaults.
    #[arg(long, value_name = "FILE", env = super::CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,
}

impl ServiceArgs {
    /// Parses `args` (the program name first) for the binary `name`; `Err` carries what clap
    /// prints (help, version or a usage error) and the exit code it implies.
    pub fn try_parse_for<I, T>(
        name: &'static str,
        about: &'static str,
        version: &'static str,
        args: I,
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command()
            .name(name)
            .bin_name(name)
            .about(about)
            .version(version)
            .after_help(SETTINGS_HELP);
        Self::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    /// The process's own arguments; prints help, the version or a usage error and exits (0, 0,
    /// 2) where clap says to.
    pub fn from_process(name: &'static str, about: &'static str, version: &'static str) -> Self {
        Self::try_parse_for(name, about, version, std::env::args_os()).unwrap_or_else(|e| e.exit())
    }
}

/// The calling service binary's [`ServiceArgs`], named, described and versioned from its own
/// `Cargo.toml`: `let _args = mall_common::service_args!();` first thing in `main`.
#[macro_export]
macro_rules! service_args {
    () => {
        $crate::config::cli::ServiceArgs::from_process(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_DESCRIPTION"),
            env!("CARGO_PKG_VERSION"),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServiceArgs, clap::Error> {
        ServiceArgs::try_parse_for("cart", "the cart", "1.2.3", args)
    }

    #[test]
    fn help_and_version_are_answers_not_errors() {
        for flag in ["--help", "-h"] {
            let e = parse(&["cart", flag]).unwrap_err();
            assert_eq!(e.exit_code(), 0, "{flag}");
            let text = e.render().to_string();
            assert!(text.contains("Usage: cart"), "{text}");
            assert!(text.contains("--config <FILE>"), "{text}");
            assert!(text.contains("MALL__SECTION__KEY"), "{text}");
        }
        let e = parse(&["cart", "--version"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        assert_eq!(e.render().to_string().trim(), "cart 1.2.3");
    }

    #[test]
    fn unknown_arguments_are_usage_errors() {
        for args in [
            &["cart", "--bogus"][..],
            &["cart", "serve"],
            &["cart", "--config"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn the_config_file_is_taken() {
        let args = parse(&["cart", "--config", "deploy/config/test.yaml"]).unwrap();
        assert_eq!(
            args.config.as_deref(),
            Some(std::path::Path::new("deploy/config/test.yaml"))
        );
    }
}
