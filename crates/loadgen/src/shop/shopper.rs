//! One operation of one shopper: the calls it makes, what it remembers between operations
//! (whether it added something since its last checkout, a checkout whose outcome it still has
//! to learn), and how it reacts to answers as a careful client would.

use std::time::Duration;

use mall_proto::cart::v1 as cart;
use mall_proto::checkout::v1 as checkout;
use mall_proto::common::v1::{Address, CartItem, CreditCardInfo};
use mall_proto::product::v1 as product;
use mall_proto::user::v1 as user;
use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;
use tonic::{Code, Status};

use super::api::{Api, Bearer, bearer, connect_failed};
use super::mix::Op;
use super::stats::{Origin, Outcome, Recorder};
use super::timeline::{CheckoutEnd, is_refusal};

/// A card the payment service approves (a test Visa number).
pub const GOOD_CARD: &str = "4111111111111111";
/// Checkout attempts under one idempotency key within one operation (backing off).
const CHECKOUT_ATTEMPTS: u32 = 5;
/// The first pause before retrying a checkout (doubling, jittered ±50%), when the answer
/// carries no retry pushback.
const CHECKOUT_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between checkout attempts.
const CHECKOUT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Retrying at once (`--retry-at-once`), a checkout starts no attempt this long after its
/// first: about as long as the backing-off retries' pauses can last (100 + 200 + 400 + 800 ms,
/// up to 1.5× each), so the two modes give up on a checkout after similar times.
pub const CHECKOUT_RETRY_WINDOW: Duration = Duration::from_secs(3);
/// Products per page when browsing.
const PAGE_SIZE: i64 = 20;

/// A registered user and what its shopper remembers.
#[derive(Debug, Clone)]
pub struct User {
    /// The user id.
    pub id: u64,
    /// For logging in again.
    pub username: String,
    /// For logging in again.
    pub password: String,
    /// The email checkouts give.
    pub email: String,
    /// The current access token.
    pub auth: Bearer,
    /// Added something since the last checkout.
    pub pending: bool,
    /// A checkout key whose outcome is not known yet (every attempt ended UNAVAILABLE, ABORTED,
    /// ...): the next checkout retries it before starting a new one.
    pub unsettled_key: Option<String>,
    /// Checkouts started, for fresh keys.
    pub checkouts: u64,
}

/// What shoppers browse: product ids, category names and words of product names.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every listed product id.
    pub ids: Vec<u64>,
    /// Every category seen.
    pub categories: Vec<String>,
    /// Words of product names, lower case.
    pub words: Vec<String>,
}

impl Catalog {
    /// The catalog made of `products`.
    pub fn of(products: &[product::Product]) -> Catalog {
        let mut catalog = Catalog::default();
        for p in products {
            catalog.ids.push(p.id);
            catalog.categories.extend(p.categories.iter().cloned());
            catalog.words.extend(
                p.name
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.len() >= 3)
                    .map(str::to_lowercase),
            );
        }
        for list in [&mut catalog.categories, &mut catalog.words] {
            list.sort();
            list.dedup();
        }
        catalog.ids.sort_unstable();
        catalog.ids.dedup();
        catalog
    }

    fn pages(&self) -> i32 {
        let n = i64::try_from(self.ids.len()).unwrap_or(i64::MAX);
        i32::try_from(((n + PAGE_SIZE - 1) / PAGE_SIZE).max(1)).unwrap_or(1)
    }
}

fn pick<'a, T>(rng: &mut impl Rng, list: &'a [T]) -> Option<&'a T> {
    if list.is_empty() {
        None
    } else {
        list.get(rng.random_range(0..list.len()))
    }
}

/// One shopper's view of the run: the fleet, the catalog, and where to record calls.
pub struct Session<'a, R> {
    /// The fleet.
    pub api: &'a Api,
    /// What to browse.
    pub catalog: &'a Catalog,
    /// This run's id (part of every idempotency key).
    pub run_id: &'a str,
    /// Where calls are recorded.
    pub recorder: &'a Mutex<Recorder>,
    /// The shopper's choices.
    pub rng: &'a mut R,
    /// No checkout retry starts after this.
    pub hard_stop: Instant,
    /// Retry undecided or refused checkouts at once (a naive client), not after a backoff or
    /// the server's pushback.
    pub retry_at_once: bool,
}

impl<R: Rng> Session<'_, R> {
    fn record<T>(&self, op: Op, latency: Duration, answer: &Result<T, Status>) {
        self.recorder.lock().record_result(op, latency, answer);
    }

    /// Performs `op` as `user`.
    pub async fn perform(&mut self, op: Op, user: &mut User) {
        match op {
            Op::ListProducts => self.list_products().await,
            Op::SearchProducts => self.search_products().await,
            Op::GetProduct => self.get_product().await,
            Op::AddItem => self.add_item(user).await,
            Op::GetCart => self.get_cart(user).await,
            // Checking out an empty cart is a refusal a real shopper never asks for: one who
            // wants to check out with nothing added puts something in the cart first.
            Op::Checkout if user.pending || user.unsettled_key.is_some() => {
                self.checkout(user).await;
            }
            Op::Checkout => self.add_item(user).await,
            Op::CheckoutEndToEnd | Op::EmptyCart | Op::Login | Op::Register => {}
        }
    }

    async fn list_products(&mut self) {
        let page = self.rng.random_range(1..=self.catalog.pages());
        // A third of the browsing is of the whole catalog, the rest of one category.
        let category_name = if self.rng.random_range(0..3) == 0 {
            String::new()
        } else {
            pick(self.rng, &self.catalog.categories)
                .cloned()
                .unwrap_or_default()
        };
        let req = product::ListProductsReq {
            page,
            page_size: PAGE_SIZE,
            category_name,
        };
        let started = Instant::now();
        let answer = self.api.list_products(req).await;
        self.record(Op::ListProducts, started.elapsed(), &answer);
    }

    async fn search_products(&mut self) {
        let query = pick(self.rng, &self.catalog.words)
            .cloned()
            .unwrap_or_else(|| "mug".to_string());
        let req = product::SearchProductsReq {
            query,
            page: 1,
            page_size: PAGE_SIZE,
        };
        let started = Instant::now();
        let answer = self.api.search_products(req).await;
        self.record(Op::SearchProducts, started.elapsed(), &answer);
    }

    async fn get_product(&mut self) {
        let id = pick(self.rng, &self.catalog.ids).copied().unwrap_or(1);
        let started = Instant::now();
        let answer = self.api.get_product(product::GetProductReq { id }).await;
        self.record(Op::GetProduct, started.elapsed(), &answer);
    }

    async fn add_item(&mut self, user: &mut User) {
        let product_id = pick(self.rng, &self.catalog.ids).copied().unwrap_or(1);
        let quantity = self.rng.random_range(1..=3);
        let req = cart::AddItemReq {
            user_id: user.id,
            item: Some(CartItem {
                product_id,
                quantity,
            }),
        };
        let started = Instant::now();
        let answer = self.api.add_item(req, &user.auth).await;
        self.record(Op::AddItem, started.elapsed(), &answer);
        match answer {
            Ok(_) => user.pending = true,
            Err(status) => self.after_refusal(user, &status).await,
        }
    }

    async fn get_cart(&mut self, user: &mut User) {
        let req = cart::GetCartReq { user_id: user.id };
        let started = Instant::now();
        let answer = self.api.get_cart(req, &user.auth).await;
        self.record(Op::GetCart, started.elapsed(), &answer);
        if let Err(status) = answer {
            self.after_refusal(user, &status).await;
        }
    }

    async fn empty_cart(&mut self, user: &mut User) {
        let req = cart::EmptyCartReq { user_id: user.id };
        let started = Instant::now();
        let answer = self.api.empty_cart(req, &user.auth).await;
        self.record(Op::EmptyCart, started.elapsed(), &answer);
    }

    /// One checkout: the same idempotency key on every attempt, retried while the outcome is
    /// not known (UNAVAILABLE, ABORTED "in progress", DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, a
    /// broken connection): by default after the server's retry pushback (jittered ±20%) or a
    /// doubling backoff, at most [`CHECKOUT_ATTEMPTS`] times; with `retry_at_once` at once,
    /// for [`CHECKOUT_RETRY_WINDOW`]. Never past `hard_stop`.
    async fn checkout(&mut self, user: &mut User) {
        let key = match user.unsettled_key.take() {
            Some(key) => key,
            None => {
                user.checkouts += 1;
                format!("lg-{}-{}-{}", self.run_id, user.id, user.checkouts)
            }
        };
        let started = Instant::now();
        let mut backoff = CHECKOUT_BACKOFF;
        let mut attempt = 0;
        let mut never_connected = true;
        let last = loop {
            attempt += 1;
            let attempt_started = Instant::now();
            let answer = self
                .api
                .checkout(checkout_request(user, &key), &user.auth)
                .await;
            {
                let mut recorder = self.recorder.lock();
                recorder.record_result(Op::Checkout, attempt_started.elapsed(), &answer);
                if let Err(status) = &answer
                    && is_refusal(status)
                {
                    recorder.timeline.attempt_refused(Instant::now());
                }
            }
            never_connected &= answer.as_ref().err().is_some_and(connect_failed);
            match answer {
                Err(status) if outcome_unknown(&status) => {
                    let pause = if self.retry_at_once {
                        let now = Instant::now();
                        (now < started + CHECKOUT_RETRY_WINDOW && now < self.hard_stop)
                            .then_some(Duration::ZERO)
                    } else {
                        let pause = match mall_common::context::retry_pushback(&status) {
                            Some(pushback) => pushback.mul_f64(self.rng.random_range(0.8..1.2)),
                            None => backoff.mul_f64(self.rng.random_range(0.5..1.5)),
                        };
                        backoff = (backoff * 2).min(CHECKOUT_BACKOFF_MAX);
                        (attempt < CHECKOUT_ATTEMPTS && Instant::now() + pause < self.hard_stop)
                            .then_some(pause)
                    };
                    match pause {
                        Some(pause) if pause.is_zero() => tokio::task::yield_now().await,
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => break Err(status),
                    }
                }
                answer => break answer,
            }
        };
        {
            let mut recorder = self.recorder.lock();
            recorder.record_result(Op::CheckoutEndToEnd, started.elapsed(), &last);
            recorder
                .timeline
                .checkout_ended(Instant::now(), CheckoutEnd::of(&last, never_connected));
        }
        match last {
            Ok(_) => user.pending = false,
            Err(status) if outcome_unknown(&status) => user.unsettled_key = Some(key),
            Err(status) if status.code() == Code::FailedPrecondition => {
                // Refused (out of stock, most likely): start the next purchase from an empty
                // cart instead of failing on the same line forever.
                user.pending = false;
                self.empty_cart(user).await;
            }
            Err(status) => {
                user.pending = false;
                self.after_refusal(user, &status).await;
            }
        }
    }

    /// An expired or revoked token: log in again (recorded as `Login`).
    async fn after_refusal(&mut self, user: &mut User, status: &Status) {
        if status.code() != Code::Unauthenticated || Outcome::of(status).origin != Origin::Service {
            return;
        }
        let req = user::LoginReq {
            username: user.username.clone(),
            password: user.password.clone(),
        };
        let started = Instant::now();
        let answer = self.api.login(req).await;
        self.record(Op::Login, started.elapsed(), &answer);
        if let Ok(login) = answer
            && let Ok(auth) = bearer(&login.token)
        {
            user.auth = auth;
        }
    }
}

/// Whether a checkout that ended with `status` may still have happened or may still succeed
/// with the same key. Checkout's settled "nothing was charged" answers (`UNAVAILABLE` or
/// `ABORTED`, recorded under the key and replayed to every retry) are final: the next purchase
/// takes a new key. Checkout's answers carry no machine-readable reason yet, so this one reads
/// the message (see `checkout::saga::NOT_CHARGED_MESSAGE` and `INTERRUPTED_MESSAGE`).
fn outcome_unknown(status: &Status) -> bool {
    if Outcome::of(status).origin == Origin::Transport {
        return true;
    }
    matches!(
        status.code(),
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::ResourceExhausted
    ) && !status.message().contains(NOTHING_CHARGED)
        && !decided(status)
}

/// Whether checkout says the purchase under this key ended for good (a retry would replay it).
pub(crate) fn decided(status: &Status) -> bool {
    mall_common::error::reason_of(status).as_deref() == Some(mall_proto::reason::CHECKOUT_FAILED)
}

/// What checkout's final, uncharged answers say.
const NOTHING_CHARGED: &str = "nothing was charged";

/// A valid checkout of `user`'s cart under `key`: the approved test card, expiring in two years.
pub fn checkout_request(user: &User, key: &str) -> checkout::CheckoutReq {
    // A year is 31,556,952 s on average: good enough for "in two years" without a date library.
    let year = i32::try_from(1970 + mall_types::time::unix_secs() / 31_556_952 + 2).unwrap_or(2100);
    checkout::CheckoutReq {
        user_id: user.id,
        firstname: "Load".into(),
        lastname: "Shopper".into(),
        email: user.email.clone(),
        address: Some(Address {
            street_address: "1 Main St".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            country: "US".into(),
            zip_code: "62701".into(),
        }),
        credit_card: Some(CreditCardInfo {
            credit_card_number: GOOD_CARD.into(),
            credit_card_cvv: "123".into(),
            credit_card_expiration_year: year,
            credit_card_expiration_month: 12,
        }),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsettled_checkout_answers_keep_the_key() {
        for status in [
            Status::aborted("checkout in progress"),
            Status::unavailable("product service unavailable"),
            Status::deadline_exceeded("checkout did not finish within its time budget"),
        ] {
            assert!(outcome_unknown(&status), "{status:?}");
        }
        for status in [
            Status::unavailable("payment service unavailable; nothing was charged"),
            Status::aborted("checkout was interrupted; nothing was charged"),
            Status::failed_precondition("cart is empty"),
        ] {
            assert!(!outcome_unknown(&status), "{status:?}");
        }
    }

    #[test]
    fn the_pushback_is_read_from_the_refusal() {
        let mut refused = Status::resource_exhausted("server overloaded; retry later");
        assert_eq!(mall_common::context::retry_pushback(&refused), None);
        refused.metadata_mut().insert(
            mall_common::context::PUSHBACK_HEADER,
            "250".parse().unwrap(),
        );
        assert_eq!(
            mall_common::context::retry_pushback(&refused),
            Some(Duration::from_millis(250))
        );
        assert!(outcome_unknown(&refused));
    }

    #[test]
    fn the_catalog_collects_ids_categories_and_words() {
        let products = [
            product::Product {
                id: 2,
                name: "Ceramic Mug".into(),
                categories: vec!["Home".into()],
                ..Default::default()
            },
            product::Product {
                id: 1,
                name: "USB-C Charger".into(),
                categories: vec!["Electronics".into(), "Home".into()],
                ..Default::default()
            },
        ];
        let catalog = Catalog::of(&products);
        assert_eq!(catalog.ids, [1, 2]);
        assert_eq!(catalog.categories, ["Electronics", "Home"]);
        assert_eq!(catalog.words, ["ceramic", "charger", "mug", "usb"]);
        assert_eq!(catalog.pages(), 1);
    }

    #[test]
    fn only_undecided_checkouts_are_retried() {
        assert!(outcome_unknown(&Status::unavailable("down")));
        assert!(outcome_unknown(&Status::aborted("checkout in progress")));
        assert!(outcome_unknown(&Status::deadline_exceeded("slow")));
        assert!(!outcome_unknown(&Status::failed_precondition(
            "insufficient stock"
        )));
        assert!(!outcome_unknown(&Status::invalid_argument("bad card")));
        assert!(!outcome_unknown(&Status::internal("bug")));
        let broken = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert!(outcome_unknown(&broken));
    }
}
