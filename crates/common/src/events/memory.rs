//! The in-process bus: a bounded log of published envelopes with JetStream's consumer model
//! (durable groups with a cursor, ack / nack / ack-wait redelivery, `max_deliver`), so code
//! and tests behave the same on it as on a broker. Dedupes by `event_id` over the log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Acknowledge, BusError, Delivery, DeliverySource, Envelope, EventBus, Filter, SubscribeOptions,
    Subscription, type_of,
};

/// Envelopes the in-process log keeps (older ones are dropped, with their dedupe ids).
pub const MEMORY_LOG_CAPACITY: usize = 100_000;

/// The in-process [`EventBus`]. Clones share one log.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
    namespace: String,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Offset of `log[0]`.
    base: u64,
    log: VecDeque<Entry>,
    ids: HashSet<String>,
    groups: HashMap<String, Group>,
}

struct Entry {
    subject: String,
    envelope: Envelope,
    dead_letter: Option<(String, String)>,
}

struct Group {
    filter: Filter,
    max_deliver: u32,
    ack_wait: Duration,
    /// Next offset never delivered to the group.
    cursor: u64,
    /// Delivered, not settled: offset → (redeliver at, deliveries so far).
    pending: BTreeMap<u64, (Instant, u32)>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        MemoryBus::new()
    }
}

impl MemoryBus {
    /// A bus of its own.
    pub fn new() -> Self {
        MemoryBus {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
            namespace: crate::config::DEFAULT_EVENTS_NAMESPACE.to_string(),
        }
    }

    /// The process-wide bus (`memory://`): every service of an embedded fleet gets this one.
    pub fn shared() -> Self {
        static SHARED: OnceLock<MemoryBus> = OnceLock::new();
        SHARED.get_or_init(MemoryBus::new).clone()
    }

    /// The process-wide bus called `name` (`memory://NAME`), made on first use.
    pub fn named(name: &str) -> Self {
        static NAMED: OnceLock<Mutex<HashMap<String, MemoryBus>>> = OnceLock::new();
        NAMED
            .get_or_init(Default::default)
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The same log, with subjects under `namespace`.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// How many envelopes the log holds (tests).
    pub fn len(&self) -> usize {
        self.shared.state.lock().log.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&self, entry: Entry) {
        let mut state = self.shared.state.lock();
        if !state.ids.insert(dedupe_key(&entry)) {
            return;
        }
        state.log.push_back(entry);
        while state.log.len() > MEMORY_LOG_CAPACITY {
            if let Some(old) = state.log.pop_front() {
                let key = dedupe_key(&old);
                state.ids.remove(&key);
                state.base += 1;
            }
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

fn dedupe_key(entry: &Entry) -> String {
    match &entry.dead_letter {
        None => entry.envelope.event_id.clone(),
        Some((group, _)) => format!("{group}/{}", entry.envelope.event_id),
    }
}

#[async_trait::async_trait]
impl EventBus for MemoryBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let event_type = type_of(envelope)
            .ok_or_else(|| BusError::Invalid("envelope without payload".into()))?;
        self.append(Entry {
            subject: event_type.subject_in(&self.namespace),
            envelope: envelope.clone(),
            dead_letter: None,
        });
        Ok(())
    }

    async fn dead_letter(
        &self,
        group: &str,
        envelope: &Envelope,
        reason: &str,
    ) -> Result<(), BusError> {
        self.append(Entry {
            subject: format!("{}.deadletter.{group}", self.namespace),
            envelope: envelope.clone(),
            dead_letter: Some((group.to_string(), reason.to_string())),
        });
        Ok(())
    }

    async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, BusError> {
        options.validate()?;
        let mut state = self.shared.state.lock();
        let start = if options.live {
            state.base + state.log.len() as u64
        } else {
            state.base
        };
        if options.live {
            state.groups.remove(&options.group);
        }
        state
            .groups
            .entry(options.group.clone())
            .or_insert_with(|| Group {
                filter: options.filter.clone(),
                max_deliver: options.max_deliver,
                ack_wait: options.ack_wait,
                cursor: start,
                pending: BTreeMap::new(),
            });
        Ok(Subscription::new(Box::new(MemorySource {
            shared: self.shared.clone(),
            group: options.group,
        })))
    }
}

struct MemorySource {
    shared: Arc<Shared>,
    group: String,
}

impl MemorySource {
    /// The next delivery if one is ready, else when to look again (`None`: on a change).
    fn poll(&self) -> Result<Delivery, Option<Instant>> {
        let mut state = self.shared.state.lock();
        let state = &mut *state;
        let Some(group) = state.groups.get_mut(&self.group) else {
            return Err(None);
        };
        let now = Instant::now();
        group.cursor = group.cursor.max(state.base);
        // Redeliveries first: those due, oldest offset first; those out of deliveries dropped.
        let max_deliver = group.max_deliver;
        group
            .pending
            .retain(|offset, (at, n)| *offset >= state.base && !(*n >= max_deliver && *at <= now));
        let due = group
            .pending
            .iter()
            .find(|(_, (at, n))| *at <= now && *n < group.max_deliver)
            .map(|(offset, (_, n))| (*offset, *n));
        let (offset, attempt) = match due {
            Some((offset, n)) => (offset, n + 1),
            None => {
                let next = (group.cursor..state.base + state.log.len() as u64).find(|offset| {
                    let entry = &state.log[(offset - state.base) as usize];
                    selects(&group.filter, entry)
                });
                match next {
                    Some(offset) => {
                        group.cursor = offset + 1;
                        (offset, 1)
                    }
                    None => {
                        group.cursor = state.base + state.log.len() as u64;
                        let wake = group
                            .pending
                            .values()
                            .filter(|(_, n)| *n < group.max_deliver)
                            .map(|(at, _)| *at)
                            .min();
                        return Err(wake);
                    }
                }
            }
        };
        group
            .pending
            .insert(offset, (now + group.ack_wait, attempt));
        let entry = &state.log[(offset - state.base) as usize];
        let mut delivery = Delivery::new(
            entry.envelope.clone(),
            attempt,
            entry.subject.clone(),
            Box::new(MemoryAck {
                shared: self.shared.clone(),
                group: self.group.clone(),
                offset,
            }),
        );
        delivery.dead_letter_reason = entry.dead_letter.as_ref().map(|(_, r)| r.clone());
        Ok(delivery)
    }
}

fn selects(filter: &Filter, entry: &Entry) -> bool {
    match (filter, &entry.dead_letter) {
        (Filter::DeadLetters(of), Some((group, _))) => of == group,
        (Filter::Types(_), None) => type_of(&entry.envelope).is_some_and(|t| filter.matches(t)),
        _ => false,
    }
}

#[async_trait::async_trait]
impl DeliverySource for MemorySource {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.poll() {
                Ok(delivery) => return Ok(delivery),
                Err(Some(wake)) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(wake) => {}
                    }
                }
                Err(None) => changed.await,
            }
        }
    }
}

struct MemoryAck {
    shared: Arc<Shared>,
    group: String,
    offset: u64,
}

impl MemoryAck {
    fn settle(&self, retry_after: Option<Duration>) {
        let mut state = self.shared.state.lock();
        if let Some(group) = state.groups.get_mut(&self.group) {
            match retry_after {
                None => {
                    group.pending.remove(&self.offset);
                }
                Some(after) => {
                    if let Some((at, _)) = group.pending.get_mut(&self.offset) {
                        *at = Instant::now() + after;
                    }
                }
            }
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Acknowledge for MemoryAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.settle(None);
        Ok(())
    }

    async fn nack(self: Box<Self>, retry_after: Duration) -> Result<(), BusError> {
        self.settle(Some(retry_after));
        Ok(())
    }

    async fn term(self: Box<Self>) -> Result<(), BusError> {
        self.settle(None);
        Ok(())
    }
}
