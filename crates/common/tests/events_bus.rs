//! The `EventBus` contract, run against every bus this machine has: the in-process one always,
//! NATS JetStream with `MALL_TEST_NATS_URL=nats://127.0.0.1:4222`, Kafka with
//! `MALL_TEST_KAFKA_URL=kafka://127.0.0.1:PORT` (a tansu broker, see `scripts/brokers.sh`).
//! Every test uses a namespace of its own, so its subjects, topics, stream and consumer groups
//! are its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mall_common::config::EventsSettings;
use mall_common::events::{
    self, BusError, Delivery, EventBus, OrderCancelled, OrderPaid, OrderPlaced, Payload,
    PaymentCharged, SubscribeOptions, Subscription,
};

/// Deletes the JetStream stream of `namespace` (each test makes one).
async fn cleanup(namespace: &str) {
    if let Ok(url) = std::env::var("MALL_TEST_NATS_URL") {
        let settings = EventsSettings {
            namespace: namespace.to_string(),
            ..EventsSettings::for_url(&url)
        };
        if let Ok(bus) = events::NatsBus::connect(&settings).await {
            let _ = bus.delete_stream().await;
        }
    }
}

/// Removes the test's broker state when dropped (also when the test fails).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespace = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                rt.block_on(cleanup(&namespace));
            }
        })
        .join();
    }
}

/// The buses to run a contract case against, each with a fresh namespace.
async fn buses() -> (Cleanup, Vec<(String, Arc<dyn EventBus>)>) {
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut urls = vec![format!("memory://{namespace}")];
    for var in ["MALL_TEST_NATS_URL", "MALL_TEST_KAFKA_URL"] {
        match std::env::var(var) {
            Ok(url) => urls.push(url),
            Err(_) => eprintln!("{var} is not set: skipping that broker"),
        }
    }
    let mut out = Vec::new();
    for url in urls {
        let settings = EventsSettings {
            namespace: namespace.clone(),
            ..EventsSettings::for_url(&url)
        };
        let bus = events::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        eprintln!("running against {} ({url})", bus.kind());
        out.push((bus.kind().to_string(), bus));
    }
    (Cleanup(namespace), out)
}

fn placed(order: &str) -> Payload {
    Payload::OrderPlaced(OrderPlaced {
        order_id: order.into(),
        user_id: 7,
        email: "a@example.com".into(),
        currency: "USD".into(),
        total_cents: 1_250,
        items: vec![],
        payment_method: "card".into(),
    })
}

/// An envelope about `aggregate` with `sequence` set (as the outbox would).
fn event(aggregate: &str, sequence: u64, payload: Payload) -> events::Envelope {
    let mut e = events::envelope("order", aggregate, payload);
    e.sequence = sequence;
    e
}

const WAIT: Duration = Duration::from_secs(20);

async fn next(sub: &mut Subscription, bus: &str) -> Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{bus}: no delivery within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{bus}: {e}"))
}

/// Nothing more arrives within `quiet`.
async fn nothing_more(sub: &mut Subscription, bus: &str, quiet: Duration) {
    if let Ok(got) = tokio::time::timeout(quiet, sub.next()).await {
        panic!("{bus}: unexpected delivery {got:?}");
    }
}

#[tokio::test]
async fn published_events_reach_a_new_group_in_order_per_aggregate() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let mut sub = bus
            .subscribe(SubscribeOptions::new("orders"))
            .await
            .unwrap();
        let sent: Vec<_> = (1..=5)
            .flat_map(|seq| {
                [
                    event("o-1", seq, placed("o-1")),
                    event("o-2", seq, placed("o-2")),
                ]
            })
            .collect();
        for e in &sent {
            bus.publish(e).await.unwrap();
        }
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        for _ in 0..sent.len() {
            let d = next(&mut sub, &bus_name).await;
            assert_eq!(d.delivery_attempt, 1, "{bus_name}");
            assert_eq!(
                d.subject,
                format!("{}.order.placed", d.subject.split('.').next().unwrap())
            );
            seen.entry(d.envelope.aggregate_id.clone())
                .or_default()
                .push(d.envelope.sequence);
            d.ack().await.unwrap();
        }
        for aggregate in ["o-1", "o-2"] {
            assert_eq!(
                seen[aggregate],
                vec![1, 2, 3, 4, 5],
                "{bus_name}: {aggregate}"
            );
        }
        nothing_more(&mut sub, &bus_name, Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_nacked_event_comes_again_and_an_acked_one_does_not() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let mut sub = bus.subscribe(SubscribeOptions::new("retry")).await.unwrap();
        let e = event("o-9", 1, placed("o-9"));
        bus.publish(&e).await.unwrap();
        let first = next(&mut sub, &bus_name).await;
        assert_eq!(first.envelope.event_id, e.event_id);
        assert_eq!(first.delivery_attempt, 1);
        first.nack(Duration::from_millis(200)).await.unwrap();
        let again = next(&mut sub, &bus_name).await;
        assert_eq!(again.envelope.event_id, e.event_id, "{bus_name}");
        assert_eq!(again.delivery_attempt, 2, "{bus_name}");
        again.ack().await.unwrap();
        nothing_more(&mut sub, &bus_name, Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn an_unacknowledged_event_comes_again_after_the_ack_wait() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let options = SubscribeOptions::new("slow").ack_wait(Duration::from_secs(1));
        let mut sub = bus.subscribe(options).await.unwrap();
        let e = event("o-3", 1, placed("o-3"));
        bus.publish(&e).await.unwrap();
        let first = next(&mut sub, &bus_name).await;
        let started = tokio::time::Instant::now();
        // Neither acked nor nacked: the consumer "crashed" with it.
        drop(first);
        let again = next(&mut sub, &bus_name).await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{bus_name}"
        );
        assert_eq!(again.envelope.event_id, e.event_id, "{bus_name}");
        assert_eq!(again.delivery_attempt, 2, "{bus_name}");
        again.ack().await.unwrap();
    }
}

#[tokio::test]
async fn deliveries_stop_after_max_deliver() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let options = SubscribeOptions::new("poison").max_deliver(2);
        let mut sub = bus.subscribe(options).await.unwrap();
        bus.publish(&event("o-4", 1, placed("o-4"))).await.unwrap();
        for attempt in 1..=2 {
            let d = next(&mut sub, &bus_name).await;
            assert_eq!(d.delivery_attempt, attempt, "{bus_name}");
            d.nack(Duration::from_millis(100)).await.unwrap();
        }
        nothing_more(&mut sub, &bus_name, Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_republished_event_id_is_delivered_once() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let mut sub = bus
            .subscribe(SubscribeOptions::new("dedupe"))
            .await
            .unwrap();
        let e = event("o-5", 1, placed("o-5"));
        bus.publish(&e).await.unwrap();
        bus.publish(&e).await.unwrap();
        let later = event("o-5", 2, placed("o-5"));
        bus.publish(&later).await.unwrap();
        let d = next(&mut sub, &bus_name).await;
        assert_eq!(d.envelope.event_id, e.event_id);
        d.ack().await.unwrap();
        let d = next(&mut sub, &bus_name).await;
        assert_eq!(
            d.envelope.event_id, later.event_id,
            "{bus_name}: a duplicate came"
        );
        d.ack().await.unwrap();
        nothing_more(&mut sub, &bus_name, Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_type_filter_selects_and_groups_are_independent() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let options = SubscribeOptions::new("orders-only")
            .types(["order.*"])
            .unwrap();
        let mut orders = bus.subscribe(options).await.unwrap();
        let mut all = bus.subscribe(SubscribeOptions::new("all")).await.unwrap();
        let charged = event(
            "o-6",
            1,
            Payload::PaymentCharged(PaymentCharged {
                transaction_id: "t-1".into(),
                order_id: "o-6".into(),
                user_id: 7,
                amount_cents: 100,
                currency: "USD".into(),
                method: "card".into(),
            }),
        );
        let paid = event(
            "o-6",
            2,
            Payload::OrderPaid(OrderPaid {
                order_id: "o-6".into(),
                user_id: 7,
                transaction_id: "t-1".into(),
                email: None,
            }),
        );
        bus.publish(&charged).await.unwrap();
        bus.publish(&paid).await.unwrap();
        let d = next(&mut orders, &bus_name).await;
        assert_eq!(d.envelope.r#type, "order.paid", "{bus_name}");
        d.ack().await.unwrap();
        nothing_more(&mut orders, &bus_name, Duration::from_millis(500)).await;
        let mut types = HashSet::new();
        for _ in 0..2 {
            let d = next(&mut all, &bus_name).await;
            types.insert(d.envelope.r#type.clone());
            d.ack().await.unwrap();
        }
        assert_eq!(
            types,
            HashSet::from(["payment.charged".to_string(), "order.paid".to_string()]),
            "{bus_name}"
        );
    }
}

#[tokio::test]
async fn a_group_resumes_where_it_left_off_and_dead_letters_have_their_own_subject() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let first = event("o-7", 1, placed("o-7"));
        let second = event(
            "o-7",
            2,
            Payload::OrderCancelled(OrderCancelled {
                order_id: "o-7".into(),
                user_id: 7,
                reason: "test".into(),
            }),
        );
        {
            let mut sub = bus
                .subscribe(SubscribeOptions::new("resume"))
                .await
                .unwrap();
            bus.publish(&first).await.unwrap();
            let d = next(&mut sub, &bus_name).await;
            assert_eq!(d.envelope.event_id, first.event_id);
            d.ack().await.unwrap();
        }
        bus.publish(&second).await.unwrap();
        let mut sub = bus
            .subscribe(SubscribeOptions::new("resume"))
            .await
            .unwrap();
        let d = next(&mut sub, &bus_name).await;
        assert_eq!(
            d.envelope.event_id, second.event_id,
            "{bus_name}: resumed at the start"
        );
        bus.dead_letter("resume", &d.envelope, "smtp down")
            .await
            .unwrap();
        d.term().await.unwrap();
        let mut dead = bus
            .subscribe(SubscribeOptions::new("resume-dlq").dead_letters("resume"))
            .await
            .unwrap();
        let d = next(&mut dead, &bus_name).await;
        assert_eq!(d.envelope.event_id, second.event_id, "{bus_name}");
        assert_eq!(
            d.dead_letter_reason.as_deref(),
            Some("smtp down"),
            "{bus_name}"
        );
        d.ack().await.unwrap();
        nothing_more(&mut sub, &bus_name, Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn bad_options_and_envelopes_are_refused() {
    let (_cleanup, buses) = buses().await;
    for (bus_name, bus) in buses {
        let err = bus
            .subscribe(SubscribeOptions::new("has space"))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{bus_name}: {err}");
        let mut bare = event("o-8", 1, placed("o-8"));
        bare.payload = None;
        let err = bus.publish(&bare).await.unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{bus_name}: {err}");
    }
}
