//! `user`: the user profile service on its own (see the crate docs).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = user::load_settings()?;
    mall_common::telemetry::init_logging(&settings.telemetry);
    user::run(settings, mall_common::server::shutdown_signal()).await
}
