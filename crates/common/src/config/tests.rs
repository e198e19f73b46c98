use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

fn env(pairs: &[(&str, &str)]) -> Source {
    Source {
        file: None,
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Source::default()
    }
}

fn load_env(service: &str, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load(service, Settings::defaults(service), &env(pairs))
}

#[test]
fn defaults_give_the_well_known_ports() {
    let s = load("product", Settings::defaults("product"), &Source::default()).unwrap();
    assert_eq!(s.server.port, 8003);
    assert_eq!(s.server.admin_port(), 9003);
    assert_eq!(s.database_url(), "sqlite://data/product.db?mode=rwc");
    assert_eq!(s.discovery.static_addrs["auth"], vec!["127.0.0.1:8000"]);
    assert_eq!(s.discovery.kind, DiscoveryKind::Static);
    assert_eq!(s.telemetry.log_format, LogFormat::Pretty);
}

#[test]
fn resilience_settings_have_named_defaults_and_are_configurable() {
    let d = Settings::defaults("checkout").client;
    assert_eq!(d.retry.budget_percent, DEFAULT_RETRY_BUDGET_PERCENT);
    assert_eq!(d.breaker.open_for, DEFAULT_BREAKER_OPEN_FOR);
    assert_eq!(d.balance.eject_base, DEFAULT_EJECT_BASE);
    let s = load_env(
        "checkout",
        &[
            ("MALL__CLIENT__METHOD_TIMEOUT__PAYMENT__CHARGE", "10s"),
            ("MALL__CLIENT__BREAKER__OPEN_FOR", "750ms"),
            ("MALL__CLIENT__RETRY__MAX_ATTEMPTS", "2"),
            ("MALL__CLIENT__BALANCE__EJECT_MAX", "9s"),
            ("MALL__DISCOVERY__CONSUL__RETRY_MAX", "800ms"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.client.method_timeout["payment"]["charge"],
        Duration::from_secs(10)
    );
    assert_eq!(s.client.breaker.open_for, Duration::from_millis(750));
    assert_eq!(s.client.breaker.min_calls, DEFAULT_BREAKER_MIN_CALLS);
    assert_eq!(s.client.retry.max_attempts, 2);
    assert_eq!(s.client.balance.eject_max, Duration::from_secs(9));
    assert_eq!(s.discovery.consul.retry_max, Duration::from_millis(800));
    for (key, value, named) in [
        (
            "MALL__CLIENT__BREAKER__FAILURE_PERCENT",
            "0",
            "client.breaker.failure_percent",
        ),
        (
            "MALL__CLIENT__RETRY__MAX_ATTEMPTS",
            "0",
            "client.retry.max_attempts",
        ),
        (
            "MALL__CLIENT__RETRY__BUDGET_PERCENT",
            "101",
            "client.retry.budget_percent",
        ),
        ("MALL__CLIENT__BALANCE__EJECT_BASE", "60s", "client.balance"),
        (
            "MALL__CLIENT__METHOD_TIMEOUT__PAYMENT__CHARGE",
            "0s",
            "client.method_timeout",
        ),
    ] {
        let err = load_env("checkout", &[(key, value)]).unwrap_err();
        assert!(err.to_string().contains(named), "{key}: {err}");
    }
}

#[test]
fn environment_overrides_single_keys() {
    let s = load_env(
        "product",
        &[
            ("MALL__SERVER__PORT", "7003"),
            (
                "MALL__DATABASE__URL",
                "mysql://root:pw@db:3306/mall_{service}",
            ),
            (
                "MALL__DISCOVERY__STATIC__CART",
                "10.0.0.1:8002,10.0.0.2:8002",
            ),
            ("UNRELATED", "x"),
            ("MALL_TEST_MYSQL_URL", "not ours: one underscore"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.port, 7003);
    assert_eq!(s.server.admin_port(), 8003);
    assert_eq!(s.database_url(), "mysql://root:pw@db:3306/mall_product");
    assert_eq!(
        s.discovery.static_addrs["cart"],
        vec!["10.0.0.1:8002", "10.0.0.2:8002"]
    );
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mall-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn yaml_file_sits_between_defaults_and_environment() {
    let file = temp_file(
        "layers",
        "server:\n  port: 7100\n  drain_delay: 5ms\ncache:\n  namespace: shop\n",
    );
    let mut source = env(&[("MALL__SERVER__PORT", "7200")]);
    source.file = Some(file);
    let s = load("product", Settings::defaults("product"), &source).unwrap();
    assert_eq!(s.server.port, 7200, "env wins over file");
    assert_eq!(
        s.server.drain_delay,
        Duration::from_millis(5),
        "file wins over defaults"
    );
    assert_eq!(s.cache.namespace, "shop");
}

#[test]
fn unknown_keys_stop_the_load_with_the_nearest_known_key() {
    let err = load_env("product", &[("MALL__DATABSE__URL", "mysql://root@db/x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`databse.url`"), "{err}");
    assert!(err.contains("MALL__DATABSE__URL"), "{err}");
    assert!(err.contains("did you mean `database.url`"), "{err}");

    // A renamed key points at its new name.
    let err = load_env("product", &[("MALL__SERVER__DRAIN_DELAY_MS", "250")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `server.drain_delay`"), "{err}");

    // Nothing near: no suggestion, still refused.
    let err = load_env("product", &[("MALL__NOPE__WHATEVER_THIS_IS", "1")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown configuration key `nope.whatever_this_is`"),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "{err}");

    let file = temp_file("typo", "cache:\n  namespac: shop\n");
    let source = Source {
        file: Some(file),
        env: BTreeMap::new(),
        ..Source::default()
    };
    let err = load("product", Settings::defaults("product"), &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`cache.namespac`"), "{err}");
    assert!(err.contains("did you mean `cache.namespace`"), "{err}");
}

#[test]
fn other_services_sections_are_left_to_them_but_a_services_own_are_checked() {
    // One file or environment serves the fleet: product accepts order's section.
    load_env(
        "product",
        &[
            ("MALL__ORDER__CURRENCY", "EUR"),
            ("MALL__DISCOVERY__STATIC__SEARCH", "10.0.0.9:9000"),
            ("MALL__CLIENT__METHOD_TIMEOUT__ORDER__PLACEORDER", "2s"),
        ],
    )
    .unwrap();
    // A service's own section is checked key by key.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Extra {
        order: Own,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Own {
        currency: String,
    }
    impl Validate for Extra {
        fn validate(&self, _: Profile) -> Result<(), ConfigError> {
            Ok(())
        }
    }
    let defaults = || {
        Settings::with_ext(
            "order",
            Extra {
                order: Own {
                    currency: "USD".into(),
                },
            },
        )
    };
    let s = load(
        "order",
        defaults(),
        &env(&[("MALL__ORDER__CURRENCY", "EUR")]),
    )
    .unwrap();
    assert_eq!(s.ext.order.currency, "EUR");
    let err = load(
        "order",
        defaults(),
        &env(&[("MALL__ORDER__CURENCY", "EUR")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("did you mean `order.currency`"), "{err}");
}

#[test]
fn durations_need_units_and_invalid_values_name_the_key() {
    let err = load_env("product", &[("MALL__SERVER__SHUTDOWN_GRACE", "30")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no unit"), "{err}");

    let err = load_env(
        "product",
        &[("MALL__DATABASE__URL", "postgres://u:secret@h/db")],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`database.url`"), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");

    let err = load_env("product", &[("MALL__SERVER__PORT", "not-a-port")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.port"), "{err}");

    let err = load_env("product", &[("MALL__TELEMETRY__LOG_FORMAT", "xml")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("telemetry.log_format"), "{err}");

    let err = load_env("product", &[("MALL__DISCOVERY__KIND", "zookeeper")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("discovery.kind"), "{err}");
}

#[test]
fn online_profile_refuses_the_development_signing_key() {
    let shared = [
        (
            "MALL__DATABASE__URL",
            "mysql://mall:s3cr3t-pw@db:3306/mall_{service}",
        ),
        ("MALL__CACHE__URL", "redis://redis:6379"),
    ];
    let mut env = vec![("MALL__PROFILE", "online")];
    env.extend(shared);
    let err = load_env("product", &env).unwrap_err().to_string();
    assert!(err.contains("`auth.jwt_secret`"), "{err}");
    env.push((
        "MALL__AUTH__JWT_SECRET",
        "a-production-key-of-more-than-32-bytes",
    ));
    let err = load_env("product", &env).unwrap_err().to_string();
    assert!(err.contains("`auth.verify_key`"), "{err}");
    // A service verifies access tokens with the public key alone.
    let (private, public) = super::AccessKeys::generate();
    env.push(("MALL__AUTH__VERIFY_KEY", &public));
    let ok = load_env("product", &env).unwrap();
    assert!(ok.auth.access_keys().unwrap().signing.is_none());
    env.push(("MALL__AUTH__SIGNING_KEY", &private));
    let auth = load_env("auth", &env).unwrap();
    assert!(
        !format!("{auth:?}").contains(&private),
        "signing key in Debug output"
    );
    assert!(
        !format!("{ok:?}").contains("production-key"),
        "secret in Debug output"
    );
}

#[test]
fn environment_strings_keep_their_text_and_convert_per_field() {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Extra {
        shop: Shop,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Shop {
        app_id: String,
        open: bool,
        limit: u32,
    }
    impl Validate for Extra {
        fn validate(&self, _: Profile) -> Result<(), ConfigError> {
            Ok(())
        }
    }
    let defaults = Settings::with_ext(
        "product",
        Extra {
            shop: Shop {
                app_id: String::new(),
                open: false,
                limit: 1,
            },
        },
    );
    let s = load(
        "product",
        defaults,
        &env(&[
            ("MALL__SHOP__APP_ID", "2021000000000000"),
            ("MALL__SHOP__OPEN", "true"),
            ("MALL__SHOP__LIMIT", "42"),
            (
                "MALL__AUTH__JWT_SECRET",
                "1e100000000000000000000000000000000",
            ),
            ("MALL__SERVER__DRAIN_DELAY", "250ms"),
        ]),
    )
    .unwrap();
    assert_eq!(s.ext.shop.app_id, "2021000000000000");
    assert!(s.ext.shop.open);
    assert_eq!(s.ext.shop.limit, 42);
    assert_eq!(
        s.auth.jwt_secret.expose(),
        "1e100000000000000000000000000000000"
    );
    assert_eq!(s.server.drain_delay, Duration::from_millis(250));
}

#[test]
fn redaction_hides_passwords() {
    assert_eq!(
        redact_url("mysql://root:hunter2@db:3306/x"),
        "mysql://root:***@db:3306/x"
    );
    assert_eq!(
        redact_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    let mut s = Settings::defaults("product");
    s.database.url = "mysql://a:topsecret@h/d".into();
    assert!(!format!("{:?}", s.database).contains("topsecret"));
    assert!(!format!("{:?}", s.auth).contains(DEFAULT_JWT_SECRET));
}

#[test]
fn servers_bind_loopback_by_default_and_never_serve_the_development_key_off_it() {
    let s = load_env("product", &[]).unwrap();
    assert_eq!(s.server.host.to_string(), "127.0.0.1");
    // Any profile: the development key is public, so a reachable server must not trust it.
    for profile in ["dev", "test"] {
        for host in ["0.0.0.0", "192.168.1.20", "::"] {
            let err = load_env(
                "product",
                &[("MALL__PROFILE", profile), ("MALL__SERVER__HOST", host)],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("`auth.jwt_secret`"), "{profile} {host}: {err}");
            assert!(err.contains("MALL__AUTH__JWT_SECRET"), "{err}");
        }
    }
    let own_secret = (
        "MALL__AUTH__JWT_SECRET",
        "a-key-of-our-own-of-more-than-32-bytes",
    );
    // The development access-token pair is public too.
    let err = load_env("product", &[("MALL__SERVER__HOST", "0.0.0.0"), own_secret])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`auth.verify_key`"), "{err}");
    let (_, public) = super::AccessKeys::generate();
    let ok = load_env(
        "product",
        &[
            ("MALL__SERVER__HOST", "0.0.0.0"),
            own_secret,
            ("MALL__AUTH__VERIFY_KEY", &public),
        ],
    )
    .unwrap();
    assert_eq!(ok.server.host.to_string(), "0.0.0.0");
    assert!(load_env("product", &[("MALL__SERVER__HOST", "::1")]).is_ok());
}

#[test]
fn online_refuses_state_that_is_not_shared_and_placeholder_passwords() {
    let key = (
        "MALL__AUTH__JWT_SECRET",
        "a-production-key-of-more-than-32-bytes",
    );
    let online = ("MALL__PROFILE", "online");
    let mysql = (
        "MALL__DATABASE__URL",
        "mysql://mall:s3cr3t-pw@db:3306/mall_{service}",
    );
    let redis = ("MALL__CACHE__URL", "redis://redis:6379");
    let refused = |env: &[(&str, &str)], key_named: &str| {
        let err = load_env("product", env).unwrap_err().to_string();
        assert!(err.contains(key_named), "{env:?}: {err}");
        assert!(!err.contains("s3cr3t"), "the password stays out: {err}");
    };
    refused(&[online, key, redis], "`database.url`");
    refused(&[online, key, mysql], "`cache.url`");
    refused(
        &[
            online,
            key,
            redis,
            (
                "MALL__DATABASE__URL",
                "mysql://root:change-me@mysql:3306/mall_{service}",
            ),
        ],
        "`database.url`",
    );
    refused(
        &[
            online,
            key,
            mysql,
            ("MALL__CACHE__URL", "redis://:password@redis:6379"),
        ],
        "`cache.url`",
    );
    let (_, public) = super::AccessKeys::generate();
    let verify = ("MALL__AUTH__VERIFY_KEY", public.as_str());
    refused(&[online, key, mysql, redis], "`auth.verify_key`");
    assert!(load_env("product", &[online, key, mysql, redis, verify]).is_ok());
    // Outside online, a laptop keeps its embedded defaults.
    assert!(
        load_env(
            "product",
            &[("MALL__DATABASE__URL", "mysql://root:change-me@h/db")]
        )
        .is_ok()
    );
}

#[test]
fn tls_is_off_by_default_and_its_paths_are_per_service() {
    let s = load_env("cart", &[]).unwrap();
    assert!(!s.tls.enabled);
    let s = load_env(
        "cart",
        &[
            ("MALL__TLS__ENABLED", "true"),
            ("MALL__TLS__CERT", "/etc/mall/{service}.crt"),
            ("MALL__TLS__HANDSHAKE_TIMEOUT", "2s"),
        ],
    )
    .unwrap();
    assert!(s.tls.enabled);
    assert_eq!(
        s.tls.identity_paths(&s.service),
        (
            "/etc/mall/cart.crt".to_string(),
            "certs/cart.key".to_string()
        )
    );
    assert_eq!(s.tls.handshake_timeout, Duration::from_secs(2));
    let err = load_env(
        "cart",
        &[("MALL__TLS__ENABLED", "true"), ("MALL__TLS__KEY", " ")],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tls.key"), "{err}");
}

#[test]
fn trace_export_is_off_by_default_and_on_by_either_key() {
    assert_eq!(load_env("cart", &[]).unwrap().telemetry.otlp_endpoint, None);
    let standard = load_env(
        "cart",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")],
    );
    assert_eq!(
        standard.unwrap().telemetry.otlp_endpoint.as_deref(),
        Some("http://jaeger:4317")
    );
    // The platform key wins over the standard variable.
    let both = load_env(
        "cart",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
            ("MALL__TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:14317"),
        ],
    );
    assert_eq!(
        both.unwrap().telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:14317")
    );
    assert_eq!(
        load_env("cart", &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
            .unwrap()
            .telemetry
            .otlp_endpoint,
        None
    );
    for bad in [
        "jaeger:4317",
        "https://jaeger:4317",
        "http://",
        "not a url",
        "http://user:hunter2@jaeger:4317",
    ] {
        let err = load_env("cart", &[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("telemetry.otlp_endpoint"), "{bad}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[test]
fn the_trace_flush_timeout_has_a_default_and_must_be_positive() {
    let d = load_env("cart", &[]).unwrap().telemetry;
    assert_eq!(d.flush_timeout, DEFAULT_TRACE_FLUSH_TIMEOUT);
    let set = load_env("cart", &[("MALL__TELEMETRY__FLUSH_TIMEOUT", "2s")]).unwrap();
    assert_eq!(set.telemetry.flush_timeout, Duration::from_secs(2));
    let err = load_env("cart", &[("MALL__TELEMETRY__FLUSH_TIMEOUT", "0s")]).unwrap_err();
    assert!(err.to_string().contains("telemetry.flush_timeout"), "{err}");
}
