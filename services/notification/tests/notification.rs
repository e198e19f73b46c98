//! Black-box tests of the notification service: a real fleet on port 0 (its own in-process
//! event bus), mail delivered to a real SMTP server (`mall_testkit::smtp::SmtpSink`).
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set.

use std::sync::Arc;
use std::time::Duration;

use mall_common::config::DatabaseSettings;
use mall_common::events::{
    Acknowledge, BusError, Delivery, Envelope, OrderLine, OrderPaid, OrderPlaced, Payload,
    SubscribeOptions, envelope,
};
use mall_common::store::Database;
use mall_testing::{GOOD_CARD, TestFleet, eventually};
use mall_testkit::smtp::SmtpSink;
use notification::consumer::{Consumer, GROUP};
use notification::store::{InboxStatus, Notifications};
use notification::{NotificationSettings, mail::Mailer};
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(20);

/// A fleet running notification only, mailing to `sink`, with fast retries.
async fn notification_fleet(sink: &SmtpSink, max_attempts: &str) -> TestFleet {
    let url = sink.url();
    TestFleet::start_with(
        &["notification"],
        &[
            ("MALL__NOTIFICATION__SMTP_URL", url.as_str()),
            ("MALL__NOTIFICATION__RETRY_BACKOFF", "20ms"),
            ("MALL__NOTIFICATION__MAX_ATTEMPTS", max_attempts),
            ("MALL__NOTIFICATION__SEND_TIMEOUT", "5s"),
        ],
    )
    .await
}

fn placed(order_id: &str) -> Envelope {
    envelope(
        "order",
        order_id,
        Payload::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            user_id: 7,
            email: "buyer@example.com".into(),
            currency: "USD".into(),
            total_cents: 2_505,
            items: vec![OrderLine {
                product_id: 3,
                quantity: 2,
                cost_cents: 2_505,
            }],
            payment_method: "card".into(),
        }),
    )
}

fn paid(order_id: &str) -> Envelope {
    let mut e = envelope(
        "order",
        order_id,
        Payload::OrderPaid(OrderPaid {
            order_id: order_id.into(),
            user_id: 7,
            transaction_id: "t-1".into(),
            email: None,
        }),
    );
    e.sequence = 2;
    e
}

#[tokio::test]
async fn a_checkout_produces_exactly_one_confirmation_email() {
    let sink = SmtpSink::start().await.unwrap();
    let url = sink.url();
    let fleet = TestFleet::start_with(
        mall::SERVICES,
        &[("MALL__NOTIFICATION__SMTP_URL", url.as_str())],
    )
    .await;
    let user = 301;
    let apple = fleet.catalog().create_product("Apple", 250, 10).await;
    fleet.cart(user).add(apple, 2).await.unwrap();
    let resp = fleet
        .checkout(user)
        .pay(GOOD_CARD, "mail-once")
        .await
        .expect("checkout");

    let mail = sink.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let confirmation = &mail[0];
    assert_eq!(confirmation.rcpt_to.len(), 1);
    assert!(
        confirmation.rcpt_to[0].eq_ignore_ascii_case("ann@example.com"),
        "{:?}",
        confirmation.rcpt_to
    );
    let subject = confirmation.header("Subject").unwrap_or_default();
    assert!(subject.contains(&resp.order_id), "{subject}");
    assert!(subject.contains("confirmed"), "{subject}");
    let body = confirmation.body();
    assert!(body.contains("Total: 5.00 USD"), "{body}");
    assert!(body.contains(&format!("product {apple} x2")), "{body}");

    // The same checkout again (its idempotency key) places and pays nothing new: no mail.
    fleet
        .checkout(user)
        .pay(GOOD_CARD, "mail-once")
        .await
        .expect("replay");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(sink.messages().len(), 1, "{:?}", sink.messages());

    // The facts of the purchase are all on the bus: the order, its payment, the stock taken.
    let bus = fleet.events().await;
    let mut all = bus
        .subscribe(SubscribeOptions::new("checkout-events-watch"))
        .await
        .expect("subscribe");
    let mut seen = Vec::new();
    while let Ok(Ok(delivery)) = tokio::time::timeout(Duration::from_secs(1), all.next()).await {
        seen.push(delivery.envelope.clone());
        delivery.ack().await.unwrap();
    }
    let of_type = |t: &str| seen.iter().filter(|e| e.r#type == t).count();
    assert_eq!(of_type("order.placed"), 1, "{seen:?}");
    assert_eq!(of_type("order.paid"), 1, "{seen:?}");
    assert_eq!(of_type("order.cancelled"), 0, "{seen:?}");
    let charged: Vec<_> = seen
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::PaymentCharged(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(charged.len(), 1, "{seen:?}");
    assert_eq!(charged[0].order_id, resp.order_id);
    assert_eq!(charged[0].transaction_id, resp.transaction_id);
    assert_eq!(charged[0].amount_cents, 500);
    let stock: Vec<_> = seen
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StockChanged(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(stock.len(), 1, "{seen:?}");
    assert_eq!(
        (stock[0].product_id, stock[0].delta, stock[0].stock),
        (apple, -2, 8)
    );
    assert!(stock[0].reservation_id.is_some());
    fleet.stop().await;
}

/// Settles deliveries in a test: remembers how each one ended.
#[derive(Clone, Default)]
struct Settled(Arc<Mutex<Vec<&'static str>>>);

struct TestAck(Settled);

#[async_trait::async_trait]
impl Acknowledge for TestAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.0.lock().push("ack");
        Ok(())
    }
    async fn nack(self: Box<Self>, _: Duration) -> Result<(), BusError> {
        self.0.0.lock().push("nack");
        Ok(())
    }
    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.0.0.lock().push("term");
        Ok(())
    }
}

fn delivery(envelope: &Envelope, attempt: u32, settled: &Settled) -> Delivery {
    Delivery::new(
        envelope.clone(),
        attempt,
        format!("tiktokmall.{}", envelope.r#type),
        Box::new(TestAck(settled.clone())),
    )
}

#[tokio::test]
async fn a_redelivered_event_sends_no_second_email() {
    let sink = SmtpSink::start().await.unwrap();
    let fleet = TestFleet::start(&[]).await;
    let url = fleet.fresh_database("notification");
    let db = Database::connect(
        &url,
        &DatabaseSettings::default(),
        &notification::store::MIGRATIONS,
    )
    .await
    .expect("database");
    let store = Notifications::new(db);
    let settings = NotificationSettings {
        smtp_url: sink.url(),
        ..NotificationSettings::default()
    };
    let consumer = Consumer::new(
        store.clone(),
        Mailer::new(&settings).expect("mailer"),
        fleet.events().await,
        settings,
    );
    let settled = Settled::default();
    let order = "o-redelivered";
    consumer.settle(delivery(&placed(order), 1, &settled)).await;
    let paid = paid(order);
    consumer.settle(delivery(&paid, 1, &settled)).await;
    // The bus delivers it again (an ack that was lost, a second instance, a replay).
    consumer.settle(delivery(&paid, 2, &settled)).await;
    consumer.settle(delivery(&paid, 3, &settled)).await;

    assert_eq!(*settled.0.lock(), vec!["ack"; 4]);
    assert_eq!(sink.messages().len(), 1, "{:?}", sink.messages());
    let entry = store
        .inbox(&paid.event_id)
        .await
        .unwrap()
        .expect("inbox row");
    assert_eq!(entry.status, InboxStatus::Sent);
    assert_eq!(entry.attempts, 1);
    assert_eq!(
        sink.messages()[0].header("Message-ID").as_deref(),
        Some(entry.message_id.as_str())
    );
    assert_eq!(consumer.metrics().duplicates_skipped.get(), 2);
    assert_eq!(consumer.metrics().sent.get(), 1);
    fleet.stop().await;
}

#[tokio::test]
async fn a_failing_smtp_server_leads_to_retries_then_the_dead_letter_subject() {
    let sink = SmtpSink::start().await.unwrap();
    sink.fail_next_data(1_000, 451);
    let fleet = notification_fleet(&sink, "3").await;
    let bus = fleet.events().await;
    let mut dead = bus
        .subscribe(SubscribeOptions::new("dead-letter-watch").dead_letters(GROUP))
        .await
        .expect("dead-letter subscription");
    let order = "o-dead";
    bus.publish(&placed(order)).await.unwrap();
    let paid = paid(order);
    bus.publish(&paid).await.unwrap();

    let letter = tokio::time::timeout(WAIT, dead.next())
        .await
        .expect("a dead letter in time")
        .expect("a dead letter");
    assert_eq!(letter.envelope.event_id, paid.event_id);
    let reason = letter.dead_letter_reason.clone().unwrap_or_default();
    assert!(reason.contains("after 3 attempts"), "{reason}");
    letter.ack().await.unwrap();
    // Three attempts reached the server, none was accepted, and no more come.
    assert_eq!(sink.data_attempts(), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.data_attempts(), 3);
    assert!(sink.messages().is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn a_transient_smtp_failure_is_retried_until_the_mail_is_sent() {
    let sink = SmtpSink::start().await.unwrap();
    sink.fail_next_data(2, 451);
    let fleet = notification_fleet(&sink, "5").await;
    let bus = fleet.events().await;
    let order = "o-retried";
    bus.publish(&placed(order)).await.unwrap();
    bus.publish(&paid(order)).await.unwrap();
    let mail = sink.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1);
    assert_eq!(sink.data_attempts(), 3);
    eventually(WAIT, "the mail counted as sent", || async {
        let (_, metrics) =
            mall_testing::http_get(fleet.endpoints("notification").admin, "/metrics").await;
        metrics.contains("notification_mails_sent_total 1")
            && metrics.contains("notification_send_failures_total 2")
    })
    .await;
    fleet.stop().await;
}

/// `notification --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_notification"), "notification", &[]);
}
