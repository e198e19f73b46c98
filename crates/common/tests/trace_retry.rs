//! Client spans of a retried call, exported to an in-process OTLP collector: the call's span
//! (kind client, RPC attributes, the target service as `server.address`) has one `attempt`
//! child per attempt, the failed one marked as an error with its instance and status, and each
//! attempt's own context is what reached the server as `traceparent` — also with the log
//! filter at `warn`, which must not silence the traces. Its own test binary: the
//! trace export is process-wide once installed.

use mall_types::ServiceName;
use std::time::Duration;

use mall_common::client::{Channel, Clients};
use mall_common::config::{Settings, TelemetrySettings};
use mall_common::telemetry::{self, trace};
use mall_proto::payment::v1 as pay;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use mall_testkit::grpc::{Reply, StubGrpc};
use mall_testkit::otlp::{Collector, ReceivedSpan};
use tonic::Code;

const GET_PAYMENT: &str = "/tiktokmall.payment.v1.PaymentService/GetPayment";
const SPAN_CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

#[tokio::test]
async fn a_retried_call_has_one_attempt_span_per_attempt_under_its_call_span() {
    let collector = Collector::start().await;
    // A quiet log keeps its traces.
    let settings = TelemetrySettings {
        log_filter: "warn".into(),
        otlp_endpoint: Some(collector.endpoint()),
        ..TelemetrySettings::default()
    };
    let subscriber = telemetry::subscriber("tool", &settings, std::io::sink, false);
    let _default = tracing::subscriber::set_default(subscriber);

    let down = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let up = StubGrpc::start(Reply::Ok).await;
    let mut s = Settings::defaults("test");
    s.discovery
        .static_addrs
        .insert("payment".into(), vec![down.addr(), up.addr()]);
    s.client.breaker.min_calls = 1_000;
    let clients = Clients::discover(&s.discovery, &s.client, None).expect("clients");
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");
    // Until the failing instance has been drawn once (it is ejected after that).
    for _ in 0..50 {
        payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .expect("retried on the healthy instance");
        if down.calls(GET_PAYMENT) > 0 {
            break;
        }
    }
    assert_eq!(
        down.calls(GET_PAYMENT),
        1,
        "the failing instance was never drawn"
    );
    trace::shutdown().await;

    let spans = collector
        .wait_for(Duration::from_secs(10), |spans| {
            spans
                .iter()
                .any(|s| s.name == "attempt" && s.status_code == STATUS_ERROR)
        })
        .await;
    let failed = spans
        .iter()
        .find(|s| s.name == "attempt" && s.status_code == STATUS_ERROR)
        .unwrap_or_else(|| panic!("no failed attempt: {spans:?}"));
    assert_eq!(failed.attr("rpc.grpc.status_code"), Some("14"));
    assert_eq!(failed.attr("server.port"), Some(port(&down.addr())));
    let call = spans
        .iter()
        .find(|s| s.span_id == failed.parent_span_id)
        .expect("the attempt's parent was exported");
    assert_eq!(call.kind, SPAN_CLIENT);
    assert_eq!(call.name, "tiktokmall.payment.v1.PaymentService/GetPayment");
    assert_eq!(call.service, "tool");
    assert_eq!(call.attr("rpc.system"), Some("grpc"));
    assert_eq!(call.attr("rpc.method"), Some("GetPayment"));
    assert_eq!(call.attr("server.address"), Some("payment"));
    assert_eq!(call.attr("rpc.grpc.status_code"), Some("0"));
    assert_ne!(
        call.status_code, STATUS_ERROR,
        "the call succeeded in the end"
    );
    let attempts: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_id)
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let retried = attempts
        .iter()
        .find(|s| s.span_id != failed.span_id)
        .expect("the second attempt");
    assert_eq!(retried.attr("server.port"), Some(port(&up.addr())));
    assert_eq!(retried.attr("rpc.grpc.status_code"), Some("0"));
    // Each server saw its own attempt's span as the parent.
    let sent_down = format!("00-{}-{}-01", failed.trace_id, failed.span_id);
    let sent_up = format!("00-{}-{}-01", retried.trace_id, retried.span_id);
    assert_eq!(down.traceparents(), [sent_down]);
    assert!(up.traceparents().contains(&sent_up));
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, p)| p)
}
