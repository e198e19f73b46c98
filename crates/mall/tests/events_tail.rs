//! `mall events tail`: the line format, and tailing a real bus (in-process always; JetStream
//! too with `MALL_TEST_NATS_URL`).

use std::sync::Arc;
use std::time::Duration;

use mall::events_tail::{TailArgs, format_event, tail_to};
use mall_common::config::EventsSettings;
use mall_common::events::{
    self, Envelope, EventBus, OrderLine, OrderPlaced, Payload, StockChanged,
};

fn placed() -> Envelope {
    let mut e = events::envelope(
        "order",
        "o-17",
        Payload::OrderPlaced(OrderPlaced {
            order_id: "o-17".into(),
            user_id: 7,
            email: "a@example.com".into(),
            currency: "USD".into(),
            total_cents: 1_250,
            items: vec![
                OrderLine {
                    product_id: 1,
                    quantity: 2,
                    cost_cents: 1_000,
                },
                OrderLine {
                    product_id: 2,
                    quantity: 1,
                    cost_cents: 250,
                },
            ],
            payment_method: "card".into(),
        }),
    );
    e.sequence = 3;
    e.occurred_at_unix_ms = 1_764_622_800_123;
    e.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
    e
}

#[test]
fn an_event_prints_as_one_readable_line() {
    assert_eq!(
        format_event(&placed()),
        "2025-12-01T21:00:00.123Z order.placed          order/o-17#3 order o-17 user 7 3 items \
         12.50 USD card trace=4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let mut stock = events::envelope(
        "product",
        "9",
        Payload::StockChanged(StockChanged {
            product_id: 9,
            stock: 4,
            delta: -2,
            reservation_id: Some("r-1".into()),
        }),
    );
    stock.sequence = 12;
    let line = format_event(&stock);
    assert!(
        line.ends_with("product.stock_changed product/9#12 product 9 stock 4 (-2) reservation r-1"),
        "{line}"
    );
    assert!(
        !line.contains("trace="),
        "no trace without a traceparent: {line}"
    );
}

#[test]
fn arguments_parse_and_bad_ones_are_refused() {
    let args: Vec<String> = ["--type", "order.*", "--url=nats://127.0.0.1:4222"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let tail = TailArgs::parse(&args).unwrap();
    assert_eq!(tail.types, vec!["order.*".to_string()]);
    assert_eq!(tail.url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert!(tail.options().unwrap().live);
    assert!(TailArgs::parse(&["--bogus".to_string()]).is_err());
    assert!(TailArgs::parse(&["--type".to_string()]).is_err());
    let bad = TailArgs::parse(&["--type".to_string(), "orders.*".to_string()]).unwrap();
    assert!(
        bad.options().is_err(),
        "a pattern matching no type is refused"
    );
}

async fn tails_only_new_matching_events(bus: Arc<dyn EventBus>) {
    // Published before the tail starts: not shown (live).
    bus.publish(&placed()).await.unwrap();
    let tail = TailArgs::parse(&["--type".into(), "product.*".into()]).unwrap();
    let options = tail.options().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tailing = bus.clone();
    let task = tokio::spawn(async move {
        let mut out: Vec<u8> = Vec::new();
        tail_to(tailing, options, &mut out, Some(1)).await.unwrap();
        let _ = tx.send(String::from_utf8(out).unwrap());
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    bus.publish(&placed_again()).await.unwrap();
    let stock = events::envelope(
        "product",
        "9",
        Payload::StockChanged(StockChanged {
            product_id: 9,
            stock: 4,
            delta: -2,
            reservation_id: None,
        }),
    );
    bus.publish(&stock).await.unwrap();
    let printed = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("tail printed")
        .unwrap();
    task.await.unwrap();
    assert!(
        printed.contains("product.stock_changed product/9#0 product 9 stock 4 (-2)"),
        "{printed}"
    );
    assert_eq!(printed.lines().count(), 1, "{printed}");
}

fn placed_again() -> Envelope {
    let mut e = placed();
    e.event_id = uuid::Uuid::now_v7().to_string();
    e
}

#[tokio::test]
async fn tail_prints_new_events_of_the_chosen_types_from_memory() {
    let settings = EventsSettings::for_url(&format!("memory://tail-{}", uuid::Uuid::new_v4()));
    tails_only_new_matching_events(events::connect(&settings).await.unwrap()).await;
}

#[tokio::test]
async fn tail_prints_new_events_of_the_chosen_types_from_jetstream() {
    let Ok(url) = std::env::var("MALL_TEST_NATS_URL") else {
        eprintln!("MALL_TEST_NATS_URL is not set: skipping");
        return;
    };
    let settings = EventsSettings {
        namespace: format!("tail{}", uuid::Uuid::new_v4().simple()),
        ..EventsSettings::for_url(&url)
    };
    tails_only_new_matching_events(events::connect(&settings).await.unwrap()).await;
    let nats = events::NatsBus::connect(&settings).await.unwrap();
    nats.delete_stream().await.unwrap();
}
