//! `payment`: the payment service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = payment::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    payment::run(settings, mall_common::server::shutdown_signal()).await
}
