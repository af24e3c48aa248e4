//! The fernet controller as a separate process against the real API server and kube-controller-manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use common::{Env, condition_message, fast_rotation, keys, rotation_count, secret_annotation};
use keystone_types::conditions::{CREDENTIAL_KEYS_READY, FERNET_KEYS_READY, ROTATION_POLICY_SAFE};
use keystone_types::names;
use test_support::wait;

const ROTATE: &str = "keystone.openstack.org/rotate-fernet-keys";
const REGENERATE: &str = "keystone.openstack.org/regenerate-credential-keys";

fn assert_valid_keyset(data: &std::collections::BTreeMap<String, String>) {
    assert!(data.contains_key("0"), "no staged key: {:?}", data.keys());
    for (k, v) in data {
        k.parse::<u32>().unwrap();
        assert_eq!(v.len(), 44, "key {k} is not 44 characters");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_both_key_secrets_with_status_owned_by_this_controller() {
    let env = Env::new("fernet-create", "5m").await;
    let proc = env.start_controller().await;
    let ks = env.create("keystone", json!({})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", Some("KeysReady"))
        .await;
    let ks_now = env
        .wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", Some("KeysReady"))
        .await;
    env.wait_condition("keystone", ROTATION_POLICY_SAFE, "True", Some("AsWritten"))
        .await;

    let fernet = env.fernet_secret("keystone").await;
    assert_eq!(keys(&fernet).keys().collect::<Vec<_>>(), ["0", "1"]);
    assert_valid_keyset(&keys(&fernet));
    let owner = &fernet.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, ks.meta().uid.clone().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        fernet.labels()["app.kubernetes.io/managed-by"],
        "keystone-fernet-controller"
    );
    assert_eq!(fernet.labels()["app.kubernetes.io/instance"], "keystone");
    assert_eq!(rotation_count(&fernet), 0);

    let cred = env.credential_secret("keystone").await.unwrap();
    assert!(
        cred.metadata.owner_references.is_none(),
        "credential keys must outlive the KeystoneAPI"
    );
    assert_eq!(cred.labels()["app.kubernetes.io/component"], "credential-keys");
    assert_valid_keyset(&keys(&cred));
    assert_ne!(keys(&cred)["0"], keys(&fernet)["0"]);

    let st = ks_now.status.unwrap().fernet.unwrap();
    assert_eq!(st.keys_secret.as_deref(), Some("keystone-fernet-keys"));
    assert_eq!(
        st.credential_keys_secret.as_deref(),
        Some("keystone-credential-keys")
    );
    assert_eq!(st.active_keys, Some(2));
    assert_eq!(st.rotation_count, Some(0));
    assert_eq!(st.effective_rotation_interval.as_deref(), Some("24h"));
    assert!(st.next_rotation_time.is_some() && st.keys_hash.is_some() && st.credential_keys_hash.is_some());
    env.wait_event("keystone", "FernetKeysCreated").await;
    env.wait_event("keystone", "CredentialKeysCreated").await;

    // Status is written by this controller's field manager only, on the status subresource only.
    let ks_now = env.keystones.get("keystone").await.unwrap();
    let mine: Vec<_> = ks_now
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some("keystone-fernet-controller"))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].subresource.as_deref(), Some("status"));
    let fields = serde_json::to_string(&mine[0].fields_v1).unwrap();
    for owned in [
        "f:fernet",
        "FernetKeysReady",
        "CredentialKeysReady",
        "RotationPolicySafe",
    ] {
        assert!(fields.contains(owned), "{owned} not owned: {fields}");
    }
    for foreign in [
        "DBSyncReady",
        "ConfigReady",
        "f:api",
        "f:database",
        "f:readyCount",
    ] {
        assert!(!fields.contains(foreign), "{foreign} claimed: {fields}");
    }
    assert_no_key_material(&env, &proc.output(), &[&fernet, &cred]).await;
    env.ns.delete().await;
}

async fn assert_no_key_material(env: &Env, logs: &str, secrets: &[&Secret]) {
    let events = env.event_messages().await.join("\n");
    let status =
        serde_json::to_string(&env.keystones.list(&Default::default()).await.unwrap().items).unwrap();
    for s in secrets {
        for (i, k) in keys(s) {
            assert!(
                !logs.contains(&k),
                "key {i} of {} appears in the logs",
                s.name_any()
            );
            assert!(
                !events.contains(&k),
                "key {i} of {} appears in an Event",
                s.name_any()
            );
            assert!(
                !status.contains(&k),
                "key {i} of {} appears in a KeystoneAPI",
                s.name_any()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_or_crashed_controller_changes_no_key() {
    let env = Env::new("fernet-restart", "5m").await;
    let proc = env.start_controller().await;
    env.create("keystone", json!({})).await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    let before_f = env.fernet_secret("keystone").await;
    let before_c = env.credential_secret("keystone").await.unwrap();
    proc.crash().await;

    let proc = env.start_controller().await;
    proc.wait_metric("keystone_fernet_reconcile_runs_total", 1.0)
        .await;
    // a spec change forces another full reconcile of this object
    env.patch_spec("keystone", json!({"replicas": 2})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let after_f = env.fernet_secret("keystone").await;
    let after_c = env.credential_secret("keystone").await.unwrap();
    assert_eq!(
        before_f.resource_version(),
        after_f.resource_version(),
        "fernet Secret was rewritten"
    );
    assert_eq!(
        before_c.resource_version(),
        after_c.resource_version(),
        "credential Secret was rewritten"
    );
    assert_no_key_material(&env, &proc.output(), &[&after_f, &after_c]).await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_rotation_follows_keystones_algorithm() {
    let env = Env::new("fernet-sched", "2s").await;
    let proc = env.start_controller().await;
    // 1s tokens: ceil((1s + 1s + 5m) / 4s) + 2 = 78 keys
    env.create("keystone", fast_rotation("4s", 78)).await;
    let mut previous = keys(&env.wait_rotations("keystone", 0).await);
    let mut seen = vec![env.fernet_secret("keystone").await];
    for n in 1..=3 {
        let s = env.wait_rotations("keystone", n).await;
        assert_eq!(rotation_count(&s), n, "rotated more than once per interval");
        let now = keys(&s);
        let primary = now.keys().filter_map(|k| k.parse::<u32>().ok()).max().unwrap();
        let prev_primary = previous
            .keys()
            .filter_map(|k| k.parse::<u32>().ok())
            .max()
            .unwrap();
        assert_eq!(primary, prev_primary + 1);
        assert_eq!(
            now[&primary.to_string()],
            previous["0"],
            "the staged key must become the primary"
        );
        assert_eq!(
            now[&prev_primary.to_string()],
            previous[&prev_primary.to_string()]
        );
        assert_ne!(now["0"], previous["0"]);
        assert_eq!(now.len(), previous.len() + 1);
        previous = now;
        seen.push(s);
    }
    seen.extend(env.credential_secret("keystone").await);
    assert_no_key_material(&env, &proc.output(), &seen.iter().collect::<Vec<_>>()).await;
    let ks = env
        .wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let st = ks.status.unwrap().fernet.unwrap();
    assert!(st.rotation_count.unwrap() >= 3);
    assert_eq!(st.effective_rotation_interval.as_deref(), Some("4s"));
    env.wait_event("keystone", "FernetKeysRotated").await;
    proc.wait_metric("keystone_fernet_rotations_total", 3.0).await;
    let metrics = proc.metrics().await;
    assert!(metrics.contains("keystone_fernet_active_keys{"), "{metrics}");
    assert!(
        metrics.contains("keystone_fernet_seconds_until_next_rotation{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keystone_fernet_last_rotation_timestamp_seconds{"),
        "{metrics}"
    );
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interval_below_the_floor_is_raised_and_reported() {
    let env = Env::new("fernet-floor", "30s").await;
    let _proc = env.start_controller().await;
    env.create("keystone", fast_rotation("4s", 78)).await;
    let ks = env
        .wait_condition(
            "keystone",
            ROTATION_POLICY_SAFE,
            "False",
            Some("IntervalBelowFloor"),
        )
        .await;
    assert_eq!(
        ks.status
            .unwrap()
            .fernet
            .unwrap()
            .effective_rotation_interval
            .as_deref(),
        Some("30s")
    );
    // the keys still work
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    // and no rotation happens before the floor (checked well past the spec's 4s)
    let created = env.fernet_secret("keystone").await;
    let ks = env.keystones.get("keystone").await.unwrap();
    let last = ks.status.unwrap().fernet.unwrap().last_rotation_time.unwrap().0;
    let next = env
        .keystones
        .get("keystone")
        .await
        .unwrap()
        .status
        .unwrap()
        .fernet
        .unwrap()
        .next_rotation_time
        .unwrap()
        .0;
    assert_eq!((next - last).get_seconds(), 30);
    assert_eq!(rotation_count(&created), 0);
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_rotation_happens_once_per_request_and_respects_the_floor() {
    let env = Env::new("fernet-manual", "3s").await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let created = env.fernet_secret("keystone").await;
    let t0 = created.annotations()["keystone.openstack.org/last-rotation-time"]
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap();

    env.annotate("keystone", ROTATE, "first").await;
    let s = env.wait_rotations("keystone", 1).await;
    let t1 = s.annotations()["keystone.openstack.org/last-rotation-time"]
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap();
    assert!(
        (t1 - t0).get_seconds() >= 3,
        "manual rotation {}s after creation, floor is 3s",
        (t1 - t0).get_seconds()
    );
    assert_eq!(
        s.annotations()["keystone.openstack.org/handled-rotate-request"],
        "first"
    );

    // The same value again is not a new request; a new value is.
    env.annotate("keystone", ROTATE, "first").await;
    env.annotate("keystone", ROTATE, "second").await;
    let s = env.wait_rotations("keystone", 2).await;
    assert_eq!(
        s.annotations()["keystone.openstack.org/handled-rotate-request"],
        "second"
    );
    // well past the floor, still exactly two rotations
    env.wait_quiet("keystone", 4).await;
    assert_eq!(rotation_count(&env.fernet_secret("keystone").await), 2);
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lowering_max_active_keys_prunes_only_at_the_next_rotation() {
    // Tokens verifiable for 1s + 1s + 1s after their key stops signing: the manual rotations below may prune.
    let env = Env::new("fernet-max", "1s").await.with_allowance("1s");
    let _proc = env.start_controller().await;
    env.create(
        "keystone",
        json!({"replicas": 0, "token": {"expiration": "1s", "allowExpiredWindow": "1s"},
               "fernet": {"maxActiveKeys": 6}}),
    )
    .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    for n in 1..=5 {
        env.annotate("keystone", ROTATE, &format!("r{n}")).await;
        env.wait_rotations("keystone", n).await;
    }
    let s = env.fernet_secret("keystone").await;
    assert_eq!(keys(&s).len(), 6, "{:?}", keys(&s).keys());
    env.patch_spec("keystone", json!({"fernet": {"maxActiveKeys": 5}}))
        .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    assert_eq!(
        keys(&env.fernet_secret("keystone").await).len(),
        6,
        "lowering must not prune by itself"
    );
    env.annotate("keystone", ROTATE, "r6").await;
    let s = env.wait_rotations("keystone", 6).await;
    assert_eq!(
        keys(&s).keys().cloned().collect::<Vec<_>>(),
        ["0", "4", "5", "6", "7"]
    );
    env.patch_spec("keystone", json!({"fernet": {"maxActiveKeys": 8}}))
        .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    assert_eq!(
        keys(&env.fernet_secret("keystone").await).len(),
        5,
        "raising must not add keys"
    );
    env.ns.delete().await;
}

/// Manual requests obey the rule scheduled rotations obey: no rotation drops a key before every token it signed
/// is past `expiration + allowExpiredWindow + Δ`, however many requests arrive.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_manual_requests_never_drops_the_key_of_a_valid_token() {
    const PROMOTED: &str = "keystone.openstack.org/key-promotion-times";
    // 2s + 2s tokens and a 16s allowance: a key is kept 20 s after it stops signing.
    let env = Env::new("fernet-burst", "1s").await.with_allowance("16s");
    let _proc = env.start_controller().await;
    env.create(
        "keystone",
        json!({"replicas": 0, "token": {"expiration": "2s", "allowExpiredWindow": "2s"},
               "fernet": {"rotationInterval": "24h", "maxActiveKeys": 3}}),
    )
    .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    // The first request drops nothing (two keys become three).
    env.annotate("keystone", ROTATE, "b1").await;
    let first = env.wait_rotations("keystone", 1).await;
    let key2_promoted = secret_annotation(&first, PROMOTED)
        .split(',')
        .find_map(|e| e.strip_prefix("2="))
        .map(|t| t.parse::<Timestamp>().unwrap())
        .expect("key 2's promotion time is recorded");
    // More requests, one a second: the next rotation would drop key 1, which stopped signing when key 2 was
    // promoted; it waits 20 s from then, and the status says so.
    for n in 2..=5 {
        env.annotate("keystone", ROTATE, &format!("b{n}")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let safe_at = key2_promoted + SignedDuration::from_secs(20);
    let expected = format!("the manual rotation request \"b5\" runs at {safe_at}");
    let message = wait::until(
        "the deferred request in the status",
        Duration::from_secs(15),
        || async {
            let ks = env.keystones.get("keystone").await.map_err(|e| e.to_string())?;
            let message = condition_message(&ks, FERNET_KEYS_READY);
            if message.contains(&expected) {
                Ok(message)
            } else {
                Err(message)
            }
        },
    )
    .await;
    assert!(message.contains("may still verify tokens"), "{message}");
    assert_eq!(rotation_count(&env.fernet_secret("keystone").await), 1);
    // Then it runs, once, dropping key 1 no sooner than that.
    let second = env.wait_rotations("keystone", 2).await;
    let at = secret_annotation(&second, "keystone.openstack.org/last-rotation-time")
        .parse::<Timestamp>()
        .unwrap();
    assert!(at >= safe_at, "key 1 dropped at {at}, before {safe_at}");
    assert_eq!(keys(&second).keys().cloned().collect::<Vec<_>>(), ["0", "2", "3"]);
    assert_eq!(
        secret_annotation(&second, "keystone.openstack.org/handled-rotate-request"),
        "b5"
    );
    env.wait_quiet("keystone", 3).await;
    assert_eq!(rotation_count(&env.fernet_secret("keystone").await), 2);
    env.ns.delete().await;
}

/// A recorded rotation time in the future would hold back every rotation until then without a word: it is
/// counted from now, rewritten and announced.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_time_in_the_future_is_repaired_and_reported() {
    let env = Env::new("fernet-future", "1s").await;
    let _proc = env.start_controller().await;
    env.create(
        "keystone",
        json!({"replicas": 0, "fernet": {"rotationInterval": "24h"}}),
    )
    .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let before = keys(&env.fernet_secret("keystone").await);
    let patch = json!({"metadata": {"annotations": {
        "keystone.openstack.org/last-rotation-time": "2100-01-01T00:00:00Z"}}});
    env.secrets
        .patch(
            &names::fernet_keys_secret("keystone"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let note = env.wait_event("keystone", "RotationTimesRepaired").await;
    assert!(note.contains("2100-01-01T00:00:00Z"), "{note}");
    let repaired = env.fernet_secret("keystone").await;
    let last = secret_annotation(&repaired, "keystone.openstack.org/last-rotation-time")
        .parse::<Timestamp>()
        .unwrap();
    assert!(last <= Timestamp::now(), "still in the future: {last}");
    assert_eq!(keys(&repaired), before, "the repair changes no key");
    let want = last + SignedDuration::from_hours(24);
    wait::until(
        "the next rotation counted from the repair",
        Duration::from_secs(15),
        || async {
            let ks = env.keystones.get("keystone").await.map_err(|e| e.to_string())?;
            let next = ks
                .status
                .and_then(|s| s.fernet)
                .and_then(|f| f.next_rotation_time)
                .map(|t| t.0);
            if next == Some(want) {
                Ok(())
            } else {
                Err(format!("{next:?}"))
            }
        },
    )
    .await;
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_fernet_secret_is_reported_and_left_alone() {
    let env = Env::new("fernet-corrupt", "5m").await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let mut s = env.fernet_secret("keystone").await;
    s.data
        .as_mut()
        .unwrap()
        .insert("1".into(), k8s_openapi::ByteString(b"not-a-fernet-key".to_vec()));
    let written = env
        .secrets
        .replace(&s.name_any(), &PostParams::default(), &s)
        .await
        .unwrap();
    let ks = env
        .wait_condition("keystone", FERNET_KEYS_READY, "False", Some("KeysCorrupted"))
        .await;
    let msg = condition_message(&ks, FERNET_KEYS_READY);
    assert!(msg.contains("key 1 is not 32 bytes"), "{msg}");
    env.wait_event("keystone", "FernetKeysCorrupted").await;
    let after = env.fernet_secret("keystone").await;
    assert_eq!(
        after.resource_version(),
        written.resource_version(),
        "the controller touched a corrupted Secret"
    );
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_fernet_secret_is_recreated_with_a_warning() {
    let env = Env::new("fernet-deleted", "5m").await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    let old = env.fernet_secret("keystone").await;
    env.secrets
        .delete(&old.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let new = wait::until("fernet Secret recreated", Duration::from_secs(30), || async {
        match env
            .secrets
            .get_opt(&names::fernet_keys_secret("keystone"))
            .await
            .map_err(|e| e.to_string())?
        {
            Some(s) if s.metadata.uid != old.metadata.uid => Ok(s),
            _ => Err("not yet".to_string()),
        }
    })
    .await;
    assert_ne!(keys(&new)["1"], keys(&old)["1"]);
    let note = env.wait_event("keystone", "FernetKeysRecreated").await;
    assert!(note.contains("now invalid"), "{note}");
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_credential_keys_are_not_regenerated_without_acknowledgement() {
    let env = Env::new("cred-lost", "5m").await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", None)
        .await;

    // corrupted: reported, untouched
    let mut c = env.credential_secret("keystone").await.unwrap();
    c.data.as_mut().unwrap().remove("0");
    let written = env
        .secrets
        .replace(&c.name_any(), &PostParams::default(), &c)
        .await
        .unwrap();
    let ks = env
        .wait_condition("keystone", CREDENTIAL_KEYS_READY, "False", Some("KeysLost"))
        .await;
    let msg = ks
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == CREDENTIAL_KEYS_READY)
        .unwrap()
        .message;
    assert!(
        msg.contains("staged key 0 is missing") && msg.contains(REGENERATE),
        "{msg}"
    );
    assert_eq!(
        env.credential_secret("keystone")
            .await
            .unwrap()
            .resource_version(),
        written.resource_version()
    );

    // deleted: not recreated
    env.secrets
        .delete(&c.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    env.patch_spec("keystone", json!({"replicas": 1})).await; // a new generation: a full reconcile
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "False", Some("KeysLost"))
        .await;
    assert!(
        env.credential_secret("keystone").await.is_none(),
        "credential keys were silently regenerated"
    );
    env.wait_event("keystone", "CredentialKeysLost").await;

    // acknowledged: regenerated once
    env.annotate("keystone", REGENERATE, "i-accept-losing-stored-credentials")
        .await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", Some("KeysReady"))
        .await;
    let c = env.credential_secret("keystone").await.unwrap();
    assert_eq!(
        c.annotations()["keystone.openstack.org/handled-regenerate-ack"],
        "i-accept-losing-stored-credentials"
    );
    env.wait_event("keystone", "CredentialKeysRegenerated").await;

    // the same acknowledgement does not cover a second loss
    env.secrets
        .delete(&c.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    env.patch_spec("keystone", json!({"replicas": 2})).await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "False", Some("KeysLost"))
        .await;
    assert!(env.credential_secret("keystone").await.is_none());
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_keystones_in_one_namespace_do_not_clash() {
    let env = Env::new("fernet-two", "1s").await;
    let _proc = env.start_controller().await;
    env.create("alpha", json!({"replicas": 0})).await;
    env.create("beta", json!({"replicas": 0})).await;
    env.wait_condition("alpha", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    env.wait_condition("beta", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    let (a, b) = (env.fernet_secret("alpha").await, env.fernet_secret("beta").await);
    assert_ne!(keys(&a)["1"], keys(&b)["1"]);
    assert_eq!(a.labels()["app.kubernetes.io/instance"], "alpha");
    assert_eq!(b.labels()["app.kubernetes.io/instance"], "beta");
    env.annotate("alpha", ROTATE, "go").await;
    env.wait_rotations("alpha", 1).await;
    assert_eq!(rotation_count(&env.fernet_secret("beta").await), 0);
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_keys_survive_deleting_and_recreating_the_keystoneapi() {
    let env = Env::new("fernet-recreate", "5m").await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    let cred = env.credential_secret("keystone").await.unwrap();
    let fernet = env.fernet_secret("keystone").await;

    env.keystones
        .delete("keystone", &DeleteParams::foreground())
        .await
        .unwrap();
    wait::until(
        "KeystoneAPI and its fernet Secret gone",
        Duration::from_secs(60),
        || async {
            let ks = env
                .keystones
                .get_opt("keystone")
                .await
                .map_err(|e| e.to_string())?;
            let f = env
                .secrets
                .get_opt(&fernet.name_any())
                .await
                .map_err(|e| e.to_string())?;
            if ks.is_none() && f.is_none() {
                Ok(())
            } else {
                Err(format!("ks {} fernet {}", ks.is_some(), f.is_some()))
            }
        },
    )
    .await;
    assert_eq!(
        keys(&env.credential_secret("keystone").await.unwrap()),
        keys(&cred),
        "credential keys changed"
    );

    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", Some("KeysReady"))
        .await;
    let adopted = env.credential_secret("keystone").await.unwrap();
    assert_eq!(keys(&adopted), keys(&cred), "credential keys were regenerated");
    assert_eq!(adopted.resource_version(), cred.resource_version());
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_right_after_a_rotation_and_two_racing_controllers_never_double_rotate() {
    let env = Env::new("fernet-race", "4s").await;
    let first = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    env.annotate("keystone", ROTATE, "once").await;
    env.wait_rotations("keystone", 1).await;
    first.crash().await;

    // Two controllers at once (as after a split brain): both see the same request and the same state.
    let a = env.start_controller().await;
    let b = env.start_controller().await;
    a.wait_metric("keystone_fernet_reconcile_runs_total", 1.0).await;
    b.wait_metric("keystone_fernet_reconcile_runs_total", 1.0).await;
    env.annotate("keystone", ROTATE, "twice").await;
    env.wait_rotations("keystone", 2).await;
    // past the floor again: still exactly one rotation for the request
    env.wait_quiet("keystone", 9).await;
    assert_eq!(rotation_count(&env.fernet_secret("keystone").await), 2);
    env.ns.delete().await;
}

/// A `<name>-fernet-keys` Secret the operator did not create (here planted with keys the planter knows) is
/// neither used nor touched until the KeystoneAPI asks for it to be adopted; adopted, its keys are kept and it
/// becomes the KeystoneAPI's.
#[tokio::test(flavor = "multi_thread")]
async fn a_fernet_key_secret_the_operator_did_not_create_is_used_only_on_request() {
    use base64::Engine as _;
    let env = Env::new("fernet-planted", "5m").await;
    let key = |b: u8| base64::engine::general_purpose::URL_SAFE.encode([b; 32]);
    let planted: Secret = serde_json::from_value(json!({
        "metadata": {"name": "keystone-fernet-keys"},
        "stringData": {"0": key(1), "1": key(2), "2": key(3)}
    }))
    .unwrap();
    env.secrets
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    let _proc = env.start_controller().await;
    env.create("keystone", json!({})).await;
    let ks = env
        .wait_condition("keystone", FERNET_KEYS_READY, "False", Some("KeysNotOurs"))
        .await;
    let message = condition_message(&ks, FERNET_KEYS_READY);
    assert!(message.contains("adopt-fernet-keys=true"), "{message}");
    let untouched = env.fernet_secret("keystone").await;
    assert!(untouched.metadata.owner_references.is_none());
    assert_eq!(
        keys(&untouched).values().cloned().collect::<Vec<_>>(),
        [key(1), key(2), key(3)]
    );

    env.annotate("keystone", "keystone.openstack.org/adopt-fernet-keys", "true")
        .await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", Some("KeysReady"))
        .await;
    let adopted = env.fernet_secret("keystone").await;
    assert_eq!(
        keys(&adopted).values().cloned().collect::<Vec<_>>(),
        [key(1), key(2), key(3)],
        "adoption changed the keys"
    );
    assert_eq!(
        adopted.metadata.owner_references.unwrap()[0].controller,
        Some(true)
    );
    env.ns.delete().await;
}

/// A key Secret the API server refuses (a quota allowing no Secret) ends in `FernetKeysReady=False` naming the
/// Secret, without copying the API server's message (it may quote a refused value); the keys are created by
/// themselves once the refusal is lifted.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_secret_is_reported_and_created_once_allowed() {
    let env = Env::new("fernet-refused", "5m").await;
    let quota =
        test_support::quota::limit(&env.client, &env.ns.name, "no-secrets", json!({"secrets": "0"})).await;
    let _proc = env.start_controller().await;
    env.create("keystone", json!({"replicas": 0})).await;
    let ks = env
        .wait_condition("keystone", FERNET_KEYS_READY, "False", Some("RequestForbidden"))
        .await;
    let message = condition_message(&ks, FERNET_KEYS_READY);
    assert!(
        message
            .starts_with("writing Secret keystone-fernet-keys failed: the API server answered 403 Forbidden")
            && !message.contains("exceeded quota"),
        "{message}"
    );
    test_support::quota::lift(&quota, "no-secrets").await;
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    env.ns.delete().await;
}

/// Credential keys are made for a KeystoneAPI that never had any only once the database step reported that the
/// database holds no encrypted credentials: new keys cannot decrypt credentials stored with others. A database
/// that holds some stops creation (`CredentialsWithoutKeys`) until the Secret is restored or the loss is
/// acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn credential_keys_are_not_made_for_a_database_that_already_holds_credentials() {
    let env = Env::new("fernet-stored", "5m").await;
    let _proc = env.start_controller().await;
    env.create_unreported("keystone", json!({"replicas": 0})).await;
    let ks = env
        .wait_condition(
            "keystone",
            CREDENTIAL_KEYS_READY,
            "False",
            Some("WaitingForDatabase"),
        )
        .await;
    assert!(condition_message(&ks, CREDENTIAL_KEYS_READY).contains("already holds encrypted credentials"));
    // The fernet keys do not wait.
    env.wait_condition("keystone", FERNET_KEYS_READY, "True", None)
        .await;
    env.report_stored_credentials("keystone", 3).await;
    let ks = env
        .wait_condition(
            "keystone",
            CREDENTIAL_KEYS_READY,
            "False",
            Some("CredentialsWithoutKeys"),
        )
        .await;
    let message = condition_message(&ks, CREDENTIAL_KEYS_READY);
    assert!(
        message.contains("already holds 3 encrypted credentials") && message.contains(REGENERATE),
        "{message}"
    );
    env.wait_event("keystone", "CredentialsWithoutKeys").await;
    assert!(
        env.credential_secret("keystone").await.is_none(),
        "keys were made anyway"
    );
    // Accepting the loss makes them.
    env.annotate("keystone", REGENERATE, "accept-1").await;
    env.wait_condition("keystone", CREDENTIAL_KEYS_READY, "True", None)
        .await;
    assert!(env.credential_secret("keystone").await.is_some());
    env.ns.delete().await;
}
