//! The writes, in order: fernet keys, then credential keys. Key Secrets are never server-side applied (a
//! forced apply from a stale view could overwrite newer keys): the first write is a `create` (AlreadyExists →
//! re-read and decide again), every later one a `replace` carrying the resourceVersion it was computed from
//! (Conflict → re-read and decide again). The rotation bookkeeping is written in the same request as the keys,
//! so a crash between two writes can never cause a second rotation.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use rand::rngs::OsRng;

use keystone_types::conditions::{CREDENTIAL_KEYS_READY, FERNET_KEYS_READY, reasons};
use keystone_types::{KeystoneAPI, names};
use operator_common::conditions::Desired;

use crate::build::secrets::{
    self, HANDLED_REGENERATE_ACK, HANDLED_ROTATE_REQUEST, LAST_ROTATION, REGENERATE_CREDENTIAL_KEYS,
    ROTATE_REQUEST, ROTATION_COUNT, RotationRecord,
};
use crate::keys::{KeyError, KeySet};
use crate::schedule::{self, Decision, Policy, State};
use crate::{Context, Error};

/// A step either finished or must start over from fresh reads (a write lost a race).
#[derive(Debug)]
pub enum Step<T> {
    /// Finished with this outcome.
    Done(T),
    /// A concurrent change was detected; re-read and decide again.
    Retry,
}

/// What the fernet step found or did.
#[derive(Debug, Clone)]
pub struct FernetOutcome {
    /// `FernetKeysReady`.
    pub condition: Desired,
    /// Key count, when the set is valid.
    pub active_keys: Option<usize>,
    /// Fingerprint of the valid set.
    pub hash: Option<String>,
    /// Unix time of the last rotation.
    pub last_rotation: Option<i64>,
    /// Rotations since creation.
    pub rotation_count: Option<i64>,
    /// Unix time of the next scheduled rotation.
    pub next_due: Option<i64>,
    /// When to look again (a pending manual request may come before `next_due`).
    pub wake_at: Option<i64>,
}

impl FernetOutcome {
    fn broken(condition: Desired) -> Self {
        Self {
            condition,
            active_keys: None,
            hash: None,
            last_rotation: None,
            rotation_count: None,
            next_due: None,
            wake_at: None,
        }
    }
}

/// What the credential step found or did.
#[derive(Debug, Clone)]
pub struct CredentialOutcome {
    /// `CredentialKeysReady`.
    pub condition: Desired,
    /// Fingerprint of the valid set.
    pub hash: Option<String>,
    /// The regeneration acknowledgement acted on, if any.
    pub handled_ack: Option<String>,
}

fn annotation<'a>(obj: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    obj.annotations().get(key).map(String::as_str)
}

fn previous_reason<'a>(ks: &'a KeystoneAPI, type_: &str) -> Option<&'a str> {
    ks.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

fn rfc3339(unix: i64) -> String {
    Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn key_errors(errors: &[KeyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn secret_data(secret: &Secret) -> Vec<(&String, &[u8])> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k, v.0.as_slice()))
        .collect()
}

async fn publish(ctx: &Context, ks: &KeystoneAPI, type_: EventType, reason: &str, note: String) {
    operator_common::events::publish(&ctx.recorder, &ks.object_ref(&()), type_, reason, note).await;
}

/// Creates, validates or rotates the fernet token keys.
pub async fn fernet_keys(
    ctx: &Context,
    ks: &KeystoneAPI,
    existing: Option<Secret>,
    policy: &Policy,
    now: i64,
) -> Result<Step<FernetOutcome>, Error> {
    let name = ks.name_any();
    let secret_name = names::fernet_keys_secret(&name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ks.namespace().unwrap_or_default());
    let request = annotation(ks, ROTATE_REQUEST);
    let kube_err = |source| Error::Kube {
        name: name.clone(),
        source,
    };

    let Some(secret) = existing else {
        let existed = ks
            .status
            .as_ref()
            .and_then(|s| s.fernet.as_ref())
            .is_some_and(|f| f.keys_hash.is_some());
        let set = match KeySet::initial(&mut OsRng) {
            Ok(set) => set,
            Err(e) => {
                return Ok(Step::Done(FernetOutcome::broken(Desired::not_ok(
                    FERNET_KEYS_READY,
                    reasons::KEY_GENERATION_FAILED,
                    format!("cannot generate fernet keys, nothing was written: {e}"),
                ))));
            }
        };
        // Creation counts as satisfying a manual request that is already there.
        let record = RotationRecord {
            last_rotation: rfc3339(now),
            count: 0,
            handled_request: request.map(str::to_owned),
        };
        match api
            .create(
                &PostParams::default(),
                &secrets::fernet_keys_secret(ks, &set, &record),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
            Err(e) => return Err(kube_err(e)),
        }
        if existed {
            tracing::warn!(secret = %secret_name, "fernet key Secret was missing; created new keys");
            publish(
                ctx,
                ks,
                EventType::Warning,
                "FernetKeysRecreated",
                format!("Secret {secret_name} was missing and has been recreated with new keys: every token issued before is now invalid"),
            )
            .await;
        } else {
            publish(
                ctx,
                ks,
                EventType::Normal,
                "FernetKeysCreated",
                format!("created fernet keys in Secret {secret_name}"),
            )
            .await;
        }
        return Ok(Step::Done(ready(&set, now, 0, policy)));
    };

    let set = match KeySet::from_data(secret_data(&secret)) {
        Ok(set) => set,
        Err(errors) => {
            let message = format!(
                "Secret {secret_name} holds an unusable key set ({}); it is left untouched for a human to restore",
                key_errors(&errors)
            );
            if previous_reason(ks, FERNET_KEYS_READY) != Some(reasons::KEYS_CORRUPTED) {
                tracing::warn!(secret = %secret_name, problems = %key_errors(&errors), "fernet keys corrupted");
                publish(
                    ctx,
                    ks,
                    EventType::Warning,
                    "FernetKeysCorrupted",
                    message.clone(),
                )
                .await;
            }
            return Ok(Step::Done(FernetOutcome::broken(Desired::not_ok(
                FERNET_KEYS_READY,
                reasons::KEYS_CORRUPTED,
                message,
            ))));
        }
    };

    let creation = secret
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0.as_second());
    let last = annotation(&secret, LAST_ROTATION)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map_or(creation, |t| t.as_second());
    let count = annotation(&secret, ROTATION_COUNT)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    let state = State {
        last_rotation: last,
        handled_request: annotation(&secret, HANDLED_ROTATE_REQUEST).map(str::to_owned),
    };

    match schedule::decide(now, &state, policy, request) {
        Decision::WaitUntil(at) => {
            let mut outcome = ready(&set, last, count, policy);
            outcome.wake_at = Some(at);
            Ok(Step::Done(outcome))
        }
        Decision::Rotate { manual } => {
            let next =
                set.rotate(policy.max_active_keys, &mut OsRng)
                    .map_err(|source| Error::KeyGeneration {
                        name: name.clone(),
                        source,
                    })?;
            let handled = if manual {
                request.map(str::to_owned)
            } else {
                state.handled_request.clone()
            };
            let record = RotationRecord {
                last_rotation: rfc3339(now),
                count: count + 1,
                handled_request: handled,
            };
            let replacement =
                secrets::as_replacement(secrets::fernet_keys_secret(ks, &next, &record), &secret);
            match api
                .replace(&secret_name, &PostParams::default(), &replacement)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
                Err(e) => return Err(kube_err(e)),
            }
            let trigger = if manual { "manual" } else { "scheduled" };
            let ns = ks.namespace().unwrap_or_default();
            ctx.fernet_metrics
                .rotations
                .with_label_values(&[ns.as_str(), name.as_str(), trigger])
                .inc();
            tracing::info!(secret = %secret_name, trigger, keys = next.len(), primary = next.primary_index(), "rotated fernet keys");
            publish(
                ctx,
                ks,
                EventType::Normal,
                "FernetKeysRotated",
                format!(
                    "{trigger} rotation of Secret {secret_name}: key {} is the new primary, {} keys kept",
                    next.primary_index(),
                    next.len()
                ),
            )
            .await;
            Ok(Step::Done(ready(&next, now, count + 1, policy)))
        }
    }
}

fn ready(set: &KeySet, last: i64, count: i64, policy: &Policy) -> FernetOutcome {
    let next_due = schedule::next_due(last, policy);
    FernetOutcome {
        condition: Desired::ok(
            FERNET_KEYS_READY,
            reasons::KEYS_READY,
            format!(
                "{} keys, primary key {}; next rotation at {}",
                set.len(),
                set.primary_index(),
                rfc3339(next_due)
            ),
        ),
        active_keys: Some(set.len()),
        hash: Some(set.fingerprint()),
        last_rotation: Some(last),
        rotation_count: Some(count),
        next_due: Some(next_due),
        wake_at: Some(next_due),
    }
}

/// Creates or validates the credential keys. Lost or corrupted credential keys are never regenerated without
/// the acknowledgement annotation: credentials stored in Keystone would be undecryptable for good.
pub async fn credential_keys(
    ctx: &Context,
    ks: &KeystoneAPI,
    existing: Option<Secret>,
) -> Result<Step<CredentialOutcome>, Error> {
    let name = ks.name_any();
    let secret_name = names::credential_keys_secret(&name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ks.namespace().unwrap_or_default());
    let kube_err = |source| Error::Kube {
        name: name.clone(),
        source,
    };
    let previous_hash = ks
        .status
        .as_ref()
        .and_then(|s| s.fernet.as_ref())
        .and_then(|f| f.credential_keys_hash.clone());
    let ack = annotation(ks, REGENERATE_CREDENTIAL_KEYS).filter(|a| !a.is_empty());
    // The handled acknowledgement is remembered in the status too: the Secret that recorded it may be the one
    // that was lost.
    let status_ack = status_ack_of(ks);

    let problem = match &existing {
        None if previous_hash.is_none() => None,
        None => Some(format!("Secret {secret_name} was deleted")),
        Some(secret) => match KeySet::from_data(secret_data(secret)) {
            Ok(set) => {
                let hash = set.fingerprint();
                return Ok(Step::Done(CredentialOutcome {
                    condition: Desired::ok(
                        CREDENTIAL_KEYS_READY,
                        reasons::KEYS_READY,
                        format!("{} credential keys in Secret {secret_name}", set.len()),
                    ),
                    hash: Some(hash),
                    handled_ack: status_ack.clone(),
                }));
            }
            Err(errors) => Some(format!(
                "Secret {secret_name} holds an unusable key set ({})",
                key_errors(&errors)
            )),
        },
    };
    let handled_ack = existing
        .as_ref()
        .and_then(|s| annotation(s, HANDLED_REGENERATE_ACK))
        .map(str::to_owned)
        .or_else(|| status_ack.clone());
    let regenerate = problem.is_some() && ack.is_some() && ack.map(str::to_owned) != handled_ack;
    if let Some(problem) = &problem
        && !regenerate
    {
        let message = format!(
            "{problem}. Credentials stored in Keystone (EC2, TOTP, application secrets) cannot be decrypted without \
             these keys: restore the Secret from a backup, or accept losing them by setting the annotation \
             {REGENERATE_CREDENTIAL_KEYS}=<a new value> on this KeystoneAPI to create new keys"
        );
        if previous_reason(ks, CREDENTIAL_KEYS_READY) != Some(reasons::KEYS_LOST) {
            tracing::warn!(secret = %secret_name, "credential keys lost; not regenerating without acknowledgement");
            publish(ctx, ks, EventType::Warning, "CredentialKeysLost", message.clone()).await;
        }
        return Ok(Step::Done(CredentialOutcome {
            condition: Desired::not_ok(CREDENTIAL_KEYS_READY, reasons::KEYS_LOST, message),
            hash: previous_hash,
            handled_ack: status_ack,
        }));
    }

    let set = match KeySet::initial(&mut OsRng) {
        Ok(set) => set,
        Err(e) => {
            return Ok(Step::Done(CredentialOutcome {
                condition: Desired::not_ok(
                    CREDENTIAL_KEYS_READY,
                    reasons::KEY_GENERATION_FAILED,
                    format!("cannot generate credential keys, nothing was written: {e}"),
                ),
                hash: previous_hash,
                handled_ack: status_ack,
            }));
        }
    };
    let ack_recorded = if regenerate { ack } else { None };
    let built = secrets::credential_keys_secret(ks, &set, ack_recorded);
    let result = match &existing {
        None => api.create(&PostParams::default(), &built).await,
        Some(old) => {
            api.replace(
                &secret_name,
                &PostParams::default(),
                &secrets::as_replacement(built, old),
            )
            .await
        }
    };
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
        Err(e) => return Err(kube_err(e)),
    }
    if regenerate {
        publish(
            ctx,
            ks,
            EventType::Warning,
            "CredentialKeysRegenerated",
            format!("created new credential keys in Secret {secret_name} as acknowledged; credentials stored with the old keys are lost"),
        )
        .await;
    } else {
        publish(
            ctx,
            ks,
            EventType::Normal,
            "CredentialKeysCreated",
            format!("created credential keys in Secret {secret_name}"),
        )
        .await;
    }
    Ok(Step::Done(CredentialOutcome {
        condition: Desired::ok(
            CREDENTIAL_KEYS_READY,
            reasons::KEYS_READY,
            format!("{} credential keys in Secret {secret_name}", set.len()),
        ),
        hash: Some(set.fingerprint()),
        handled_ack: if regenerate {
            ack.map(str::to_owned)
        } else {
            status_ack
        },
    }))
}

fn status_ack_of(ks: &KeystoneAPI) -> Option<String> {
    ks.status
        .as_ref()
        .and_then(|s| s.fernet.as_ref())
        .and_then(|f| f.handled_regenerate_ack.clone())
}
