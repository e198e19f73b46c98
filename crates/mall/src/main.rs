//! `mall`: the whole TikTokMall fleet in one process, on the well-known ports, with the embedded
//! defaults (SQLite under `./data/`, in-process cache, static discovery). Settings layer as for
//! every service: `--config FILE` / `MALL_CONFIG`, then `MALL__SECTION__KEY`.
//!
//! `mall certs [--out DIR]` writes a development certificate set for mutual TLS instead (see
//! [`mall::certs`]; default directory `certs`, where the `tls.*` defaults look).
//!
//! `mall demo [--host HOST] [--<service>-addr HOST:PORT]... [--trace]` walks one shopper
//! through a purchase and a declined card against a running fleet (see [`mall::demo`]).
//!
//! `mall events tail [--type order.*] [--url URL]` prints the live event stream (see
//! [`mall::events_tail`]).
//!
//! `mall keys` prints a fresh Ed25519 key pair for access tokens as environment lines:
//! `MALL__AUTH__VERIFY_KEY` for every service, `MALL__AUTH__SIGNING_KEY` for auth only.
//!
//! The command line is clap's: `mall --help` and every subcommand's `--help` print and exit 0
//! before anything starts; an unknown argument is a usage error (exit 2).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mall_common::config::{self, Source};

/// The whole TikTokMall fleet in one process (`mall` alone), or one of its tools.
#[derive(Debug, Parser)]
#[command(
    name = "mall",
    version,
    about = "The whole TikTokMall fleet in one process, on the well-known ports (SQLite under \
             ./data/, in-process cache, static discovery), or one of its tools",
    after_help = "Settings layer: built-in defaults, then the file (--config or MALL_CONFIG), \
                  then MALL__SECTION__KEY environment variables (docs/configuration.md)."
)]
struct Cli {
    /// Settings file (YAML or TOML), layered over the defaults.
    #[arg(long, value_name = "FILE", env = config::CONFIG_FILE_ENV, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a development certificate set for mutual TLS.
    Certs {
        /// Where to write (the tls.* defaults look in `certs`).
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
    /// Walk one shopper through a purchase and a declined card against a running fleet.
    Demo(mall::demo::DemoArgs),
    /// The event stream.
    #[command(subcommand)]
    Events(Events),
    /// Print a fresh Ed25519 key pair for access tokens, as environment lines.
    Keys,
}

#[derive(Debug, Subcommand)]
enum Events {
    /// Print the live event stream, one line per event.
    Tail(mall::events_tail::TailArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certs { out }) => return certs(&out),
        Some(Command::Demo(args)) => {
            return mall::demo::run(&mall::demo::Targets::from_args(&args)).await;
        }
        Some(Command::Events(Events::Tail(tail))) => return mall::events_tail::run(&tail).await,
        Some(Command::Keys) => {
            let (signing, verify) = config::AccessKeys::generate();
            println!("MALL__AUTH__VERIFY_KEY={verify}");
            println!("MALL__AUTH__SIGNING_KEY={signing}");
            return Ok(());
        }
        None => {}
    }
    let source = Source::from_process().read_centre(mall::SERVICES).await?;
    let settings = config::load("mall", config::Settings::defaults("mall"), &source)?;
    mall_common::telemetry::init(&settings.service, &settings.telemetry);
    // Installed before the services start, so a stop while they do is not a silent exit.
    let stop = mall_common::server::shutdown_signal();
    let fleet = mall::Fleet::start(mall::SERVICES, source).await?;
    for (name, ep) in fleet.all_endpoints() {
        tracing::info!(service = name, grpc = %ep.grpc, admin = %ep.admin, "serving");
    }
    stop.await;
    let result = fleet.shutdown().await;
    mall_common::telemetry::trace::shutdown().await;
    result
}

/// `mall certs [--out DIR]`.
fn certs(out: &std::path::Path) -> anyhow::Result<()> {
    for file in mall::certs::generate(out, &mall::certs::names())? {
        println!("{}", file.display());
    }
    Ok(())
}
