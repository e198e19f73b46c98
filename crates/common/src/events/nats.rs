//! NATS JetStream (`nats://host:port`; works with a 2.9 server): one stream `<NAMESPACE>` over
//! `<namespace>.>`, created at connect when missing (file storage, `max_age` =
//! `events.retention`, a 2-minute duplicate window). Publishes carry `Nats-Msg-Id` = event id
//! (so a re-publish within the window is dropped by the server) and `traceparent`, and wait for
//! the stream's ack. Subscriptions are durable pull consumers named by the group, with explicit
//! ack, `ack_wait` and `max_deliver`.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt as _;
use prost::Message as _;

use super::{
    Acknowledge, BusError, Delivery, DeliverySource, Envelope, EventBus, Filter, SubscribeOptions,
    Subscription, type_of,
};
use crate::config::EventsSettings;

/// The JetStream duplicate window: a re-publish of one event id within it is dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A live (non-durable) consumer is removed by the server this long after its subscriber left.
pub const LIVE_INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);
/// The header naming a dead letter's reason.
pub const DEAD_LETTER_REASON_HEADER: &str = "Mall-Dead-Letter-Reason";

/// The JetStream [`EventBus`].
pub struct NatsBus {
    js: jetstream::Context,
    namespace: String,
    stream: String,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl NatsBus {
    /// Connects to `settings.url` and makes sure the stream exists.
    pub async fn connect(settings: &EventsSettings) -> Result<NatsBus, BusError> {
        let addrs = settings.url.trim_end_matches('/');
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .name("tiktokmall")
            .connect(addrs)
            .await
            .map_err(unavailable)?;
        let js = jetstream::new(client);
        let stream = settings.namespace.to_uppercase();
        js.get_or_create_stream(stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{}.>", settings.namespace)],
            max_age: settings.retention,
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        Ok(NatsBus {
            js,
            namespace: settings.namespace.clone(),
            stream,
        })
    }

    /// Deletes this bus's stream with everything in it (tests clean up with it).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.js
            .delete_stream(&self.stream)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn send(
        &self,
        subject: String,
        message_id: &str,
        envelope: &Envelope,
        extra: Option<(&str, &str)>,
    ) -> Result<(), BusError> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in [
            ("traceparent", &envelope.traceparent),
            ("tracestate", &envelope.tracestate),
        ] {
            if !value.is_empty() {
                headers.insert(name, value.as_str());
            }
        }
        if let Some((name, value)) = extra {
            headers.insert(name, value);
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(envelope.encode_to_vec().into())
            .headers(headers)
            .message_id(message_id);
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(unavailable)?;
        ack.await.map(|_| ()).map_err(|e| {
            if e.kind() == jetstream::context::PublishErrorKind::TimedOut {
                BusError::Timeout(e.to_string())
            } else {
                unavailable(e)
            }
        })
    }

    /// The consumer's filter subject (one subject: a 2.9 server has no `filter_subjects`).
    fn filter_subject(&self, filter: &Filter) -> String {
        match filter {
            Filter::DeadLetters(of) => format!("{}.deadletter.{of}", self.namespace),
            Filter::Types(patterns)
                if patterns.len() == 1 && patterns[0] != "*" && patterns[0] != ">" =>
            {
                format!("{}.{}", self.namespace, patterns[0])
            }
            Filter::Types(_) => format!("{}.>", self.namespace),
        }
    }
}

#[async_trait::async_trait]
impl EventBus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let event_type = type_of(envelope)
            .ok_or_else(|| BusError::Invalid("envelope without payload".into()))?;
        self.send(
            event_type.subject_in(&self.namespace),
            &envelope.event_id,
            envelope,
            None,
        )
        .await
    }

    async fn dead_letter(
        &self,
        group: &str,
        envelope: &Envelope,
        reason: &str,
    ) -> Result<(), BusError> {
        let subject = format!("{}.deadletter.{group}", self.namespace);
        let id = format!("deadletter.{group}.{}", envelope.event_id);
        self.send(
            subject,
            &id,
            envelope,
            Some((DEAD_LETTER_REASON_HEADER, reason)),
        )
        .await
    }

    async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, BusError> {
        options.validate()?;
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(unavailable)?;
        let config = consumer::pull::Config {
            durable_name: (!options.live).then(|| options.group.clone()),
            name: options.live.then(|| options.group.clone()),
            inactive_threshold: if options.live {
                LIVE_INACTIVE_THRESHOLD
            } else {
                Duration::ZERO
            },
            deliver_policy: if options.live {
                consumer::DeliverPolicy::New
            } else {
                consumer::DeliverPolicy::All
            },
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_deliver: i64::from(options.max_deliver),
            filter_subject: self.filter_subject(&options.filter),
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&options.group, config)
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(Subscription::new(Box::new(NatsSource {
            messages,
            filter: options.filter,
            prefix: format!("{}.", self.namespace),
        })))
    }
}

struct NatsSource {
    messages: consumer::pull::Stream,
    filter: Filter,
    prefix: String,
}

impl NatsSource {
    /// Whether a message on `subject` belongs to this subscription (the one filter subject of a
    /// 2.9 consumer may take in more).
    fn wanted(&self, subject: &str, envelope: &Envelope) -> bool {
        match &self.filter {
            Filter::DeadLetters(_) => true,
            Filter::Types(_) => {
                let is_event = subject
                    .strip_prefix(&self.prefix)
                    .is_some_and(|t| Some(t) == type_of(envelope).map(|t| t.as_str()));
                is_event && type_of(envelope).is_some_and(|t| self.filter.matches(t))
            }
        }
    }
}

#[async_trait::async_trait]
impl DeliverySource for NatsSource {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let message = match self.messages.next().await {
                None => return Err(BusError::Closed),
                Some(Err(e)) => return Err(unavailable(e)),
                Some(Ok(message)) => message,
            };
            let subject = message.subject.to_string();
            let envelope = match Envelope::decode(message.payload.as_ref()) {
                Ok(envelope) => envelope,
                Err(e) => {
                    tracing::warn!(subject, error = %e, "dropping a message that is not an envelope");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            if !self.wanted(&subject, &envelope) {
                let _ = message.ack().await;
                continue;
            }
            let attempt = message
                .info()
                .map(|info| u32::try_from(info.delivered).unwrap_or(1))
                .unwrap_or(1);
            let reason = message
                .headers
                .as_ref()
                .and_then(|h| h.get(DEAD_LETTER_REASON_HEADER))
                .map(|v| v.as_str().to_string());
            let mut delivery =
                Delivery::new(envelope, attempt, subject, Box::new(NatsAck(message)));
            delivery.dead_letter_reason = reason;
            return Ok(delivery);
        }
    }
}

struct NatsAck(jetstream::Message);

#[async_trait::async_trait]
impl Acknowledge for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack().await.map_err(unavailable)
    }

    async fn nack(self: Box<Self>, retry_after: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Nak(Some(retry_after)))
            .await
            .map_err(unavailable)
    }

    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Term).await.map_err(unavailable)
    }
}
