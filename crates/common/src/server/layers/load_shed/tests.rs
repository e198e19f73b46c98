use super::*;

fn verifier(mutual_tls: bool) -> Verifier {
    let settings = crate::config::Settings::defaults("product").auth;
    let cache: crate::cache::SharedCache =
        Arc::new(crate::cache::MemoryCache::new("t:".into(), 100));
    Verifier {
        tokens: Arc::new(Tokens::new(&settings, cache)),
        audience: "product".into(),
        mutual_tls,
    }
}

fn with_bearer(token: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    headers
}

fn unsigned(header: &str) -> String {
    format!(
        "{}.e30.AAAA",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
    )
}

#[test]
fn only_a_verified_service_token_for_this_service_is_internal() {
    let v = verifier(false);
    let none = http::Extensions::new();
    assert_eq!(v.class_of(&http::HeaderMap::new(), &none), Class::Public);
    // What the old check trusted: a header saying HS256, signed by nobody.
    for forged in [
        "eyJhbGciOiJIUzI1NiJ9.e30.AAAA".to_string(),
        unsigned(r#"{"typ":"JWT","alg":"HS256"}"#),
        unsigned(r#"{"typ":"JWT","alg":"EdDSA"}"#),
        "garbage".to_string(),
    ] {
        assert_eq!(
            v.class_of(&with_bearer(&forged), &none),
            Class::Public,
            "{forged}"
        );
    }
    let (token, _) = v.tokens.issue_service("checkout", "product").unwrap();
    assert_eq!(v.class_of(&with_bearer(&token), &none), Class::Internal);
    // A real service token addressed to another service is a public call here.
    let (elsewhere, _) = v.tokens.issue_service("checkout", "payment").unwrap();
    assert_eq!(v.class_of(&with_bearer(&elsewhere), &none), Class::Public);
    // With mutual TLS the peer must be a service of the fleet too: no certificate, public.
    assert_eq!(
        verifier(true).class_of(&with_bearer(&token), &none),
        Class::Public
    );
}
