//! Stopping: the process signals that start a graceful shutdown, and the [`Shutdown`] handle
//! background work watches so it stops with the server.

use std::time::Duration;

use tokio::sync::watch;

/// Seen by background workers: fires when the server starts shutting down (or is gone).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The server's side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A trigger and the handle it fires.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Starts the shutdown: every [`Shutdown`] completes.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A new handle on this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Completes when the shutdown starts or its trigger is dropped.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    /// Whether the shutdown has started.
    pub fn is_started(&self) -> bool {
        *self.0.borrow()
    }
}

/// How long deregistering from the registry may delay the start of a graceful shutdown.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
