//! `auth`: the identity provider on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = auth::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    auth::run(settings, mall_common::server::shutdown_signal()).await
}
