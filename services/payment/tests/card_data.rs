//! The card-data grep test: after charges, refunds and failed charges, no stored row, log line
//! or error message holds the full card number or the CVV.
//!
//! It has its own test binary because it captures logs with a thread-local subscriber
//! (`tracing::subscriber::set_default` on a current-thread runtime, so the in-process fleet logs
//! through it): tracing caches per-callsite interest process-wide, and tests running in parallel
//! threads without a subscriber made it miss events now and then.

mod support;

use mall_testing::logs::{self, Format};
use support::*;

/// `needle` appears in `haystack` as a number of its own, not inside a longer run of digits or
/// letters (a short CVV also occurs by chance inside UUIDs and timings).
fn contains_token(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// A Luhn-valid number starting with `prefix`.
fn with_check_digit(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|n| {
            let sum: u32 = n
                .bytes()
                .rev()
                .enumerate()
                .map(|(i, b)| {
                    let d = u32::from(b - b'0');
                    if i % 2 == 1 {
                        if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
                    } else {
                        d
                    }
                })
                .sum();
            sum.is_multiple_of(10)
        })
        .expect("a check digit")
}

// One thread: the in-process fleet's tasks log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn card_number_and_cvv_never_reach_rows_logs_or_errors() {
    let capture = logs::capture(Format::Text, tracing::Level::DEBUG);

    let number = with_check_digit("491633898174312");
    let cvv = "7319";
    let spaced = format!(
        "{} {} {} {}",
        &number[..4],
        &number[4..8],
        &number[8..12],
        &number[12..]
    );
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let mut errors = Vec::new();

    let good = card_with(&spaced, cvv, this_year() + 2, 6);
    let txn = client
        .charge(charge_req("order-secret", 7, 5_000, good.clone()))
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    client
        .charge(charge_req("order-secret", 7, 5_000, good.clone()))
        .await
        .unwrap();
    errors.push(
        client
            .charge(charge_req("order-secret", 7, 6_000, good.clone()))
            .await
            .unwrap_err(),
    );
    client
        .refund(refund_req(&txn, "order-secret", 7, 1_000))
        .await
        .unwrap();
    errors.push(
        client
            .refund(refund_req(&txn, "order-secret", 7, 9_000))
            .await
            .unwrap_err(),
    );
    // Failing checks must not echo what was sent either.
    let last = number.as_bytes()[15] - b'0';
    let bad_luhn = format!("{}{}", &number[..15], (last + 1) % 10);
    for bad in [
        card_with(&bad_luhn, cvv, this_year() + 2, 6),
        card_with(&number, "73a9", this_year() + 2, 6),
        card_with(&number, cvv, this_year() + 2, 13),
        card_with(&number, cvv, this_year() - 1, 6),
        card_with(&format!("{number}0000"), cvv, this_year() + 2, 6),
        card_with(DECLINED, cvv, this_year() + 2, 6),
    ] {
        errors.push(
            client
                .charge(charge_req("order-secret-2", 7, 5_000, bad))
                .await
                .unwrap_err(),
        );
    }
    let p = get(&mut client, &txn).await.unwrap();
    assert_eq!(
        (p.card_brand.as_str(), p.card_last4.as_str()),
        ("visa", &number[12..])
    );

    let pool = database(&fleet).await;
    let stored = every_stored_value(&pool).await;
    assert!(!stored.is_empty());
    fleet.stop().await;
    let logs = capture.finish();
    assert!(logs.contains("card charged"), "the service logged: {logs}");
    assert!(logs.lines().count() > 5);
    for secret in [number.as_str(), spaced.as_str(), bad_luhn.as_str()] {
        assert!(!logs.contains(secret), "card number in the logs");
        assert!(
            !stored.iter().any(|v| v.contains(secret)),
            "card number stored"
        );
        assert!(
            !errors.iter().any(|e| e.message().contains(secret)),
            "card number in an error"
        );
    }
    assert!(!contains_token(&logs, cvv), "CVV in the logs");
    assert!(!stored.iter().any(|v| contains_token(v, cvv)), "CVV stored");
    assert!(
        !errors
            .iter()
            .any(|e| contains_token(e.message(), cvv) || e.message().contains("73a9")),
        "CVV in an error"
    );
    assert!(
        !errors.iter().any(|e| e.message().contains(DECLINED)),
        "test card in an error"
    );
}
