//! [`LatencyProxy`]: a TCP proxy that delays everything the client sends by a fixed time,
//! making a real server look slow (or far away) without touching it. Bytes are delayed, not
//! throttled: each chunk is forwarded `delay` after it arrived, so concurrent calls are not
//! queued behind each other.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running proxy on a loopback port; stops (closing every connection) when dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl LatencyProxy {
    /// Proxies to `upstream`, delaying client-to-server bytes by `delay`.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
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
                let down = tokio::spawn(async move {
                    let mut server_r = server_r;
                    let mut client_w = client_w;
                    let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                });
                let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
                conns.push(up);
                conns.push(down);
            }
        });
        tasks.lock().unwrap_or_else(|e| e.into_inner()).push(accept);
        LatencyProxy { addr, tasks }
    }

    /// `host:port` to dial instead of the upstream.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
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
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}
