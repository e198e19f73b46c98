//! `notification`: the notification service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = notification::load_settings().await?;
    mall_common::telemetry::init(&settings.service, &settings.telemetry);
    let result = notification::run(settings, mall_common::server::shutdown_signal()).await;
    // The spans of the last events handled leave before the process does.
    mall_common::telemetry::trace::shutdown().await;
    result
}
