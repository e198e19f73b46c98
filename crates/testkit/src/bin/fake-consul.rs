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

use mall_testkit::consul::FakeConsul;

/// The address of a local Consul agent.
const DEFAULT_LISTEN: &str = "127.0.0.1:8500";

const USAGE: &str = "usage: fake-consul [--listen HOST:PORT]   (default 127.0.0.1:8500)";

fn parse_listen(args: &[String]) -> Result<SocketAddr, String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => {
                listen = it
                    .next()
                    .ok_or_else(|| "--listen needs a value (HOST:PORT)".to_string())?
                    .clone();
            }
            other => match other.strip_prefix("--listen=") {
                Some(value) => listen = value.to_string(),
                None => return Err(format!("unknown argument `{other}`")),
            },
        }
    }
    listen
        .parse()
        .map_err(|_| format!("--listen: `{listen}` is not an IP:port address"))
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("fake-consul {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let addr = match parse_listen(&args) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("fake-consul: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listens_on_the_agents_port_by_default() {
        assert_eq!(
            parse_listen(&[]),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8500)))
        );
    }

    #[test]
    fn takes_the_address_in_both_spellings() {
        let want = Ok(SocketAddr::from(([127, 0, 0, 1], 18500)));
        assert_eq!(parse_listen(&args(&["--listen", "127.0.0.1:18500"])), want);
        assert_eq!(parse_listen(&args(&["--listen=127.0.0.1:18500"])), want);
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(parse_listen(&args(&["--listen"])).is_err());
        assert!(parse_listen(&args(&["--listen", "localhost"])).is_err());
        assert!(parse_listen(&args(&["--port", "1"])).is_err());
    }
}
