//! Prometheus registries and the RED metrics every server records.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Labels of the per-RPC metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
///
/// Named as go-grpc-prometheus names them (`grpc_service`, `grpc_method`, `grpc_code`), which
/// also keeps them clear of the `service` target label Prometheus attaches to every scrape.
pub struct RpcLabels {
    /// Fully-qualified gRPC service, e.g. `tiktokmall.product.v1.ProductCatalogService`.
    pub grpc_service: String,
    /// RPC name, e.g. `GetProduct`.
    pub grpc_method: String,
    /// gRPC status code name, e.g. `OK`, `InvalidArgument`.
    pub grpc_code: String,
}

/// Labels of the per-service in-flight gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Fully-qualified gRPC service.
    pub grpc_service: String,
}

/// The exemplar of a latency observation: the trace of the RPC observed (Grafana's link from a
/// latency panel to Jaeger reads `trace_id`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// The W3C trace id, lowercase hex.
    pub trace_id: String,
}

type LatencyHistogram = HistogramWithExemplars<TraceExemplar>;
type HistogramFamily = Family<RpcLabels, LatencyHistogram, fn() -> LatencyHistogram>;

/// Bucket bounds of the handling-time histogram, in seconds (1 ms … 10 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn latency_histogram() -> LatencyHistogram {
    HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter())
}

/// The RED metrics of one gRPC server.
#[derive(Clone)]
pub struct RpcMetrics {
    handled: Family<RpcLabels, Counter>,
    seconds: HistogramFamily,
    in_flight: Family<ServiceLabels, Gauge>,
}

impl RpcMetrics {
    /// Registers the server metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let handled = Family::<RpcLabels, Counter>::default();
        let seconds: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by gRPC status code",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to sending its status",
            seconds.clone(),
        );
        registry.register(
            "grpc_server_in_flight",
            "RPCs being handled right now",
            in_flight.clone(),
        );
        RpcMetrics {
            handled,
            seconds,
            in_flight,
        }
    }

    /// Counts one RPC start (for the in-flight gauge).
    pub fn started(&self, service: &str) {
        self.in_flight
            .get_or_create(&ServiceLabels {
                grpc_service: service.to_string(),
            })
            .inc();
    }

    /// Records one finished RPC; `trace_id` (the RPC's sampled trace, while traces are
    /// exported) becomes the exemplar of its latency bucket.
    pub fn finished(
        &self,
        service: &str,
        method: &str,
        code: tonic::Code,
        elapsed: Duration,
        trace_id: Option<String>,
    ) {
        self.in_flight
            .get_or_create(&ServiceLabels {
                grpc_service: service.to_string(),
            })
            .dec();
        let labels = RpcLabels {
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
            grpc_code: code_name(code).to_string(),
        };
        self.handled.get_or_create(&labels).inc();
        let exemplar = trace_id.map(|trace_id| TraceExemplar { trace_id });
        let at = exemplar.as_ref().map(|_| SystemTime::now());
        self.seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64(), exemplar, at);
    }
}

/// The Prometheus registry of one server, shared with the admin HTTP port.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    /// Freezes a registry for serving.
    pub fn new(registry: Registry) -> Self {
        Metrics {
            registry: Arc::new(registry),
        }
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The canonical name of a gRPC code as used in metric labels (`OK`, `InvalidArgument`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
