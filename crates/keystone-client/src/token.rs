//! The system-scoped password authentication request, the token response, and when a cached token must be
//! replaced.
//!
//! The refresh time is measured on this process's monotonic clock from the token's *lifetime*
//! (`expires_at - issued_at`, both from Keystone's own clock), not by comparing `expires_at` with the local
//! wall clock: a controller whose clock is minutes off Keystone's then neither keeps an expired token nor
//! re-authenticates on every call.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

/// A cached token is replaced this long before it expires (or at half its lifetime, if that comes later).
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The body of `POST /v3/auth/tokens`: password method, user by name in a domain by name, system scope.
pub(crate) fn auth_request(username: &str, password: &str, user_domain_name: &str) -> Value {
    json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": username,
                        "domain": {"name": user_domain_name},
                        "password": password,
                    }
                }
            },
            "scope": {"system": {"all": true}}
        }
    })
}

/// The part of the token response the client uses.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token: TokenBody,
}

#[derive(Deserialize)]
pub(crate) struct TokenBody {
    pub(crate) expires_at: String,
    #[serde(default)]
    pub(crate) issued_at: Option<String>,
    /// `{"all": true}` on a system-scoped token; absent on project- or domain-scoped ones.
    #[serde(default)]
    pub(crate) system: Option<Value>,
}

/// A token held by the client, with the monotonic instant after which it is no longer handed out.
pub(crate) struct CachedToken {
    /// Marked sensitive, so that even reqwest's and hyper's own debug output leaves it out.
    pub(crate) value: reqwest::header::HeaderValue,
    pub(crate) refresh_at: Instant,
    /// Which issuance this is (see [`KeystoneClient::token_issued_count`](crate::KeystoneClient)), so that a
    /// 401 only drops the token that was actually rejected, not a newer one another task just obtained.
    pub(crate) generation: u64,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("value", &crate::error::Redacted)
            .field("refresh_at", &self.refresh_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// How long a token may be reused: its lifetime less 5 minutes, or less half the lifetime when that is
/// shorter (a deployment with `[token] expiration` of a few minutes still caches). `None` when the
/// timestamps cannot be parsed.
pub(crate) fn reuse_for(body: &TokenBody, now: SystemTime) -> Option<Duration> {
    let expires = parse_timestamp(&body.expires_at)?;
    let issued = match body.issued_at.as_deref() {
        Some(s) => parse_timestamp(s)?,
        // No issued_at: fall back to the local clock.
        None => now
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_micros()
            .try_into()
            .ok()?,
    };
    let lifetime_us = u64::try_from(expires.saturating_sub(issued)).unwrap_or(0);
    let lifetime = Duration::from_micros(lifetime_us);
    Some(lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2)))
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp as Keystone writes them
/// (`2025-03-14T10:26:12.000000Z`; a numeric offset such as `+00:00` is accepted too).
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range| num_at(s, range);
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Keep microsecond precision: pad or cut to six digits.
        let six: String = frac[..digits]
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        micros = six.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (num_at(rest, 1..3)? * 3600 + num_at(rest, 4..6)? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + micros)
}

fn num_at(s: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = s.get(range)?;
    if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keystone_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1_000_000));
        // date -u -d 2025-03-14T10:26:12Z +%s = 1741947972
        assert_eq!(
            parse_timestamp("2025-03-14T10:26:12.000000Z"),
            Some(1_741_947_972_000_000)
        );
        assert_eq!(
            parse_timestamp("2025-03-14T10:26:12.5Z"),
            Some(1_741_947_972_500_000)
        );
        assert_eq!(
            parse_timestamp("2025-03-14T11:26:12+01:00"),
            Some(1_741_947_972_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000)
        );
        for bad in [
            "",
            "2025-03-14",
            "2025-13-14T10:26:12Z",
            "2025-03-14T10:26:12.Z",
            "2025-03-14T10:26:12X",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    fn body(issued: Option<&str>, expires: &str) -> TokenBody {
        TokenBody {
            expires_at: expires.into(),
            issued_at: issued.map(Into::into),
            system: None,
        }
    }

    #[test]
    fn reuse_window_is_lifetime_less_margin() {
        let now = SystemTime::now();
        let hour = body(Some("2025-03-14T10:00:00.000000Z"), "2025-03-14T11:00:00.000000Z");
        assert_eq!(reuse_for(&hour, now), Some(Duration::from_secs(55 * 60)));
        // Shorter than twice the margin: reuse for half the lifetime.
        let short = body(Some("2025-03-14T10:00:00.000000Z"), "2025-03-14T10:04:00.000000Z");
        assert_eq!(reuse_for(&short, now), Some(Duration::from_secs(120)));
        // Already expired when issued (clock or config nonsense): never reused.
        let past = body(Some("2025-03-14T10:00:00.000000Z"), "2025-03-14T09:00:00.000000Z");
        assert_eq!(reuse_for(&past, now), Some(Duration::ZERO));
        // Without issued_at the local clock is used.
        let no_issued = body(None, "2000-01-01T00:00:00Z");
        assert_eq!(reuse_for(&no_issued, now), Some(Duration::ZERO));
        assert_eq!(reuse_for(&body(None, "soon"), now), None);
    }

    #[test]
    fn auth_request_is_system_scoped_password_auth() {
        let v = auth_request("admin", "pw", "Default");
        assert_eq!(v["auth"]["scope"], json!({"system": {"all": true}}));
        assert_eq!(v["auth"]["identity"]["methods"], json!(["password"]));
        assert_eq!(
            v["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
    }
}
