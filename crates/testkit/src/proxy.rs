//! [`LatencyProxy`]: a TCP proxy that delays everything the client sends by a fixed time,
//! making a real server look slow (or far away) without touching it. Bytes are delayed, not
//! throttled: each chunk is forwarded `delay` after it arrived, so concurrent calls are not
//! queued behind each other. It can also lose an answer: [`LatencyProxy::lose_next_answer`]
//! closes the connection instead of forwarding the server's next bytes, as a network failure
//! after the server acted would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running proxy on a loopback port; stops (closing every connection) when dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    lose_next: Arc<AtomicBool>,
}

impl LatencyProxy {
    /// Proxies to `upstream`, delaying client-to-server bytes by `delay`.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
        let lose_next = Arc::new(AtomicBool::new(false));
        let lose = lose_next.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_r, client_w) = client.into_split();
                let (server_r, server_w) = server.into_split();
                let up = tokio::spawn(delayed_copy(client_r, server_w, delay));
                let down = tokio::spawn(answers(server_r, client_w, lose.clone()));
                let mut conns = conns.lock();
                conns.push(up);
                conns.push(down);
            }
        });
        tasks.lock().push(accept);
        LatencyProxy {
            addr,
            tasks,
            lose_next,
        }
    }

    /// The next bytes any server sends back are dropped and their connection closed: the
    /// client sees the connection fail after its request reached the server.
    pub fn lose_next_answer(&self) {
        self.lose_next.store(true, Ordering::SeqCst);
    }

    /// `host:port` to dial instead of the upstream.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

/// Forwards the server's bytes to the client, unless an answer is to be lost.
async fn answers(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    lose_next: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if lose_next.swap(false, Ordering::SeqCst) {
                    // Dropping both halves closes the client's connection mid-answer.
                    return;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}
