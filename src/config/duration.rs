//! Durations written like `500ms`, `5s`, `1m`, `2h` in the config file.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration `{0}` needs a unit: ms, s, m, h or d (e.g. `5s`)")]
    NoUnit(String),
    #[error("duration `{0}` must start with a whole number")]
    NotANumber(String),
    #[error("duration `{text}` has unknown unit `{unit}`; use ms, s, m, h or d")]
    UnknownUnit { text: String, unit: String },
    #[error("duration `{0}` is too large")]
    TooLarge(String),
}

/// Parse `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(text.to_string()))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    }
    .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    Ok(Duration::from_millis(ms))
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse("5").unwrap_err().to_string().contains("needs a unit"));
        assert!(parse("5 weeks")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(matches!(
            parse("9999999999999999999d"),
            Err(DurationError::TooLarge(_))
        ));
        assert!(parse("s").is_err());
    }

    #[test]
    fn displays_round_trip() {
        for s in ["500ms", "5s", "1m", "2h"] {
            assert_eq!(HumanDuration(parse(s).unwrap()).to_string(), s);
        }
    }
}
