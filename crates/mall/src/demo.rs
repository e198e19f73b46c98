//! `mall demo`: one shopper's visit against a running fleet, each step printed as it happens
//! with its time (and, with `--trace` or `OTEL_EXPORTER_OTLP_ENDPOINT` set, the trace id it
//! sent as `traceparent`, to find it in Jaeger): sign up, log in, browse and search the catalog,
//! add two products to the cart, check out with a good card, see the PAID order and its
//! payment; then a declined card, its compensation (the order CANCELLED, the stock back) and the
//! cart kept. Any step that misbehaves ends the demo with an error (a non-zero exit).
//!
//! `mall demo [--host HOST] [--{user,cart,product,order,checkout}-addr HOST:PORT]... [--trace]`: the fleet at `HOST`
//! (default `127.0.0.1`) on the well-known ports, or any service elsewhere.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mall_proto::cart::v1 as cart;
use mall_proto::checkout::v1 as checkout;
use mall_proto::common::v1::{Address, CartItem, CreditCardInfo};
use mall_proto::order::v1 as order;
use mall_proto::product::v1 as product;
use mall_proto::user::v1 as user;
use mall_types::ServiceName;
use tonic::transport::Channel;

/// The card payment approves.
const GOOD_CARD: &str = "4111111111111111";
/// The card payment always declines.
const DECLINED_CARD: &str = "4000000000000002";
/// Every call's deadline.
const DEADLINE: Duration = Duration::from_secs(10);

/// `mall demo`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the fleet runs, on the well-known ports.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The user service elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub user_addr: Option<String>,
    /// The cart service elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub cart_addr: Option<String>,
    /// The product service elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub product_addr: Option<String>,
    /// The order service elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub order_addr: Option<String>,
    /// The checkout service elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub checkout_addr: Option<String>,
    /// Print every step's trace id (also on when OTEL_EXPORTER_OTLP_ENDPOINT is set).
    #[arg(long)]
    pub trace: bool,
}

/// Where the demo finds each service.
#[derive(Debug, Clone)]
pub struct Targets {
    addrs: BTreeMap<&'static str, String>,
    /// Print the trace id of every step.
    pub trace: bool,
}

impl Targets {
    /// Every service at `host` on its well-known port.
    pub fn at_host(host: &str) -> Self {
        let addrs = [
            ServiceName::User,
            ServiceName::Cart,
            ServiceName::Product,
            ServiceName::Order,
            ServiceName::Checkout,
        ]
        .into_iter()
        .map(|s| (s.as_str(), format!("{host}:{}", s.port())))
        .collect();
        Targets {
            addrs,
            trace: std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
        }
    }

    /// `service` at `addr` instead.
    pub fn with(mut self, service: &'static str, addr: impl Into<String>) -> Self {
        self.addrs.insert(service, addr.into());
        self
    }

    /// From `mall demo`'s arguments.
    pub fn from_args(args: &DemoArgs) -> Self {
        let mut targets = Targets::at_host(&args.host);
        for (service, addr) in [
            (ServiceName::User, &args.user_addr),
            (ServiceName::Cart, &args.cart_addr),
            (ServiceName::Product, &args.product_addr),
            (ServiceName::Order, &args.order_addr),
            (ServiceName::Checkout, &args.checkout_addr),
        ] {
            if let Some(addr) = addr {
                targets = targets.with(service.as_str(), addr.clone());
            }
        }
        if args.trace {
            targets.trace = true;
        }
        targets
    }

    async fn channel(&self, service: &str) -> anyhow::Result<Channel> {
        let addr = &self.addrs[service];
        Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .with_context(|| format!("cannot reach {service} at {addr}"))
    }
}

/// Prints steps as they finish.
struct Steps {
    n: u32,
    trace: bool,
}

/// A fresh W3C trace context for one step: (`traceparent`, trace id).
fn new_trace() -> (String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace}-{span}-01"), trace)
}

impl Steps {
    /// Runs one step: `call` gets a request decorated with `token`, a deadline and a
    /// `traceparent`; its answer is described by `describe` (or the step fails).
    async fn run<Req, T, Fut>(
        &mut self,
        name: &str,
        token: Option<&str>,
        message: Req,
        call: impl FnOnce(tonic::Request<Req>) -> Fut,
    ) -> anyhow::Result<T>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (traceparent, trace_id) = new_trace();
        let mut request = tonic::Request::new(message);
        request.set_timeout(DEADLINE);
        let metadata = request.metadata_mut();
        metadata.insert("traceparent", traceparent.parse()?);
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse()?);
        }
        let started = Instant::now();
        let answer = call(request).await;
        self.n += 1;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let trace = if self.trace {
            format!("  trace {trace_id}")
        } else {
            String::new()
        };
        match answer {
            Ok(response) => {
                println!("[{:>2}] {name:<38} {ms:>8.1} ms{trace}", self.n);
                Ok(response.into_inner())
            }
            Err(status) => {
                println!(
                    "[{:>2}] {name:<38} {ms:>8.1} ms{trace}  {:?}: {}",
                    self.n,
                    status.code(),
                    status.message()
                );
                Err(anyhow::Error::new(status).context(format!("step {}: {name}", self.n)))
            }
        }
    }

    fn say(detail: impl Display) {
        println!("     → {detail}");
    }
}

fn address() -> Address {
    Address {
        street_address: "1 Demo Street".into(),
        city: "Springfield".into(),
        state: "IL".into(),
        country: "US".into(),
        zip_code: "62701".into(),
    }
}

fn card(number: &str) -> CreditCardInfo {
    // A year is 31,556,952 s on average: next year is good enough for an expiry date.
    let next_year =
        i32::try_from(1970 + mall_types::time::unix_secs() / 31_556_952 + 1).unwrap_or(2100);
    CreditCardInfo {
        credit_card_number: number.into(),
        credit_card_cvv: "123".into(),
        credit_card_expiration_year: next_year,
        credit_card_expiration_month: 12,
    }
}

/// The shopper of one demo: the fleet's clients, the steps so far, and who is signed in.
struct Shopper {
    users: user::user_service_client::UserServiceClient<Channel>,
    catalog: product::product_catalog_service_client::ProductCatalogServiceClient<Channel>,
    carts: cart::cart_service_client::CartServiceClient<Channel>,
    orders: order::order_service_client::OrderServiceClient<Channel>,
    checkouts: checkout::checkout_service_client::CheckoutServiceClient<Channel>,
    steps: Steps,
    tag: String,
    email: String,
    user_id: u64,
    token: String,
}

/// Runs the demo against `targets` (see the module docs).
pub async fn run(targets: &Targets) -> anyhow::Result<()> {
    let mut shopper = Shopper::connect(targets).await?;
    shopper.sign_up().await?;
    let (first, second) = shopper.browse().await?;
    shopper.purchase(&first, &second).await?;
    shopper.declined(&second).await?;
    println!("demo finished: {} steps, all as expected", shopper.steps.n);
    Ok(())
}

impl Shopper {
    async fn connect(targets: &Targets) -> anyhow::Result<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Ok(Shopper {
            users: user::user_service_client::UserServiceClient::new(
                targets.channel("user").await?,
            ),
            catalog: product::product_catalog_service_client::ProductCatalogServiceClient::new(
                targets.channel("product").await?,
            ),
            carts: cart::cart_service_client::CartServiceClient::new(
                targets.channel("cart").await?,
            ),
            orders: order::order_service_client::OrderServiceClient::new(
                targets.channel("order").await?,
            ),
            checkouts: checkout::checkout_service_client::CheckoutServiceClient::new(
                targets.channel("checkout").await?,
            ),
            steps: Steps {
                n: 0,
                trace: targets.trace,
            },
            email: format!("demo_{tag}@example.com"),
            tag,
            user_id: 0,
            token: String::new(),
        })
    }

    /// Register, then log in.
    async fn sign_up(&mut self) -> anyhow::Result<()> {
        let username = format!("demo_{}", self.tag);
        let password = format!("demo-pass-{}", self.tag);
        let users = &mut self.users;
        let registered = self
            .steps
            .run(
                "sign up (UserService/Register)",
                None,
                user::RegisterReq {
                    username: username.clone(),
                    password: password.clone(),
                    email: self.email.clone(),
                    ..Default::default()
                },
                |r| users.register(r),
            )
            .await?;
        Steps::say(format!("user {} ({username})", registered.user_id));
        self.user_id = registered.user_id;
        let login = self
            .steps
            .run(
                "log in (UserService/Login)",
                None,
                user::LoginReq { username, password },
                |r| users.login(r),
            )
            .await?;
        ensure!(!login.token.is_empty(), "Login answered without a token");
        self.token = login.token;
        Ok(())
    }

    /// List, search and view: two products with stock to buy.
    async fn browse(&mut self) -> anyhow::Result<(product::Product, product::Product)> {
        let token = Some(self.token.as_str());
        let catalog = &mut self.catalog;
        let listing = self
            .steps
            .run(
                "browse (ListProducts)",
                token,
                product::ListProductsReq {
                    page: 1,
                    page_size: 5,
                    ..Default::default()
                },
                |r| catalog.list_products(r),
            )
            .await?;
        Steps::say(format!(
            "{} products in the catalog; first page: {}",
            listing.total,
            listing
                .products
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let in_stock: Vec<&product::Product> =
            listing.products.iter().filter(|p| p.stock >= 2).collect();
        ensure!(
            in_stock.len() >= 2,
            "the catalog needs two products with stock (load the demo catalog)"
        );
        let (first, second) = (in_stock[0].clone(), in_stock[1].clone());
        let word = first
            .name
            .split_whitespace()
            .next()
            .unwrap_or(&first.name)
            .to_string();
        let found = self
            .steps
            .run(
                "search (SearchProducts)",
                token,
                product::SearchProductsReq {
                    query: word.clone(),
                    page: 1,
                    page_size: 5,
                },
                |r| catalog.search_products(r),
            )
            .await?;
        Steps::say(format!("{} results for {word:?}", found.total));
        ensure!(
            found.results.iter().any(|p| p.id == first.id),
            "searching {word:?} did not find {}",
            first.name
        );
        let viewed = self
            .product("view a product (GetProduct)", first.id)
            .await?;
        Steps::say(format!(
            "{} at {} cents, {} in stock",
            viewed.name, viewed.price_cents, viewed.stock
        ));
        Ok((first, second))
    }

    /// Two products into the cart, a good card, the PAID order, the emptied cart.
    async fn purchase(
        &mut self,
        first: &product::Product,
        second: &product::Product,
    ) -> anyhow::Result<()> {
        self.add(first, 2).await?;
        self.add(second, 1).await?;
        let in_cart = self.cart_lines("view the cart (GetCart)").await?;
        Steps::say(format!("{} lines", in_cart.len()));
        ensure!(
            in_cart.len() == 2,
            "the cart has {} lines, not 2",
            in_cart.len()
        );
        let request = self.checkout_request(GOOD_CARD, 1);
        let token = Some(self.token.as_str());
        let checkouts = &mut self.checkouts;
        let paid = self
            .steps
            .run(
                "check out (CheckoutService/Checkout)",
                token,
                request,
                |r| checkouts.checkout(r),
            )
            .await?;
        Steps::say(format!(
            "order {} paid, transaction {}",
            paid.order_id, paid.transaction_id
        ));
        let orders = &mut self.orders;
        let placed = self
            .steps
            .run(
                "the order (OrderService/GetOrder)",
                token,
                order::GetOrderReq {
                    user_id: self.user_id,
                    order_id: paid.order_id.clone(),
                },
                |r| orders.get_order(r),
            )
            .await?
            .order
            .context("GetOrder answered without an order")?;
        let expected = first.price_cents * 2 + second.price_cents;
        Steps::say(format!(
            "status {:?}, {} lines, total {} cents, payment {}",
            placed.status(),
            placed.order_items.len(),
            placed.total_cents,
            placed.transaction_id
        ));
        ensure!(
            placed.status() == order::OrderStatus::Paid,
            "the order is {:?}, not PAID",
            placed.status()
        );
        ensure!(
            placed.total_cents == expected && placed.transaction_id == paid.transaction_id,
            "the order's total {} / payment {} do not match the purchase ({expected}, {})",
            placed.total_cents,
            placed.transaction_id,
            paid.transaction_id
        );
        let emptied = self.cart_lines("the cart after (GetCart)").await?;
        ensure!(
            emptied.is_empty(),
            "the purchased lines are still in the cart"
        );
        Steps::say("empty: the purchased lines were taken out");
        Ok(())
    }

    /// A declined card: the order CANCELLED, the stock back, the line kept in the cart.
    async fn declined(&mut self, product: &product::Product) -> anyhow::Result<()> {
        let stock_before = self
            .product("stock before (GetProduct)", product.id)
            .await?
            .stock;
        self.add(product, 1).await?;
        let request = self.checkout_request(DECLINED_CARD, 2);
        let token = Some(self.token.as_str());
        let checkouts = &mut self.checkouts;
        match self
            .steps
            .run("check out, declined card", token, request, |r| {
                checkouts.checkout(r)
            })
            .await
        {
            Ok(answer) => bail!("a declined card was accepted: order {}", answer.order_id),
            Err(e) => {
                let code = e.downcast_ref::<tonic::Status>().map(tonic::Status::code);
                ensure!(
                    code == Some(tonic::Code::FailedPrecondition),
                    "a declined card ended {code:?}, not FAILED_PRECONDITION"
                );
                Steps::say("refused: the saga compensated");
            }
        }
        let orders = &mut self.orders;
        let listed = self
            .steps
            .run(
                "orders (OrderService/ListOrder)",
                token,
                order::ListOrderReq {
                    user_id: self.user_id,
                    page: 1,
                    page_size: 10,
                    ..Default::default()
                },
                |r| orders.list_order(r),
            )
            .await?
            .orders;
        let statuses: Vec<String> = listed.iter().map(|o| format!("{:?}", o.status())).collect();
        Steps::say(format!("{} orders: {}", listed.len(), statuses.join(", ")));
        let has = |status| listed.iter().any(|o| o.status() == status);
        ensure!(
            listed.len() == 2
                && has(order::OrderStatus::Cancelled)
                && has(order::OrderStatus::Paid),
            "expected one PAID and one CANCELLED order, found {statuses:?}"
        );
        let stock_after = self
            .product("stock after (GetProduct)", product.id)
            .await?
            .stock;
        Steps::say(format!(
            "{stock_before} before, {stock_after} after: released"
        ));
        ensure!(
            stock_after == stock_before,
            "the declined purchase kept stock: {stock_before} before, {stock_after} after"
        );
        let kept = self.cart_lines("the cart after (GetCart)").await?;
        ensure!(kept.len() == 1, "the cart lost the unpaid line");
        Steps::say("the unpaid line stays in the cart");
        Ok(())
    }

    /// One GetProduct step.
    async fn product(&mut self, name: &str, id: u64) -> anyhow::Result<product::Product> {
        let catalog = &mut self.catalog;
        self.steps
            .run(
                name,
                Some(self.token.as_str()),
                product::GetProductReq { id },
                |r| catalog.get_product(r),
            )
            .await?
            .product
            .context("GetProduct answered without a product")
    }

    /// One AddItem step.
    async fn add(&mut self, product: &product::Product, quantity: i32) -> anyhow::Result<()> {
        let carts = &mut self.carts;
        self.steps
            .run(
                "add to cart (CartService/AddItem)",
                Some(self.token.as_str()),
                cart::AddItemReq {
                    user_id: self.user_id,
                    item: Some(CartItem {
                        product_id: product.id,
                        quantity,
                    }),
                },
                |r| carts.add_item(r),
            )
            .await?;
        Steps::say(format!("{quantity} × {}", product.name));
        Ok(())
    }

    /// One GetCart step: the cart's lines.
    async fn cart_lines(&mut self, name: &str) -> anyhow::Result<Vec<CartItem>> {
        let carts = &mut self.carts;
        Ok(self
            .steps
            .run(
                name,
                Some(self.token.as_str()),
                cart::GetCartReq {
                    user_id: self.user_id,
                },
                |r| carts.get_cart(r),
            )
            .await?
            .cart
            .map(|c| c.items)
            .unwrap_or_default())
    }

    /// The checkout of this shopper with card `number`, its `n`-th idempotency key.
    // Fields added to the request after v1 keep their defaults (a card payment).
    #[allow(clippy::needless_update)]
    fn checkout_request(&self, number: &str, n: u32) -> checkout::CheckoutReq {
        checkout::CheckoutReq {
            user_id: self.user_id,
            firstname: "Demo".into(),
            lastname: "Shopper".into(),
            email: self.email.clone(),
            address: Some(address()),
            credit_card: Some(card(number)),
            idempotency_key: format!("demo-{}-{n}", self.tag),
            ..Default::default()
        }
    }
}
