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

/// The largest duration Go represents (`i64::MAX` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

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
            value = value
                .checked_add(u128::from(d.to_digit(10).unwrap_or(0)) * scale)
                .ok_or_else(|| err("too large"))?;
        }
        total_nanos = total_nanos.checked_add(value).ok_or_else(|| err("too large"))?;
        rest = next;
    }
    // Go's (and CEL's, so admission's) largest duration: anything longer cannot have been admitted, and
    // sums of a few such durations stay far from overflowing.
    if total_nanos > MAX_NANOS {
        return Err(err(
            "longer than the largest duration Kubernetes accepts (2562047h47m16.854775807s)",
        ));
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
    // Fraction digits that overflowed (a panic in debug builds, in release a wrap to 1808 s) and the bounds.
    #[case("94522879700260684295381835.9h")]
    #[case("5671372782015641057722910123.9m")]
    #[case("5124095576030431h")]
    #[case("2562047h47m16.854775808s")]
    #[case("2562047h47m17s")]
    fn rejects(#[case] input: &str) {
        assert!(parse(input).is_err(), "{input:?} accepted");
    }

    #[test]
    fn the_largest_go_duration_is_accepted() {
        assert_eq!(
            parse("2562047h47m16.854775807s"),
            Ok(Duration::new(9_223_372_036, 854_775_807))
        );
    }

    proptest::proptest! {
        /// Never panics, whatever the string; anything accepted is within Go's range.
        #[test]
        fn total_on_any_input(s in "[0-9.]{0,40}(ns|us|ms|s|m|h|x)?([0-9.]{0,30}(ns|us|ms|s|m|h))?") {
            if let Ok(d) = parse(&s) {
                proptest::prop_assert!(d.as_nanos() <= MAX_NANOS);
            }
        }

        /// A sum of terms parses to the sum of their values (when within range).
        #[test]
        fn terms_add_up(h in 0u64..3_000_000, m in 0u64..1_000, s in 0u64..100_000, ms in 0u64..1_000_000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            match parse(&text) {
                Ok(d) => proptest::prop_assert_eq!(d, expected),
                Err(_) => proptest::prop_assert!(expected.as_nanos() > MAX_NANOS),
            }
        }
    }
}
