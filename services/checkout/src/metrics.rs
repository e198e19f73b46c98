//! Checkout's business metrics, registered in the server's registry (served on `/metrics`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Bucket bounds of the saga-duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How a checkout ended for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Order paid.
    Success,
    /// Nothing in the cart.
    EmptyCart,
    /// Stock ran out.
    InsufficientStock,
    /// The card was declined or refused.
    Declined,
    /// Anything else.
    Error,
}

impl OutcomeKind {
    fn label(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::EmptyCart => "empty_cart",
            OutcomeKind::InsufficientStock => "insufficient_stock",
            OutcomeKind::Declined => "declined",
            OutcomeKind::Error => "error",
        }
    }
}

/// A compensating action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompensationKind {
    /// CancelOrder.
    CancelOrder,
    /// ReleaseStock.
    ReleaseStock,
    /// Refund.
    Refund,
}

impl CompensationKind {
    fn label(self) -> &'static str {
        match self {
            CompensationKind::CancelOrder => "cancel_order",
            CompensationKind::ReleaseStock => "release_stock",
            CompensationKind::Refund => "refund",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// Bucket bounds of the step-latency histogram, in seconds (1 ms … 10 s).
pub const STEP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

/// The checkout metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    outcomes: Family<OutcomeLabels, Counter>,
    compensations: Family<KindLabels, Counter>,
    duration: Histogram,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    open: Gauge,
}

impl Metrics {
    /// Registers `checkout_outcomes_total{outcome}`, `checkout_compensations_total{kind}`,
    /// `checkout_saga_duration_seconds`, `checkout_step_duration_seconds{step}` and
    /// `checkout_open_sagas` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics::unregistered();
        registry.register(
            "checkout_outcomes",
            "Checkouts answered, by outcome",
            metrics.outcomes.clone(),
        );
        registry.register(
            "checkout_compensations",
            "Compensating actions taken, by kind",
            metrics.compensations.clone(),
        );
        registry.register(
            "checkout_saga_duration_seconds",
            "Time from a checkout request to its answer",
            metrics.duration.clone(),
        );
        registry.register(
            "checkout_step_duration_seconds",
            "Time of one saga step's remote call as checkout sees it, by step",
            metrics.steps.clone(),
        );
        registry.register(
            "checkout_open_sagas",
            "Sagas not yet at an end state",
            metrics.open.clone(),
        );
        metrics
    }

    /// Metrics not served anywhere (for tools and unit tests).
    pub fn unregistered() -> Self {
        Metrics {
            outcomes: Family::default(),
            compensations: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            steps: Family::new_with_constructor(step_histogram),
            open: Gauge::default(),
        }
    }

    /// Counts one answered checkout.
    pub fn outcome(&self, kind: OutcomeKind) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                outcome: kind.label(),
            })
            .inc();
    }

    /// Counts one compensating action.
    pub fn compensation(&self, kind: CompensationKind) {
        self.compensations
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
    }

    /// Records how long a checkout took.
    pub fn duration(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Records how long one step's call took (`step` as in the step spans: `charge`,
    /// `compensate.refund`, ...).
    pub fn step(&self, step: &'static str, elapsed: Duration) {
        self.steps
            .get_or_create(&StepLabels { step })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the number of open sagas.
    pub fn open_sagas(&self, n: i64) {
        self.open.set(n);
    }
}
