//! A purchase that crosses a crash stays findable: the saga stores the trace context of the
//! request that opened it, and the recovery worker of the next instance resumes it in a
//! `saga.resume` span (checkout's, in a trace of its own) linked to that first trace. Its own
//! test binary: trace export and the subscriber are process-wide.

#[allow(dead_code, unused_imports)]
#[path = "checkout/support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mall_common::config::{LogFormat, TelemetrySettings};
use mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use mall_testing::{GOOD_CARD, checkout_request, client_at, eventually, logs};
use mall_testkit::otlp::{Collector, ReceivedSpan};
use support::{Faults, Instance, fleet};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GATEWAY_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "current_thread")]
async fn a_saga_resumed_after_a_crash_links_to_the_trace_that_started_it() {
    let collector = Collector::start().await;
    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        otlp_endpoint: Some(collector.endpoint()),
        ..TelemetrySettings::default()
    };
    let _capture = logs::capture_platform("gateway", &settings);

    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let timing = [
        ("MALL__CHECKOUT__STEP_TIMEOUT", "300ms"),
        ("MALL__CHECKOUT__BUDGET", "1s"),
    ];
    let crash = Faults::default();
    crash.crash_after_charge.store(true, Ordering::SeqCst);
    let first = Instance::start(&fleet, &db, crash, &timing).await;
    let user = 31;
    let product = fleet.catalog().create_product("Lamp", 4_000, 2).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    let mut client: CheckoutServiceClient<mall_common::client::Channel> =
        client_at("checkout", first.addr, &fleet.user_token(user));
    let mut request = tonic::Request::new(checkout_request(user, GOOD_CARD, "crash-traced"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{GATEWAY_SPAN}-01").parse().unwrap(),
    );
    client.checkout(request).await.unwrap_err();
    first.stop().await;

    let second = Instance::start(&fleet, &db, Faults::default(), &timing).await;
    eventually(Duration::from_secs(20), "the new instance pays", || async {
        let orders = fleet.orders(user).list().await;
        orders.len() == 1
            && mall_testing::order_status(&orders[0]) == mall_proto::order::v1::OrderStatus::Paid
    })
    .await;
    second.stop().await;
    fleet.stop().await;
    mall_common::telemetry::trace::shutdown().await;

    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "saga.resume")
        })
        .await;
    let opened = spans
        .iter()
        .find(|s| s.trace_id == TRACE && s.kind == 2 && s.name.ends_with("/Checkout"))
        .unwrap_or_else(|| panic!("no server span of the first checkout: {}", names(&spans)));
    let resume = spans
        .iter()
        .find(|s| s.name == "saga.resume")
        .expect("a resume span");
    assert_eq!(resume.service, "checkout");
    assert_ne!(resume.trace_id, TRACE, "a trace of its own");
    assert!(resume.attr("saga.id").is_some_and(|id| !id.is_empty()));
    // Linked to the span of the request that opened the saga (its checkout server span, or
    // a step under it).
    let (linked_trace, linked_span) = resume.links.first().expect("a link").clone();
    assert_eq!(linked_trace, TRACE);
    assert!(
        spans
            .iter()
            .any(|s| s.span_id == linked_span && s.trace_id == TRACE),
        "the link names no span of the first trace"
    );
    assert_eq!(opened.attr("rpc.method"), Some("Checkout"));
    // What the worker did is under the resume span: marking the order paid.
    let mark_paid = spans
        .iter()
        .find(|s| s.trace_id == resume.trace_id && s.name == "saga.mark_paid")
        .unwrap_or_else(|| panic!("no mark_paid step in the resumed trace: {}", names(&spans)));
    assert_eq!(mark_paid.parent_span_id, resume.span_id);
    assert_eq!(
        mark_paid.attr("saga.id"),
        resume.attr("saga.id"),
        "the same saga"
    );
}

fn names(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| format!("{}:{}:{}", s.trace_id, s.service, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}
