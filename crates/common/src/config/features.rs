//! `features.*`: named on/off switches an operator flips while the fleet runs (through the
//! config centre, or `MALL__FEATURES__<NAME>=false` at start), e.g. `features: { alipay: false }`
//! to stop offering a payment method while its gateway misbehaves. Each service documents the
//! flags it reads and their defaults (docs/API.md, "Feature flags"); a flag no service reads
//! does nothing, so one shared file may carry the flags of several services.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{ConfigError, ensure};

/// The `features` section: flag name → on.
pub type FeatureFlags = BTreeMap<String, bool>;

/// Flag names are lowercase words joined by `_` (they are also environment variable names).
pub fn validate(flags: &FeatureFlags) -> Result<(), ConfigError> {
    for name in flags.keys() {
        ensure(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "features",
            format!("`{name}` is not a flag name (lowercase letters, digits and `_`)"),
        )?;
    }
    Ok(())
}

/// The running flags of a service, shared by its handlers and updated by a reload.
#[derive(Clone, Debug, Default)]
pub struct Features(Arc<RwLock<FeatureFlags>>);

impl Features {
    /// The flags as configured at start.
    pub fn new(flags: &FeatureFlags) -> Self {
        Features(Arc::new(RwLock::new(flags.clone())))
    }

    /// Whether `name` is on; `default` when it is not set.
    pub fn enabled(&self, name: &str, default: bool) -> bool {
        self.0.read().get(name).copied().unwrap_or(default)
    }

    /// Takes the flags of a reload.
    pub fn set(&self, flags: &FeatureFlags) {
        *self.0.write() = flags.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_flags_take_their_default_and_a_reload_replaces_all() {
        let features = Features::new(&[("alipay".to_string(), false)].into());
        assert!(!features.enabled("alipay", true));
        assert!(features.enabled("near_cache", true));
        features.set(&FeatureFlags::new());
        assert!(features.enabled("alipay", true));
    }

    #[test]
    fn names_must_be_lowercase_words() {
        assert!(validate(&[("alipay_v2".to_string(), true)].into()).is_ok());
        let refused = validate(&[("Alipay".to_string(), true)].into()).unwrap_err();
        assert!(refused.to_string().contains("features"), "{refused}");
        assert!(validate(&[("a-b".to_string(), true)].into()).is_err());
    }
}
