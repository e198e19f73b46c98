//! `client.*`: how a service calls the others (deadlines, balancing, retries, breakers).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure};

/// Default TCP connect timeout of outgoing calls (`client.connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default deadline of an outgoing call that sets none (`client.request_timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default HTTP/2 keep-alive ping interval of outgoing connections, idle or not
/// (`client.keepalive_interval`): dead peers are noticed without waiting for a call.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// First ejection of an instance that failed to connect or answered `UNAVAILABLE`
/// (`client.balance.eject_base`); doubles per consecutive failure, jittered.
pub const DEFAULT_EJECT_BASE: Duration = Duration::from_secs(1);
/// Longest ejection (`client.balance.eject_max`).
pub const DEFAULT_EJECT_MAX: Duration = Duration::from_secs(30);
/// Most attempts of one idempotent call, each on another instance (`client.retry.max_attempts`).
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 3;
/// Retries may add this much load on top of the calls, in percent
/// (`client.retry.budget_percent`).
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
/// Retries always allowed per second whatever the traffic, so a quiet client can fail over
/// (`client.retry.min_per_sec`).
pub const DEFAULT_RETRY_MIN_PER_SEC: u32 = 10;
/// Unused retry allowance kept for bursts, in seconds of `min_per_sec`
/// (`client.retry.burst_secs`).
pub const DEFAULT_RETRY_BURST_SECS: u32 = 10;
/// Window over which a target's failure rate is measured (`client.breaker.window`).
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// Fewest calls in the window before the breaker may open (`client.breaker.min_calls`).
pub const DEFAULT_BREAKER_MIN_CALLS: u32 = 20;
/// Failure rate, in percent, that opens the breaker (`client.breaker.failure_percent`).
pub const DEFAULT_BREAKER_FAILURE_PERCENT: u32 = 50;
/// How long an open breaker fails calls fast before probing (`client.breaker.open_for`).
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);
/// Probe calls let through half-open; that many successes close the breaker
/// (`client.breaker.half_open_probes`).
pub const DEFAULT_BREAKER_HALF_OPEN_PROBES: u32 = 3;

/// `client.*`: how this service calls the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSettings {
    /// TCP connect timeout.
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    /// Deadline of a call that sets none, sent as `grpc-timeout`.
    #[serde(with = "super::duration")]
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval of outgoing connections.
    #[serde(with = "super::duration")]
    pub keepalive_interval: Duration,
    /// Per-method deadlines replacing `request_timeout`: target service → method → duration,
    /// e.g. `payment: { charge: 10s }` or `MALL__CLIENT__METHOD_TIMEOUT__PAYMENT__CHARGE=10s`
    /// (method names match case-insensitively).
    #[serde(default, with = "super::duration::map")]
    pub method_timeout: BTreeMap<String, BTreeMap<String, Duration>>,
    /// Instance selection and ejection.
    #[serde(default)]
    pub balance: BalanceSettings,
    /// Retries of idempotent calls.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Circuit breaking per target service.
    #[serde(default)]
    pub breaker: BreakerSettings,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            method_timeout: BTreeMap::new(),
            balance: BalanceSettings::default(),
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// `client.balance.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BalanceSettings {
    /// First ejection of a failing instance.
    #[serde(with = "super::duration")]
    pub eject_base: Duration,
    /// Longest ejection.
    #[serde(with = "super::duration")]
    pub eject_max: Duration,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        BalanceSettings {
            eject_base: DEFAULT_EJECT_BASE,
            eject_max: DEFAULT_EJECT_MAX,
        }
    }
}

/// `client.retry.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Most attempts of one idempotent call (1 turns retries off).
    pub max_attempts: u32,
    /// Extra load retries may add, in percent of the calls.
    pub budget_percent: u32,
    /// Retries allowed per second regardless of traffic.
    pub min_per_sec: u32,
    /// Seconds of `min_per_sec` that may be saved up for a burst.
    pub burst_secs: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: DEFAULT_RETRY_MAX_ATTEMPTS,
            budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_per_sec: DEFAULT_RETRY_MIN_PER_SEC,
            burst_secs: DEFAULT_RETRY_BURST_SECS,
        }
    }
}

/// `client.breaker.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerSettings {
    /// Window of the failure rate.
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Fewest calls in the window before the breaker may open.
    pub min_calls: u32,
    /// Failure rate (percent of calls ending `UNAVAILABLE` or `DEADLINE_EXCEEDED`) that opens it.
    pub failure_percent: u32,
    /// How long it stays open.
    #[serde(with = "super::duration")]
    pub open_for: Duration,
    /// Probes let through half-open; that many successes close it, one failure reopens it.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: DEFAULT_BREAKER_WINDOW,
            min_calls: DEFAULT_BREAKER_MIN_CALLS,
            failure_percent: DEFAULT_BREAKER_FAILURE_PERCENT,
            open_for: DEFAULT_BREAKER_OPEN_FOR,
            half_open_probes: DEFAULT_BREAKER_HALF_OPEN_PROBES,
        }
    }
}

impl Validate for ClientSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        ensure(
            !self.request_timeout.is_zero()
                && !self.connect_timeout.is_zero()
                && !self.keepalive_interval.is_zero(),
            "client",
            "connect_timeout, request_timeout and keepalive_interval must be positive",
        )?;
        ensure(
            !self
                .method_timeout
                .values()
                .flat_map(|m| m.values())
                .any(Duration::is_zero),
            "client.method_timeout",
            "every per-method deadline must be positive",
        )?;
        let b = &self.balance;
        ensure(
            !b.eject_base.is_zero() && b.eject_max >= b.eject_base,
            "client.balance",
            "eject_base must be positive and at most eject_max",
        )?;
        ensure(
            self.retry.max_attempts > 0,
            "client.retry.max_attempts",
            "must be at least 1 (1 turns retries off)",
        )?;
        ensure(
            self.retry.budget_percent <= 100,
            "client.retry.budget_percent",
            "must be between 0 and 100",
        )?;
        let k = &self.breaker;
        ensure(
            !k.window.is_zero()
                && !k.open_for.is_zero()
                && k.min_calls > 0
                && k.half_open_probes > 0,
            "client.breaker",
            "window, open_for, min_calls and half_open_probes must be positive",
        )?;
        ensure(
            (1..=100).contains(&k.failure_percent),
            "client.breaker.failure_percent",
            "must be between 1 and 100",
        )
    }
}
