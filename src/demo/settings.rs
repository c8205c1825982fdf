//! The demo's flags (`--demo-rate`, `--demo-delays`, ...) and the durations they take.

use std::time::Duration;

use clap::Args;

/// Timings of the demo pipeline, flags of `demo` and of the embedded default. Tests
/// compress them; the defaults tell the story at a pace a person can follow.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Live order events produced per second on `orders` (payments get a quarter of it).
    #[arg(long, env = "DLQ_DEMO_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub demo_rate: u32,
    /// Delays of the retry topics `orders.retry.1` and `orders.retry.2`, D1,D2 (e.g. 5s,30s
    /// or 200ms,500ms). An event waits on a retry topic until it is due.
    #[arg(long, env = "DLQ_DEMO_DELAYS", default_value = "5s,30s", value_parser = parse_delays)]
    pub demo_delays: RetryDelays,
    /// The first in-place backoff of a transient failure; it doubles per attempt (5 attempts).
    #[arg(long, env = "DLQ_DEMO_BACKOFF", default_value = "300ms", value_parser = parse_duration)]
    pub demo_backoff: Duration,
    /// Share of first attempts that fail transiently (a simulated database timeout), in
    /// percent. Each one pauses its partition for at least --demo-backoff, so at 20 events/s
    /// over 3 partitions 30% would keep the partitions paused most of the time.
    #[arg(long, env = "DLQ_DEMO_TRANSIENT_PERCENT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub demo_transient_percent: u8,
    /// Share of order events that carry a coupon code (and hit the deliberate bug until the
    /// fix is deployed), in percent.
    #[arg(long, env = "DLQ_DEMO_COUPON_PERCENT", default_value_t = 15, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub demo_coupon_percent: u8,
    /// How long the services remember a processed event id or a finished replay id, to skip
    /// duplicates (seed 002); older ids are forgotten, so memory stays bounded.
    #[arg(long, env = "DLQ_DEMO_IDEMPOTENCY_WINDOW", default_value = "60m", value_parser = parse_duration)]
    pub demo_idempotency_window: Duration,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            demo_rate: 20,
            demo_delays: RetryDelays {
                first: Duration::from_secs(5),
                second: Duration::from_secs(30),
            },
            demo_backoff: Duration::from_millis(300),
            demo_transient_percent: 10,
            demo_coupon_percent: 15,
            demo_idempotency_window: super::recent::DEFAULT_KEEP,
        }
    }
}

/// The delays of the two retry topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    /// `orders.retry.1`.
    pub first: Duration,
    /// `orders.retry.2`.
    pub second: Duration,
}

/// `D1,D2`, each a duration such as `200ms`, `5s` or `1m`.
pub fn parse_delays(s: &str) -> Result<RetryDelays, String> {
    let Some((first, second)) = s.split_once(',') else {
        return Err(format!(
            "'{s}' is not two delays; write D1,D2 such as 5s,30s or 200ms,500ms"
        ));
    };
    Ok(RetryDelays {
        first: parse_duration(first)?,
        second: parse_duration(second)?,
    })
}

/// A whole number followed by ms, s or m.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad =
        || format!("'{s}' is not a duration; write a whole number and ms, s, m or h, e.g. 300ms");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).map(Duration::from_millis).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_take_milliseconds_seconds_and_minutes() {
        assert_eq!(
            parse_delays("5s,30s").unwrap(),
            RetryDelays {
                first: Duration::from_secs(5),
                second: Duration::from_secs(30)
            }
        );
        assert_eq!(
            parse_delays("200ms, 500ms").unwrap().second,
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["5s", "5s,", ",5s", "5,5s", "5d,1s", "-1s,1s", "1.5s,2s"] {
            assert!(parse_delays(bad).is_err(), "{bad}");
        }
    }
}
