//! Per-object exponential backoff for failed reconciles, and what a failed API server call tells the user.
//! Every controller retries one object's failures at 5 s, 10 s, 20 s, … up to 5 min (±10 % jitter), and forgets
//! them on the next success: a broken object never hot-loops and never slows the others down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::conditions::Desired;

/// Per-object failure counts.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The first delay.
    pub const BASE: Duration = Duration::from_secs(5);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(300);

    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let n = {
            let mut f = self
                .failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = f.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let delay = Self::BASE.saturating_mul(1u32 << (n - 1).min(16)).min(Self::MAX);
        let jitter = rand::random_range(0.9..1.1);
        delay.mul_f64(jitter)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// The backoff key of an object: `Kind.version.group/name.namespace`.
pub fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    ObjectRef::from_obj(obj).to_string()
}

/// The backoff key of a watched object that may not have deserialized.
pub fn guard_key<K: Resource<DynamicType = ()>>(obj: &DeserializeGuard<K>) -> String {
    match &obj.0 {
        Ok(k) => key(k),
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let r = ObjectRef::<K>::new(&name);
            match &invalid.metadata.namespace {
                Some(ns) => r.within(ns).to_string(),
                None => r.to_string(),
            }
        }
    }
}

/// Condition reasons for a failed API server call. PascalCase, stable: they are API.
pub mod reasons {
    /// The API server refused the object as invalid (422), naming the field.
    pub const REQUEST_INVALID: &str = "RequestInvalid";
    /// The API server or an admission webhook forbade the request (403), e.g. a quota or a policy.
    pub const REQUEST_FORBIDDEN: &str = "RequestForbidden";
    /// The request conflicted with the object's current state (409).
    pub const REQUEST_CONFLICT: &str = "RequestConflict";
    /// Any other answer from the API server (5xx, 429, …).
    pub const API_SERVER_ERROR: &str = "APIServerError";
    /// No answer: a timeout or a broken connection.
    pub const API_SERVER_UNREACHABLE: &str = "APIServerUnreachable";
}

/// The reason for `error`.
pub fn reason(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(s) => match s.code {
            422 => reasons::REQUEST_INVALID,
            403 => reasons::REQUEST_FORBIDDEN,
            409 => reasons::REQUEST_CONFLICT,
            _ => reasons::API_SERVER_ERROR,
        },
        _ => reasons::API_SERVER_UNREACHABLE,
    }
}

/// Longest API server message quoted in a condition.
const MAX_QUOTED: usize = 1024;

/// The condition `type_` saying that `action` (e.g. `applying`, `reading`) of `object` (e.g. `Deployment
/// keystone-api`) failed, with the API server's answer, and when the next attempt is. The API server's message
/// is quoted (capped), except for a Secret: an admission webhook may echo the values it refused.
pub fn failed_call(
    type_: &'static str,
    action: &str,
    object: &str,
    error: &kube::Error,
    retry_in: Duration,
) -> Desired {
    let answer = match error {
        kube::Error::Api(s) if object.starts_with("Secret ") => format!(
            "the API server answered {} {} (its message is not copied for a Secret; see the controller's log)",
            s.code, s.reason
        ),
        kube::Error::Api(s) => {
            let mut message = s.message.clone();
            if message.len() > MAX_QUOTED {
                let mut end = MAX_QUOTED;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
                message.push('…');
            }
            format!("the API server answered {} {}: {message}", s.code, s.reason)
        }
        other => format!("no answer from the API server: {other}"),
    };
    Desired::not_ok(
        type_,
        reason(error),
        format!(
            "{action} {object} failed: {answer}; next attempt in {} s",
            retry_in.as_secs().max(1)
        ),
    )
}

/// A failed API server call about one object of a KeystoneAPI's, with the condition of the step it belongs to.
#[derive(Debug, thiserror::Error)]
#[error("KeystoneAPI {name}: {action} {object} failed: {source}")]
pub struct FailedCall {
    /// The KeystoneAPI's name.
    pub name: String,
    /// The condition it is reported under; `None` when there is none to report it under (the status write).
    pub condition: Option<&'static str>,
    /// `applying`, `reading`, `deleting`, …
    pub action: &'static str,
    /// `Kind name` of the object.
    pub object: String,
    /// The client error.
    #[source]
    pub source: kube::Error,
}

impl FailedCall {
    /// For `map_err`: `action` on `object` (`Kind name`) of KeystoneAPI `name` failed, reported under
    /// `condition`.
    pub fn under(
        name: &str,
        condition: &'static str,
        action: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> FailedCall {
        let (name, object) = (name.to_owned(), object.into());
        move |source| FailedCall {
            name,
            condition: Some(condition),
            action,
            object,
            source,
        }
    }

    /// For `map_err` on the write of KeystoneAPI `name`'s status: no condition to report a failure under.
    pub fn status_write(name: &str) -> impl FnOnce(kube::Error) -> FailedCall {
        let name = name.to_owned();
        move |source| FailedCall {
            object: format!("KeystoneAPI {name} status"),
            name,
            condition: None,
            action: "writing",
            source,
        }
    }

    /// After the failure: counts it (category `kube_api`), takes the object's next backoff, logs it, and
    /// returns the condition to write (if any) and when to try again.
    pub fn retry(
        &self,
        metrics: &crate::metrics::ControllerMetrics,
        backoff: &Backoff,
        key: &str,
    ) -> (Option<Desired>, Duration) {
        metrics.record_failure("kube_api");
        let retry_in = backoff.next(key);
        tracing::warn!(error = %self, ?retry_in, "API call failed");
        (self.condition(retry_in), retry_in)
    }

    /// The condition to write, retrying in `retry_in`; `None` without a condition to report it under.
    pub fn condition(&self, retry_in: Duration) -> Option<Desired> {
        self.condition
            .map(|type_| failed_call(type_, self.action, &self.object, &self.source, retry_in))
    }
}

/// After `failed` (a step's API call about KeystoneAPI `ks`): counts it, takes the object's next backoff, writes
/// its condition with the controller's other rows and sections as they stand ([`crate::apply::after_failure`];
/// `also` adds conditions that follow from it, such as the api controller's `Ready`), and returns when to try
/// again. A failure without a condition to report it under only backs off.
pub async fn report(
    ks: &keystone_types::KeystoneAPI,
    controller: keystone_types::conditions::Controller,
    failed: &FailedCall,
    ctx: (&kube::Client, &crate::metrics::ControllerMetrics, &Backoff),
    also: impl FnOnce(&Desired) -> Vec<Desired>,
) -> Result<Duration, FailedCall> {
    let (client, metrics, backoff) = ctx;
    let (condition, retry_in) = failed.retry(metrics, backoff, &key(ks));
    let Some(condition) = condition else {
        return Ok(retry_in);
    };
    let mut changed = also(&condition);
    changed.insert(0, condition);
    if let Some(status) =
        crate::apply::after_failure(ks, controller, &changed, k8s_openapi::jiff::Timestamp::now())
    {
        let name = ks.name_any();
        let api: kube::Api<keystone_types::KeystoneAPI> =
            kube::Api::namespaced(client.clone(), &ks.namespace().unwrap_or_default());
        crate::apply::apply_status(&api, &name, controller, &status)
            .await
            .map_err(FailedCall::status_write(&name))?;
    }
    Ok(retry_in)
}

/// The name of `obj` as a condition message shows it: `Kind name`.
pub fn describe<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{} {}", K::kind(&()), obj.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let b = Backoff::default();
        let d: Vec<f64> = (0..9).map(|_| b.next("ns/x").as_secs_f64()).collect();
        for (i, want) in [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
            .iter()
            .enumerate()
        {
            assert!(
                (d[i] - want).abs() <= want * 0.1 + 1e-9,
                "try {i}: {} vs {want}",
                d[i]
            );
        }
        assert!(b.next("ns/y").as_secs_f64() <= 5.5, "per object");
        b.reset("ns/x");
        assert!(b.next("ns/x").as_secs_f64() <= 5.5);
    }

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn failed_calls_name_the_object_and_the_answer() {
        let e = api_error(
            422,
            "Invalid",
            "Deployment.apps \"keystone-api\" is invalid: spec.replicas: Invalid value: -1",
        );
        let c = failed_call(
            "DeploymentReady",
            "applying",
            "Deployment keystone-api",
            &e,
            Duration::from_secs(10),
        );
        assert!(!c.status);
        assert_eq!(c.reason, reasons::REQUEST_INVALID);
        assert_eq!(
            c.message,
            "applying Deployment keystone-api failed: the API server answered 422 Invalid: Deployment.apps \
             \"keystone-api\" is invalid: spec.replicas: Invalid value: -1; next attempt in 10 s"
        );
        let forbidden = api_error(403, "Forbidden", "exceeded quota: pods=1");
        assert_eq!(reason(&forbidden), reasons::REQUEST_FORBIDDEN);
        assert_eq!(
            reason(&api_error(409, "Conflict", "x")),
            reasons::REQUEST_CONFLICT
        );
        assert_eq!(
            reason(&api_error(500, "InternalError", "x")),
            reasons::API_SERVER_ERROR
        );
    }

    #[test]
    fn a_secrets_refusal_is_not_quoted_and_long_messages_are_capped() {
        let e = api_error(422, "Invalid", "data[password]: Invalid value: \"hunter2\"");
        let c = failed_call(
            "ConfigReady",
            "applying",
            "Secret keystone-config-x",
            &e,
            Duration::from_secs(5),
        );
        assert!(!c.message.contains("hunter2"), "{}", c.message);
        assert!(c.message.contains("422 Invalid"), "{}", c.message);
        let long = api_error(403, "Forbidden", &"é".repeat(2000));
        let c = failed_call(
            "ConfigReady",
            "applying",
            "ConfigMap x",
            &long,
            Duration::from_secs(5),
        );
        assert!(c.message.len() < 1200, "{}", c.message.len());
    }
}
