//! `loadgen bench`: benchmarks of the call path between services, on loopback, bounded in calls
//! and time.
//!
//! Three product instances run in this process on one database; a pool of concurrent callers
//! sends `GetProduct` through each scenario's client. Every scenario is reported against
//! `direct` — a plain tonic channel to one instance, measured in the same run — as ratios, never
//! as absolute limits:
//!
//! - `direct` (baseline): tonic's channel, one instance, nothing else;
//! - `mall x1`: `common::client::Channel` to the same instance (deadline, request id, breaker,
//!   balancing bookkeeping): the cost of the client stack;
//! - `mall x3`: the same over three instances;
//! - `round-robin x3, 1 slow` and `mall x3, 1 slow`: one instance behind a latency proxy, with a
//!   naive round-robin client and with ours (power of two choices over in-flight calls).

use mall_types::ServiceName;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mall_common::client::Clients;
use mall_common::config::Settings;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_testing::TestFleet;
use mall_testkit::proxy::LatencyProxy;
use tonic::body::Body;
use tower::{Service, ServiceExt};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured calls per scenario (after the warm-up).
    pub calls: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Extra latency of the slow instance.
    pub slow: Duration,
    /// A scenario stops early after this long.
    pub max_time: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calls: 20_000,
            concurrency: 16,
            slow: Duration::from_millis(20),
            max_time: Duration::from_secs(60),
        }
    }
}

/// One scenario's measurements.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The scenario's name.
    pub name: &'static str,
    /// Calls that succeeded.
    pub ok: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Successful calls per second.
    pub throughput: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// All scenarios of one run; the first is the baseline.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options used.
    pub options: Options,
    /// In run order, the baseline first.
    pub scenarios: Vec<Measurement>,
}

impl Report {
    /// The report as a Markdown table with ratios against the baseline.
    pub fn to_markdown(&self) -> String {
        let o = &self.options;
        let mut out = format!(
            "GetProduct, {} calls per scenario, {} concurrent callers, slow instance +{} ms\n\n\
             | scenario | ok | failed | calls/s | p50 | p99 | throughput vs direct | p99 vs direct |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
            o.calls,
            o.concurrency,
            o.slow.as_millis()
        );
        let Some(base) = self.scenarios.first() else {
            return out;
        };
        for m in &self.scenarios {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2}× | {:.2}× |\n",
                m.name,
                m.ok,
                m.failed,
                m.throughput,
                ms(m.p50),
                ms(m.p99),
                ratio(m.throughput, base.throughput),
                ratio(ms(m.p99), ms(base.p99)),
            ));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// A naive client-side balancer for comparison: strict round-robin over tonic channels.
#[derive(Clone)]
struct RoundRobin {
    channels: Arc<Vec<tonic::transport::Channel>>,
    next: Arc<AtomicUsize>,
}

impl Service<http::Request<Body>> for RoundRobin {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        let mut channel = self.channels[i].clone();
        Box::pin(async move { channel.ready().await?.call(req).await })
    }
}

fn tonic_channel(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy())
}

fn mall_client(
    addrs: &[String],
) -> anyhow::Result<ProductCatalogServiceClient<mall_common::client::Channel>> {
    let mut settings = Settings::defaults("loadgen");
    settings
        .discovery
        .static_addrs
        .insert("product".into(), addrs.to_vec());
    let clients = Clients::discover(&settings.discovery, &settings.client, None)?;
    Ok(clients.client(ServiceName::Product)?)
}

/// Runs every scenario and returns the report.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        options.calls > 0 && options.concurrency > 0,
        "calls and concurrency must be positive"
    );
    let first = TestFleet::start(&["product"]).await;
    let second = first.replica(&["product"], &[]).await;
    let third = first.replica(&["product"], &[]).await;
    let id = first
        .client_as::<ProductCatalogServiceClient<mall_common::client::Channel>>(
            "product",
            &first.admin_token(),
        )
        .create_product(pb::CreateProductReq {
            name: "benchmark".into(),
            price_cents: 100,
            stock: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .id;
    let addrs: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|f| f.endpoints("product").grpc.to_string())
        .collect();
    let slow = LatencyProxy::start(third.endpoints("product").grpc, options.slow).await;
    let with_slow = vec![addrs[0].clone(), addrs[1].clone(), slow.addr()];

    let mut scenarios = Vec::new();
    scenarios.push(
        measure(
            "direct",
            &options,
            ProductCatalogServiceClient::new(tonic_channel(&addrs[0])?),
            id,
        )
        .await,
    );
    scenarios.push(measure("mall x1", &options, mall_client(&addrs[..1])?, id).await);
    scenarios.push(measure("mall x3", &options, mall_client(&addrs)?, id).await);
    let round_robin = RoundRobin {
        channels: Arc::new(
            with_slow
                .iter()
                .map(|a| tonic_channel(a))
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        next: Arc::default(),
    };
    scenarios.push(
        measure(
            "round-robin x3, 1 slow",
            &options,
            ProductCatalogServiceClient::new(round_robin),
            id,
        )
        .await,
    );
    scenarios.push(measure("mall x3, 1 slow", &options, mall_client(&with_slow)?, id).await);

    drop(slow);
    third.stop().await;
    second.stop().await;
    first.stop().await;
    Ok(Report { options, scenarios })
}

/// Sends `calls` GetProducts (after a warm-up) from `concurrency` callers through `client`.
async fn measure<T>(
    name: &'static str,
    options: &Options,
    client: ProductCatalogServiceClient<T>,
    id: u64,
) -> Measurement
where
    T: tonic::client::GrpcService<Body> + Clone + Send + 'static,
    T::Future: Send,
    T::ResponseBody: tonic::transport::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::transport::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let warm_up = (options.calls / 20).clamp(options.concurrency, 1_000);
    let _ = batch(&client, id, warm_up, options.concurrency, options.max_time).await;
    let started = Instant::now();
    let (mut latencies, failed) = batch(
        &client,
        id,
        options.calls,
        options.concurrency,
        options.max_time,
    )
    .await;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Measurement {
        name,
        ok: latencies.len(),
        failed,
        throughput: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// `calls` calls shared by `concurrency` callers, stopping at `max_time`: latencies of the
/// successful ones, and how many failed.
pub(crate) async fn batch<T>(
    client: &ProductCatalogServiceClient<T>,
    id: u64,
    calls: usize,
    concurrency: usize,
    max_time: Duration,
) -> (Vec<Duration>, usize)
where
    T: tonic::client::GrpcService<Body> + Clone + Send + 'static,
    T::Future: Send,
    T::ResponseBody: tonic::transport::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::transport::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let left = Arc::new(AtomicUsize::new(calls));
    let stop_at = Instant::now() + max_time;
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = client.clone();
            let left = left.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                while Instant::now() < stop_at
                    && left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let started = Instant::now();
                    match client.get_product(pb::GetProductReq { id }).await {
                        Ok(_) => latencies.push(started.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(calls);
    let mut failed = 0;
    for caller in callers {
        if let Ok((latencies, f)) = caller.await {
            all.extend(latencies);
            failed += f;
        }
    }
    (all, failed)
}
