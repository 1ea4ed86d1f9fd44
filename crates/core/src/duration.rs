//! Typed durations in configuration: `"500ms"`, `"30s"`, `"5m"`, `"2h"`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A configured duration, kept in milliseconds so sub-second values are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration {
    millis: u64,
}

impl ConfigDuration {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }
    pub const fn as_millis(self) -> u64 {
        self.millis
    }
    /// Whole seconds, rounded up so a positive duration never becomes zero.
    pub const fn as_secs_ceil(self) -> u64 {
        self.millis.div_ceil(1000)
    }
}

/// Parses `<digits><unit>` with unit one of `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<ConfigDuration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{text}\" has no unit (use ms, s, m or h, e.g. \"30s\")"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("\"{text}\" is not a duration like \"30s\""));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is out of range"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown unit \"{unit}\" (use ms, s, m or h)"
            ))
        }
    };
    value
        .checked_mul(factor)
        .map(ConfigDuration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is out of range"))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration string such as \"30s\", \"500ms\", \"5m\" or \"2h\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ConfigDuration, E> {
                parse_duration(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

impl std::fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.millis;
        if m != 0 && m % 3_600_000 == 0 {
            write!(f, "{}h", m / 3_600_000)
        } else if m != 0 && m % 60_000 == 0 {
            write!(f, "{}m", m / 60_000)
        } else if m % 1_000 == 0 {
            write!(f, "{}s", m / 1_000)
        } else {
            write!(f, "{m}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("30s").unwrap().as_millis(), 30_000);
        assert_eq!(parse_duration("5m").unwrap().as_millis(), 300_000);
        assert_eq!(parse_duration("2h").unwrap().as_millis(), 7_200_000);
        assert_eq!(parse_duration("0s").unwrap().as_millis(), 0);
    }

    #[test]
    fn rejects_bad_text() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999h")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_duration("9999999999999999h")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ConfigDuration::from_millis(7_200_000).to_string(), "2h");
        assert_eq!(ConfigDuration::from_millis(90_000).to_string(), "90s");
        assert_eq!(ConfigDuration::from_millis(1_500).to_string(), "1500ms");
        assert_eq!(ConfigDuration::from_millis(1_500).as_secs_ceil(), 2);
    }
}
