//! The impls every string newtype and every named enum of this crate shares.

/// For a `struct $name(String)` whose constructors check the string: `as_str`, `into_string`,
/// `Deref<Target = str>`, `AsRef<str>`, `Display` and `From<$name> for String`.
macro_rules! str_newtype {
    ($name:ident) => {
        impl $name {
            /// The checked string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The checked string, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// For an enum with `const fn as_str(self) -> &'static str` and `const ALL`: `Display` as that
/// name, and `FromStr` accepting exactly those names, refusing others as an
/// [`Invalid`](crate::Invalid) on `$field` that lists them.
macro_rules! named_enum {
    ($name:ident, $field:literal) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::invalid::Invalid;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .into_iter()
                    .find(|v| v.as_str() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        $crate::invalid::Invalid::new(
                            $field,
                            format!("`{name}` is not one of {}", known.join(", ")),
                        )
                    })
            }
        }
    };
}

pub(crate) use {named_enum, str_newtype};
