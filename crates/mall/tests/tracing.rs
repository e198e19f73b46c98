//! One purchase, one trace: with trace export on, a checkout through the in-process fleet
//! reaches an OTLP collector as a single trace continuing the caller's `traceparent`, with
//! spans from checkout, cart, product, order and payment (each under its own `service.name`),
//! every parent present, the saga's steps as named spans, and JSON log lines that carry the
//! trace and span id of their span. Its own test binary: trace export and the subscriber are
//! process-wide.

use std::collections::BTreeSet;
use std::time::Duration;

use mall_common::config::{LogFormat, TelemetrySettings};
use mall_testing::logs;
use mall_testing::{CheckoutClient, DECLINED_CARD, GOOD_CARD, TestFleet, checkout_request};
use mall_testkit::otlp::{Collector, ReceivedSpan};

/// The trace and span the "gateway" in front of the fleet sends as `traceparent`.
const TRACE: &str = "5b8efff798038103d269b633813fc60c";
const GATEWAY_SPAN: &str = "eee19b7ec3c1b174";
/// The trace of the declined purchase.
const DECLINED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

const SPAN_SERVER: i32 = 2;
const SPAN_CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

fn traceparent(trace: &str, span: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("00-{trace}-{span}-01").parse().unwrap()
}

async fn purchase(fleet: &TestFleet, card: &str, key: &str, trace: &str, request_id: &str) {
    let mut checkout = fleet.client_as::<CheckoutClient>("checkout", &fleet.user_token(9));
    let mut request = tonic::Request::new(checkout_request(9, card, key));
    let metadata = request.metadata_mut();
    metadata.insert("traceparent", traceparent(trace, GATEWAY_SPAN));
    metadata.insert("x-request-id", request_id.parse().unwrap());
    let answer = checkout.checkout(request).await;
    assert_eq!(answer.is_ok(), card == GOOD_CARD, "{answer:?}");
}

fn server_span<'a>(spans: &'a [ReceivedSpan], service: &str, rpc: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.kind == SPAN_SERVER && s.service == service && s.name.ends_with(rpc))
        .unwrap_or_else(|| panic!("no {service} server span {rpc} in {}", names(spans)))
}

fn step<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step span {name} in {}", names(spans)))
}

fn names(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `child` is (at any depth) under `ancestor` in `spans`.
fn descends(spans: &[ReceivedSpan], child: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut at = child;
    while let Some(parent) = spans.iter().find(|s| s.span_id == at.parent_span_id) {
        if parent.span_id == ancestor.span_id {
            return true;
        }
        at = parent;
    }
    false
}

#[tokio::test(flavor = "current_thread")]
async fn a_checkout_is_one_trace_from_the_caller_through_every_service() {
    let collector = Collector::start().await;
    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        otlp_endpoint: Some(collector.endpoint()),
        ..TelemetrySettings::default()
    };
    let capture = logs::capture_platform("gateway", &settings);
    assert!(mall_common::telemetry::trace::enabled());

    let fleet = TestFleet::start(mall::SERVICES).await;
    let product = fleet.catalog().create_product("traced", 100, 5).await;
    fleet.cart(9).add(product, 1).await.unwrap();
    purchase(&fleet, GOOD_CARD, "traced-purchase", TRACE, "traced-7d1e").await;
    fleet.cart(9).add(product, 1).await.unwrap();
    purchase(
        &fleet,
        DECLINED_CARD,
        "declined-purchase",
        DECLINED_TRACE,
        "declined-7d1e",
    )
    .await;
    // Each server flushes its service's spans as it stops; then the process's own.
    fleet.stop().await;
    mall_common::telemetry::trace::shutdown().await;
    let logs = capture.finish();

    let all = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == TRACE && s.name == "saga.cart_cleanup")
        })
        .await;
    let trace: Vec<ReceivedSpan> = all
        .iter()
        .filter(|s| s.trace_id == TRACE)
        .cloned()
        .collect();

    // One trace across the fleet, each service under its own name.
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "checkout", "cart", "product", "order", "payment"] {
        assert!(
            services.contains(service),
            "no {service} span: {}",
            names(&trace)
        );
    }
    // The caller's span is the only parent from outside; every other parent is in the trace.
    let from_caller: Vec<&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id == GATEWAY_SPAN)
        .collect();
    assert_eq!(from_caller.len(), 1, "{}", names(&trace));
    assert_eq!(from_caller[0].kind, SPAN_CLIENT);
    assert_eq!(from_caller[0].service, "gateway");
    for span in &trace {
        assert!(
            span.parent_span_id == GATEWAY_SPAN
                || trace.iter().any(|p| p.span_id == span.parent_span_id),
            "the parent of {}:{} is missing",
            span.service,
            span.name
        );
    }

    // The server span of the checkout, by the RPC conventions.
    let checkout = server_span(&trace, "checkout", "CheckoutService/Checkout");
    assert_eq!(
        checkout.name,
        "tiktokmall.checkout.v1.CheckoutService/Checkout"
    );
    assert_eq!(checkout.attr("rpc.system"), Some("grpc"));
    assert_eq!(
        checkout.attr("rpc.service"),
        Some("tiktokmall.checkout.v1.CheckoutService")
    );
    assert_eq!(checkout.attr("rpc.method"), Some("Checkout"));
    assert_eq!(checkout.attr("rpc.grpc.status_code"), Some("0"));
    assert!(
        checkout
            .attr("server.address")
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert_eq!(checkout.attr("request_id"), Some("traced-7d1e"));
    assert!(descends(&trace, checkout, from_caller[0]));

    // Cache calls are spans under the RPC that makes them, with no key on them: the revocation
    // check of the user's token at checkout, and product's invalidation after reserving.
    let revocation = trace
        .iter()
        .find(|s| s.name == "cache.get_many" && descends(&trace, s, checkout))
        .unwrap_or_else(|| panic!("no cache read under Checkout: {}", names(&trace)));
    assert_eq!(revocation.service, "checkout");
    assert_eq!(revocation.kind, SPAN_CLIENT);
    assert!(matches!(
        revocation.attr("db.system"),
        Some("memory" | "redis")
    ));
    assert_eq!(revocation.attr("db.operation"), Some("get_many"));
    let reserve = server_span(&trace, "product", "ProductCatalogService/ReserveStock");
    assert!(
        trace
            .iter()
            .any(|s| s.name == "cache.set" && descends(&trace, s, reserve)),
        "no cache invalidation under ReserveStock: {}",
        names(&trace)
    );
    assert!(
        trace.iter().all(|s| s.attr("key").is_none()),
        "a cache key on a span"
    );

    // Database calls are spans under the RPC that makes them: order's transaction placing the
    // order (a unit of work), and cart's read of the cart (one statement, by its kind); never
    // the statement's text or its parameters.
    let place = server_span(&trace, "order", "OrderService/PlaceOrder");
    let unit = trace
        .iter()
        .find(|s| s.name == "db.place" && descends(&trace, s, place))
        .unwrap_or_else(|| panic!("no database span under PlaceOrder: {}", names(&trace)));
    assert_eq!(unit.kind, SPAN_CLIENT);
    assert!(matches!(unit.attr("db.system"), Some("sqlite" | "mysql")));
    assert_eq!(unit.attr("db.operation"), Some("place"));
    let get_cart = server_span(&trace, "cart", "CartService/GetCart");
    let select = trace
        .iter()
        .find(|s| s.name == "db.select" && descends(&trace, s, get_cart))
        .unwrap_or_else(|| panic!("no SELECT span under GetCart: {}", names(&trace)));
    assert_eq!(select.attr("db.operation"), Some("SELECT"));
    assert!(
        trace.iter().all(|s| s
            .attributes
            .keys()
            .all(|k| !k.starts_with("db.statement") && !k.starts_with("db.query"))),
        "statement text on a span"
    );

    // The saga's steps, in checkout, attributed with the saga id, each over its call.
    let steps = [
        ("saga.read_cart", "cart", "CartService/GetCart"),
        (
            "saga.price",
            "product",
            "ProductCatalogService/BatchGetProducts",
        ),
        ("saga.place_order", "order", "OrderService/PlaceOrder"),
        (
            "saga.reserve_stock",
            "product",
            "ProductCatalogService/ReserveStock",
        ),
        ("saga.charge", "payment", "PaymentService/Charge"),
        ("saga.mark_paid", "order", "OrderService/MarkOrderPaid"),
        ("saga.cart_cleanup", "cart", "CartService/RemovePurchased"),
    ];
    let saga_ids: BTreeSet<&str> = steps
        .iter()
        .map(|(name, _, _)| step(&trace, name).attr("saga.id").unwrap_or_default())
        .collect();
    assert_eq!(saga_ids.len(), 1, "{saga_ids:?}");
    assert!(!saga_ids.iter().next().unwrap().is_empty());
    for (name, service, rpc) in steps {
        let step = step(&trace, name);
        assert_eq!(step.service, "checkout", "{name}");
        assert!(
            descends(&trace, step, checkout),
            "{name} is not under the checkout"
        );
        let server = server_span(&trace, service, rpc);
        assert!(
            descends(&trace, server, step),
            "{service} {rpc} is not under {name}"
        );
        assert_eq!(server.attr("rpc.grpc.status_code"), Some("0"), "{rpc}");
        assert_ne!(server.status_code, STATUS_ERROR, "{rpc}");
        // Between the step and the server: the call's client span and its attempt.
        let call = trace
            .iter()
            .find(|s| s.kind == SPAN_CLIENT && s.name.ends_with(rpc) && s.service == "checkout")
            .unwrap_or_else(|| panic!("no client span for {rpc}"));
        assert_eq!(call.attr("server.address"), Some(service));
        assert!(descends(&trace, server, call) && descends(&trace, call, step));
    }

    // A declined card: compensation steps in the trace, and the refused charge marks the
    // client span as an error.
    let declined: Vec<ReceivedSpan> = all
        .iter()
        .filter(|s| s.trace_id == DECLINED_TRACE)
        .cloned()
        .collect();
    for name in [
        "saga.compensate.cancel_order",
        "saga.compensate.release_stock",
    ] {
        let compensation = step(&declined, name);
        assert!(
            compensation
                .attr("saga.id")
                .is_some_and(|id| !id.is_empty())
        );
    }
    let charge = declined
        .iter()
        .find(|s| s.kind == SPAN_CLIENT && s.name.ends_with("PaymentService/Charge"))
        .unwrap_or_else(|| panic!("no Charge client span in {}", names(&declined)));
    assert_eq!(charge.status_code, STATUS_ERROR);
    assert_ne!(charge.attr("rpc.grpc.status_code"), Some("0"));
    // A declined card is the caller's problem, not payment's: its server span is no error.
    let refused = server_span(&declined, "payment", "PaymentService/Charge");
    assert_eq!(
        refused.attr("rpc.grpc.status_code"),
        charge.attr("rpc.grpc.status_code")
    );
    assert_ne!(refused.status_code, STATUS_ERROR);

    // The log line of payment's Charge names the trace and the span it was written in.
    let payment = server_span(&trace, "payment", "PaymentService/Charge");
    let line = logs
        .lines()
        .find(|l| {
            l.contains("traced-7d1e") && l.contains("rpc finished") && l.contains("\"Charge\"")
        })
        .unwrap_or_else(|| panic!("no log line of the traced Charge:\n{logs}"));
    let json: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(json["trace_id"], TRACE, "{line}");
    assert_eq!(json["span_id"], payment.span_id.as_str(), "{line}");
}
