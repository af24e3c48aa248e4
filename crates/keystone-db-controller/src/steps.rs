//! Running one step as a Job: start it for the current inputs, watch it, report. A failed Job is retried by
//! starting the next attempt (a new Job, so the failed one stays for inspection until its TTL) after a capped
//! exponential back-off, or at once when the KeystoneAPI's retry annotation gets a new value.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use keystone_types::KeystoneAPI;
use keystone_types::conditions::reasons;
use operator_common::conditions::Desired;

use crate::build::jobs::{ATTEMPT, INPUTS_HASH};
use operator_common::backoff::FailedCall;

use crate::{Context, RETRY_ANNOTATION};

/// Job annotation: the retry request value it was started under.
pub const RETRY_OF: &str = "keystone.openstack.org/retry-of";

/// First back-off after a failed Job; doubles per attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// Longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What a reconcile needs to run a step.
#[allow(missing_debug_implementations)]
pub struct StepContext<'a> {
    /// Shared context.
    pub ctx: &'a Context,
    /// The KeystoneAPI.
    pub ks: &'a KeystoneAPI,
    /// Now.
    pub now: Timestamp,
    /// The KeystoneAPI's key in the controller's backoff.
    pub backoff_key: String,
}

/// One step's identity.
#[derive(Debug)]
pub struct Step<'a> {
    /// `database`, `db-sync`, `bootstrap`.
    pub kind: &'a str,
    /// Hash of the last successful run (from the status).
    pub recorded: Option<&'a str>,
    /// Hash of the current inputs.
    pub hash: &'a str,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Succeeded for the current inputs.
    Done,
    /// A Job is running.
    Running(String),
    /// A Job's pod cannot start (image, config, scheduling): the message names it with the kubelet's reason.
    PodsNotStarting(String),
    /// The last Job failed; the next attempt starts after the given delay.
    Failed(String, Duration),
    /// Waiting for something else (another step, another controller, a Secret).
    Waiting(String),
    /// Cannot go on until a user acts: the reason and what to do.
    Blocked(&'static str, String),
    /// An API call of the step failed: the reason, the message (naming the object and the API server's
    /// answer) and when to try again.
    CallFailed(&'static str, String, Duration),
}

impl StepState {
    /// The condition for this state.
    pub fn condition(&self, type_: &'static str, done: &str) -> Desired {
        match self {
            StepState::Done => Desired::ok(type_, reasons::SUCCEEDED, done),
            StepState::Running(m) => Desired::not_ok(type_, "Running", m.clone()),
            StepState::PodsNotStarting(m) => {
                Desired::not_ok(type_, keystone_types::pod_status::PODS_NOT_STARTING, m.clone())
            }
            StepState::Failed(m, _) => Desired::not_ok(type_, "JobFailed", m.clone()),
            StepState::Waiting(m) => Desired::not_ok(type_, "Waiting", m.clone()),
            StepState::Blocked(reason, m) | StepState::CallFailed(reason, m, _) => {
                Desired::not_ok(type_, *reason, m.clone())
            }
        }
    }

    /// When to look again.
    pub fn wake_after(&self) -> Option<Duration> {
        match self {
            StepState::Failed(_, d) | StepState::CallFailed(_, _, d) => {
                Some((*d).max(Duration::from_secs(1)))
            }
            // Job pods do not wake this controller: look again for one that cannot start.
            StepState::Running(_) | StepState::PodsNotStarting(_) => Some(Duration::from_secs(30)),
            // What the user must fix may not wake a watch (a Secret we do not watch): look again soon.
            StepState::Blocked(..) => Some(Duration::from_secs(30)),
            _ => None,
        }
    }
}

/// Capped exponential back-off for attempt `n` (0-based).
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_MAX)
}

/// When the attempt after `attempt`, which failed at `failed_at`, may start. A failure time in the future
/// (a skewed clock, an edited status) counts as now, and the sum never overflows: a timestamp near the end
/// of time must not stop the controller.
pub fn next_attempt_at(failed_at: Timestamp, attempt: u32, now: Timestamp) -> Timestamp {
    let from = failed_at.min(now);
    from.checked_add(backoff(attempt))
        .or_else(|_| now.checked_add(backoff(attempt)))
        .unwrap_or(Timestamp::MAX)
}

fn finished(job: &Job, type_: &str) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// The reason of the Job's `Failed` condition (`DeadlineExceeded`, `BackoffLimitExceeded`, ...).
fn failure_reason(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .and_then(|c| c.reason.clone())
}

fn attempt_of(job: &Job) -> u32 {
    job.annotations()
        .get(ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

async fn publish(sc: &StepContext<'_>, type_: EventType, reason: &str, note: String) {
    operator_common::events::publish(&sc.ctx.recorder, &sc.ks.object_ref(&()), type_, reason, note).await;
}

async fn start(
    sc: &StepContext<'_>,
    api: &Api<Job>,
    mut job: Job,
    retry: Option<&str>,
) -> Result<String, FailedCall> {
    if let Some(r) = retry {
        job.annotations_mut().insert(RETRY_OF.into(), r.into());
    }
    let name = job.name_any();
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(name),
        Err(source) => Err(FailedCall {
            name: sc.ks.name_any(),
            condition: None,
            action: "creating",
            object: format!("Job {name}"),
            source,
        }),
    }
}

/// The latest attempt's Job of component `component` for inputs `hash`.
pub async fn latest(sc: &StepContext<'_>, component: &str, hash: &str) -> Result<Option<Job>, FailedCall> {
    let ns = sc.ks.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(sc.ctx.client.clone(), &ns);
    let selector = format!(
        "{},{}={component},{INPUTS_HASH}={hash}",
        keystone_types::labels::managed_selector(&sc.ks.name_any(), crate::CONTROLLER),
        keystone_types::labels::COMPONENT,
    );
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| FailedCall {
            name: sc.ks.name_any(),
            condition: None,
            action: "listing",
            object: format!("Jobs {selector}"),
            source,
        })?
        .items
        .into_iter()
        .max_by_key(attempt_of))
}

/// Why the pods of Job `job` cannot start (empty when they can, or when they cannot be read: a Job that runs
/// needs no pod read, so a failed read is only logged).
async fn stuck_pods(sc: &StepContext<'_>, job: &str) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(sc.ctx.client.clone(), &sc.ks.namespace().unwrap_or_default());
    match api
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
    {
        Ok(pods) => keystone_types::pod_status::stuck_pods(&pods.items, sc.now),
        Err(e) => {
            tracing::warn!(%job, error = %e, "cannot read the Job's pods");
            Vec::new()
        }
    }
}

/// The encrypted credentials the database step's Job for `hash` found (its pod's termination message); `None`
/// when it cannot be read (then the status keeps what it had, and without a count the fernet controller makes no
/// credential keys for a KeystoneAPI that never had any).
pub async fn stored_credentials(sc: &StepContext<'_>, hash: &str) -> Option<i64> {
    let job = latest(sc, keystone_types::labels::component::DB_CREATE, hash)
        .await
        .ok()??;
    let api: Api<Pod> = Api::namespaced(sc.ctx.client.clone(), &sc.ks.namespace().unwrap_or_default());
    let pods = api
        .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot read the database Job's pods"))
        .ok()?;
    pods.items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code == 0)
        .find_map(|t| crate::build::jobs::stored_credentials(t.message.as_deref()?))
}

/// Runs (or follows) the step's Job like [`follow`]; a failed API call becomes the step's state (its
/// condition names the object and the API server's answer) with this KeystoneAPI's next backoff.
pub async fn run(sc: &StepContext<'_>, step: &Step<'_>, build: impl Fn(u32) -> Job) -> StepState {
    match follow(sc, step, build).await {
        Ok(state) => state,
        Err(failed) => call_failed(sc, step.kind, &failed),
    }
}

/// The state of step `kind` after `failed`, retrying with this KeystoneAPI's next backoff.
pub fn call_failed(sc: &StepContext<'_>, kind: &str, failed: &FailedCall) -> StepState {
    let retry_in = sc.ctx.backoff.next(&sc.backoff_key);
    tracing::warn!(step = kind, error = %failed, ?retry_in, "API call failed");
    let c =
        operator_common::backoff::failed_call("", failed.action, &failed.object, &failed.source, retry_in);
    StepState::CallFailed(
        operator_common::backoff::reason(&failed.source),
        c.message,
        retry_in,
    )
}

/// Runs (or follows) the step's Job; `build(attempt)` makes the Job for an attempt.
async fn follow(
    sc: &StepContext<'_>,
    step: &Step<'_>,
    build: impl Fn(u32) -> Job,
) -> Result<StepState, FailedCall> {
    if step.recorded == Some(step.hash) {
        return Ok(StepState::Done);
    }
    let ns = sc.ks.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(sc.ctx.client.clone(), &ns);
    let template = build(0);
    let component = template
        .labels()
        .get(keystone_types::labels::COMPONENT)
        .cloned()
        .unwrap_or_default();
    let latest = latest(sc, &component, step.hash).await?;
    let retry_request = sc.ks.annotations().get(RETRY_ANNOTATION).cloned();
    let Some(job) = latest else {
        let name = start(sc, &api, template, retry_request.as_deref()).await?;
        return Ok(StepState::Running(format!("{} Job {name} started", step.kind)));
    };
    let name = job.name_any();
    if finished(&job, "Complete").is_some() {
        publish(
            sc,
            EventType::Normal,
            "JobSucceeded",
            format!("{} Job {name} succeeded", step.kind),
        )
        .await;
        return Ok(StepState::Done);
    }
    let Some(failed_at) = finished(&job, "Failed") else {
        let stuck = stuck_pods(sc, &name).await;
        if stuck.is_empty() {
            return Ok(StepState::Running(format!("{} Job {name} is running", step.kind)));
        }
        return Ok(StepState::PodsNotStarting(format!(
            "{} Job {name} is running but its pod cannot start ({}); it fails at its deadline of {} s unless this \
             is fixed",
            step.kind,
            stuck.join("; "),
            crate::build::jobs::JOB_DEADLINE_SECONDS
        )));
    };
    let attempt = attempt_of(&job);
    let Some(next_attempt) = attempt.checked_add(1) else {
        return Ok(StepState::Blocked(
            "AttemptsExhausted",
            format!(
                "{} Job {name} carries attempt number {attempt}, the largest there is; delete the step's Jobs \
                 (`kubectl -n {ns} delete job -l {}={component}`) to start counting again",
                step.kind,
                keystone_types::labels::COMPONENT
            ),
        ));
    };
    let next_at = next_attempt_at(failed_at, attempt, sc.now);
    let retry_now = retry_request.is_some()
        && retry_request.as_deref() != job.annotations().get(RETRY_OF).map(String::as_str);
    if retry_now || sc.now >= next_at {
        let name = start(sc, &api, build(next_attempt), retry_request.as_deref()).await?;
        return Ok(StepState::Running(format!(
            "{} Job {name} started (attempt {})",
            step.kind,
            u64::from(next_attempt) + 1
        )));
    }
    // Kubernetes' reason for the failure, when it is not just the container's exit (DeadlineExceeded: the Job
    // ran past its activeDeadlineSeconds).
    let why = failure_reason(&job)
        .filter(|r| r != "BackoffLimitExceeded")
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let message = format!(
        "{} Job {name} failed (attempt {}{why}); see `kubectl -n {ns} logs job/{name}`. Next attempt at {next_at}, \
         or now with `kubectl -n {ns} annotate keystoneapi {} {RETRY_ANNOTATION}=$(date +%s) --overwrite`",
        step.kind,
        next_attempt,
        sc.ks.name_any()
    );
    if finished(&job, "Failed").is_some_and(|t| (sc.now - t).get_seconds() < 5) {
        publish(sc, EventType::Warning, "JobFailed", message.clone()).await;
    }
    let wait = Duration::from_secs(u64::try_from((next_at - sc.now).get_seconds()).unwrap_or(1));
    Ok(StepState::Failed(message, wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Total for any failure time and attempt: the next attempt is after the failure (as clamped to now)
        /// and at most the longest back-off after now.
        #[test]
        fn next_attempt_is_bounded(
            failed in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            now in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            attempt in proptest::num::u32::ANY,
        ) {
            let failed = Timestamp::from_second(failed).unwrap_or(Timestamp::MAX);
            let now = Timestamp::from_second(now).unwrap_or(Timestamp::MAX);
            let next = next_attempt_at(failed, attempt, now);
            proptest::prop_assert!(next >= failed.min(now));
            let latest = now.checked_add(BACKOFF_MAX).unwrap_or(Timestamp::MAX);
            proptest::prop_assert!(next <= latest);
        }
    }

    #[test]
    fn a_failure_at_the_end_of_time_does_not_panic() {
        let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::MAX);
        let end = Timestamp::MAX;
        // In the future: counted from now.
        assert_eq!(
            next_attempt_at(end, 0, now),
            now.checked_add(BACKOFF_BASE).unwrap_or(Timestamp::MAX)
        );
        // Both at the end: saturates instead of panicking.
        assert_eq!(next_attempt_at(end, 99, end), Timestamp::MAX);
        assert_eq!(
            next_attempt_at(now, 1, now),
            now.checked_add(Duration::from_secs(60)).unwrap_or(Timestamp::MAX)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(30));
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(5), Duration::from_secs(600));
        assert_eq!(backoff(99), Duration::from_secs(600));
    }
}
