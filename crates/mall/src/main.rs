//! `mall`: the whole TikTokMall fleet in one process, on the well-known ports, with the embedded
//! defaults (SQLite under `./data/`, in-process cache, static discovery). Settings layer as for
//! every service: `--config FILE` / `MALL_CONFIG`, then `MALL__SECTION__KEY`.

use mall_common::config::{self, Source};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let source = Source::from_process();
    let settings = config::load("mall", config::Settings::defaults("mall"), &source)?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    let fleet = mall::Fleet::start(mall::SERVICES, source).await?;
    for (name, ep) in fleet.all_endpoints() {
        tracing::info!(service = name, grpc = %ep.grpc, admin = %ep.admin, "serving");
    }
    mall_common::server::shutdown_signal().await;
    fleet.shutdown().await
}
