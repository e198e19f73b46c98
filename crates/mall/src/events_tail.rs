//! `mall events tail [--type PATTERN]... [--url URL] [--namespace NS]`: prints the live event
//! stream, one line per event: time, type, `source/aggregate#sequence`, a one-line summary of
//! the payload, and the trace id when the event carries one.
//!
//! The bus comes from `--url`, else from `events.url` of the settings (`--config FILE`,
//! `MALL__EVENTS__URL`). With the default `memory://` only events of this same process would
//! show, so point it at the broker the fleet uses (`nats://127.0.0.1:4222`, `kafka://…`).
//! The subscription is live (from now on) and leaves no durable consumer behind.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use mall_common::config::{self, EventsSettings, Source};
use mall_common::events::{self, Envelope, EventBus, Payload, SubscribeOptions};

/// What `mall events tail` was asked for.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TailArgs {
    /// Only events whose type matches (`order.*`, `payment.succeeded`); repeatable; all when
    /// none is given.
    #[arg(long = "type", value_name = "PATTERN")]
    pub types: Vec<String>,
    /// The bus (memory://, nats://HOST:PORT, kafka://HOST:PORT), overriding `events.url`.
    #[arg(long)]
    pub url: Option<String>,
    /// Overrides `events.namespace`.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

impl TailArgs {
    /// Parses the arguments after `mall events tail`.
    pub fn parse(args: &[String]) -> anyhow::Result<TailArgs> {
        use clap::{Args, FromArgMatches};
        let command = TailArgs::augment_args(clap::Command::new("tail").no_binary_name(true));
        let matches = command.try_get_matches_from(args)?;
        Ok(TailArgs::from_arg_matches(&matches)?)
    }

    /// The subscription these arguments ask for.
    pub fn options(&self) -> anyhow::Result<SubscribeOptions> {
        let group = format!("tail-{}", uuid::Uuid::new_v4().simple());
        let options = SubscribeOptions::new(group).live();
        if self.types.is_empty() {
            return Ok(options);
        }
        Ok(options.types(self.types.clone())?)
    }
}

/// `mall events tail …`.
pub async fn run(tail: &TailArgs) -> anyhow::Result<()> {
    let source = Source::from_process();
    let settings = config::load("mall", config::Settings::defaults("mall"), &source)?;
    let events = EventsSettings {
        url: tail.url.clone().unwrap_or(settings.events.url.clone()),
        namespace: tail
            .namespace
            .clone()
            .unwrap_or(settings.events.namespace.clone()),
        ..settings.events.clone()
    };
    let bus = events::connect(&events).await?;
    eprintln!(
        "tailing {} ({}); Ctrl-C to stop",
        config::redact_url(&events.url),
        if tail.types.is_empty() {
            "all types".to_string()
        } else {
            tail.types.join(", ")
        }
    );
    let mut out = std::io::stdout();
    tokio::select! {
        done = tail_to(bus, tail.options()?, &mut out, None) => done,
        () = mall_common::server::shutdown_signal() => Ok(()),
    }
}

/// Writes each event of a new `options` subscription on `bus` to `out` as one line (see
/// [`format_event`]), acknowledging it; stops after `limit` events when given.
pub async fn tail_to(
    bus: Arc<dyn EventBus>,
    options: SubscribeOptions,
    out: &mut (dyn Write + Send),
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let mut subscription = bus.subscribe(options).await?;
    let mut printed = 0;
    while limit.is_none_or(|n| printed < n) {
        let delivery = subscription.next().await?;
        writeln!(out, "{}", format_event(&delivery.envelope))?;
        out.flush()?;
        delivery.ack().await?;
        printed += 1;
    }
    Ok(())
}

/// One readable line for `e`:
/// `2026-12-01T21:00:00.123Z order.placed order/o-1#1 order o-1 user 7 2 items 12.50 USD card trace=…`.
pub fn format_event(e: &Envelope) -> String {
    let at = u64::try_from(e.occurred_at_unix_ms)
        .map(|ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)))
        .map_or_else(|_| "?".to_string(), |t| t.to_string());
    let mut line = format!(
        "{at} {:<21} {}/{}#{} {}",
        e.r#type,
        e.source,
        e.aggregate_id,
        e.sequence,
        summary(e.payload.as_ref())
    );
    if let Some(trace) = e.traceparent.split('-').nth(1).filter(|t| t.len() == 32) {
        line.push_str(" trace=");
        line.push_str(trace);
    }
    line
}

/// `1250` cents as `12.50`.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn summary(payload: Option<&Payload>) -> String {
    match payload {
        None => "(no payload)".to_string(),
        Some(Payload::OrderPlaced(p)) => format!(
            "order {} user {} {} items {} {} {}",
            p.order_id,
            p.user_id,
            p.items.iter().map(|i| u64::from(i.quantity)).sum::<u64>(),
            money(p.total_cents),
            p.currency,
            p.payment_method
        ),
        Some(Payload::OrderPaid(p)) => format!(
            "order {} user {} paid by {}",
            p.order_id, p.user_id, p.transaction_id
        ),
        Some(Payload::OrderCancelled(p)) => format!(
            "order {} user {} cancelled: {}",
            p.order_id, p.user_id, p.reason
        ),
        Some(Payload::PaymentCharged(p)) => format!(
            "charge {} order {} user {} {} {} {}",
            p.transaction_id,
            p.order_id,
            p.user_id,
            money(p.amount_cents),
            p.currency,
            p.method
        ),
        Some(Payload::PaymentRefunded(p)) => format!(
            "refund {} of {} order {} user {} {}",
            p.refund_id,
            p.transaction_id,
            p.order_id,
            p.user_id,
            money(p.amount_cents)
        ),
        Some(Payload::StockChanged(p)) => format!(
            "product {} stock {} ({:+}){}",
            p.product_id,
            p.stock,
            p.delta,
            p.reservation_id
                .as_ref()
                .map(|r| format!(" reservation {r}"))
                .unwrap_or_default()
        ),
        Some(Payload::AccountDeleted(p)) => format!("user {} deleted", p.user_id),
    }
}
