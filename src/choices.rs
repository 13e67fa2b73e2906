//! Enums of named choices (an option's values, a value recorded in a model's metadata): one
//! table gives each variant its name and its help, from which come `FromStr` (any case),
//! `Display` (the name) and, with the `cli` feature, clap's `ValueEnum`. The library itself
//! needs no clap.

/// Declares `enum $name` with `FromStr`, `Display` and `name()` from `Variant = "name"` pairs,
/// each with its doc comment (also the help `--help` shows for that value). `(default V)` after
/// the enum's name makes `V` its `Default`.
macro_rules! choices {
    (
        $(#[$meta:meta])*
        pub enum $name:ident $((default $default:ident))? {
            $( $(#[doc = $doc:literal])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[doc = $doc])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant's name (what an option takes and a model records).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        $(
            // Derivable, but `derive(Default)` would need `#[default]` among the variants,
            // which this macro's pattern cannot tell from their doc comments.
            #[allow(clippy::derivable_impls)]
            impl Default for $name {
                fn default() -> $name {
                    $name::$default
                }
            }
        )?

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| format!("'{s}' is not one of {}", names.join(", ")))
            }
        }

        #[cfg(feature = "cli")]
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                let help: &[&str] = match self { $($name::$variant => &[$($doc),*]),+ };
                let help = help.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
                let value = clap::builder::PossibleValue::new(self.name());
                Some(if help.is_empty() { value } else { value.help(help) })
            }
        }
    };
}

pub(crate) use choices;

#[cfg(test)]
mod tests {
    choices! {
        /// A test enum.
        pub enum Fruit (default Pear) {
            /// Round.
            Apple = "apple",
            Pear = "pear",
        }
    }

    #[test]
    fn names_parse_in_any_case_and_display_as_declared() {
        assert_eq!("APPLE".parse::<Fruit>(), Ok(Fruit::Apple));
        assert_eq!(Fruit::Pear.to_string(), "pear");
        assert_eq!("plum".parse::<Fruit>(), Err("'plum' is not one of apple, pear".to_string()));
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::Pear]);
        assert_eq!(Fruit::default(), Fruit::Pear);
    }
}
