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

/// Completes on SIGINT (Ctrl-C) or SIGTERM, and says which came.
///
/// The handlers are installed when this is called, not when the future is first polled (the
/// server polls it only once it serves): a signal that comes while the process still starts
/// (migrates, connects, registers) would otherwise take the default action, a silent exit with
/// nothing in the log; with them installed early it becomes a graceful stop as soon as the
/// server runs. Call it inside the Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            tokio::select! {
                () = on(interrupt, "SIGINT") => {},
                () = on(terminate, "SIGTERM") => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!(signal = "Ctrl-C", "stop requested");
    }
}

/// Completes when the installed `handler` sees its signal; never when it could not be
/// installed (that is logged: the process then stops only by the default action).
#[cfg(unix)]
async fn on(handler: std::io::Result<tokio::signal::unix::Signal>, name: &'static str) {
    match handler {
        Ok(mut signal) => {
            signal.recv().await;
            tracing::info!(signal = name, "stop requested");
        }
        Err(e) => {
            tracing::error!(error = %e, signal = name, "cannot listen for the signal");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_before_the_first_poll_is_not_lost() {
        let stop = shutdown_signal();
        // Sent before the future is polled: without the early handler the default action
        // would end this test process.
        let sent = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the early SIGINT completes the shutdown future");
    }
}
