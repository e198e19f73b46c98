//! `mall demo` against a fleet: every step of the shopper's visit as expected (the purchase
//! paid, the declined card compensated), and a fleet that cannot do a step makes it fail.

use mall::demo::{self, Targets};
use mall_testing::TestFleet;

fn targets(fleet: &TestFleet) -> Targets {
    let mut targets = Targets::at_host("127.0.0.1");
    for service in ["user", "cart", "product", "order", "checkout"] {
        targets = targets.with(service, fleet.endpoints(service).grpc.to_string());
    }
    targets
}

#[tokio::test]
async fn the_demo_buys_and_is_declined_as_expected() {
    let fleet = TestFleet::start(mall::SERVICES).await;
    let catalog = fleet.catalog();
    catalog.create_product("Lamp shade", 1_500, 10).await;
    catalog.create_product("Desk lamp", 3_200, 10).await;
    demo::run(&targets(&fleet))
        .await
        .expect("the demo runs through");
    fleet.stop().await;
}

#[tokio::test]
async fn a_step_that_cannot_happen_fails_the_demo() {
    let fleet = TestFleet::start(mall::SERVICES).await;
    // An empty catalog: nothing to buy.
    let err = demo::run(&targets(&fleet)).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("two products with stock"),
        "{err:#}"
    );
    // No checkout where it should be.
    fleet
        .catalog()
        .create_product("Lamp shade", 1_500, 10)
        .await;
    fleet.catalog().create_product("Desk lamp", 3_200, 10).await;
    let err = demo::run(&targets(&fleet).with("checkout", "127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot reach checkout"),
        "{err:#}"
    );
    fleet.stop().await;
}

/// `mall --help` and every subcommand's help answer and exit 0 without starting the fleet or
/// writing a key, a certificate or a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(
        env!("CARGO_BIN_EXE_mall"),
        "mall",
        &[
            &["help"],
            &["demo", "--help"],
            &["events", "tail", "--help"],
            &["keys", "--help"],
            &["certs", "--help"],
        ],
    );
}
