//! Prometheus registries and the RED metrics every server records.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
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
    /// The series of each RPC the server answers, resolved at registration.
    known: Arc<HashMap<Box<str>, Arc<RpcSeries>>>,
    /// The one series of every other path (methods a client made up): however many callers
    /// invent, the metrics keep one label set for them.
    unknown: Arc<RpcSeries>,
}

/// The `grpc_service` and `grpc_method` label of calls to RPCs the server does not answer.
pub const UNKNOWN_RPC: &str = "unknown";

/// The series of one RPC (`/service/method`), looked up once: recording a call then costs no
/// label strings and no family lookup (the `OK` ones, at least; other codes are looked up).
pub struct RpcSeries {
    service: String,
    method: String,
    in_flight: Gauge,
    ok: OnceLock<(Counter, LatencyHistogram)>,
}

impl RpcSeries {
    /// The fully-qualified gRPC service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The RPC name.
    pub fn method(&self) -> &str {
        &self.method
    }
}

impl RpcMetrics {
    /// Registers the server metrics in `registry`, with a series for each of `paths`
    /// (`/service/method`, every RPC the server answers).
    pub fn register(registry: &mut Registry, paths: impl IntoIterator<Item = String>) -> Self {
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
        let series = |service: &str, method: &str| {
            Arc::new(RpcSeries {
                service: service.to_string(),
                method: method.to_string(),
                in_flight: in_flight
                    .get_or_create(&ServiceLabels {
                        grpc_service: service.to_string(),
                    })
                    .clone(),
                ok: OnceLock::new(),
            })
        };
        let known = paths
            .into_iter()
            .map(|path| {
                let (service, method) = crate::context::split_path(&path);
                let rpc = series(service, method);
                (path.into_boxed_str(), rpc)
            })
            .collect();
        let unknown = series(UNKNOWN_RPC, UNKNOWN_RPC);
        RpcMetrics {
            handled,
            seconds,
            known: Arc::new(known),
            unknown,
        }
    }

    /// The series of the RPC at `path` (`/service/method`); the shared one if the server
    /// answers no such RPC.
    pub fn series(&self, path: &str) -> Arc<RpcSeries> {
        self.known.get(path).unwrap_or(&self.unknown).clone()
    }

    /// Counts one RPC start (for the in-flight gauge).
    pub fn started(&self, series: &RpcSeries) {
        series.in_flight.inc();
    }

    /// Records one finished RPC; `trace_id` (the RPC's sampled trace, while traces are
    /// exported) becomes the exemplar of its latency bucket.
    pub fn finished(
        &self,
        series: &RpcSeries,
        code: tonic::Code,
        elapsed: Duration,
        trace_id: Option<String>,
    ) {
        series.in_flight.dec();
        let exemplar = trace_id.map(|trace_id| TraceExemplar { trace_id });
        let at = exemplar.as_ref().map(|_| SystemTime::now());
        if code == tonic::Code::Ok {
            let (handled, seconds) = series.ok.get_or_init(|| {
                let labels = self.labels(series, code);
                (
                    self.handled.get_or_create(&labels).clone(),
                    self.seconds.get_or_create(&labels).clone(),
                )
            });
            handled.inc();
            seconds.observe(elapsed.as_secs_f64(), exemplar, at);
            return;
        }
        let labels = self.labels(series, code);
        self.handled.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64(), exemplar, at);
    }

    fn labels(&self, series: &RpcSeries, code: tonic::Code) -> RpcLabels {
        RpcLabels {
            grpc_service: series.service.clone(),
            grpc_method: series.method.clone(),
            grpc_code: code_name(code).to_string(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_a_caller_makes_up_share_one_label_set() {
        let mut registry = Registry::default();
        let known = "/tiktokmall.product.v1.ProductCatalogService/GetProduct";
        let metrics = RpcMetrics::register(&mut registry, [known.to_string()]);
        let metrics_text = Metrics::new(registry);
        let record = |path: &str| {
            let series = metrics.series(path);
            metrics.started(&series);
            metrics.finished(
                &series,
                tonic::Code::Unimplemented,
                Duration::from_millis(1),
                None,
            );
        };
        record(known);
        record("/tiktokmall.product.v1.ProductCatalogService/Nope0");
        let one_unknown = metrics_text.encode().lines().count();
        for i in 1..300 {
            record(&format!("/made.up.Service{i}/Method{i}"));
        }
        let text = metrics_text.encode();
        assert_eq!(
            text.lines().count(),
            one_unknown,
            "no new series per made-up path"
        );
        assert!(text.contains(r#"grpc_method="GetProduct""#));
        assert!(text.contains(r#"grpc_service="unknown",grpc_method="unknown""#));
        assert!(!text.contains("Method17"));
        assert_eq!(
            metrics.series("/made.up.Service9/Method9").method(),
            UNKNOWN_RPC
        );
    }
}
