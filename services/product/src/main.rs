//! `product`: the product catalog service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = product::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    product::run(settings, mall_common::server::shutdown_signal()).await
}
