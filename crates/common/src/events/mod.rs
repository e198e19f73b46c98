//! Asynchronous events: the contract ([`Envelope`], [`EventType`]), the [`EventBus`] with an
//! in-process, a NATS JetStream and a Kafka implementation, the transactional [`Outbox`] and
//! its [`Relay`].
//!
//! # Emitting an event (a service that owns a fact)
//!
//! 1. At start, after the database is open: `Outbox::install(&db).await?` creates the `outbox`
//!    and `outbox_lease` tables when missing (`CREATE TABLE IF NOT EXISTS`, SQLite and MySQL;
//!    no migration file needed; safe to run from every instance at once).
//! 2. In the transaction of the state change, after the statement that changes (and so
//!    locks) the aggregate's row: `Outbox::append(&mut tx, "order", &order_id, payload).await?`
//!    — one `INSERT` that takes the next sequence of the aggregate. No commit, no event; no
//!    event, no commit. Two transactions appending to one aggregate without that row lock
//!    would race for one sequence number and one of them fails with a unique violation (a
//!    retryable error) — lock the aggregate first.
//! 3. Run the relay beside the server: `Relay::new(db, bus, &settings.events)
//!    .register_metrics(server.registry_mut()).spawn(shutdown)`. It publishes unsent rows in
//!    order, marks them sent, retries with backoff, and only the instance holding the outbox
//!    lease publishes, so two instances never publish concurrently or out of order.
//!
//! # Consuming
//!
//! `bus.subscribe(SubscribeOptions::new("notification").types(["order.*"])?).await?`, then
//! `sub.next().await?` gives a [`Delivery`]: handle it (under [`Delivery::span`], a child of
//! the producer's trace), then [`Delivery::ack`], or [`Delivery::nack`] to have it again
//! later, or [`Delivery::term`] to give it up. Delivery is at least once: dedupe by
//! `event_id`. Events of one aggregate are published in `sequence` order; a redelivery may
//! come after later events, so a consumer that cares compares `sequence`.
//!
//! # Selecting the bus
//!
//! [`connect`] reads `events.url`: `memory://` (the process-wide in-process bus, so an
//! embedded fleet shares one), `memory://NAME` (a named in-process bus, for tests),
//! `nats://host:port` (JetStream: stream `<NAMESPACE>` over `<namespace>.>`), or
//! `kafka://host:port` (one topic per type, created at connect).

#[cfg(feature = "kafka")]
mod kafka;
mod memory;
#[cfg(feature = "nats")]
mod nats;
mod outbox;
mod relay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "kafka")]
pub use kafka::KafkaBus;
pub use mall_proto::events::v1::envelope::Payload;
pub use mall_proto::events::v1::{
    AccountDeleted, Envelope, OrderCancelled, OrderLine, OrderPaid, OrderPlaced, PaymentCharged,
    PaymentRefunded, StockChanged,
};
pub use memory::MemoryBus;
#[cfg(feature = "nats")]
pub use nats::NatsBus;
pub use outbox::{Outbox, OutboxRow};
pub use relay::{Relay, RelayMetrics, RelayRound};

use crate::config::EventsSettings;

/// The refusal of a bus this binary was built without (the `nats` and `kafka` Cargo features of
/// `mall-common`; the services that publish or consume enable both).
#[cfg(not(all(feature = "nats", feature = "kafka")))]
fn not_built_in(feature: &str) -> BusError {
    BusError::Invalid(format!(
        "events.url is {feature}:// but this binary was built without mall-common's `{feature}` feature"
    ))
}

/// The kinds of events, one per [`Payload`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `order.placed`
    OrderPlaced,
    /// `order.paid`
    OrderPaid,
    /// `order.cancelled`
    OrderCancelled,
    /// `payment.charged`
    PaymentCharged,
    /// `payment.refunded`
    PaymentRefunded,
    /// `product.stock_changed`
    StockChanged,
    /// `account.deleted`
    AccountDeleted,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 7] = [
        EventType::OrderPlaced,
        EventType::OrderPaid,
        EventType::OrderCancelled,
        EventType::PaymentCharged,
        EventType::PaymentRefunded,
        EventType::StockChanged,
        EventType::AccountDeleted,
    ];

    /// The type of `payload` (the one source of truth for an envelope's `type`).
    pub fn of(payload: &Payload) -> EventType {
        match payload {
            Payload::OrderPlaced(_) => EventType::OrderPlaced,
            Payload::OrderPaid(_) => EventType::OrderPaid,
            Payload::OrderCancelled(_) => EventType::OrderCancelled,
            Payload::PaymentCharged(_) => EventType::PaymentCharged,
            Payload::PaymentRefunded(_) => EventType::PaymentRefunded,
            Payload::StockChanged(_) => EventType::StockChanged,
            Payload::AccountDeleted(_) => EventType::AccountDeleted,
        }
    }

    /// The type's name: `order.placed`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPlaced => "order.placed",
            EventType::OrderPaid => "order.paid",
            EventType::OrderCancelled => "order.cancelled",
            EventType::PaymentCharged => "payment.charged",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::StockChanged => "product.stock_changed",
            EventType::AccountDeleted => "account.deleted",
        }
    }

    /// The subject / topic of the type under the default namespace: `tiktokmall.order.placed`.
    pub fn subject(self) -> String {
        self.subject_in(crate::config::DEFAULT_EVENTS_NAMESPACE)
    }

    /// The subject / topic of the type under `namespace`: `<namespace>.<type>`.
    pub fn subject_in(self, namespace: &str) -> String {
        format!("{namespace}.{}", self.as_str())
    }

    /// The type named `name` (`order.placed`).
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of an envelope, from its payload; `None` for an envelope without one.
pub fn type_of(envelope: &Envelope) -> Option<EventType> {
    envelope.payload.as_ref().map(EventType::of)
}

/// A failure of the bus or of the broker behind it.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or refused the operation; retrying later may work.
    #[error("event broker unavailable: {0}")]
    Unavailable(String),
    /// A publish or acknowledgement did not finish in time.
    #[error("event broker timed out: {0}")]
    Timeout(String),
    /// The request itself is wrong (a bad filter, an envelope without payload, a bad URL).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The subscription ended (the bus was closed).
    #[error("subscription closed")]
    Closed,
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Events whose type matches one of the patterns: `*` (all), `order.*` (a family) or an
    /// exact type `order.placed`.
    Types(Vec<String>),
    /// The dead letters of a consumer group (see [`EventBus::dead_letter`]).
    DeadLetters(String),
}

impl Filter {
    /// The event types the filter selects (empty for [`Filter::DeadLetters`]).
    pub fn event_types(&self) -> Vec<EventType> {
        match self {
            Filter::Types(patterns) => EventType::ALL
                .into_iter()
                .filter(|t| patterns.iter().any(|p| pattern_matches(p, t.as_str())))
                .collect(),
            Filter::DeadLetters(_) => Vec::new(),
        }
    }

    /// Whether the filter selects events of `event_type`.
    pub fn matches(&self, event_type: EventType) -> bool {
        match self {
            Filter::Types(patterns) => patterns
                .iter()
                .any(|p| pattern_matches(p, event_type.as_str())),
            Filter::DeadLetters(_) => true,
        }
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" || pattern == ">" => true,
        Some(family) => name
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == name,
    }
}

/// Checks a type pattern: `*`, `>`, `family.*` of a known family, or a known type.
pub fn validate_pattern(pattern: &str) -> Result<(), BusError> {
    let known = EventType::ALL
        .into_iter()
        .any(|t| pattern_matches(pattern, t.as_str()));
    if known {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "type filter `{pattern}` matches no event type (use `*`, e.g. `order.*`, or a type \
             like `order.placed`)"
        )))
    }
}

/// Default of [`SubscribeOptions::max_deliver`].
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Default of [`SubscribeOptions::ack_wait`].
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// The durable consumer / consumer group: subscriptions with one group share its events
    /// (each event goes to one of them) and resume where the group left off.
    pub group: String,
    /// Which events.
    pub filter: Filter,
    /// Deliveries of one event at most (the first one included); after that the bus stops
    /// redelivering it (a consumer that wants a dead letter sends one before the last nack).
    pub max_deliver: u32,
    /// An event not acknowledged within this is delivered again.
    pub ack_wait: Duration,
    /// Live only (`mall events tail`): events published from now on, and no durable state left
    /// on the broker (`group` only names the subscription).
    pub live: bool,
}

impl SubscribeOptions {
    /// Every event type, for `group`, with the default limits.
    pub fn new(group: impl Into<String>) -> Self {
        SubscribeOptions {
            group: group.into(),
            filter: Filter::Types(vec!["*".into()]),
            max_deliver: DEFAULT_MAX_DELIVER,
            ack_wait: DEFAULT_ACK_WAIT,
            live: false,
        }
    }

    /// Only events published from now on, without durable state (see
    /// [`SubscribeOptions::live`]).
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// Only the types matching `patterns` (`order.*`, `payment.refunded`, `*`); a pattern that
    /// matches no type is [`BusError::Invalid`].
    pub fn types<I, S>(mut self, patterns: I) -> Result<Self, BusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        if patterns.is_empty() {
            return Err(BusError::Invalid("empty type filter".into()));
        }
        for p in &patterns {
            validate_pattern(p)?;
        }
        self.filter = Filter::Types(patterns);
        Ok(self)
    }

    /// The dead letters of consumer group `of` instead of events.
    pub fn dead_letters(mut self, of: impl Into<String>) -> Self {
        self.filter = Filter::DeadLetters(of.into());
        self
    }

    /// Another [`SubscribeOptions::max_deliver`].
    pub fn max_deliver(mut self, max_deliver: u32) -> Self {
        self.max_deliver = max_deliver.max(1);
        self
    }

    /// Another [`SubscribeOptions::ack_wait`].
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Checks the group name (letters, digits, `_`, `-`: it names a durable consumer).
    pub fn validate(&self) -> Result<(), BusError> {
        let ok = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !ok(&self.group) {
            return Err(BusError::Invalid(format!(
                "consumer group `{}` must be letters, digits, `_` or `-`",
                self.group
            )));
        }
        if let Filter::DeadLetters(of) = &self.filter
            && !ok(of)
        {
            return Err(BusError::Invalid(format!(
                "dead-letter group `{of}` must be letters, digits, `_` or `-`"
            )));
        }
        Ok(())
    }
}

/// A message broker as the services see it. Shared as `Arc<dyn EventBus>`.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// `memory`, `nats` or `kafka`.
    fn kind(&self) -> &'static str;

    /// Publishes `envelope` on its type's subject and waits until the broker has it. A second
    /// publish of one `event_id` is dropped where the broker dedupes (memory, JetStream within
    /// its duplicate window); consumers dedupe the rest.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;

    /// Publishes `envelope` to the dead-letter subject of consumer group `group`
    /// (`<namespace>.deadletter.<group>`), with `reason` as a header.
    async fn dead_letter(
        &self,
        group: &str,
        envelope: &Envelope,
        reason: &str,
    ) -> Result<(), BusError>;

    /// Starts (or resumes) consuming as `options.group`.
    async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, BusError>;
}

/// Where a [`Subscription`] gets its deliveries from (one implementation per bus).
#[async_trait::async_trait]
pub trait DeliverySource: Send {
    /// The next delivery, waiting as long as it takes.
    async fn next(&mut self) -> Result<Delivery, BusError>;
}

/// Settles one delivery with the broker (one implementation per bus).
#[async_trait::async_trait]
pub trait Acknowledge: Send + Sync {
    /// Done: never deliver it to this group again.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Not now: deliver it again after `retry_after` (if deliveries remain).
    async fn nack(self: Box<Self>, retry_after: Duration) -> Result<(), BusError>;
    /// Never: stop delivering it, without success.
    async fn term(self: Box<Self>) -> Result<(), BusError>;
}

/// A stream of deliveries for one consumer group.
pub struct Subscription {
    source: Box<dyn DeliverySource>,
}

impl Subscription {
    /// Wraps a bus's delivery source.
    pub fn new(source: Box<dyn DeliverySource>) -> Self {
        Subscription { source }
    }

    /// The next delivery, waiting as long as it takes (wrap in a timeout to bound it).
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        self.source.next().await
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// One delivery of one event to one consumer group.
pub struct Delivery {
    /// The event.
    pub envelope: Envelope,
    /// 1 for the first delivery, 2 for the first redelivery, ….
    pub delivery_attempt: u32,
    /// The subject / topic it came on.
    pub subject: String,
    /// The dead-letter reason, for a delivery of a dead letter.
    pub dead_letter_reason: Option<String>,
    acker: Box<dyn Acknowledge>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("delivery_attempt", &self.delivery_attempt)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery settled through `acker`.
    pub fn new(
        envelope: Envelope,
        delivery_attempt: u32,
        subject: String,
        acker: Box<dyn Acknowledge>,
    ) -> Self {
        Delivery {
            envelope,
            delivery_attempt,
            subject,
            dead_letter_reason: None,
            acker,
        }
    }

    /// The event type (from the payload).
    pub fn event_type(&self) -> Option<EventType> {
        type_of(&self.envelope)
    }

    /// Done with it.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Deliver it again after `retry_after` (if [`SubscribeOptions::max_deliver`] allows).
    pub async fn nack(self, retry_after: Duration) -> Result<(), BusError> {
        self.acker.nack(retry_after).await
    }

    /// Give it up: no more deliveries.
    pub async fn term(self) -> Result<(), BusError> {
        self.acker.term().await
    }

    /// A consumer span for handling this delivery in `service`, a child of the producer's
    /// trace (the envelope's `traceparent`) while traces are exported.
    pub fn span(&self, service: &str) -> tracing::Span {
        consumer_span(&self.envelope, service)
    }
}

/// The span of handling `envelope` in `service` (`event.<type>`, kind consumer), a child of
/// the trace the envelope carries while traces are exported.
pub fn consumer_span(envelope: &Envelope, service: &str) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::info_span!(
        "event",
        otel.name = %format_args!("event {}", envelope.r#type),
        otel.kind = "consumer",
        messaging.message.id = %envelope.event_id,
        event.aggregate_id = %envelope.aggregate_id,
        event.sequence = envelope.sequence,
    );
    if let Some(trace) = crate::telemetry::trace::for_service(service) {
        let headers = trace_headers(envelope);
        let _ = span.set_parent(trace.incoming(&headers));
    }
    span
}

/// The envelope's trace context as `traceparent` / `tracestate` headers.
pub fn trace_headers(envelope: &Envelope) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("traceparent", &envelope.traceparent),
        ("tracestate", &envelope.tracestate),
    ] {
        if !value.is_empty()
            && let Ok(value) = http::HeaderValue::from_str(value)
        {
            headers.insert(name, value);
        }
    }
    headers
}

/// The current span's W3C trace context (`traceparent`, `tracestate`) while traces are
/// exported; empty strings otherwise.
pub fn current_trace_context() -> (String, String) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !crate::telemetry::trace::enabled() {
        return (String::new(), String::new());
    }
    let mut headers = http::HeaderMap::new();
    crate::telemetry::trace::inject(&tracing::Span::current().context(), &mut headers);
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    (get("traceparent"), get("tracestate"))
}

/// A new envelope for `payload` about `aggregate_id`, from `source`: a fresh UUID v7 id, the
/// type from the payload, `occurred_at` now and the current trace context. `sequence` is 0
/// until the outbox assigns it.
pub fn envelope(source: &str, aggregate_id: &str, payload: Payload) -> Envelope {
    let (traceparent, tracestate) = current_trace_context();
    Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        r#type: EventType::of(&payload).as_str().to_string(),
        source: source.to_string(),
        aggregate_id: aggregate_id.to_string(),
        sequence: 0,
        occurred_at_unix_ms: now_unix_ms(),
        traceparent,
        tracestate,
        payload: Some(payload),
    }
}

/// Milliseconds since the unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The bus `settings.url` names (see the module docs). A broker that cannot be reached is
/// [`BusError::Unavailable`].
pub async fn connect(settings: &EventsSettings) -> Result<Arc<dyn EventBus>, BusError> {
    let url = settings.url.as_str();
    if let Some(name) = url.strip_prefix("memory://") {
        let bus = if name.is_empty() {
            MemoryBus::shared()
        } else {
            MemoryBus::named(name)
        };
        return Ok(Arc::new(bus.with_namespace(&settings.namespace)));
    }
    if url.starts_with("nats://") {
        #[cfg(feature = "nats")]
        return Ok(Arc::new(NatsBus::connect(settings).await?));
        #[cfg(not(feature = "nats"))]
        return Err(not_built_in("nats"));
    }
    if url.starts_with("kafka://") {
        #[cfg(feature = "kafka")]
        return Ok(Arc::new(KafkaBus::connect(settings).await?));
        #[cfg(not(feature = "kafka"))]
        return Err(not_built_in("kafka"));
    }
    Err(BusError::Invalid(format!(
        "unsupported events.url `{}` (expected memory://, nats:// or kafka://)",
        crate::config::redact_url(url)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_subjects_come_from_the_payload() {
        let payload = Payload::StockChanged(StockChanged::default());
        assert_eq!(EventType::of(&payload), EventType::StockChanged);
        assert_eq!(EventType::StockChanged.as_str(), "product.stock_changed");
        assert_eq!(
            EventType::OrderPlaced.subject(),
            "tiktokmall.order.placed".to_string()
        );
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let e = envelope("order", "o-1", Payload::OrderPaid(OrderPaid::default()));
        assert_eq!(e.r#type, "order.paid");
        assert_eq!(e.event_id.len(), 36);
    }

    #[test]
    fn type_patterns_select_families_and_refuse_unknown_names() {
        let f = Filter::Types(vec!["order.*".into(), "payment.refunded".into()]);
        assert_eq!(
            f.event_types(),
            vec![
                EventType::OrderPlaced,
                EventType::OrderPaid,
                EventType::OrderCancelled,
                EventType::PaymentRefunded
            ]
        );
        assert!(!f.matches(EventType::PaymentCharged));
        assert_eq!(Filter::Types(vec!["*".into()]).event_types().len(), 7);
        assert!(SubscribeOptions::new("g").types(["orders.*"]).is_err());
        assert!(SubscribeOptions::new("g").types(["order"]).is_err());
        assert!(
            SubscribeOptions::new("g")
                .types(Vec::<String>::new())
                .is_err()
        );
        assert!(SubscribeOptions::new("bad group").validate().is_err());
    }
}
