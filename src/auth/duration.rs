//! Durations as people write them in flags: `90s`, `30m`, `12h`, `30d`.

use std::time::Duration;

/// Parse a whole number followed by s, m, h or d.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad =
        || format!("'{s}' is not a duration; write a whole number and s, m, h or d, e.g. 30d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(seconds) {
        Some(0) => Err(format!(
            "'{s}' is no time at all; give a duration above zero"
        )),
        Some(total) => Ok(Duration::from_secs(total)),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("12h").unwrap(), Duration::from_secs(12 * 3600));
        for bad in ["", "d", "30", "30w", "-1d", "0m", "1.5h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
