//! The fleet's settings as a whole: the sections each service owns are the ones every service
//! accepts from a shared file ([`mall_common::config::SERVICE_SECTIONS`]), and a key misspelt in
//! any service's section stops that service.

use std::collections::BTreeSet;

use mall_common::config::{self, SERVICE_SECTIONS, Source};

fn sections(ext: serde_json::Value) -> BTreeSet<String> {
    ext.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn service_sections_are_exactly_what_the_services_own() {
    let mut owned = BTreeSet::new();
    owned.extend(sections(
        serde_json::to_value(auth::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(product::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(user::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(cart::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(order::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(payment::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(checkout::default_settings().ext).unwrap(),
    ));
    owned.extend(sections(
        serde_json::to_value(notification::default_settings().ext).unwrap(),
    ));
    let listed: BTreeSet<String> = SERVICE_SECTIONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(owned, listed);
}

#[test]
fn a_typo_in_a_services_own_section_stops_it_and_others_ignore_it() {
    let source = Source {
        file: None,
        env: [("MALL__CATALOG__SEED_DEMOO".to_string(), "true".to_string())].into(),
        ..Source::default()
    };
    let err = config::load("product", product::default_settings(), &source).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `catalog.seed_demo`"),
        "{err}"
    );
    config::load("order", order::default_settings(), &source)
        .expect("order leaves product's section to product");
}
