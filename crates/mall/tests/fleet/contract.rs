//! The protos are the source of truth: every RPC of every service has exactly one access rule,
//! and every rule names an RPC that exists.

use std::collections::BTreeSet;

use mall_common::auth::AccessTable;

fn tables() -> [AccessTable; 7] {
    [
        auth::api::ACCESS,
        user::api::ACCESS,
        cart::api::ACCESS,
        product::api::ACCESS,
        order::api::ACCESS,
        payment::api::ACCESS,
        checkout::api::ACCESS,
    ]
}

#[test]
fn every_rpc_has_exactly_one_access_rule_and_every_rule_a_real_rpc() {
    let services: BTreeSet<&str> = mall_proto::rpcs::all()
        .values()
        .map(|rpc| rpc.service.as_str())
        .collect();
    let covered: BTreeSet<&str> = tables().iter().map(|t| t.service).collect();
    assert_eq!(
        covered, services,
        "one access table per service of the contract"
    );
    for table in tables() {
        let rpcs: BTreeSet<&str> = mall_proto::rpcs::methods_of(table.service)
            .into_iter()
            .collect();
        let ruled: Vec<&str> = table.rules.iter().map(|(method, _)| *method).collect();
        let unique: BTreeSet<&str> = ruled.iter().copied().collect();
        assert_eq!(
            ruled.len(),
            unique.len(),
            "{}: an RPC with two rules: {ruled:?}",
            table.service
        );
        assert_eq!(unique, rpcs, "{}: rules vs RPCs", table.service);
    }
}

#[test]
fn the_contract_has_the_seven_services() {
    let services: BTreeSet<&str> = mall_proto::rpcs::all()
        .values()
        .map(|rpc| rpc.service.as_str())
        .collect();
    let named: BTreeSet<&str> = mall_proto::SERVICE_NAMES.into_iter().collect();
    assert_eq!(services, named);
    assert!(mall_proto::rpcs::is_idempotent(
        "/tiktokmall.product.v1.ProductCatalogService/GetProduct"
    ));
    assert!(!mall_proto::rpcs::is_idempotent(
        "/tiktokmall.payment.v1.PaymentService/Charge"
    ));
}
