//! `loadgen floor overload`: goodput and admitted latency past the knee, for clients that honour
//! the retry pushback and for clients that come straight back, with the limiter and without.
//!
//! The knee is found first (limiter on, the options' client mode): closed-loop shoppers at 1,
//! 2, 4, … (up to `--max-shoppers`), each level for `--step-secs`, until two levels in a row
//! fail to grow goodput by 10% over the best so far (one such level may be noise on a shared
//! machine); the knee is the level that set the best. Then 1×, 2×, 4× and 8× the knee run for
//! `--secs` each, in both client modes ([`Retry::Pushback`], [`Retry::AtOnce`]); then the same
//! on a second fleet with `server.adaptive_concurrency = false` (the limit fixed at
//! `server.max_concurrent_rpcs`, 1000 by default: no limiter in effect) — the baseline the
//! limiter must never do worse than.

use std::time::Duration;

use super::fleet::{FloorFleet, Outcome, Retry, Until, drive};
use super::{FloorOptions, ms, ratio};

/// One load level.
#[derive(Debug)]
pub struct Level {
    /// Concurrent shoppers.
    pub shoppers: usize,
    /// The multiple of the knee (0 in the knee search).
    pub multiple: usize,
    /// Whether the adaptive limiter was on.
    pub limiter: bool,
    /// How refused shoppers came back.
    pub retry: Retry,
    /// What they saw.
    pub outcome: Outcome,
}

/// The overload benchmark's results.
#[derive(Debug)]
pub struct OverloadReport {
    /// The knee search, in order.
    pub search: Vec<Level>,
    /// The knee (shoppers).
    pub knee: usize,
    /// 1×, 2×, 4×, 8× the knee for each client mode, limiter on, then off.
    pub levels: Vec<Level>,
}

/// A level "grows" goodput when it beats the best so far by this factor.
const GROWTH: f64 = 1.1;

/// Multiples of the knee measured.
pub const MULTIPLES: [usize; 4] = [1, 2, 4, 8];

/// The client modes every multiple runs with.
pub const MODES: [Retry; 2] = [Retry::Pushback, Retry::AtOnce];

/// What the server settings of the baseline fleet change.
const LIMITER_OFF: [(&str, &str); 1] = [("MALL__SERVER__ADAPTIVE_CONCURRENCY", "false")];

impl OverloadReport {
    /// The highest goodput seen (search or levels, either fleet).
    pub fn peak(&self) -> f64 {
        self.search
            .iter()
            .chain(&self.levels)
            .map(|l| l.outcome.goodput())
            .fold(0.0, f64::max)
    }

    /// The median of admitted checkouts with one shopper (the first search level).
    pub fn unloaded_p50(&self) -> Duration {
        self.search
            .first()
            .map(|l| l.outcome.admitted.at(0.5))
            .unwrap_or_default()
    }

    /// The level of `multiple`, `limiter` and `retry`.
    pub fn level(&self, multiple: usize, limiter: bool, retry: Retry) -> Option<&Level> {
        self.levels
            .iter()
            .find(|l| l.multiple == multiple && l.limiter == limiter && l.retry == retry)
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let peak = self.peak();
        let unloaded = ms(self.unloaded_p50());
        let mut out = String::from(
            "### Overload: knee search (AddItem + Checkout per iteration)\n\n\
             | shoppers | checkouts/s | p50 | p99 | refused | other failures |\n\
             |---:|---:|---:|---:|---:|---|\n",
        );
        for l in &self.search {
            let o = &l.outcome;
            out.push_str(&format!(
                "| {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} |\n",
                l.shoppers,
                o.goodput(),
                ms(o.admitted.at(0.5)),
                ms(o.admitted.at(0.99)),
                o.shed.len(),
                o.failures_text()
            ));
        }
        out.push_str(&format!(
            "\nKnee: {} shoppers; peak goodput {peak:.0} checkouts/s; unloaded p50 {unloaded:.2} ms.\n\n\
             | limiter | clients retry | load | shoppers | goodput/s | vs peak | admitted p50 | \
             admitted p99 | p99 vs unloaded p50 | refused/s | refused at once p99 | \
             refused after waiting (p50) | other failures |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
            self.knee
        ));
        for l in &self.levels {
            let o = &l.outcome;
            let waited = if o.shed_waited.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} ({:.0} ms)",
                    o.shed_waited.len(),
                    ms(o.shed_waited.at(0.5))
                )
            };
            out.push_str(&format!(
                "| {} | {} | {}× | {} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.1}× | {:.0} | \
                 {:.2} ms | {waited} | {} |\n",
                if l.limiter { "on" } else { "off" },
                l.retry.label(),
                l.multiple,
                l.shoppers,
                o.goodput(),
                ratio(o.goodput(), peak),
                ms(o.admitted.at(0.5)),
                ms(o.admitted.at(0.99)),
                ratio(ms(o.admitted.at(0.99)), unloaded),
                o.shed.len() as f64 / o.elapsed.as_secs_f64().max(f64::EPSILON),
                ms(o.shed_at_once.at(0.99)),
                o.failures_text()
            ));
        }
        out.push_str(&self.goals());
        out
    }

    /// The goals at 8×, for each client mode.
    fn goals(&self) -> String {
        let (peak, unloaded) = (self.peak(), ms(self.unloaded_p50()));
        let met = |ok: bool| if ok { "met" } else { "missed" };
        let mut out = String::new();
        for retry in MODES {
            let Some(on) = self.level(8, true, retry) else {
                continue;
            };
            let o = &on.outcome;
            let good = ratio(o.goodput(), peak);
            let tail = ratio(ms(o.admitted.at(0.99)), unloaded);
            let refusal = if o.shed_at_once.is_empty() {
                "none was refused at once".to_string()
            } else {
                let p99 = ms(o.shed_at_once.at(0.99));
                format!("{} ({p99:.2} ms)", met(p99 <= 2.0))
            };
            out.push_str(&format!(
                "\nGoals at 8×, clients retrying {}: goodput ≥ 0.90 of peak — {} ({good:.3}); \
                 admitted p99 ≤ 10× the unloaded p50 — {} ({tail:.1}×); refusals at once \
                 answered in ≤ 2 ms p99 — {refusal}",
                retry.label(),
                met(good >= 0.9),
                met(tail <= 10.0),
            ));
            let worse: Vec<String> = MULTIPLES
                .iter()
                .filter_map(|&m| {
                    let on = self.level(m, true, retry)?.outcome.goodput();
                    let off = self.level(m, false, retry)?.outcome.goodput();
                    (on < off).then(|| format!("{m}× ({on:.0} vs {off:.0}/s)"))
                })
                .collect();
            if self.levels.iter().any(|l| !l.limiter) {
                out.push_str(&format!(
                    "; never below the limiter-off goodput — {}",
                    if worse.is_empty() {
                        "met".to_string()
                    } else {
                        format!("missed at {}", worse.join(", "))
                    }
                ));
            }
            out.push_str(".\n");
        }
        out
    }
}

/// Runs the knee search and the multiples on `fleet` (limiter on), then the multiples on a
/// fleet of its own with the limiter off.
pub async fn run(options: &FloorOptions, fleet: &mut FloorFleet) -> anyhow::Result<OverloadReport> {
    anyhow::ensure!(options.max_shoppers > 0, "--max-shoppers must be positive");
    let (search, knee) = find_knee(options, fleet).await?;
    let mut levels = multiples(options, fleet, knee, true).await?;
    let prefix = format!("{}off_", options.db_prefix);
    let mut off = FloorFleet::start_with_env(
        &options.exe,
        &options.mysql_url,
        &options.redis_url,
        &prefix,
        options.real_hashing,
        &LIMITER_OFF,
    )
    .await?;
    let baseline = multiples(options, &mut off, knee, false).await;
    off.stop().await;
    levels.extend(baseline?);
    fleet.retry = options.retry;
    Ok(OverloadReport {
        search,
        knee,
        levels,
    })
}

/// The knee search (see the module docs).
async fn find_knee(
    options: &FloorOptions,
    fleet: &mut FloorFleet,
) -> anyhow::Result<(Vec<Level>, usize)> {
    let mut search: Vec<Level> = Vec::new();
    let mut best = 0.0f64;
    let mut knee = 1;
    let mut shoppers = 1;
    let mut flat = 0;
    while shoppers <= options.max_shoppers {
        let users = fleet.users(shoppers).await?;
        let outcome = drive(fleet, users, Until::Elapsed(options.step_secs)).await;
        let goodput = outcome.goodput();
        eprintln!(
            "[floor overload] {shoppers} shoppers: {goodput:.0} checkouts/s, p99 {:.1} ms",
            ms(outcome.admitted.at(0.99))
        );
        search.push(Level {
            shoppers,
            multiple: 0,
            limiter: true,
            retry: fleet.retry,
            outcome,
        });
        if goodput >= best * GROWTH {
            best = goodput;
            knee = shoppers;
            flat = 0;
        } else {
            // One level that does not grow may be noise on a shared machine; two in a row are
            // the knee.
            flat += 1;
            if flat == 2 {
                break;
            }
        }
        shoppers *= 2;
    }
    Ok((search, knee))
}

/// Every multiple of `knee` in every client mode on `fleet`.
async fn multiples(
    options: &FloorOptions,
    fleet: &mut FloorFleet,
    knee: usize,
    limiter: bool,
) -> anyhow::Result<Vec<Level>> {
    let mut levels = Vec::new();
    for retry in MODES {
        fleet.retry = retry;
        for m in MULTIPLES {
            let shoppers = knee * m;
            let users = fleet.users(shoppers).await?;
            let outcome = drive(fleet, users, Until::Elapsed(options.secs)).await;
            eprintln!(
                "[floor overload] limiter {}, retry {}, {m}× ({shoppers} shoppers): \
                 {:.0} checkouts/s, refused {}",
                if limiter { "on" } else { "off" },
                retry.label(),
                outcome.goodput(),
                outcome.shed.len()
            );
            levels.push(Level {
                shoppers,
                multiple: m,
                limiter,
                retry,
                outcome,
            });
        }
    }
    Ok(levels)
}
