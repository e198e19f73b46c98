//! The fleet's stored state as the checker reads it, and the invariants over it — pure, so each
//! rule is tested on rows made up in memory.
//!
//! The rules (issue 11):
//! 1. a successful payment (`paid`, `partially_refunded`) belongs to a PAID or COMPLETED order,
//!    unless it is fully refunded;
//! 2. a CANCELLED order has no live (`reserved`) stock reservation (reservation id = order id);
//! 3. for every product whose initial stock is known: stock + units in live reservations
//!    (held for PENDING orders, sold to PAID ones) = initial stock;
//! 4. no saga is still `running` longer than the recovery window;
//! 5. a PAID or COMPLETED order has a payment of exactly its total, by the same user (and the
//!    transaction the order records is that payment's).
//!
//! Rules 1, 2 and 4 describe where the fleet must end up, not every instant: a checkout in
//! flight has charged before it marks the order paid, a cancelled order's stock is released
//! after the cancel. A finding on a row younger than the recovery window is therefore
//! *settling* ([`Finding::settling`]): the checker waits for it, and only what is left when the
//! window is over counts. Rules 3 and 5 hold at every instant (one transaction writes stock
//! and reservation; the payment commits before the order is marked paid), so they never settle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// `orders.status`: the API's `ORDER_STATUS_*` numbers.
pub mod order_status {
    /// Placed, not paid.
    pub const PENDING: i16 = 1;
    /// Paid.
    pub const PAID: i16 = 2;
    /// Cancelled (stock released).
    pub const CANCELLED: i16 = 3;
    /// Completed after payment.
    pub const COMPLETED: i16 = 4;
    /// Refunded after payment.
    pub const REFUNDED: i16 = 5;

    /// The status's name.
    pub fn name(status: i16) -> &'static str {
        match status {
            PENDING => "PENDING",
            PAID => "PAID",
            CANCELLED => "CANCELLED",
            COMPLETED => "COMPLETED",
            REFUNDED => "REFUNDED",
            _ => "UNKNOWN",
        }
    }
}

/// A product row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `products.id`.
    pub id: i64,
    /// `products.name`.
    pub name: String,
    /// `products.stock`.
    pub stock: i64,
}

/// A stock reservation with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// `stock_reservations.reservation_id` (checkout uses the order id).
    pub id: String,
    /// `reserved` (live) or `released`.
    pub live: bool,
    /// `(product_id, quantity)` lines.
    pub items: Vec<(i64, i64)>,
}

/// An order row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// `orders.id`.
    pub id: String,
    /// `orders.user_id`.
    pub user_id: i64,
    /// `orders.status` (see [`order_status`]).
    pub status: i16,
    /// `orders.total_cents`.
    pub total_cents: i64,
    /// `orders.transaction_id`.
    pub transaction_id: Option<String>,
    /// `orders.updated_at` (unix seconds).
    pub updated_at: i64,
}

/// A payment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// `payments.transaction_id`.
    pub transaction_id: String,
    /// `payments.order_id`.
    pub order_id: String,
    /// `payments.user_id`.
    pub user_id: i64,
    /// `payments.amount_cents`.
    pub amount_cents: i64,
    /// `payments.refunded_cents`.
    pub refunded_cents: i64,
    /// `paid`, `partially_refunded` or `refunded`.
    pub status: String,
    /// `payments.updated_at` (unix seconds).
    pub updated_at: i64,
}

impl Payment {
    fn successful(&self) -> bool {
        matches!(self.status.as_str(), "paid" | "partially_refunded")
    }

    fn fully_refunded(&self) -> bool {
        self.refunded_cents == self.amount_cents
    }
}

/// A checkout saga row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// `sagas.id`.
    pub id: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// `sagas.step`.
    pub step: String,
    /// `sagas.order_id`.
    pub order_id: Option<String>,
    /// `sagas.created_at` (unix seconds).
    pub created_at: i64,
}

impl Saga {
    fn open(&self) -> bool {
        self.state == "running"
    }
}

/// Everything the rules read, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The database server's clock when the snapshot was taken (unix seconds).
    pub taken_at: i64,
    /// Every product (deleted ones too: their stock still counts).
    pub products: Vec<Product>,
    /// Every stock reservation.
    pub reservations: Vec<Reservation>,
    /// Every order.
    pub orders: Vec<Order>,
    /// Every payment.
    pub payments: Vec<Payment>,
    /// Refunds: how many and how many cents.
    pub refunds: (u64, i64),
    /// Every checkout saga.
    pub sagas: Vec<Saga>,
}

/// Initial stock per product id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialStock {
    /// Where the numbers come from (`demo catalog`, a snapshot file).
    pub source: String,
    /// Product id → units it started with.
    pub units: BTreeMap<i64, i64>,
}

impl InitialStock {
    /// Initial stock as `snapshot` shows it: stock + units in live reservations, per product
    /// (what `loadgen check --snapshot` records before a load).
    pub fn of(snapshot: &Snapshot, source: &str) -> InitialStock {
        let held = live_units(snapshot);
        InitialStock {
            source: source.to_string(),
            units: snapshot
                .products
                .iter()
                .map(|p| (p.id, p.stock + held.get(&p.id).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// The demo catalog's stock, `(name, stock)` in seeding order: a fleet that started from it
    /// has product `i + 1` named `names[i]`. A product whose name does not match is not
    /// checked (the catalog did not come from the seed).
    pub fn demo(snapshot: &Snapshot, demo: &[(String, i64)]) -> InitialStock {
        let by_id: HashMap<i64, &Product> = snapshot.products.iter().map(|p| (p.id, p)).collect();
        let units = demo
            .iter()
            .enumerate()
            .filter_map(|(i, (name, stock))| {
                let id = i64::try_from(i).ok()? + 1;
                (by_id.get(&id)?.name == *name).then_some((id, *stock))
            })
            .collect();
        InitialStock {
            source: "demo catalog".into(),
            units,
        }
    }
}

fn live_units(snapshot: &Snapshot) -> HashMap<i64, i64> {
    let mut held: HashMap<i64, i64> = HashMap::new();
    for r in snapshot.reservations.iter().filter(|r| r.live) {
        for (product, quantity) in &r.items {
            *held.entry(*product).or_default() += quantity;
        }
    }
    held
}

/// Which invariant a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Rule {
    /// 1: a successful payment whose order is not PAID/COMPLETED.
    PaymentWithoutPaidOrder,
    /// 2: a CANCELLED order whose stock is still reserved.
    CancelledOrderHoldsStock,
    /// 3: stock + live reservations differ from the initial stock.
    StockDoesNotAddUp,
    /// 4: a saga open longer than the recovery window.
    SagaLeftOpen,
    /// 5: a PAID/COMPLETED order without a payment of its total.
    PaidOrderWithoutPayment,
}

impl Rule {
    /// The rule's number in the issue.
    pub fn number(self) -> u8 {
        match self {
            Rule::PaymentWithoutPaidOrder => 1,
            Rule::CancelledOrderHoldsStock => 2,
            Rule::StockDoesNotAddUp => 3,
            Rule::SagaLeftOpen => 4,
            Rule::PaidOrderWithoutPayment => 5,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Rule::PaymentWithoutPaidOrder => "successful payment without a paid order",
            Rule::CancelledOrderHoldsStock => "cancelled order still holds stock",
            Rule::StockDoesNotAddUp => "stock + live reservations != initial stock",
            Rule::SagaLeftOpen => "saga left open",
            Rule::PaidOrderWithoutPayment => "paid order without a payment of its total",
        };
        write!(f, "rule {} ({text})", self.number())
    }
}

/// One broken invariant, with the ids involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// What is wrong, naming the rows.
    pub detail: String,
    /// Whether the fleet may still fix it by itself (a row younger than the recovery window).
    pub settling: bool,
}

/// What the rules found in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Broken invariants (settling or not).
    pub findings: Vec<Finding>,
    /// Open sagas still within the recovery window.
    pub open_sagas_in_window: usize,
    /// Products whose initial stock is unknown (not checked by rule 3).
    pub unchecked_products: Vec<i64>,
}

impl Findings {
    /// Whether anything may still change by itself.
    pub fn settling(&self) -> bool {
        self.open_sagas_in_window > 0 || self.findings.iter().any(|f| f.settling)
    }
}

/// Applies every rule to `snapshot`; rows updated within `window_secs` of the snapshot (sagas
/// created within it) are settling.
pub fn evaluate(snapshot: &Snapshot, initial: &InitialStock, window_secs: i64) -> Findings {
    let mut rules = Rules::new(snapshot, window_secs);
    rules.payments_belong_to_paid_orders();
    rules.cancelled_orders_hold_no_stock();
    rules.stock_adds_up(initial);
    rules.no_saga_left_open();
    rules.paid_orders_have_their_payment();
    rules.out
}

/// The snapshot indexed for the rules, and what they found so far.
struct Rules<'a> {
    snapshot: &'a Snapshot,
    window_secs: i64,
    orders: HashMap<&'a str, &'a Order>,
    payments: HashMap<&'a str, &'a Payment>,
    reservations: HashMap<&'a str, &'a Reservation>,
    open_saga_of: HashMap<&'a str, &'a Saga>,
    out: Findings,
}

impl<'a> Rules<'a> {
    fn new(snapshot: &'a Snapshot, window_secs: i64) -> Self {
        Rules {
            snapshot,
            window_secs,
            orders: snapshot.orders.iter().map(|o| (o.id.as_str(), o)).collect(),
            payments: snapshot
                .payments
                .iter()
                .map(|p| (p.order_id.as_str(), p))
                .collect(),
            reservations: snapshot
                .reservations
                .iter()
                .map(|r| (r.id.as_str(), r))
                .collect(),
            open_saga_of: snapshot
                .sagas
                .iter()
                .filter(|s| s.open())
                .filter_map(|s| Some((s.order_id.as_deref()?, s)))
                .collect(),
            out: Findings::default(),
        }
    }

    /// Changed within the recovery window of the snapshot.
    fn young(&self, at: i64) -> bool {
        self.snapshot.taken_at - at < self.window_secs
    }

    fn find(&mut self, rule: Rule, settling: bool, detail: String) {
        self.out.findings.push(Finding {
            rule,
            detail,
            settling,
        });
    }

    /// Every successful payment belongs to a PAID/COMPLETED order or is fully refunded.
    fn payments_belong_to_paid_orders(&mut self) {
        for p in self.snapshot.payments.iter().filter(|p| p.successful()) {
            if p.fully_refunded() {
                continue;
            }
            let order = self.orders.get(p.order_id.as_str());
            let status = order.map(|o| o.status);
            if matches!(status, Some(order_status::PAID | order_status::COMPLETED)) {
                continue;
            }
            let last_change = order.map_or(p.updated_at, |o| o.updated_at.max(p.updated_at));
            let settling = self.young(last_change)
                || self
                    .open_saga_of
                    .get(p.order_id.as_str())
                    .is_some_and(|s| self.young(s.created_at));
            let order_text = match order {
                Some(o) => format!("order {} is {}", o.id, order_status::name(o.status)),
                None => format!("order {} does not exist", p.order_id),
            };
            self.find(
                Rule::PaymentWithoutPaidOrder,
                settling,
                format!(
                    "payment {} ({}, {} cents, {} refunded, user {}): {order_text}",
                    p.transaction_id, p.status, p.amount_cents, p.refunded_cents, p.user_id
                ),
            );
        }
    }

    /// Every CANCELLED order has no live reservation.
    fn cancelled_orders_hold_no_stock(&mut self) {
        for o in self
            .snapshot
            .orders
            .iter()
            .filter(|o| o.status == order_status::CANCELLED)
        {
            if let Some(r) = self.reservations.get(o.id.as_str()).filter(|r| r.live) {
                let units: i64 = r.items.iter().map(|(_, q)| q).sum();
                self.find(
                    Rule::CancelledOrderHoldsStock,
                    self.young(o.updated_at),
                    format!(
                        "order {} (user {}) is CANCELLED but reservation {} still holds {units} units",
                        o.id, o.user_id, r.id
                    ),
                );
            }
        }
    }

    /// stock + live reservations = initial stock.
    fn stock_adds_up(&mut self, initial: &InitialStock) {
        let held = live_units(self.snapshot);
        for p in &self.snapshot.products {
            let Some(&start) = initial.units.get(&p.id) else {
                self.out.unchecked_products.push(p.id);
                continue;
            };
            let live = held.get(&p.id).copied().unwrap_or(0);
            if p.stock + live != start {
                self.find(
                    Rule::StockDoesNotAddUp,
                    false,
                    format!(
                        "product {} ({}): stock {} + {live} reserved = {}, initial {start} ({})",
                        p.id,
                        p.name,
                        p.stock,
                        p.stock + live,
                        initial.source
                    ),
                );
            }
        }
    }

    /// No saga open past the recovery window.
    fn no_saga_left_open(&mut self) {
        for s in self.snapshot.sagas.iter().filter(|s| s.open()) {
            if self.young(s.created_at) {
                self.out.open_sagas_in_window += 1;
            } else {
                self.find(
                    Rule::SagaLeftOpen,
                    false,
                    format!(
                        "saga {} (order {}) still running at step {}, {} s after it started",
                        s.id,
                        s.order_id.as_deref().unwrap_or("none"),
                        s.step,
                        self.snapshot.taken_at - s.created_at
                    ),
                );
            }
        }
    }

    /// Every PAID/COMPLETED order has a payment of exactly its total, by its user.
    fn paid_orders_have_their_payment(&mut self) {
        for o in self
            .snapshot
            .orders
            .iter()
            .filter(|o| matches!(o.status, order_status::PAID | order_status::COMPLETED))
        {
            let status = order_status::name(o.status);
            let problem = match self.payments.get(o.id.as_str()) {
                None => Some("no payment".to_string()),
                Some(p) if p.amount_cents != o.total_cents || p.user_id != o.user_id => {
                    Some(format!(
                        "payment {} is {} cents by user {}",
                        p.transaction_id, p.amount_cents, p.user_id
                    ))
                }
                Some(p)
                    if o.transaction_id
                        .as_deref()
                        .is_some_and(|t| t != p.transaction_id) =>
                {
                    Some(format!(
                        "it records transaction {} but its payment is {}",
                        o.transaction_id.as_deref().unwrap_or_default(),
                        p.transaction_id
                    ))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                self.find(
                    Rule::PaidOrderWithoutPayment,
                    false,
                    format!(
                        "order {} ({status}, {} cents, user {}): {problem}",
                        o.id, o.total_cents, o.user_id
                    ),
                );
            }
        }
    }
}

/// Counts of what the snapshot holds, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Orders per status name.
    pub orders: BTreeMap<String, u64>,
    /// Payments per status.
    pub payments: BTreeMap<String, u64>,
    /// Cents paid, over every payment.
    pub paid_cents: i64,
    /// Refunds.
    pub refunds: u64,
    /// Cents refunded.
    pub refunded_cents: i64,
    /// Sagas per state.
    pub sagas: BTreeMap<String, u64>,
    /// Reservations live / released.
    pub reservations: BTreeMap<String, u64>,
    /// Products, and units in stock over all of them.
    pub products: u64,
    /// Units in stock.
    pub stock_units: i64,
}

impl Counts {
    /// The counts of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Counts {
        let mut c = Counts::default();
        for o in &snapshot.orders {
            *c.orders
                .entry(order_status::name(o.status).to_string())
                .or_default() += 1;
        }
        for p in &snapshot.payments {
            *c.payments.entry(p.status.clone()).or_default() += 1;
            c.paid_cents += p.amount_cents;
        }
        (c.refunds, c.refunded_cents) = snapshot.refunds;
        for s in &snapshot.sagas {
            *c.sagas.entry(s.state.clone()).or_default() += 1;
        }
        for r in &snapshot.reservations {
            let state = if r.live { "reserved" } else { "released" };
            *c.reservations.entry(state.to_string()).or_default() += 1;
        }
        c.products = snapshot.products.len() as u64;
        c.stock_units = snapshot.products.iter().map(|p| p.stock).sum();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::order_status::*;
    use super::*;

    const NOW: i64 = 1_000_000;
    const WINDOW: i64 = 120;
    const OLD: i64 = NOW - 600;

    fn order(id: &str, status: i16, total: i64) -> Order {
        Order {
            id: id.into(),
            user_id: 7,
            status,
            total_cents: total,
            transaction_id: (status == PAID).then(|| format!("tx-{id}")),
            updated_at: OLD,
        }
    }

    fn payment(order_id: &str, amount: i64, refunded: i64) -> Payment {
        let status = match refunded {
            0 => "paid",
            r if r == amount => "refunded",
            _ => "partially_refunded",
        };
        Payment {
            transaction_id: format!("tx-{order_id}"),
            order_id: order_id.into(),
            user_id: 7,
            amount_cents: amount,
            refunded_cents: refunded,
            status: status.into(),
            updated_at: OLD,
        }
    }

    fn reservation(id: &str, live: bool, items: &[(i64, i64)]) -> Reservation {
        Reservation {
            id: id.into(),
            live,
            items: items.to_vec(),
        }
    }

    fn saga(id: &str, state: &str, order_id: &str, created_at: i64) -> Saga {
        Saga {
            id: id.into(),
            state: state.into(),
            step: "charge".into(),
            order_id: Some(order_id.into()),
            created_at,
        }
    }

    /// A consistent fleet: product 1 started with 10 (2 sold to o1, 1 held for pending o2,
    /// 3 released by cancelled o3), product 2 with 5 (untouched).
    fn consistent() -> (Snapshot, InitialStock) {
        let snapshot = Snapshot {
            taken_at: NOW,
            products: vec![
                Product {
                    id: 1,
                    name: "Notebook".into(),
                    stock: 7,
                },
                Product {
                    id: 2,
                    name: "Gel Pen Set".into(),
                    stock: 5,
                },
            ],
            reservations: vec![
                reservation("o1", true, &[(1, 2)]),
                reservation("o2", true, &[(1, 1)]),
                reservation("o3", false, &[(1, 3)]),
            ],
            orders: vec![
                order("o1", PAID, 2_598),
                order("o2", PENDING, 1_299),
                order("o3", CANCELLED, 3_897),
            ],
            payments: vec![payment("o1", 2_598, 0), payment("o3", 3_897, 3_897)],
            refunds: (1, 3_897),
            sagas: vec![
                saga("s1", "succeeded", "o1", OLD),
                saga("s3", "failed", "o3", OLD),
            ],
        };
        let demo = [("Notebook".to_string(), 10), ("Gel Pen Set".to_string(), 5)];
        let initial = InitialStock::demo(&snapshot, &demo);
        (snapshot, initial)
    }

    fn rules(findings: &Findings) -> Vec<(Rule, bool)> {
        findings
            .findings
            .iter()
            .map(|f| (f.rule, f.settling))
            .collect()
    }

    #[test]
    fn a_consistent_fleet_has_no_findings() {
        let (snapshot, initial) = consistent();
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert!(findings.findings.is_empty(), "{:?}", findings.findings);
        assert!(!findings.settling());
        assert!(findings.unchecked_products.is_empty());
        let counts = Counts::of(&snapshot);
        assert_eq!(counts.orders["PAID"], 1);
        assert_eq!(counts.payments["refunded"], 1);
        assert_eq!(counts.reservations["reserved"], 2);
        assert_eq!((counts.refunds, counts.stock_units), (1, 12));
    }

    #[test]
    fn a_payment_on_a_cancelled_order_breaks_rule_1_unless_fully_refunded() {
        let (mut snapshot, initial) = consistent();
        snapshot.payments[1] = payment("o3", 3_897, 1_000);
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::PaymentWithoutPaidOrder, false)]);
        assert!(
            findings.findings[0].detail.contains("tx-o3"),
            "{findings:?}"
        );
        assert!(
            findings.findings[0].detail.contains("CANCELLED"),
            "{findings:?}"
        );
        // A payment for an order that does not exist.
        snapshot.payments[1] = payment("ghost", 500, 0);
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::PaymentWithoutPaidOrder, false)]);
        assert!(findings.findings[0].detail.contains("does not exist"));
    }

    #[test]
    fn a_payment_on_an_order_still_being_paid_is_settling() {
        let (mut snapshot, initial) = consistent();
        // o2's saga charged a moment ago and has not marked the order paid yet.
        snapshot.payments.push(Payment {
            updated_at: NOW - 1,
            ..payment("o2", 1_299, 0)
        });
        snapshot.sagas.push(saga("s2", "running", "o2", NOW - 2));
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::PaymentWithoutPaidOrder, true)]);
        assert_eq!(findings.open_sagas_in_window, 1);
        assert!(findings.settling());
        // The same, long after: a violation, and so is the saga.
        snapshot.taken_at = NOW + 10 * WINDOW;
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(
            rules(&findings),
            [
                (Rule::PaymentWithoutPaidOrder, false),
                (Rule::SagaLeftOpen, false)
            ]
        );
        assert!(!findings.settling());
    }

    #[test]
    fn a_cancelled_order_with_live_stock_breaks_rule_2() {
        let (mut snapshot, initial) = consistent();
        snapshot.reservations[2].live = true;
        // Its 3 units are still held, so the stock adds up: only rule 2 fires.
        snapshot.products[0].stock = 4;
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::CancelledOrderHoldsStock, false)]);
        assert!(findings.findings[0].detail.contains("o3"));
        snapshot.orders[2].updated_at = NOW - 5;
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::CancelledOrderHoldsStock, true)]);
    }

    #[test]
    fn stock_that_does_not_add_up_breaks_rule_3() {
        let (mut snapshot, initial) = consistent();
        snapshot.products[1].stock = 4; // a unit vanished
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::StockDoesNotAddUp, false)]);
        assert!(findings.findings[0].detail.contains("product 2"));
        // A released reservation whose units never came back.
        let (mut snapshot, initial) = consistent();
        snapshot.products[0].stock = 4;
        assert_eq!(
            rules(&evaluate(&snapshot, &initial, WINDOW)),
            [(Rule::StockDoesNotAddUp, false)]
        );
    }

    #[test]
    fn initial_stock_from_a_snapshot_or_from_the_demo_catalog() {
        let (snapshot, _) = consistent();
        let taken = InitialStock::of(&snapshot, "before.json");
        assert_eq!(taken.units, BTreeMap::from([(1, 10), (2, 5)]));
        // A product the demo does not name (another catalog) is not checked.
        let mut other = snapshot.clone();
        other.products[1].name = "Desk Lamp".into();
        other.products[1].stock = 1;
        let demo = [("Notebook".to_string(), 10), ("Gel Pen Set".to_string(), 5)];
        let initial = InitialStock::demo(&other, &demo);
        let findings = evaluate(&other, &initial, WINDOW);
        assert!(findings.findings.is_empty(), "{findings:?}");
        assert_eq!(findings.unchecked_products, [2]);
    }

    #[test]
    fn a_saga_open_past_the_window_breaks_rule_4() {
        let (mut snapshot, initial) = consistent();
        snapshot
            .sagas
            .push(saga("s9", "running", "o2", NOW - WINDOW));
        let findings = evaluate(&snapshot, &initial, WINDOW);
        assert_eq!(rules(&findings), [(Rule::SagaLeftOpen, false)]);
        assert!(findings.findings[0].detail.contains("s9"));
        assert!(findings.findings[0].detail.contains("120 s"));
    }

    #[test]
    fn a_paid_order_needs_a_payment_of_its_total_by_its_user() {
        for broken in ["none", "amount", "user", "transaction"] {
            let (mut snapshot, initial) = consistent();
            match broken {
                "none" => {
                    snapshot.payments.remove(0);
                }
                "amount" => snapshot.payments[0].amount_cents = 2_597,
                "user" => snapshot.payments[0].user_id = 8,
                _ => snapshot.orders[0].transaction_id = Some("tx-other".into()),
            }
            let findings = evaluate(&snapshot, &initial, WINDOW);
            assert_eq!(
                rules(&findings),
                [(Rule::PaidOrderWithoutPayment, false)],
                "{broken}"
            );
            assert!(findings.findings[0].detail.contains("o1"), "{broken}");
        }
    }
}
