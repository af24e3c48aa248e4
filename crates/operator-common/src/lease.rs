//! Leader election: one `coordination.k8s.io/v1` Lease per controller (and per watched namespace), so that
//! with several replicas exactly one reconciles. The gate runs after the health server is up and before the
//! Controller starts: standbys stay here (and are Ready, so rollouts finish) until the lease is theirs.
//!
//! Why not kube-lease-manager: it decides expiry from the lease's `renewTime` against the local clock (clock
//! skew between nodes then shortens or lengthens the lease) and a leader that can no longer reach the
//! apiserver keeps believing it leads. This gate follows client-go instead: a candidate takes over only
//! after it has itself *observed* the record unchanged for the lease duration, and a leader that has not
//! renewed within the renew deadline declares the lease lost. Every write is a `replace` carrying the
//! resourceVersion it read, so two candidates can never both win the same round.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Timings, as in client-go: the lease is valid for `lease_duration` after its last renewal; the leader
/// gives up if it could not renew for `renew_deadline`; everyone retries every `retry_period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a non-leader waits, after last seeing the record change, before taking the lease.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

impl Timings {
    /// Checks the ordering client-go requires: retry < renew deadline < lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "leader election retry period ({:?}) must be positive and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "leader election renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }
}

/// One candidate for one Lease.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct LeaseGate {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
}

/// What a candidate last saw of the record, and when it saw it change (local monotonic time, so clock
/// skew between replicas does not matter).
#[derive(Debug)]
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    changed_at: Instant,
}

/// The outcome of one acquire-or-renew attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The lease is ours (acquired or renewed).
    Held,
    /// Another holder has a valid lease.
    HeldBy(String),
}

impl LeaseGate {
    /// A candidate named `identity` for Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timings: Timings) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
        }
    }

    /// The holder identity this candidate writes.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the lease. Errors from the apiserver are logged and retried.
    pub async fn acquire(&self) -> Leadership {
        let mut observed = None;
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_acquire_or_renew(&mut observed).await {
                Ok(Attempt::Held) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Leadership {
                        gate: self.clone(),
                        observed,
                        renewed_at: Instant::now(),
                    };
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(lease = %self.name, %holder, "standing by; another replica leads");
                        last_holder = Some(holder);
                    }
                }
                Err(error) => tracing::warn!(lease = %self.name, %error, "cannot read or take the lease"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// One round: read the Lease (create it if missing), then take or renew it when it is ours, free or
    /// expired as observed locally.
    async fn try_acquire_or_renew(&self, observed: &mut Option<Observed>) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.timings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Attempt::Held);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone(), spec.lease_transitions);
        let instant = Instant::now();
        match observed {
            Some(o) if o.record == record => {}
            _ => {
                *observed = Some(Observed {
                    record,
                    changed_at: instant,
                })
            }
        }
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && let Some(holder) = holder {
            let valid_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.timings.lease_duration, Duration::from_secs);
            let seen = observed.as_ref().map_or(instant, |o| o.changed_at);
            if instant.duration_since(seen) < valid_for {
                return Ok(Attempt::HeldBy(holder));
            }
            tracing::info!(lease = %self.name, previous = %holder, "lease expired; taking over");
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        // Replace carries the resourceVersion just read: a concurrent writer makes this fail with 409.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        let spec = written.spec.unwrap_or_default();
        *observed = Some(Observed {
            record: (spec.holder_identity, spec.renew_time, spec.lease_transitions),
            changed_at: Instant::now(),
        });
        Ok(Attempt::Held)
    }

    /// Clears the holder so that a standby takes over at once instead of waiting out the lease; only if the
    /// lease is still ours.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// The lease, held. Keep renewing with [`Leadership::hold`].
#[allow(missing_debug_implementations)]
pub struct Leadership {
    gate: LeaseGate,
    observed: Option<Observed>,
    renewed_at: Instant,
}

/// Why [`Leadership::hold`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Another replica holds the lease now.
    TakenBy(String),
    /// No successful renewal within the renew deadline.
    RenewDeadlineExceeded,
}

impl Leadership {
    /// Renews every retry period until the lease is lost; returns why. Never returns while the lease holds.
    pub async fn hold(&mut self) -> Ended {
        loop {
            tokio::time::sleep(self.gate.timings.retry_period).await;
            // A renewal may take only what is left of the renew deadline: a request on a connection to an
            // apiserver that stopped answering would otherwise wait for the client's read timeout (minutes),
            // long after a standby has taken the lease over.
            let left = self
                .gate
                .timings
                .renew_deadline
                .saturating_sub(self.renewed_at.elapsed());
            match tokio::time::timeout(left, self.gate.try_acquire_or_renew(&mut self.observed)).await {
                Ok(Ok(Attempt::Held)) => self.renewed_at = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => return Ended::TakenBy(holder),
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.gate.name, %error, "cannot renew the lease");
                }
                Err(_elapsed) => {
                    tracing::warn!(lease = %self.gate.name, waited = ?left, "lease renewal did not complete in time");
                }
            }
            if self.renewed_at.elapsed() >= self.gate.timings.renew_deadline {
                return Ended::RenewDeadlineExceeded;
            }
        }
    }

    /// Gives the lease up (on a clean shutdown) so a standby need not wait for it to expire.
    pub async fn release(self) {
        match self.gate.release().await {
            Ok(()) => tracing::info!(lease = %self.gate.name, "lease released"),
            Err(error) => tracing::warn!(lease = %self.gate.name, %error, "cannot release the lease"),
        }
    }
}

/// This process's identity in the Lease: the pod name when the chart sets `POD_NAME`, otherwise the host
/// name; always with a random suffix so that a restarted process is a new candidate.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "keystone-operator".to_owned());
    let suffix: u32 = rand::random();
    format!("{base}_{suffix:08x}")
}

/// The Lease name for a controller: `keystone-<short>`, plus `-<namespace>` when it watches one namespace
/// (one Deployment per watched namespace then shares the release namespace without sharing a lease).
pub fn lease_name(short_name: &str, watched_namespace: Option<&str>) -> String {
    match watched_namespace {
        Some(ns) => format!("keystone-{short_name}-{ns}"),
        None => format!("keystone-{short_name}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use super::{Timings, lease_name};

    fn t(lease: u64, renew: u64, retry: u64) -> Timings {
        Timings {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        }
    }

    #[rstest]
    #[case(t(15, 10, 2), true)]
    #[case(t(15, 15, 2), false)]
    #[case(t(15, 10, 10), false)]
    #[case(t(15, 10, 0), false)]
    fn timings_ordering(#[case] timings: Timings, #[case] ok: bool) {
        assert_eq!(timings.validate().is_ok(), ok, "{timings:?}");
    }

    #[test]
    fn lease_names() {
        assert_eq!(lease_name("api", None), "keystone-api");
        assert_eq!(lease_name("db", Some("openstack")), "keystone-db-openstack");
    }
}
