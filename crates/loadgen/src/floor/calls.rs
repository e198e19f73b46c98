//! `loadgen floor calls`: the server's cost per `GetProduct` — the full product server (cache
//! hit, near cache on) against a bare tonic server answering the same encoded product — as CPU
//! per call read from each server process and throughput at a fixed concurrency.

use std::time::{Duration, Instant};

use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use prost::Message;

use super::procs::{ServerChild, cpu_time};
use super::{FloorOptions, Latencies, ms, ratio};

/// One server's measurements.
#[derive(Debug, Clone)]
pub struct CallsRow {
    /// `bare tonic` or `product server`.
    pub name: &'static str,
    /// Successful calls (every round).
    pub ok: usize,
    /// Failed calls.
    pub failed: usize,
    /// Successful calls per second.
    pub throughput: f64,
    /// Latency percentiles.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The server process's CPU time per successful call.
    pub cpu_per_call: Duration,
}

/// Both servers; the bare one first.
#[derive(Debug, Clone)]
pub struct CallsReport {
    /// Calls per server per round.
    pub calls: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Rounds (bare then product, alternating).
    pub rounds: usize,
    /// The product server's shared cache.
    pub cache_url: String,
    /// Encoded size of the product answered.
    pub payload_bytes: usize,
    /// Bare first, then the product server.
    pub rows: Vec<CallsRow>,
}

impl CallsReport {
    /// The report as Markdown with ratios against the bare server.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "### Server cost per call: GetProduct, {} calls × {} rounds per server, {} concurrent \
             callers, {}-byte product, product cache {}\n\n\
             | server | ok | failed | calls/s | p50 | p99 | server CPU per call | CPU vs bare | \
             throughput vs bare |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.calls, self.rounds, self.concurrency, self.payload_bytes, self.cache_url
        );
        let Some(base) = self.rows.first() else {
            return out;
        };
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs | {:.2}× | {:.2}× |\n",
                r.name,
                r.ok,
                r.failed,
                r.throughput,
                ms(r.p50),
                ms(r.p99),
                r.cpu_per_call.as_secs_f64() * 1e6,
                ratio(
                    r.cpu_per_call.as_secs_f64(),
                    base.cpu_per_call.as_secs_f64()
                ),
                ratio(r.throughput, base.throughput),
            ));
        }
        if let [bare, product] = self.rows.as_slice() {
            let r = ratio(
                product.cpu_per_call.as_secs_f64(),
                bare.cpu_per_call.as_secs_f64(),
            );
            out.push_str(&format!(
                "\nGoal ≤ 1.30× the bare server's CPU per call: {} ({r:.2}×).\n",
                if r <= 1.3 { "met" } else { "missed" }
            ));
        }
        out
    }
}

/// A client of the catalog on a plain channel.
type Client = ProductCatalogServiceClient<tonic::transport::Channel>;

fn client(addr: &str) -> anyhow::Result<Client> {
    Ok(ProductCatalogServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_lazy(),
    ))
}

#[derive(Default)]
struct Totals {
    latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
    cpu: Duration,
}

/// The product `c` answers for `id`.
async fn answered_product(c: &Client, id: u64) -> anyhow::Result<pb::Product> {
    c.clone()
        .get_product(pb::GetProductReq { id })
        .await
        .map_err(|s| anyhow::anyhow!("GetProduct: {:?} {}", s.code(), s.message()))?
        .into_inner()
        .product
        .ok_or_else(|| anyhow::anyhow!("GetProduct answered no product"))
}

/// A server child and a client of it, by name.
type Server<'a> = (&'static str, &'a ServerChild, Client);

/// A warm-up of every server, then `options.rounds` rounds alternating them: each one's
/// latencies, failures, time and CPU (from `/proc`) summed over the rounds.
async fn measure(servers: &[Server<'_>; 2], id: u64, options: &FloorOptions) -> [Totals; 2] {
    let warm_up = (options.calls / 10).max(options.concurrency);
    for (_, _, c) in servers {
        let _ = crate::bench::batch(c, id, warm_up, options.concurrency, options.max_time).await;
    }
    let mut totals: [Totals; 2] = Default::default();
    for _ in 0..options.rounds {
        for ((_, server, c), total) in servers.iter().zip(totals.iter_mut()) {
            let cpu_before = cpu_time(server.pid).unwrap_or_default();
            let started = Instant::now();
            let (latencies, failed) =
                crate::bench::batch(c, id, options.calls, options.concurrency, options.max_time)
                    .await;
            total.elapsed += started.elapsed();
            total.cpu += cpu_time(server.pid)
                .unwrap_or_default()
                .saturating_sub(cpu_before);
            total.latencies.extend(latencies);
            total.failed += failed;
        }
    }
    totals
}

/// Runs the comparison.
pub async fn run(options: &FloorOptions) -> anyhow::Result<CallsReport> {
    anyhow::ensure!(
        options.calls > 0 && options.concurrency > 0 && options.rounds > 0,
        "--calls, --concurrency and --rounds must be positive"
    );
    let patience = Duration::from_secs(60);
    let product = ServerChild::start(
        &options.exe,
        &[
            "serve-product".into(),
            "--cache-url".into(),
            options.redis_url.clone(),
        ],
        patience,
    )
    .await?;
    let id: u64 = product
        .ready
        .get("product_id")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| anyhow::anyhow!("serve-product named no product"))?;
    let product_client = client(&product.field("addr")?)?;
    let answered = answered_product(&product_client, id).await?;
    let payload = answered.encode_to_vec();
    let bare = ServerChild::start(
        &options.exe,
        &[
            "serve-bare".into(),
            "--payload-hex".into(),
            hex::encode(&payload),
        ],
        patience,
    )
    .await?;
    let bare_client = client(&bare.field("addr")?)?;

    let servers = [
        ("bare tonic", &bare, bare_client),
        ("product server", &product, product_client),
    ];
    let totals = measure(&servers, id, options).await;
    let rows = servers
        .iter()
        .zip(totals)
        .map(|((name, _, _), t)| {
            let ok = t.latencies.len();
            let l = Latencies::of(t.latencies);
            CallsRow {
                name,
                ok,
                failed: t.failed,
                throughput: ok as f64 / t.elapsed.as_secs_f64().max(f64::EPSILON),
                p50: l.at(0.50),
                p99: l.at(0.99),
                cpu_per_call: t.cpu.checked_div(ok.max(1) as u32).unwrap_or_default(),
            }
        })
        .collect();
    drop(servers);
    bare.stop().await;
    product.stop().await;
    Ok(CallsReport {
        calls: options.calls,
        concurrency: options.concurrency,
        rounds: options.rounds,
        cache_url: options.redis_url.clone(),
        payload_bytes: payload.len(),
        rows,
    })
}

/// `loadgen drive`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DriveArgs {
    /// The server, HOST:PORT.
    #[arg(long, value_name = "A")]
    pub addr: String,
    /// The product asked for.
    #[arg(long)]
    pub id: u64,
    /// Calls to make.
    #[arg(long, default_value_t = 10_000)]
    pub calls: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// First print the answered product, hex-encoded (for `serve-bare --payload-hex`).
    #[arg(long)]
    pub print_payload: bool,
}

/// `loadgen drive --addr A --id N [--calls N] [--concurrency N] [--print-payload]`: a fixed
/// number of `GetProduct` calls against one server (a `serve-product` or `serve-bare` run under
/// a profiler, whose counters are read around the calls); with `--print-payload` it first
/// prints the answered product, hex-encoded, for `serve-bare --payload-hex`.
pub async fn drive(args: DriveArgs) -> anyhow::Result<()> {
    let DriveArgs {
        addr,
        id,
        calls,
        concurrency,
        print_payload,
    } = args;
    let concurrency = concurrency.max(1);
    let c = client(&addr)?;
    if print_payload {
        let product = answered_product(&c, id).await?;
        println!("{}", hex::encode(product.encode_to_vec()));
    }
    let started = Instant::now();
    let (latencies, failed) =
        crate::bench::batch(&c, id, calls, concurrency, Duration::from_secs(3_600)).await;
    eprintln!(
        "{} ok, {failed} failed in {:.1} s",
        latencies.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed == 0, "{failed} calls failed");
    Ok(())
}
