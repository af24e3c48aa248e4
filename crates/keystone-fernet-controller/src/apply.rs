//! The writes, in order: fernet keys, then credential keys. Key Secrets are never server-side applied (a
//! forced apply from a stale view could overwrite newer keys): the first write is a `create` (AlreadyExists →
//! re-read and decide again), every later one a `replace` carrying the resourceVersion it was computed from
//! (Conflict → re-read and decide again). The rotation bookkeeping is written in the same request as the keys,
//! so a crash between two writes can never cause a second rotation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use rand::rngs::OsRng;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keystone_types::conditions::{CREDENTIAL_KEYS_READY, FERNET_KEYS_READY, reasons};
use keystone_types::credential_rotation::{self, KeyStep, Phase};
use keystone_types::v1beta1::CredentialRotationStatus;
use keystone_types::{KeystoneAPI, names};
use operator_common::conditions::Desired;

use operator_common::backoff::FailedCall;

use crate::build::secrets::{
    self, ADOPT_FERNET_KEYS, CredentialRecord, HANDLED_REGENERATE_ACK, HANDLED_ROTATE_REQUEST, LAST_ROTATION,
    PROMOTION_TIMES, REGENERATE_CREDENTIAL_KEYS, ROTATE_REQUEST, ROTATION_COUNT, RotationRecord,
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
    /// The rotation cycle, for the status (the db controller acts on it).
    pub rotation: Option<CredentialRotationStatus>,
    /// When to look again (unix seconds), if the cycle has a time to wait for.
    pub wake_at: Option<i64>,
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
    let kube_err = |source| {
        FailedCall::under(
            &name,
            FERNET_KEYS_READY,
            "writing",
            format!("Secret {secret_name}"),
        )(source)
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
            promoted: BTreeMap::from([(set.primary_index(), now)]),
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
            Err(e) => return Err(kube_err(e).into()),
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
        let state = State {
            last_rotation: now,
            handled_request: record.handled_request.clone(),
            prune_safe_at: i64::MIN,
        };
        return Ok(Step::Done(ready(&set, &state, 0, policy, request)));
    };

    // A Secret of our name that this operator did not create for this KeystoneAPI (planted, left from another
    // tool or an earlier KeystoneAPI of the same name) is not used, rotated or replaced unless asked to.
    let ours = ks.metadata.uid.as_deref().is_some_and(|uid| {
        secret
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    });
    let adopt = !ours && annotation(ks, ADOPT_FERNET_KEYS) == Some("true");
    if !ours && !adopt {
        return Ok(Step::Done(FernetOutcome::broken(Desired::not_ok(
            FERNET_KEYS_READY,
            reasons::KEYS_NOT_OURS,
            format!(
                "Secret {secret_name} exists but was not created by the operator for this KeystoneAPI; it is left \
                 untouched. To use its keys, annotate the KeystoneAPI {ADOPT_FERNET_KEYS}=true; to start with \
                 new keys (every existing token becomes invalid), delete the Secret"
            ),
        ))));
    }

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
    let recorded_last = annotation(&secret, LAST_ROTATION)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map_or(creation, |t| t.as_second());
    // Informational; a value edited out of range counts from 0 again rather than wrapping.
    let count = annotation(&secret, ROTATION_COUNT)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|c| *c >= 0)
        .unwrap_or(0);
    let recorded_promoted = annotation(&secret, PROMOTION_TIMES)
        .map(secrets::parse_promotions)
        .unwrap_or_default();
    let mut record = RotationRecord {
        last_rotation: rfc3339(recorded_last),
        count,
        handled_request: annotation(&secret, HANDLED_ROTATE_REQUEST).map(str::to_owned),
        promoted: recorded_promoted
            .into_iter()
            .filter(|(i, _)| *i != 0 && set.get(*i).is_some())
            .collect(),
    };
    // A rotation time in the future (a clock far off, a hand edit, a restored backup) would hold every
    // rotation back until then, silently: it is counted as now instead, and the repair is written and
    // announced. Counting it as now only ever delays a rotation, so no key is dropped early.
    let future = |t: i64| t > now.saturating_add(schedule::CLOCK_SKEW_TOLERANCE);
    let repaired = future(recorded_last) || record.promoted.values().any(|t| future(*t));
    if repaired && !adopt {
        let was = annotation(&secret, LAST_ROTATION).unwrap_or_default().to_owned();
        record.last_rotation = rfc3339(recorded_last.min(now));
        for t in record.promoted.values_mut() {
            *t = (*t).min(now);
        }
        let replacement = secrets::as_replacement(secrets::fernet_keys_secret(ks, &set, &record), &secret);
        match api
            .replace(&secret_name, &PostParams::default(), &replacement)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
            Err(e) => return Err(kube_err(e).into()),
        }
        tracing::warn!(secret = %secret_name, recorded = %was, "fernet rotation times in the future; counted from now");
        publish(
            ctx,
            ks,
            EventType::Warning,
            "RotationTimesRepaired",
            format!(
                "Secret {secret_name} recorded rotation times in the future ({LAST_ROTATION}={was:?}, \
                 {PROMOTION_TIMES}); they would have held back every rotation until then. They now count from \
                 {}, and the next rotation is one interval after that",
                rfc3339(now)
            ),
        )
        .await;
        return Ok(Step::Retry);
    }
    let last = recorded_last;
    let state = State {
        last_rotation: last,
        handled_request: record.handled_request.clone(),
        prune_safe_at: schedule::prune_safe_at(
            set.indexes(),
            &record.promoted,
            last,
            policy.max_active_keys,
            policy.horizon,
        ),
    };
    if adopt {
        // The same keys, now the KeystoneAPI's: owner reference and labels, written with the resourceVersion read.
        let adopted = secrets::as_replacement(secrets::fernet_keys_secret(ks, &set, &record), &secret);
        match api.replace(&secret_name, &PostParams::default(), &adopted).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
            Err(e) => return Err(kube_err(e).into()),
        }
        publish(
            ctx,
            ks,
            EventType::Normal,
            "FernetKeysAdopted",
            format!(
                "Secret {secret_name} was adopted as requested ({ADOPT_FERNET_KEYS}): its {} keys are kept",
                set.len()
            ),
        )
        .await;
        return Ok(Step::Retry);
    }

    match schedule::decide(now, &state, policy, request) {
        Decision::WaitUntil(at) => {
            let mut outcome = ready(&set, &state, count, policy, request);
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
            let mut promoted = record.promoted.clone();
            promoted.insert(next.primary_index(), now);
            promoted.retain(|i, _| next.get(*i).is_some());
            let record = RotationRecord {
                last_rotation: rfc3339(now),
                count: count.saturating_add(1),
                handled_request: handled,
                promoted,
            };
            let replacement =
                secrets::as_replacement(secrets::fernet_keys_secret(ks, &next, &record), &secret);
            match api
                .replace(&secret_name, &PostParams::default(), &replacement)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
                Err(e) => return Err(kube_err(e).into()),
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
            let state = State {
                last_rotation: now,
                handled_request: record.handled_request.clone(),
                prune_safe_at: schedule::prune_safe_at(
                    next.indexes(),
                    &record.promoted,
                    now,
                    policy.max_active_keys,
                    policy.horizon,
                ),
            };
            Ok(Step::Done(ready(&next, &state, record.count, policy, request)))
        }
    }
}

fn ready(set: &KeySet, state: &State, count: i64, policy: &Policy, request: Option<&str>) -> FernetOutcome {
    let next_due = schedule::next_due(state, policy);
    let scheduled_due = state
        .last_rotation
        .saturating_add(i64::try_from(policy.effective().0.as_secs()).unwrap_or(i64::MAX));
    let mut message = format!(
        "{} keys, primary key {}; next rotation at {}",
        set.len(),
        set.primary_index(),
        rfc3339(next_due)
    );
    if next_due > scheduled_due {
        message.push_str(KEPT_FOR_TOKENS);
    }
    if schedule::manual_pending(state, request) {
        let at = schedule::manual_at(state, policy);
        message.push_str(&format!(
            "; the manual rotation request {:?} runs at {}",
            request.unwrap_or_default(),
            rfc3339(at)
        ));
        if at == state.prune_safe_at {
            message.push_str(KEPT_FOR_TOKENS);
        }
    }
    FernetOutcome {
        condition: Desired::ok(FERNET_KEYS_READY, reasons::KEYS_READY, message),
        active_keys: Some(set.len()),
        hash: Some(set.fingerprint()),
        last_rotation: Some(state.last_rotation),
        rotation_count: Some(count),
        next_due: Some(next_due),
        wake_at: Some(next_due),
    }
}

/// Why a rotation waits past its time.
const KEPT_FOR_TOKENS: &str = " (not before: the key it would drop may still verify tokens until then)";

/// Creates or validates the credential keys. Lost or corrupted credential keys are never regenerated without
/// the acknowledgement annotation: credentials stored in Keystone would be undecryptable for good.
pub async fn credential_keys(
    ctx: &Context,
    ks: &KeystoneAPI,
    existing: Option<Secret>,
    now: i64,
) -> Result<Step<CredentialOutcome>, Error> {
    let name = ks.name_any();
    let secret_name = names::credential_keys_secret(&name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ks.namespace().unwrap_or_default());
    let kube_err = |source| {
        FailedCall::under(
            &name,
            CREDENTIAL_KEYS_READY,
            "writing",
            format!("Secret {secret_name}"),
        )(source)
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

    let stored = ks
        .status
        .as_ref()
        .and_then(|s| s.database.as_ref())
        .and_then(|d| d.stored_credentials);
    let database = &ks.spec.database;
    // Why no Secret is not a loss but stops creation: the database already holds credentials other keys made.
    let mut reason = reasons::KEYS_LOST;
    let problem = match &existing {
        // Never had keys: make them only for a database known to hold no credentials yet.
        None if previous_hash.is_none() => match stored {
            Some(0) => None,
            Some(n) => {
                reason = reasons::CREDENTIALS_WITHOUT_KEYS;
                Some(format!(
                    "database {} on {} already holds {n} encrypted credentials, and Secret {secret_name} (the keys \
                     that encrypted them) does not exist",
                    database.name, database.host
                ))
            }
            None => {
                return Ok(Step::Done(CredentialOutcome {
                    condition: Desired::not_ok(
                        CREDENTIAL_KEYS_READY,
                        reasons::WAITING_FOR_DATABASE,
                        format!(
                            "waiting for the database step to report whether database {} on {} already holds \
                             encrypted credentials (DatabaseReady); credential keys are made only for one that \
                             holds none",
                            database.name, database.host
                        ),
                    ),
                    hash: None,
                    handled_ack: status_ack,
                    rotation: previous_rotation(ks),
                    wake_at: None,
                }));
            }
        },
        None => Some(format!("Secret {secret_name} was deleted")),
        Some(secret) => match KeySet::from_data(secret_data(secret)) {
            Ok(set) => {
                return credential_cycle(ctx, ks, &api, secret, set, status_ack.clone(), now).await;
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
        if previous_reason(ks, CREDENTIAL_KEYS_READY) != Some(reason) {
            tracing::warn!(secret = %secret_name, reason, "no usable credential keys; not creating new ones without acknowledgement");
            let event = if reason == reasons::KEYS_LOST {
                "CredentialKeysLost"
            } else {
                "CredentialsWithoutKeys"
            };
            publish(ctx, ks, EventType::Warning, event, message.clone()).await;
        }
        return Ok(Step::Done(CredentialOutcome {
            condition: Desired::not_ok(CREDENTIAL_KEYS_READY, reason, message),
            hash: previous_hash,
            handled_ack: status_ack,
            rotation: previous_rotation(ks),
            wake_at: None,
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
                rotation: previous_rotation(ks),
                wake_at: None,
            }));
        }
    };
    let ack_recorded = if regenerate { ack } else { None };
    let record = CredentialRecord {
        phase: Phase::Idle.as_str().into(),
        last_rotation: rfc3339(now),
        ..CredentialRecord::default()
    };
    let built = secrets::credential_keys_secret(ks, &set, ack_recorded, &record);
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
        Err(e) => return Err(kube_err(e).into()),
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
        rotation: Some(rotation_status(&record)),
        wake_at: Some(now),
    }))
}

fn previous_rotation(ks: &KeystoneAPI) -> Option<CredentialRotationStatus> {
    ks.status
        .as_ref()
        .and_then(|s| s.fernet.as_ref())
        .and_then(|f| f.credential_rotation.clone())
}

fn parse_time(t: &str) -> Option<Timestamp> {
    t.parse::<Timestamp>().ok()
}

fn rotation_status(record: &CredentialRecord) -> CredentialRotationStatus {
    let time = |t: &Option<String>| t.as_deref().and_then(parse_time).map(Time);
    CredentialRotationStatus {
        phase: record.phase.clone(),
        rotated_at: time(&record.rotated_at),
        migrate_after: time(&record.migrate_after),
        last_rotation_time: parse_time(&record.last_rotation).map(Time),
    }
}

/// The credential key rotation cycle on an existing, valid key set: decides with
/// `keystone_types::credential_rotation::key_step` and writes keys and bookkeeping in one replace.
async fn credential_cycle(
    ctx: &Context,
    ks: &KeystoneAPI,
    api: &Api<Secret>,
    secret: &Secret,
    set: KeySet,
    status_ack: Option<String>,
    now: i64,
) -> Result<Step<CredentialOutcome>, Error> {
    let secret_name = secret.name_any();
    let mut record = CredentialRecord::read(secret);
    let interval = ks
        .spec
        .credential
        .rotation_interval
        .as_deref()
        .and_then(|i| keystone_types::duration::parse(i).ok())
        .filter(|d| !d.is_zero());
    let policy = credential_rotation::Policy {
        interval,
        floor: ctx.min_rotation_interval,
    };
    let request = annotation(ks, secrets::ROTATE_CREDENTIAL_REQUEST).filter(|r| !r.is_empty());
    let manual = request.is_some() && request.map(str::to_owned) != record.handled_request;
    let outcome =
        |set: &KeySet, record: &CredentialRecord, wake_at: Option<i64>, note: &str| CredentialOutcome {
            condition: Desired::ok(
                CREDENTIAL_KEYS_READY,
                reasons::KEYS_READY,
                format!("{} credential keys in Secret {secret_name}{note}", set.len()),
            ),
            hash: Some(set.fingerprint()),
            handled_ack: status_ack.clone(),
            rotation: Some(rotation_status(record)),
            wake_at,
        };
    let phase = match record.phase.parse::<Phase>() {
        Ok(p) => p,
        Err(e) => {
            // A hand-edited phase: rotate nothing until it is fixed.
            return Ok(Step::Done(outcome(
                &set,
                &record,
                None,
                &format!(
                    "; credential rotation stopped: {e} in annotation {}",
                    secrets::CREDENTIAL_PHASE
                ),
            )));
        }
    };
    let secs = |t: &Option<String>| t.as_deref().and_then(parse_time).map(|t| t.as_second());
    let cycle = credential_rotation::Cycle {
        phase,
        keys_hash: set.fingerprint(),
        migrate_after: secs(&record.migrate_after),
        last_rotation: parse_time(&record.last_rotation).map_or(0, |t| t.as_second()),
    };
    let migrated = credential_rotation::migrated_from_status(ks);
    let (next, event) = match credential_rotation::key_step(&cycle, migrated.as_ref(), now, &policy, manual) {
        KeyStep::Wait(at) => {
            let note = match phase {
                Phase::Idle => String::new(),
                Phase::PreMigrate => "; rotation waits for credential_migrate with the current keys".into(),
                Phase::PostMigrate => {
                    "; rotated, the previous key stays until credential_migrate re-encrypted what it encrypted"
                        .into()
                }
            };
            return Ok(Step::Done(outcome(&set, &record, at, &note)));
        }
        KeyStep::Start => {
            record.phase = Phase::PreMigrate.as_str().into();
            if manual {
                record.handled_request = request.map(str::to_owned);
            }
            (set.clone(), ("CredentialKeyRotationStarted", "a credential key rotation started: credentials are re-encrypted with the current key first".to_owned()))
        }
        KeyStep::Rotate => {
            let rotated = set
                .rotate(credential_rotation::MAX_CREDENTIAL_KEYS, &mut OsRng)
                .map_err(|source| Error::KeyGeneration {
                    name: ks.name_any(),
                    source,
                })?;
            record.phase = Phase::PostMigrate.as_str().into();
            record.rotated_at = Some(rfc3339(now));
            let floor = i64::try_from(ctx.min_rotation_interval.as_secs()).unwrap_or(i64::MAX);
            record.migrate_after = Some(rfc3339(now.saturating_add(floor)));
            (
                rotated,
                (
                    "CredentialKeysRotated",
                    format!(
                        "credential keys rotated; the previous key is kept until credential_migrate runs after {}",
                        rfc3339(now.saturating_add(floor))
                    ),
                ),
            )
        }
        KeyStep::Prune => {
            record.phase = Phase::Idle.as_str().into();
            record.rotated_at = None;
            record.migrate_after = None;
            record.last_rotation = rfc3339(now);
            record.count = record.count.saturating_add(1);
            (set.without_secondaries(), ("CredentialKeyRotationCompleted", "credential key rotation completed: every credential is on the new key, the previous key was dropped".to_owned()))
        }
    };
    let built =
        secrets::credential_keys_secret(ks, &next, annotation(secret, HANDLED_REGENERATE_ACK), &record);
    match api
        .replace(
            &secret_name,
            &PostParams::default(),
            &secrets::as_replacement(built, secret),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Retry),
        Err(source) => {
            return Err(FailedCall::under(
                &ks.name_any(),
                CREDENTIAL_KEYS_READY,
                "writing",
                format!("Secret {secret_name}"),
            )(source)
            .into());
        }
    }
    tracing::info!(secret = %secret_name, phase = %record.phase, "credential key rotation step");
    let step = match record.phase.as_str() {
        "PreMigrate" => "started",
        "PostMigrate" => "rotated",
        _ => "completed",
    };
    ctx.fernet_metrics
        .credential_steps
        .with_label_values(&[
            ks.namespace().unwrap_or_default().as_str(),
            ks.name_any().as_str(),
            step,
        ])
        .inc();
    publish(ctx, ks, EventType::Normal, event.0, event.1).await;
    Ok(Step::Done(outcome(&next, &record, Some(now), "")))
}

fn status_ack_of(ks: &KeystoneAPI) -> Option<String> {
    ks.status
        .as_ref()
        .and_then(|s| s.fernet.as_ref())
        .and_then(|f| f.handled_regenerate_ack.clone())
}
