//! [`StubGrpc`]: a real HTTP/2 gRPC server whose every RPC answers as scripted (an empty
//! message, or an error status) and counts the calls per method, so client-side resilience
//! (retries, circuit breaking) can be tested against a dependency that misbehaves on demand.
//!
//! Covered: unary calls of any service and method over h2c. `Ok` answers an empty message
//! (valid for every proto3 response type: all fields at their defaults) followed by
//! `grpc-status: 0` trailers; an error status is sent trailers-only, as gRPC servers do;
//! `BrokenBody` sends the response headers and then resets the stream; `Shed` answers as a
//! TikTokMall server refusing a call past its concurrency limit.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, Uri};
use bytes::Bytes;
use http_body::Frame;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the stub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An empty response message and status OK.
    Ok,
    /// The given status code (e.g. `tonic::Code::Unavailable`), trailers-only.
    Status(tonic::Code),
    /// Response headers, then the stream breaks before the message (as when the server dies
    /// between the two).
    BrokenBody,
    /// `RESOURCE_EXHAUSTED` trailers-only with `x-mall-shed: limit`, as a TikTokMall server
    /// answers a call it did not admit (its concurrency limit was reached).
    Shed,
}

#[derive(Default)]
struct State {
    reply: Option<Reply>,
    delay: Duration,
    calls: BTreeMap<String, u64>,
    traceparents: Vec<String>,
}

/// A running stub server on a loopback port; stops when dropped.
pub struct StubGrpc {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl StubGrpc {
    /// Starts a stub answering `reply` to every call.
    pub async fn start(reply: Reply) -> StubGrpc {
        let state = Arc::new(Mutex::new(State {
            reply: Some(reply),
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub address");
        let shared = state.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let shared = shared.clone();
            async move { answer(&shared, &uri, &headers).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubGrpc { addr, state, task }
    }

    /// `host:port` to dial.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Changes how later calls are answered.
    pub fn set_reply(&self, reply: Reply) {
        self.lock().reply = Some(reply);
    }

    /// Makes every later answer wait `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Calls received for `path` (`/package.Service/Method`).
    pub fn calls(&self, path: &str) -> u64 {
        self.lock().calls.get(path).copied().unwrap_or(0)
    }

    /// The `traceparent` of every call that carried one, in arrival order.
    pub fn traceparents(&self) -> Vec<String> {
        self.lock().traceparents.clone()
    }

    /// Calls received in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().calls.values().sum()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }
}

impl Drop for StubGrpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(state: &Mutex<State>, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    let (reply, delay) = {
        let mut state = state.lock();
        *state.calls.entry(uri.path().to_string()).or_default() += 1;
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            state.traceparents.push(tp.to_string());
        }
        (state.reply.unwrap_or(Reply::Ok), state.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let builder = Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    let response = match reply {
        Reply::Status(code) => builder
            .header("grpc-status", (code as i32).to_string())
            .header("grpc-message", "stubbed")
            .body(Body::empty()),
        Reply::Shed => builder
            .header(
                "grpc-status",
                (tonic::Code::ResourceExhausted as i32).to_string(),
            )
            .header("grpc-message", "server overloaded; retry later")
            .header("x-mall-shed", "limit")
            .body(Body::empty()),
        Reply::BrokenBody => {
            // The pause lets the headers reach the client before the stream is reset.
            let frames = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err::<Frame<Bytes>, _>(std::io::Error::other("stub: the answer breaks off"))
            });
            builder.body(Body::new(http_body_util::StreamBody::new(frames)))
        }
        Reply::Ok => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            // One length-prefixed message of zero bytes: uncompressed flag, length 0.
            let frames = futures::stream::iter([
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                Ok(Frame::trailers(trailers)),
            ]);
            builder.body(Body::new(http_body_util::StreamBody::new(frames)))
        }
    };
    response.unwrap_or_else(|_| Response::new(Body::empty()))
}
