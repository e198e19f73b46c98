//! The sample configs under `deploy/config` load through the real loader (layered over the
//! defaults, validated), so they cannot drift from the settings the code knows.

use std::collections::BTreeMap;

use mall_common::config::{self, Settings, Source};

#[test]
fn every_sample_config_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    let mut samples: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/config")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    samples.sort();
    assert!(samples.len() >= 3, "{samples:?}");
    for path in samples {
        // The online profile refuses the development keys: give it its own, as its header says.
        let env = BTreeMap::from([
            (
                "MALL__AUTH__JWT_SECRET".to_string(),
                "a-test-signing-key-that-is-long-enough-for-online-use".to_string(),
            ),
            (
                "MALL__AUTH__VERIFY_KEY".to_string(),
                config::AccessKeys::generate().1,
            ),
        ]);
        let source = Source {
            file: Some(path.clone()),
            env,
            ..Source::default()
        };
        let settings = config::load("checkout", Settings::defaults("checkout"), &source)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.ends_with("online.yaml") {
            assert_eq!(
                settings.client.method_timeout["payment"]["charge"],
                std::time::Duration::from_secs(8),
                "the online sample's per-method deadline is read"
            );
        }
    }
}
