//! Go/Kubernetes-style durations (`24h`, `90m`, `1h30m`, `1.5h`), the one format the API uses. The CRD
//! checks the same grammar with CEL on admission; controllers parse with this.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration such as 24h, 90m or 1h30m: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

/// Parses a non-negative Go duration: one or more `<number>[.<fraction>]<unit>` with units ns, us, ms, s, m, h.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let mut rest = input;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if num_end == 0 {
            return Err(err("expected a number"));
        }
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(err("malformed number"));
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err("number too large"))?
        };
        let mut value = int.checked_mul(unit_nanos).ok_or_else(|| err("too large"))?;
        let mut scale = unit_nanos;
        for d in frac.chars() {
            scale /= 10;
            value += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos.checked_add(value).ok_or_else(|| err("too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("24h", 86_400_000)]
    #[case("90m", 5_400_000)]
    #[case("1h30m", 5_400_000)]
    #[case("1.5h", 5_400_000)]
    #[case("500ms", 500)]
    #[case("48h", 172_800_000)]
    #[case("2m30s", 150_000)]
    fn parses(#[case] input: &str, #[case] millis: u128) {
        assert_eq!(parse(input).map(|d| d.as_millis()), Ok(millis));
    }

    #[rstest]
    #[case("")]
    #[case("1day")]
    #[case("-1h")]
    #[case("h")]
    #[case("10")]
    #[case("1..5h")]
    fn rejects(#[case] input: &str) {
        assert!(parse(input).is_err(), "{input:?} accepted");
    }
}
