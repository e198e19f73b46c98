//! `loadgen floor overload`: goodput and admitted latency past the knee.
//!
//! The knee is found first: closed-loop shoppers at 1, 2, 4, … (up to `--max-shoppers`), each
//! level for `--step-secs`, until two levels in a row fail to grow goodput by 10% over the best
//! so far (one such level may be noise on a shared machine); the knee is the level that set the
//! best. Then 1×, 2×, 4× and 8× the knee run for `--secs` each.
//! Refused shoppers back off [`REFUSED_BACKOFF`](super::fleet::REFUSED_BACKOFF) (jittered).

use std::time::Duration;

use super::fleet::{FloorFleet, Outcome, Until, drive};
use super::{FloorOptions, ms, ratio};

/// One load level.
#[derive(Debug)]
pub struct Level {
    /// Concurrent shoppers.
    pub shoppers: usize,
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
    /// 1×, 2×, 4×, 8× the knee.
    pub levels: Vec<Level>,
}

/// A level "grows" goodput when it beats the best so far by this factor.
const GROWTH: f64 = 1.1;

/// Multiples of the knee measured.
pub const MULTIPLES: [usize; 4] = [1, 2, 4, 8];

impl OverloadReport {
    /// The highest goodput seen (search or levels).
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

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let peak = self.peak();
        let unloaded = ms(self.unloaded_p50());
        let mut out = String::from(
            "### Overload: knee search (AddItem + Checkout per iteration)\n\n\
             | shoppers | checkouts/s | p50 | p99 | shed | other failures |\n\
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
             | load | shoppers | goodput/s | vs peak | admitted p50 | admitted p99 | p99 vs unloaded p50 | \
             shed calls | shed/s | shed p50 | shed p99 | other failures |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            self.knee
        ));
        for (m, l) in MULTIPLES.iter().zip(&self.levels) {
            let o = &l.outcome;
            out.push_str(&format!(
                "| {m}× | {} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.1}× | {} | {:.0} | {:.2} ms | \
                 {:.2} ms | {} |\n",
                l.shoppers,
                o.goodput(),
                ratio(o.goodput(), peak),
                ms(o.admitted.at(0.5)),
                ms(o.admitted.at(0.99)),
                ratio(ms(o.admitted.at(0.99)), unloaded),
                o.shed.len(),
                o.shed.len() as f64 / o.elapsed.as_secs_f64().max(f64::EPSILON),
                ms(o.shed.at(0.5)),
                ms(o.shed.at(0.99)),
                o.failures_text()
            ));
        }
        if let Some(at8) = self.levels.get(3) {
            let o = &at8.outcome;
            let good = ratio(o.goodput(), peak);
            let tail = ratio(ms(o.admitted.at(0.99)), unloaded);
            out.push_str(&format!(
                "\nGoal at 8×: goodput ≥ 0.90 of peak — {} ({good:.3}); admitted p99 ≤ 10× the \
                 unloaded p50 — {} ({tail:.1}×).\n",
                if good >= 0.9 { "met" } else { "missed" },
                if tail <= 10.0 { "met" } else { "missed" },
            ));
        }
        out
    }
}

/// Runs the knee search and the multiples on a fleet already started.
pub async fn run(options: &FloorOptions, fleet: &mut FloorFleet) -> anyhow::Result<OverloadReport> {
    anyhow::ensure!(options.max_shoppers > 0, "--max-shoppers must be positive");
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
        search.push(Level { shoppers, outcome });
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
    let mut levels = Vec::new();
    for m in MULTIPLES {
        let shoppers = knee * m;
        let users = fleet.users(shoppers).await?;
        let outcome = drive(fleet, users, Until::Elapsed(options.secs)).await;
        eprintln!(
            "[floor overload] {m}× ({shoppers} shoppers): {:.0} checkouts/s, shed {}",
            outcome.goodput(),
            outcome.shed.len()
        );
        levels.push(Level { shoppers, outcome });
    }
    Ok(OverloadReport {
        search,
        knee,
        levels,
    })
}
