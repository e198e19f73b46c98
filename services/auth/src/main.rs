//! `auth`: the identity provider on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // --help and --version answer here, before anything is opened or bound.
    mall_common::service_args!();
    // Installed first, so a stop while the service starts is not a silent exit.
    let stop = mall_common::server::shutdown_signal();
    let settings = auth::load_settings().await?;
    mall_common::telemetry::init(&settings.service, &settings.telemetry);
    let result = auth::run(settings, stop).await;
    // The spans of the last calls leave before the process does.
    mall_common::telemetry::trace::shutdown().await;
    result
}
