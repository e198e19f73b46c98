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

use std::path::PathBuf;

use mall_common::config::{self, Source};

/// Where `mall certs` writes without `--out`.
const DEFAULT_CERTS_DIR: &str = "certs";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("certs") => return certs(&args[1..]),
        Some("demo") => return mall::demo::run(&mall::demo::Targets::from_args(&args[1..])?).await,
        Some("events") => {
            return match args.get(1).map(String::as_str) {
                Some("tail") => mall::events_tail::run(&args[2..]).await,
                _ => anyhow::bail!("{}", mall::events_tail::USAGE),
            };
        }
        Some("keys") => {
            let (signing, verify) = config::AccessKeys::generate();
            println!("MALL__AUTH__VERIFY_KEY={verify}");
            println!("MALL__AUTH__SIGNING_KEY={signing}");
            return Ok(());
        }
        _ => {}
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
fn certs(args: &[String]) -> anyhow::Result<()> {
    let out = match args {
        [] => PathBuf::from(DEFAULT_CERTS_DIR),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        [arg] if arg.starts_with("--out=") => PathBuf::from(&arg["--out=".len()..]),
        _ => anyhow::bail!("usage: mall certs [--out DIR]"),
    };
    for file in mall::certs::generate(&out, &mall::certs::names())? {
        println!("{}", file.display());
    }
    Ok(())
}
