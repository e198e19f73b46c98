//! `events.*`: the event bus and the outbox relay (see [`crate::events`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure, parse_authority, redact_url};

/// Default of `events.url`: the in-process bus (one per process, shared by an embedded fleet).
pub const DEFAULT_EVENTS_URL: &str = "memory://";
/// Default of `events.namespace`: subjects and topics are `tiktokmall.<type>`, the JetStream
/// stream is `TIKTOKMALL`.
pub const DEFAULT_EVENTS_NAMESPACE: &str = "tiktokmall";
/// Default of `events.relay_interval`.
pub const DEFAULT_RELAY_INTERVAL: Duration = Duration::from_millis(250);
/// Default of `events.relay_batch`.
pub const DEFAULT_RELAY_BATCH: u32 = 200;
/// Default of `events.retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default of `events.lease_ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Default of `events.publish_timeout`.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `events.publish_attempts`.
pub const DEFAULT_PUBLISH_ATTEMPTS: u32 = 3;

/// `events.*`
#[derive(Clone, Serialize, Deserialize)]
pub struct EventsSettings {
    /// `memory://` (in-process; `memory://NAME` for a named in-process bus), `nats://host:port`
    /// (JetStream) or `kafka://host:port[,host:port…]`.
    pub url: String,
    /// First part of every subject / topic (`<namespace>.<type>`); the JetStream stream is its
    /// upper-case form. Change it only to keep several fleets (or tests) apart on one broker.
    pub namespace: String,
    /// How often the outbox relay looks for unsent events.
    #[serde(with = "super::duration")]
    pub relay_interval: Duration,
    /// At most this many events per relay round.
    pub relay_batch: u32,
    /// Sent events are deleted from the outbox after this long.
    #[serde(with = "super::duration")]
    pub retention: Duration,
    /// How long one relay instance holds the outbox (only the holder publishes); another takes
    /// over this long after the holder stopped renewing.
    #[serde(with = "super::duration")]
    pub lease_ttl: Duration,
    /// How long one publish may take before it counts as failed.
    #[serde(with = "super::duration")]
    pub publish_timeout: Duration,
    /// Attempts per event and relay round before the round ends (the next round tries again,
    /// after a backoff).
    pub publish_attempts: u32,
}

impl Default for EventsSettings {
    fn default() -> Self {
        EventsSettings {
            url: DEFAULT_EVENTS_URL.into(),
            namespace: DEFAULT_EVENTS_NAMESPACE.into(),
            relay_interval: DEFAULT_RELAY_INTERVAL,
            relay_batch: DEFAULT_RELAY_BATCH,
            retention: DEFAULT_RETENTION,
            lease_ttl: DEFAULT_LEASE_TTL,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            publish_attempts: DEFAULT_PUBLISH_ATTEMPTS,
        }
    }
}

impl EventsSettings {
    /// The defaults with another `url`.
    pub fn for_url(url: &str) -> Self {
        EventsSettings {
            url: url.to_string(),
            ..EventsSettings::default()
        }
    }
}

impl fmt::Debug for EventsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsSettings")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("relay_interval", &self.relay_interval)
            .field("relay_batch", &self.relay_batch)
            .field("retention", &self.retention)
            .field("lease_ttl", &self.lease_ttl)
            .field("publish_timeout", &self.publish_timeout)
            .field("publish_attempts", &self.publish_attempts)
            .finish()
    }
}

/// The `host:port` list of a `nats://` or `kafka://` URL, each checked.
fn broker_addresses(rest: &str) -> bool {
    let hosts = rest.trim_end_matches('/');
    !hosts.is_empty()
        && hosts.split(',').all(|addr| {
            let addr = addr.rsplit_once('@').map_or(addr, |(_, a)| a);
            parse_authority(addr).is_some()
        })
}

impl Validate for EventsSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        let url = self.url.as_str();
        let known = url.starts_with("memory://")
            || url.strip_prefix("nats://").is_some_and(broker_addresses)
            || url.strip_prefix("kafka://").is_some_and(broker_addresses);
        ensure(
            known,
            "events.url",
            format!(
                "`{}` is not memory://, nats://host:port or kafka://host:port[,host:port]",
                redact_url(url)
            ),
        )?;
        ensure(
            !self.namespace.is_empty()
                && self
                    .namespace
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "events.namespace",
            "must be non-empty letters, digits, `_` or `-` (it is part of subjects and topics)",
        )?;
        ensure(
            !self.relay_interval.is_zero(),
            "events.relay_interval",
            "must be positive",
        )?;
        ensure(
            (1..=10_000).contains(&self.relay_batch),
            "events.relay_batch",
            "must be 1 to 10000",
        )?;
        ensure(
            !self.retention.is_zero(),
            "events.retention",
            "must be positive",
        )?;
        ensure(
            self.lease_ttl >= Duration::from_millis(500),
            "events.lease_ttl",
            "must be at least 500ms",
        )?;
        ensure(
            !self.publish_timeout.is_zero() && self.publish_timeout < self.lease_ttl,
            "events.publish_timeout",
            "must be positive and shorter than events.lease_ttl",
        )?;
        ensure(
            self.publish_attempts >= 1,
            "events.publish_attempts",
            "must be at least 1",
        )
    }
}
