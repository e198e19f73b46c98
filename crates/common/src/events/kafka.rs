//! Kafka (`kafka://host:port[,host:port]`, vendored librdkafka): one topic per event type,
//! `<namespace>.<type>`, created at connect through the Admin API when missing
//! ([`PARTITIONS`] partitions, replication 1). The producer is idempotent (`acks=all`), keys
//! each record by aggregate id (one aggregate, one partition, in order) and sends `event_id`,
//! `traceparent` and `tracestate` as headers.
//!
//! Subscriptions are consumer groups (`<namespace>.<group>`) with manual commits. Kafka has no
//! per-message ack, so the subscription keeps each partition's delivered-but-unsettled records
//! and commits a partition's offset only past records that are settled; `nack`, `ack_wait` and
//! `max_deliver` are applied in the process (a crash redelivers from the last commit, with
//! `delivery_attempt` starting again at 1). Kafka does not dedupe a re-published record; the
//! subscription drops an `event_id` it has delivered within its last [`DEDUPE_WINDOW`] ones.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::{
    Acknowledge, BusError, Delivery, DeliverySource, Envelope, EventBus, EventType, Filter,
    SubscribeOptions, Subscription, type_of,
};
use crate::config::EventsSettings;

/// Partitions of each topic the bus creates.
pub const PARTITIONS: i32 = 3;
/// Event ids a subscription remembers to drop re-published duplicates.
pub const DEDUPE_WINDOW: usize = 10_000;
/// The header naming a dead letter's reason.
pub const DEAD_LETTER_REASON_HEADER: &str = "dead_letter_reason";
/// How long an Admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka [`EventBus`].
pub struct KafkaBus {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    namespace: String,
    publish_timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl KafkaBus {
    /// Connects to the brokers of `settings.url` and creates the event topics when missing.
    pub async fn connect(settings: &EventsSettings) -> Result<KafkaBus, BusError> {
        let brokers = settings
            .url
            .trim_start_matches("kafka://")
            .trim_end_matches('/')
            .to_string();
        let timeout_ms = settings.publish_timeout.as_millis().to_string();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout_ms)
            .create()
            .map_err(unavailable)?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(unavailable)?;
        let bus = KafkaBus {
            producer,
            admin,
            brokers,
            namespace: settings.namespace.clone(),
            publish_timeout: settings.publish_timeout,
        };
        let topics: Vec<String> = EventType::ALL
            .iter()
            .map(|t| t.subject_in(&bus.namespace))
            .collect();
        bus.ensure_topics(&topics).await?;
        Ok(bus)
    }

    /// Creates `topics` when missing.
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results = tokio::time::timeout(ADMIN_TIMEOUT, self.admin.create_topics(&new, &options))
            .await
            .map_err(|_| BusError::Timeout("creating Kafka topics".into()))?
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Unavailable(format!(
                        "creating topic {topic}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn dead_letter_topic(&self, group: &str) -> String {
        format!("{}.deadletter.{group}", self.namespace)
    }

    async fn send(
        &self,
        topic: &str,
        envelope: &Envelope,
        reason: Option<&str>,
    ) -> Result<(), BusError> {
        let payload = envelope.encode_to_vec();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "event_id",
            value: Some(envelope.event_id.as_str()),
        });
        for (key, value) in [
            ("traceparent", envelope.traceparent.as_str()),
            ("tracestate", envelope.tracestate.as_str()),
            (DEAD_LETTER_REASON_HEADER, reason.unwrap_or_default()),
        ] {
            if !value.is_empty() {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        let record = FutureRecord::to(topic)
            .key(envelope.aggregate_id.as_str())
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, self.publish_timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| unavailable(e))
    }
}

#[async_trait::async_trait]
impl EventBus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let event_type = type_of(envelope)
            .ok_or_else(|| BusError::Invalid("envelope without payload".into()))?;
        self.send(&event_type.subject_in(&self.namespace), envelope, None)
            .await
    }

    async fn dead_letter(
        &self,
        group: &str,
        envelope: &Envelope,
        reason: &str,
    ) -> Result<(), BusError> {
        let topic = self.dead_letter_topic(group);
        self.ensure_topics(std::slice::from_ref(&topic)).await?;
        self.send(&topic, envelope, Some(reason)).await
    }

    async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, BusError> {
        options.validate()?;
        let topics: Vec<String> = match &options.filter {
            Filter::DeadLetters(of) => {
                let topic = self.dead_letter_topic(of);
                self.ensure_topics(std::slice::from_ref(&topic)).await?;
                vec![topic]
            }
            Filter::Types(_) => options
                .filter
                .event_types()
                .iter()
                .map(|t| t.subject_in(&self.namespace))
                .collect(),
        };
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}.{}", self.namespace, options.group))
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                if options.live { "latest" } else { "earliest" },
            )
            .create()
            .map_err(unavailable)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(unavailable)?;
        Ok(Subscription::new(Box::new(KafkaSource {
            consumer: Arc::new(consumer),
            pending: Arc::default(),
            options,
        })))
    }
}

/// A delivered record not yet settled.
struct Slot {
    envelope: Envelope,
    subject: String,
    reason: Option<String>,
    attempts: u32,
    due: Instant,
    settled: bool,
}

#[derive(Default)]
struct Pending {
    partitions: HashMap<(String, i32), BTreeMap<i64, Slot>>,
    seen: VecDeque<String>,
    seen_ids: HashSet<String>,
}

impl Pending {
    /// Whether `event_id` was delivered recently; remembers it.
    fn seen_before(&mut self, event_id: &str) -> bool {
        if self.seen_ids.contains(event_id) {
            return true;
        }
        self.seen_ids.insert(event_id.to_string());
        self.seen.push_back(event_id.to_string());
        if self.seen.len() > DEDUPE_WINDOW
            && let Some(old) = self.seen.pop_front()
        {
            self.seen_ids.remove(&old);
        }
        false
    }

    /// Drops the settled records at the head of each partition: the offsets to commit.
    fn committable(&mut self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), slots) in &mut self.partitions {
            let mut last = None;
            while let Some(entry) = slots.first_entry() {
                if !entry.get().settled {
                    break;
                }
                last = Some(*entry.key());
                entry.remove();
            }
            if let Some(offset) = last {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1));
            }
        }
        list
    }
}

/// Commits the settled prefix of every partition (synchronously, on a blocking thread, so a
/// subscription dropped right after an ack has its progress stored).
async fn commit(consumer: &Arc<StreamConsumer>, pending: &Arc<Mutex<Pending>>) {
    let list = pending.lock().committable();
    if list.count() == 0 {
        return;
    }
    let consumer = consumer.clone();
    let done = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "committing Kafka offsets failed; records will come again");
    }
}

struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    pending: Arc<Mutex<Pending>>,
    options: SubscribeOptions,
}

type SlotKey = (String, i32, i64);

impl KafkaSource {
    /// A record due again (nacked, or not settled within `ack_wait`), with its attempt; else
    /// when to look again. Records out of deliveries are given up.
    fn due(&self) -> (Option<(SlotKey, Delivery)>, Option<Instant>) {
        let now = Instant::now();
        let mut pending = self.pending.lock();
        let mut wake: Option<Instant> = None;
        for ((topic, partition), slots) in &mut pending.partitions {
            for (offset, slot) in slots.iter_mut().filter(|(_, s)| !s.settled) {
                if slot.due > now {
                    wake = Some(wake.map_or(slot.due, |w| w.min(slot.due)));
                    continue;
                }
                if slot.attempts >= self.options.max_deliver {
                    slot.settled = true;
                    continue;
                }
                slot.attempts += 1;
                slot.due = now + self.options.ack_wait;
                let key = (topic.clone(), *partition, *offset);
                let delivery = self.delivery(&key, slot);
                return (Some((key, delivery)), wake);
            }
        }
        (None, wake)
    }

    fn delivery(&self, key: &SlotKey, slot: &Slot) -> Delivery {
        let mut delivery = Delivery::new(
            slot.envelope.clone(),
            slot.attempts,
            slot.subject.clone(),
            Box::new(KafkaAck {
                consumer: self.consumer.clone(),
                pending: self.pending.clone(),
                key: key.clone(),
            }),
        );
        delivery.dead_letter_reason = slot.reason.clone();
        delivery
    }

    /// Takes in one received record: a delivery, or `None` when it is a duplicate or not an
    /// envelope (settled at once).
    fn receive(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Option<Delivery> {
        let key: SlotKey = (
            message.topic().to_string(),
            message.partition(),
            message.offset(),
        );
        let decoded = Envelope::decode(message.payload().unwrap_or_default());
        let reason = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == DEAD_LETTER_REASON_HEADER)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        let mut pending = self.pending.lock();
        let fresh = match &decoded {
            Ok(envelope) => !pending.seen_before(&dedupe_key(envelope, reason.is_some())),
            Err(e) => {
                tracing::warn!(topic = key.0, error = %e, "dropping a record that is not an envelope");
                false
            }
        };
        let slot = Slot {
            envelope: decoded.unwrap_or_default(),
            subject: key.0.clone(),
            reason,
            attempts: 1,
            due: Instant::now() + self.options.ack_wait,
            settled: !fresh,
        };
        let delivery = fresh.then(|| self.delivery(&key, &slot));
        pending
            .partitions
            .entry((key.0.clone(), key.1))
            .or_default()
            .insert(key.2, slot);
        delivery
    }
}

fn dedupe_key(envelope: &Envelope, dead_letter: bool) -> String {
    if dead_letter {
        format!("deadletter/{}", envelope.event_id)
    } else {
        envelope.event_id.clone()
    }
}

#[async_trait::async_trait]
impl DeliverySource for KafkaSource {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let (due, wake) = self.due();
            if let Some((_, delivery)) = due {
                return Ok(delivery);
            }
            let wait = wake.map_or(Duration::from_millis(500), |at| {
                at.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500))
            });
            let received = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => {
                    commit(&self.consumer, &self.pending).await;
                    continue;
                }
                Ok(Err(e)) => return Err(unavailable(e)),
                Ok(Ok(message)) => self.receive(&message),
            };
            match received {
                Some(delivery) => return Ok(delivery),
                None => commit(&self.consumer, &self.pending).await,
            }
        }
    }
}

struct KafkaAck {
    consumer: Arc<StreamConsumer>,
    pending: Arc<Mutex<Pending>>,
    key: SlotKey,
}

impl KafkaAck {
    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        let (topic, partition, offset) = &self.key;
        let mut pending = self.pending.lock();
        if let Some(slot) = pending
            .partitions
            .get_mut(&(topic.clone(), *partition))
            .and_then(|slots| slots.get_mut(offset))
        {
            f(slot);
        }
    }
}

#[async_trait::async_trait]
impl Acknowledge for KafkaAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.with_slot(|slot| slot.settled = true);
        commit(&self.consumer, &self.pending).await;
        Ok(())
    }

    async fn nack(self: Box<Self>, retry_after: Duration) -> Result<(), BusError> {
        self.with_slot(|slot| slot.due = Instant::now() + retry_after);
        Ok(())
    }

    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.with_slot(|slot| slot.settled = true);
        commit(&self.consumer, &self.pending).await;
        Ok(())
    }
}
