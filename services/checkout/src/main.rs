//! `checkout`: the checkout service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = checkout::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    checkout::run(settings, mall_common::server::shutdown_signal()).await
}
