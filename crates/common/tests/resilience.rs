//! Client-side resilience against real HTTP/2 gRPC servers whose answers are scripted
//! (`mall_testkit::grpc::StubGrpc`): the circuit breaker opens on `UNAVAILABLE`, fails calls
//! fast without reaching the dependency and closes after a successful probe; idempotent RPCs
//! are retried on another instance while `Charge` never is; per-method deadlines apply.
//! Loopback only, every wait bounded.

use mall_types::ServiceName;
use std::time::{Duration, Instant};

use mall_common::client::{BreakerState, Channel, Clients};
use mall_common::config::Settings;
use mall_proto::payment::v1 as pay;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use mall_testkit::grpc::{Reply, StubGrpc};
use prometheus_client::registry::Registry;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CHECK: &str = "/grpc.health.v1.Health/Check";
const CHARGE: &str = "/tiktokmall.payment.v1.PaymentService/Charge";
const GET_PAYMENT: &str = "/tiktokmall.payment.v1.PaymentService/GetPayment";

/// Settings whose service `target` lives at `addrs`.
fn settings(target: &str, addrs: &[String]) -> Settings {
    let mut s = Settings::defaults("test");
    s.discovery
        .static_addrs
        .insert(target.into(), addrs.to_vec());
    s
}

fn clients(s: &Settings) -> Clients {
    Clients::discover(&s.discovery, &s.client, None).expect("clients")
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

fn metrics_text(clients: &Clients) -> String {
    let mut registry = Registry::default();
    clients.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

#[tokio::test]
async fn breaker_opens_on_unavailable_fails_fast_and_a_successful_probe_closes_it() {
    let stub = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let mut s = settings("inventory", &[stub.addr()]);
    s.client.breaker.min_calls = 5;
    s.client.breaker.failure_percent = 50;
    s.client.breaker.open_for = Duration::from_millis(300);
    s.client.breaker.half_open_probes = 1;
    let clients = clients(&s);
    let channel = clients.channel("inventory").expect("channel");
    let mut client = HealthClient::new(channel.clone());

    // The dependency's own UNAVAILABLE reaches the caller until the breaker has seen enough.
    for _ in 0..5 {
        let err = client.check(check()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(err.message(), "stubbed");
    }
    assert_eq!(stub.calls(CHECK), 5);
    assert_eq!(channel.breaker_state(), BreakerState::Open);
    assert!(
        metrics_text(&clients).contains(r#"grpc_client_circuit_state{target="inventory"} 1"#),
        "{}",
        metrics_text(&clients)
    );

    // Open: calls fail at once and never reach the dependency.
    for _ in 0..20 {
        let err = client.check(check()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("circuit open"), "{err:?}");
    }
    assert_eq!(stub.calls(CHECK), 5, "an open breaker let calls through");
    assert!(
        metrics_text(&clients)
            .contains(r#"grpc_client_circuit_rejected_total{target="inventory"} 20"#)
    );

    // The dependency recovers; after the cool-down one probe goes through and closes it.
    stub.set_reply(Reply::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    client.check(check()).await.expect("the probe succeeds");
    assert_eq!(stub.calls(CHECK), 6);
    assert_eq!(channel.breaker_state(), BreakerState::Closed);
    for _ in 0..10 {
        client.check(check()).await.expect("closed again");
    }
    assert_eq!(stub.calls(CHECK), 16);
    assert!(metrics_text(&clients).contains(r#"grpc_client_circuit_state{target="inventory"} 0"#));
}

#[tokio::test]
async fn a_failed_probe_keeps_the_breaker_open() {
    let stub = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let mut s = settings("inventory", &[stub.addr()]);
    s.client.breaker.min_calls = 3;
    s.client.breaker.open_for = Duration::from_millis(200);
    s.client.breaker.half_open_probes = 1;
    let clients = clients(&s);
    let channel = clients.channel("inventory").expect("channel");
    let mut client = HealthClient::new(channel.clone());
    for _ in 0..3 {
        let _ = client.check(check()).await;
    }
    assert_eq!(channel.breaker_state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.message(), "stubbed", "the probe reached the dependency");
    assert_eq!(stub.calls(CHECK), 4);
    assert_eq!(channel.breaker_state(), BreakerState::Open);
    let err = client.check(check()).await.unwrap_err();
    assert!(err.message().contains("circuit open"), "{err:?}");
    assert_eq!(stub.calls(CHECK), 4);
}

#[tokio::test]
async fn business_errors_do_not_open_the_breaker() {
    let stub = StubGrpc::start(Reply::Status(Code::NotFound)).await;
    let mut s = settings("inventory", &[stub.addr()]);
    s.client.breaker.min_calls = 3;
    let clients = clients(&s);
    let channel = clients.channel("inventory").expect("channel");
    let mut client = HealthClient::new(channel.clone());
    for _ in 0..20 {
        let err = client.check(check()).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    assert_eq!(stub.calls(CHECK), 20);
    assert_eq!(channel.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_call_an_instance_shed_goes_to_another_without_counting_against_it() {
    let busy = StubGrpc::start(Reply::Shed).await;
    let up = StubGrpc::start(Reply::Ok).await;
    let mut s = settings("payment", &[busy.addr(), up.addr()]);
    // A low threshold: were sheds failures, the breaker would open within the run.
    s.client.breaker.min_calls = 2;
    // The busy instance stays in rotation (it is not ejected), so about half the calls need a
    // retry: a budget for all of them (the budget itself is tested below).
    s.client.retry.budget_percent = 100;
    s.client.retry.min_per_sec = 100;
    let clients = clients(&s);
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");

    for _ in 0..20 {
        payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .expect("a shed read is sent to the other instance");
    }
    assert_eq!(up.calls(GET_PAYMENT), 20);
    assert!(busy.calls(GET_PAYMENT) > 0, "the busy instance was tried");
    let metrics = metrics_text(&clients);
    assert!(
        metrics.contains("grpc_client_ejections_total{target=\"payment\"} 0\n")
            && metrics.contains("grpc_client_circuit_state{target=\"payment\"} 0\n"),
        "a busy instance is neither ejected nor a reason to open the breaker:\n{metrics}"
    );

    // Alone and busy: the refusal reaches the caller as it is, and the breaker stays closed.
    up.set_reply(Reply::Shed);
    for _ in 0..5 {
        let err = payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    }
    assert!(metrics_text(&clients).contains("grpc_client_circuit_state{target=\"payment\"} 0\n"));
    // A RESOURCE_EXHAUSTED that is not a shed (a business refusal) is not sent again.
    up.set_reply(Reply::Status(Code::ResourceExhausted));
    busy.set_reply(Reply::Status(Code::ResourceExhausted));
    let before = up.calls(GET_PAYMENT) + busy.calls(GET_PAYMENT);
    let err = payment
        .get_payment(pay::GetPaymentReq::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(up.calls(GET_PAYMENT) + busy.calls(GET_PAYMENT) - before, 1);
}

#[tokio::test]
async fn idempotent_reads_are_retried_on_another_instance_and_charge_never_is() {
    let down = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let up = StubGrpc::start(Reply::Ok).await;
    let mut s = settings("payment", &[down.addr(), up.addr()]);
    // Keep the breaker out of the way: this test counts attempts.
    s.client.breaker.min_calls = 1_000;
    let clients = clients(&s);
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");

    // GetPayment is idempotent: whichever instance is drawn, the call succeeds.
    for _ in 0..20 {
        payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .expect("retried on the healthy instance");
    }
    assert_eq!(up.calls(GET_PAYMENT), 20);
    // The failing instance was ejected after its first failure, not tried twenty times.
    assert!(down.calls(GET_PAYMENT) <= 2, "{}", down.calls(GET_PAYMENT));
    assert!(metrics_text(&clients).contains(r#"grpc_client_ejections_total{target="payment"}"#));

    // Both down: one attempt per instance, then the dependency's status.
    up.set_reply(Reply::Status(Code::Unavailable));
    let before = down.calls(GET_PAYMENT) + up.calls(GET_PAYMENT);
    for _ in 0..3 {
        let err = payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    assert_eq!(down.calls(GET_PAYMENT) + up.calls(GET_PAYMENT) - before, 6);

    // Charge is not idempotent: exactly one attempt per call, whatever the outcome.
    for _ in 0..10 {
        let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    assert_eq!(down.calls(CHARGE) + up.calls(CHARGE), 10);
}

#[tokio::test]
async fn retries_stop_when_the_budget_is_spent() {
    let a = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let b = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let mut s = settings("payment", &[a.addr(), b.addr()]);
    s.client.breaker.min_calls = 1_000;
    s.client.retry.budget_percent = 0;
    s.client.retry.min_per_sec = 2;
    s.client.retry.burst_secs = 1;
    let clients = clients(&s);
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");
    let started = Instant::now();
    for _ in 0..10 {
        let _ = payment.get_payment(pay::GetPaymentReq::default()).await;
    }
    // Ten calls, and only the two retries the budget holds, plus what the floor refills at two
    // per second while they ran (nothing, unless the machine is very slow).
    let refilled = (started.elapsed().as_secs_f64() * 2.0).floor() as u64;
    let attempts = a.calls(GET_PAYMENT) + b.calls(GET_PAYMENT);
    assert!(
        (12..=12 + refilled).contains(&attempts),
        "{attempts} attempts, {refilled} refilled"
    );
}

#[tokio::test]
async fn per_method_deadlines_replace_the_client_default() {
    let stub = StubGrpc::start(Reply::Ok).await;
    stub.set_delay(Duration::from_secs(2));
    let mut s = settings("payment", &[stub.addr()]);
    s.client
        .method_timeout
        .entry("payment".into())
        .or_default()
        .insert("charge".into(), Duration::from_millis(100));
    let clients = clients(&s);
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");
    let started = Instant::now();
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn failures_say_whether_the_request_may_have_reached_the_service() {
    use mall_common::client::never_sent;
    use mall_testkit::proxy::LatencyProxy;

    // Nobody listens (port 1: no test can bind it): the request cannot have been sent.
    let s = settings("payment", &["127.0.0.1:1".to_string()]);
    let mut payment: PaymentServiceClient<Channel> =
        clients(&s).client(ServiceName::Payment).expect("client");
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(never_sent(&err), "{err:?}");

    // The answer is lost after the request arrived: it may have been acted on.
    let stub = StubGrpc::start(Reply::Ok).await;
    let upstream: std::net::SocketAddr = stub.addr().parse().expect("stub address");
    let proxy = LatencyProxy::start(upstream, Duration::ZERO).await;
    let s = settings("payment", &[proxy.addr()]);
    let mut payment: PaymentServiceClient<Channel> =
        clients(&s).client(ServiceName::Payment).expect("client");
    payment
        .charge(pay::ChargeReq::default())
        .await
        .expect("a first call opens the connection");
    proxy.lose_next_answer();
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!never_sent(&err), "{err:?}");
    assert_eq!(
        stub.calls(CHARGE),
        2,
        "the second charge reached the service"
    );

    // The service's own error status is not "never sent" either; an open circuit is.
    stub.set_reply(Reply::Status(Code::Unavailable));
    let mut s = settings("payment", &[stub.addr()]);
    s.client.breaker.min_calls = 1;
    let mut payment: PaymentServiceClient<Channel> =
        clients(&s).client(ServiceName::Payment).expect("client");
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert!(!never_sent(&err), "{err:?}");
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert!(err.message().contains("circuit open"), "{err:?}");
    assert!(never_sent(&err), "{err:?}");
}

#[tokio::test]
async fn an_answer_that_breaks_off_after_its_headers_is_retried_only_when_idempotent() {
    let broken = StubGrpc::start(Reply::BrokenBody).await;
    let up = StubGrpc::start(Reply::Ok).await;

    // Alone, the broken instance's failure is UNAVAILABLE (the kind that is retried), not a
    // broken message reaching the caller.
    let alone = settings("payment", &[broken.addr()]);
    let err = clients(&alone)
        .client::<PaymentServiceClient<Channel>>(ServiceName::Payment)
        .expect("client")
        .get_payment(pay::GetPaymentReq::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(broken.calls(GET_PAYMENT), 1);

    // Beside a healthy instance, every idempotent call succeeds: the one drawn to the broken
    // instance is retried on the other (which is then the only one drawn: 60 s ejection).
    let mut s = settings("payment", &[broken.addr(), up.addr()]);
    s.client.breaker.min_calls = 1_000;
    s.client.balance.eject_base = Duration::from_secs(60);
    s.client.balance.eject_max = Duration::from_secs(60);
    let mut payment: PaymentServiceClient<Channel> =
        clients(&s).client(ServiceName::Payment).expect("client");
    for _ in 0..200 {
        payment
            .get_payment(pay::GetPaymentReq::default())
            .await
            .expect("retried on the other instance");
        if broken.calls(GET_PAYMENT) == 2 {
            break;
        }
    }
    assert_eq!(
        broken.calls(GET_PAYMENT),
        2,
        "the broken instance was never drawn"
    );

    // Charge is never sent twice, even though its answer broke off.
    let only_broken = settings("payment", &[broken.addr()]);
    let mut payment: PaymentServiceClient<Channel> = clients(&only_broken)
        .client(ServiceName::Payment)
        .expect("client");
    let err = payment.charge(pay::ChargeReq::default()).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(broken.calls(CHARGE), 1);
}

#[tokio::test]
async fn reconfigured_clients_apply_new_deadlines_and_breaker_to_channels_already_made() {
    let slow = StubGrpc::start(Reply::Ok).await;
    slow.set_delay(Duration::from_secs(1));
    let mut s = settings("payment", &[slow.addr()]);
    s.client.breaker.min_calls = 1_000;
    let clients = clients(&s);
    let channel = clients.channel("payment").expect("channel");
    let mut payment: PaymentServiceClient<Channel> = PaymentServiceClient::new(channel.clone());
    // As started: the slow answer comes within the 5 s default.
    payment
        .get_payment(pay::GetPaymentReq::default())
        .await
        .expect("answered");

    // A reload: a 100 ms deadline for GetPayment, a breaker that opens at half of two calls.
    let mut reloaded = s.client.clone();
    reloaded
        .method_timeout
        .entry("payment".into())
        .or_default()
        .insert("getpayment".into(), Duration::from_millis(100));
    reloaded.breaker.min_calls = 2;
    reloaded.breaker.failure_percent = 50;
    clients.reconfigure(&reloaded);
    let started = Instant::now();
    let err = payment
        .get_payment(pay::GetPaymentReq::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    // One success and one failure of two calls: the reloaded breaker opens and fails fast.
    assert_eq!(channel.breaker_state(), BreakerState::Open);
    let err = payment
        .get_payment(pay::GetPaymentReq::default())
        .await
        .unwrap_err();
    assert!(err.message().contains("circuit open"), "{err:?}");
}

#[tokio::test]
async fn reconfigured_clients_apply_new_retry_attempts() {
    let a = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let b = StubGrpc::start(Reply::Status(Code::Unavailable)).await;
    let mut s = settings("payment", &[a.addr(), b.addr()]);
    s.client.breaker.min_calls = 1_000;
    let clients = clients(&s);
    let mut payment: PaymentServiceClient<Channel> =
        clients.client(ServiceName::Payment).expect("client");
    let attempts = || a.calls(GET_PAYMENT) + b.calls(GET_PAYMENT);
    // As started: one attempt per instance.
    let _ = payment.get_payment(pay::GetPaymentReq::default()).await;
    assert_eq!(attempts(), 2);
    // Retries off by a reload: one attempt per call.
    let mut reloaded = s.client.clone();
    reloaded.retry.max_attempts = 1;
    clients.reconfigure(&reloaded);
    for _ in 0..3 {
        let _ = payment.get_payment(pay::GetPaymentReq::default()).await;
    }
    assert_eq!(attempts(), 5);
}
