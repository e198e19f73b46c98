//! `order`: the order service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = order::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    order::run(settings, mall_common::server::shutdown_signal()).await
}
