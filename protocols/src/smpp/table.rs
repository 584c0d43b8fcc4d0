//! One macro that turns a single list of `Name = value, "text"` rows into a `u32` code enum
//! with an `Other(u32)` catch-all, `from_u32` / `to_u32`, a name and `Display`.
//!
//! Invariant: `Other(v)` is only produced for values not in the list, so `from_u32` then
//! `to_u32` is the identity on every `u32`; construct values through `from_u32` (or the named
//! variants) and never `Other` with a known value.

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident {
            $( $(#[$vmeta:meta])* $name:ident = $value:literal, $text:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $ty {
            $( $(#[$vmeta])* #[doc = $text] $name, )*
            /// A value not in the table, kept so it survives a round trip.
            Other(u32),
        }

        impl $ty {
            /// Maps a wire value to its variant (unknown values become `Other`).
            pub const fn from_u32(value: u32) -> Self {
                match value {
                    $( $value => Self::$name, )*
                    other => Self::Other(other),
                }
            }

            /// The wire value.
            pub const fn to_u32(self) -> u32 {
                match self {
                    $( Self::$name => $value, )*
                    Self::Other(other) => other,
                }
            }

            /// The specification's name / description, or `"unknown"`.
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                    Self::Other(_) => "unknown",
                }
            }
        }

        impl From<u32> for $ty {
            fn from(value: u32) -> Self {
                Self::from_u32(value)
            }
        }

        impl From<$ty> for u32 {
            fn from(value: $ty) -> Self {
                value.to_u32()
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{} (0x{:08X})", self.description(), self.to_u32())
            }
        }
    };
}

pub(crate) use code_table;
