//! `fake-consul`: the test double that stands in for a real Consul agent where none can be
//! installed, so a fleet of separate processes (`scripts/fleet.sh`) runs with
//! `discovery.kind = consul` exactly as it would against a real agent.
//!
//! It serves [`mall_testkit::consul::FakeConsul`] — the subset of the agent's HTTP API that
//! `common::discovery` uses (register/deregister, `/v1/agent/service/<id>`,
//! `/v1/health/service/<name>` with `passing` and blocking `index`/`wait`), running the
//! registered gRPC health checks itself; what it covers and how it differs from Consul is listed
//! at the top of `crates/testkit/src/consul.rs`. State lives in memory only: a restarted
//! fake starts empty and the services re-register on their own.
//!
//! ```text
//! fake-consul [--listen 127.0.0.1:8500]
//! ```
//!
//! Runs until SIGTERM or SIGINT, then exits 0. Logs one line to stderr once it is listening:
//! `fake consul listening on http://127.0.0.1:8500`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use mall_testkit::consul::FakeConsul;

/// The subset of a Consul agent's HTTP API that TikTokMall's discovery uses, in memory.
#[derive(Debug, Parser)]
#[command(name = "fake-consul", version)]
struct Cli {
    /// Where to listen, IP:PORT (a local Consul agent's address by default).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
}

async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Help, the version and usage errors are printed here and exit 0, 0 and 2.
    let addr = Cli::parse().listen;
    let mut fake = match FakeConsul::bind(addr).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-consul: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("fake consul listening on {}", fake.url());
    let stopped = stop_signal().await;
    fake.stop().await;
    match stopped {
        Ok(()) => {
            eprintln!("fake consul stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake-consul: cannot wait for a stop signal: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<SocketAddr, clap::Error> {
        Cli::try_parse_from(std::iter::once("fake-consul").chain(args.iter().copied()))
            .map(|cli| cli.listen)
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listens_on_the_agents_port_by_default() {
        assert_eq!(
            parse(&[]).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 8500))
        );
    }

    #[test]
    fn takes_the_address_in_both_spellings() {
        let want = SocketAddr::from(([127, 0, 0, 1], 18500));
        assert_eq!(parse(&["--listen", "127.0.0.1:18500"]).unwrap(), want);
        assert_eq!(parse(&["--listen=127.0.0.1:18500"]).unwrap(), want);
    }

    #[test]
    fn help_and_version_answer_and_bad_arguments_are_usage_errors() {
        for flag in ["--help", "-h", "--version", "-V"] {
            assert_eq!(parse(&[flag]).unwrap_err().exit_code(), 0, "{flag}");
        }
        for bad in [
            &["--listen"][..],
            &["--listen", "localhost"],
            &["--port", "1"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
