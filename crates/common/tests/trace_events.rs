//! Trace context travels with an event: the outbox stores the `traceparent` of the span the
//! change ran in, and the consumer's handling span (`Delivery::span`) is its child, in the
//! consuming service. Exported to an in-process OTLP collector; its own test binary (the trace
//! export is process-wide once installed).

use std::sync::Arc;
use std::time::Duration;

use mall_common::config::{DatabaseSettings, EventsSettings, TelemetrySettings};
use mall_common::events::EventBus as _;
use mall_common::events::{MemoryBus, OrderCancelled, Outbox, Payload, Relay, SubscribeOptions};
use mall_common::store::{Database, Migrations};
use mall_common::telemetry::{self, trace};
use mall_testkit::otlp::Collector;
use tracing::Instrument as _;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("tests/migrations/sqlite"),
    mysql: sqlx::migrate!("tests/migrations/mysql"),
};

const SPAN_CONSUMER: i32 = 5;

#[tokio::test]
async fn the_consumer_span_continues_the_trace_of_the_change_that_emitted_the_event() {
    let collector = Collector::start().await;
    let settings = TelemetrySettings {
        otlp_endpoint: Some(collector.endpoint()),
        ..TelemetrySettings::default()
    };
    let subscriber = telemetry::subscriber("order", &settings, std::io::sink, false);
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let db = Database::connect(&url, &DatabaseSettings::default(), &MIGRATIONS)
        .await
        .unwrap();
    Outbox::install(&db).await.unwrap();
    let payload = Payload::OrderCancelled(OrderCancelled {
        order_id: "o-1".into(),
        user_id: 7,
        reason: "test".into(),
    });
    let change = tracing::info_span!("cancel_order");
    let envelope = Outbox::append_now(&db, "order", "o-1", payload)
        .instrument(change.clone())
        .await
        .unwrap();
    drop(change);
    assert_eq!(envelope.traceparent.len(), 55, "{envelope:?}");

    let bus = Arc::new(MemoryBus::new());
    let mut sub = bus.subscribe(SubscribeOptions::new("mail")).await.unwrap();
    let relay = Relay::new(db.clone(), bus.clone(), &EventsSettings::default());
    relay.round().await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope.traceparent, envelope.traceparent);
    let handling = delivery.span("notification");
    handling.in_scope(|| tracing::info!("sending the cancellation notice"));
    drop(handling);
    delivery.ack().await.unwrap();
    trace::shutdown().await;

    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "event order.cancelled")
                && spans.iter().any(|s| s.name == "cancel_order")
        })
        .await;
    let producer = spans.iter().find(|s| s.name == "cancel_order").unwrap();
    let consumer = spans
        .iter()
        .find(|s| s.name == "event order.cancelled")
        .unwrap_or_else(|| panic!("no consumer span: {spans:?}"));
    assert_eq!(consumer.trace_id, producer.trace_id, "one trace");
    assert_eq!(
        consumer.parent_span_id, producer.span_id,
        "a child of the change"
    );
    assert_eq!(consumer.kind, SPAN_CONSUMER);
    assert_eq!(consumer.service, "notification");
    assert_eq!(producer.service, "order");
    assert!(
        envelope.traceparent.contains(&producer.trace_id),
        "{} vs {}",
        envelope.traceparent,
        producer.trace_id
    );
}
