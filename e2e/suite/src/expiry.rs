//! Which tokens the load still expects Keystone to accept, judged by the `expires_at` Keystone itself reported
//! when it issued each token — never by a local estimate of the lifetime.
//!
//! Keystone refuses an expired token (`TokenNotFound`, HTTP 404) exactly like a token whose key is gone, so the
//! load must only count a refusal as a failure when the token was certainly not expired at the moment Keystone
//! looked at it. Keystone runs on this machine, so its clock is this machine's wall clock; a validation is
//! answered between the moment the request is sent and the moment the response arrives:
//!
//! - sent more than [`MARGIN`] before `expires_at`: the token is expected valid. The HTTP client's timeout is no
//!   longer than the margin, so any answer arrives before `expires_at`; a refusal is a failure.
//! - sent within the margin: the token is *near expiry*. A refusal that arrives before `expires_at` is still a
//!   failure (Keystone decided while the token was valid); one that arrives after is counted separately.
//! - at or past `expires_at`: the token is no longer validated (dropped).

use std::time::{Duration, SystemTime};

/// How long before its `expires_at` a token stops being expected valid: the load's HTTP request timeout (a
/// request sent earlier is answered, or fails, before the token expires). 20 s: a Keystone worker process's
/// first request (imports, then bcrypt) took over 10 s on this 2-core machine right after a roll.
pub const MARGIN: Duration = Duration::from_secs(20);

/// What the load expects of a token at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// More than [`MARGIN`] before `expires_at`: Keystone must accept it.
    Valid,
    /// Within [`MARGIN`] of `expires_at`: validated, and counted apart.
    NearExpiry,
    /// At or past `expires_at`: not validated any more.
    Expired,
}

/// What the load expects of a token that expires at `expires_at`, at `now`.
pub fn expect(expires_at: SystemTime, now: SystemTime) -> Expect {
    match expires_at.duration_since(now) {
        Ok(left) if left > MARGIN => Expect::Valid,
        Ok(left) if left > Duration::ZERO => Expect::NearExpiry,
        _ => Expect::Expired,
    }
}

/// Whether a token is kept for later validations at `now`: until it expires.
pub fn keep(expires_at: SystemTime, now: SystemTime) -> bool {
    expect(expires_at, now) != Expect::Expired
}

/// How one validation came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted while expected valid.
    Validated,
    /// Accepted within the margin of expiry.
    ValidatedNearExpiry,
    /// Refused once `expires_at` had passed (sent within the margin): not a failure.
    RefusedAfterExpiry,
    /// Refused (or any other answer) while the token was still valid: a failure, with how long before
    /// `expires_at` the answer arrived.
    Failed { before_expiry: Duration },
}

/// Judges a validation of a token expiring at `expires_at`, sent when [`expect`] said `expected` and answered
/// with HTTP `status` at `answered`.
pub fn judge(expected: Expect, expires_at: SystemTime, status: u16, answered: SystemTime) -> Outcome {
    match (status, expected) {
        (200, Expect::Valid) => Outcome::Validated,
        (200, _) => Outcome::ValidatedNearExpiry,
        _ => match expires_at.duration_since(answered) {
            // The answer came before the token expired: Keystone refused a valid token.
            Ok(before) if before > Duration::ZERO => Outcome::Failed {
                before_expiry: before,
            },
            // Expected valid but answered at or after expiry: the request took longer than the margin, which
            // the client's timeout rules out; report it rather than hide it.
            _ if expected == Expect::Valid => Outcome::Failed {
                before_expiry: Duration::ZERO,
            },
            _ => Outcome::RefusedAfterExpiry,
        },
    }
}

/// `expires_at` as Keystone writes it (`2026-12-04T21:10:37.000000Z`).
pub fn parse_expires_at(s: &str) -> Result<SystemTime, String> {
    s.parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|e| format!("expires_at {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Duration = Duration::from_nanos(1);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn expectation_at_the_boundaries() {
        let exp = at(120);
        assert_eq!(expect(exp, at(0)), Expect::Valid);
        assert_eq!(expect(exp, exp - MARGIN - NS), Expect::Valid);
        // Exactly the margin left: no longer certain to be answered before expiry.
        assert_eq!(expect(exp, exp - MARGIN), Expect::NearExpiry);
        assert_eq!(expect(exp, exp - NS), Expect::NearExpiry);
        assert_eq!(expect(exp, exp), Expect::Expired);
        assert_eq!(expect(exp, exp + NS), Expect::Expired);
        assert_eq!(expect(exp, at(10_000)), Expect::Expired);
    }

    #[test]
    fn tokens_are_kept_until_they_expire() {
        let exp = at(120);
        assert!(keep(exp, exp - MARGIN - NS));
        assert!(keep(exp, exp - MARGIN));
        assert!(keep(exp, exp - NS));
        assert!(!keep(exp, exp));
        assert!(!keep(exp, exp + Duration::from_secs(1)));
    }

    #[test]
    fn a_refusal_is_a_failure_unless_it_came_after_expiry() {
        let exp = at(120);
        // Expected valid, refused with 30 s left: the failure the scenario exists for.
        assert_eq!(
            judge(Expect::Valid, exp, 404, exp - Duration::from_secs(30)),
            Outcome::Failed {
                before_expiry: Duration::from_secs(30)
            }
        );
        // Near expiry, but the refusal arrived 1 ns before expires_at: Keystone saw a valid token.
        assert_eq!(
            judge(Expect::NearExpiry, exp, 404, exp - NS),
            Outcome::Failed { before_expiry: NS }
        );
        // Near expiry, answered at or after expires_at: counted apart, not a failure.
        assert_eq!(
            judge(Expect::NearExpiry, exp, 404, exp),
            Outcome::RefusedAfterExpiry
        );
        assert_eq!(
            judge(Expect::NearExpiry, exp, 404, exp + Duration::from_secs(2)),
            Outcome::RefusedAfterExpiry
        );
        // Expected valid yet answered after expiry cannot happen within the timeout: reported.
        assert_eq!(
            judge(Expect::Valid, exp, 404, exp + NS),
            Outcome::Failed {
                before_expiry: Duration::ZERO
            }
        );
        // Server errors count like refusals.
        assert_eq!(
            judge(Expect::Valid, exp, 500, exp - Duration::from_secs(50)),
            Outcome::Failed {
                before_expiry: Duration::from_secs(50)
            }
        );
    }

    #[test]
    fn acceptances_are_counted_by_expectation() {
        let exp = at(120);
        assert_eq!(judge(Expect::Valid, exp, 200, at(1)), Outcome::Validated);
        assert_eq!(
            judge(Expect::NearExpiry, exp, 200, exp - NS),
            Outcome::ValidatedNearExpiry
        );
        // Keystone may accept a token a moment past expires_at if it decided before; still not a failure.
        assert_eq!(
            judge(Expect::NearExpiry, exp, 200, exp + NS),
            Outcome::ValidatedNearExpiry
        );
    }

    #[test]
    fn keystone_timestamps_parse() {
        let t = parse_expires_at("2027-01-15T08:00:00.000000Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_800_000_000)
        );
        let t = parse_expires_at("2027-01-15T08:00:00.250000Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_800_000_000_250)
        );
        assert!(parse_expires_at("tomorrow").is_err());
    }
}
