//! The three controllers as separate processes against one KeystoneAPI, with the pod driver playing the
//! kubelet for the Jobs and the API pods: the steps run in order, re-run exactly when their inputs change, and
//! failures are reported and retried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use keystone_types::KeystoneAPI;
use keystone_types::conditions;
use test_support::pods::{Outcome, PodDriver};
use test_support::process::ControllerProcess;
use test_support::{TestNamespace, test_cluster, wait};

const DB: &str = env!("CARGO_BIN_EXE_keystone-db-controller");

fn sibling(name: &str) -> String {
    // the other controllers' binaries are built into the same target directory
    std::path::Path::new(DB)
        .with_file_name(name)
        .to_string_lossy()
        .into_owned()
}

struct Env {
    ns: TestNamespace,
    keystones: Api<KeystoneAPI>,
    jobs: Api<Job>,
    secrets: Api<Secret>,
    driver: PodDriver,
    _procs: Vec<ControllerProcess>,
}

async fn env(prefix: &str, controllers: &[&str]) -> Env {
    env_with_floor(prefix, controllers, "5m").await
}

async fn env_with_floor(prefix: &str, controllers: &[&str], floor: &str) -> Env {
    let cluster = test_cluster().await;
    let client = cluster.client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let osp: Secret = serde_json::from_value(json!({
        "metadata": {"name": "osp-secret"},
        "stringData": {"AdminPassword": "adm'$`{{x}}", "KeystoneDatabasePassword": "db pw ü %s", "DbRootPassword": "root\"pw"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &osp).await.unwrap();
    let mut procs = Vec::new();
    for c in controllers {
        let binary = if *c == "keystone-db-controller" {
            DB.to_owned()
        } else {
            sibling(c)
        };
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} is not built (cargo test --workspace builds it)"
        );
        let mut p = ControllerProcess::start(
            &binary,
            cluster,
            Some(&ns.name),
            &["--min-rotation-interval", floor][..if c.contains("fernet") { 2 } else { 0 }],
        );
        p.wait_ready().await;
        procs.push(p);
    }
    Env {
        keystones: Api::namespaced(client.clone(), &ns.name),
        jobs: Api::namespaced(client.clone(), &ns.name),
        secrets,
        driver: PodDriver::new(&client, &ns.name),
        ns,
        _procs: procs,
    }
}

impl Env {
    async fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        let ks = self.keystones.get("keystone").await.ok()?;
        ks.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_ && c.observed_generation == ks.metadata.generation)
            .map(|c| (c.status, c.reason, c.message))
    }

    /// Drives Job pods to `job_outcome` and API pods to Ready until `type_` is `status`.
    async fn drive_until(&self, type_: &str, status: &str, job_outcome: Outcome) -> String {
        wait::until(&format!("{type_}={status}"), Duration::from_secs(90), || async {
            self.driver
                .drive_keystone(job_outcome)
                .await
                .map_err(|e| e.to_string())?;
            match self.condition(type_).await {
                Some((s, _, m)) if s == status => Ok(m),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Fails `component`'s Job pods with `exit_code` until `type_` has reason `JobFailed`; returns its message.
    async fn fail_until_reported(&self, component: &str, type_: &str, exit_code: i32) -> String {
        wait::until(
            &format!("{component} JobFailed"),
            Duration::from_secs(60),
            || async {
                self.driver
                    .drive_pending(
                        &format!("app.kubernetes.io/component={component}"),
                        Outcome::Failed { exit_code },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                match self.condition(type_).await {
                    Some((_, r, m)) if r == "JobFailed" => Ok(m),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    async fn job_names(&self, component: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
            .await
            .unwrap()
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    }

    /// Waits until `component` has `n` Jobs.
    async fn wait_jobs(&self, component: &str, n: usize) -> Vec<String> {
        wait::until(
            &format!("{n} {component} Jobs"),
            Duration::from_secs(75),
            || async {
                let names = self.job_names(component).await;
                if names.len() == n {
                    Ok(names)
                } else {
                    Err(format!("{names:?}"))
                }
            },
        )
        .await
    }

    async fn patch(&self, patch: serde_json::Value) {
        self.keystones
            .patch("keystone", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_controllers_bring_keystone_to_ready_and_rerun_steps_only_on_their_inputs() {
    let env = env(
        "db-flow",
        &[
            "keystone-db-controller",
            "keystone-api-controller",
            "keystone-fernet-controller",
        ],
    )
    .await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 1, "networkAttachments": []}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();

    env.drive_until(conditions::READY, "True", Outcome::Succeeded)
        .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    let db = ks.status.as_ref().unwrap().database.clone().unwrap();
    assert_eq!(db.synced_image.as_deref(), Some(ks.spec.container_image.as_str()));
    let (create, sync, boot) = (
        env.job_names("db-create").await,
        env.job_names("db-sync").await,
        env.job_names("bootstrap").await,
    );
    assert_eq!(
        (create.len(), sync.len(), boot.len()),
        (1, 1, 1),
        "{create:?} {sync:?} {boot:?}"
    );
    // the order: each step's Job was created after the previous one completed
    let created = |n: &str| {
        let jobs = env.jobs.clone();
        let n = n.to_owned();
        async move { jobs.get(&n).await.unwrap().metadata.creation_timestamp.unwrap().0 }
    };
    let completed = |n: &str| {
        let jobs = env.jobs.clone();
        let n = n.to_owned();
        async move {
            jobs.get(&n)
                .await
                .unwrap()
                .status
                .unwrap()
                .completion_time
                .unwrap()
                .0
        }
    };
    assert!(created(&sync[0]).await >= completed(&create[0]).await);
    assert!(created(&boot[0]).await >= completed(&sync[0]).await);
    // passwords never appear in a Job
    for j in env.jobs.list(&ListParams::default()).await.unwrap() {
        let text = serde_json::to_string(&j).unwrap();
        for pw in ["adm'$`{{x}}", "db pw ü %s", "root\"pw"] {
            let encoded = serde_json::to_string(pw).unwrap();
            assert!(
                !text.contains(encoded.trim_matches('"')),
                "password {encoded} is in Job {}",
                j.name_any()
            );
        }
    }

    // A replica change re-runs nothing.
    env.patch(json!({"spec": {"replicas": 2}})).await;
    env.drive_until(conditions::READY, "True", Outcome::Succeeded)
        .await;
    assert_eq!(env.job_names("db-sync").await, sync);
    assert_eq!(env.job_names("bootstrap").await, boot);
    assert_eq!(env.job_names("db-create").await, create);

    // The admin password re-runs bootstrap only.
    env.secrets
        .patch(
            "osp-secret",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"AdminPassword": "new-admin"}})),
        )
        .await
        .unwrap();
    env.wait_jobs("bootstrap", 2).await;
    env.drive_until(conditions::BOOTSTRAP_READY, "True", Outcome::Succeeded)
        .await;
    assert_eq!(env.job_names("db-sync").await, sync);
    assert_eq!(env.job_names("db-create").await, create);

    // The database password re-runs the database step (ALTER USER).
    env.secrets
        .patch(
            "osp-secret",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"KeystoneDatabasePassword": "new-db"}})),
        )
        .await
        .unwrap();
    env.wait_jobs("db-create", 2).await;
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;

    // A new image re-runs db-sync, and the Deployment follows only after it.
    env.patch(
        json!({"spec": {"containerImage": "quay.io/podified-antelope-centos9/openstack-keystone:next"}}),
    )
    .await;
    env.wait_jobs("db-sync", 2).await;
    env.drive_until(conditions::READY, "True", Outcome::Succeeded)
        .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(
        ks.status.unwrap().database.unwrap().synced_image.as_deref(),
        Some("quay.io/podified-antelope-centos9/openstack-keystone:next")
    );
    // Each controller owns exactly its own rows of the status.
    let ks = env.keystones.get("keystone").await.unwrap();
    for entry in ks.metadata.managed_fields.unwrap() {
        let Some(c) = keystone_types::conditions::Controller::ALL
            .into_iter()
            .find(|c| entry.manager.as_deref() == Some(c.field_manager()))
        else {
            continue;
        };
        let fields = serde_json::to_string(&entry.fields_v1).unwrap();
        for row in conditions::CONTRACT {
            let key = format!("k:{{\\\"type\\\":\\\"{}\\\"}}", row.type_);
            assert_eq!(
                fields.contains(&key),
                row.owner == c,
                "{} and {}: {fields}",
                c,
                row.type_
            );
        }
    }
    let cj: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(env.keystones.clone().into_client(), &env.ns.name);
    assert!(cj.get_opt("keystone-trust-flush").await.unwrap().is_some());
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_reported_and_retried_on_request() {
    let env = env("db-fail", &["keystone-db-controller"]).await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    let msg = env
        .drive_until(
            conditions::DATABASE_READY,
            "False",
            Outcome::Failed { exit_code: 1 },
        )
        .await;
    let msg = if msg.contains("failed") {
        msg
    } else {
        env.fail_until_reported("db-create", conditions::DATABASE_READY, 1)
            .await
    };
    assert!(
        msg.contains("kubectl -n")
            && msg.contains("logs job/keystone-db-create-")
            && msg.contains("Next attempt at"),
        "{msg}"
    );
    assert!(msg.contains("keystone.openstack.org/retry-jobs"), "{msg}");
    env.patch(json!({"metadata": {"annotations": {"keystone.openstack.org/retry-jobs": "1"}}}))
        .await;
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;
    let names = env.job_names("db-create").await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with("-0") && names[1].ends_with("-1"), "{names:?}");
    env.ns.delete().await;
}

/// A Secret named like the db controller's HMAC key that the operator did not create (its planter knows the
/// key, so the Job inputs hashes would tell them whether a password guess is right) is never adopted: no Job
/// runs, DatabaseReady says why; once it is deleted the controller creates its own and the steps run.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_hmac_key_is_not_adopted() {
    let env = env("db-hmac", &["keystone-db-controller"]).await;
    let key_name = keystone_types::names::hmac_key_secret("keystone", conditions::Controller::Db);
    let planted: Secret = serde_json::from_value(json!({
        "metadata": {"name": key_name}, "stringData": {"key": "k".repeat(32)},
    }))
    .unwrap();
    env.secrets
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    let (reason, msg) = wait::until(
        "DatabaseReady HMACKeyUnusable",
        Duration::from_secs(60),
        || async {
            match env.condition(conditions::DATABASE_READY).await {
                Some((s, r, m)) if s == "False" && r == "HMACKeyUnusable" => Ok((r, m)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(reason, "HMACKeyUnusable");
    assert!(msg.contains(&key_name), "{msg}");
    assert!(
        env.job_names("db-create").await.is_empty(),
        "a Job ran under a planted key"
    );
    env.secrets
        .delete(&key_name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;
    let ours = env.secrets.get(&key_name).await.unwrap();
    assert_eq!(ours.owner_references()[0].controller, Some(true));
    env.ns.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_is_retried_by_itself_after_the_back_off() {
    let env = env("db-backoff", &["keystone-db-controller"]).await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    // fail the first attempt only
    env.fail_until_reported("db-create", conditions::DATABASE_READY, 1)
        .await;
    // no annotation, no spec change: the second attempt starts after the 30 s back-off
    let names = env.wait_jobs("db-create", 2).await;
    assert!(names[1].ends_with("-1"), "{names:?}");
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;
    env.ns.delete().await;
}

fn job_env(job: &Job, name: &str) -> Option<String> {
    job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requested_credential_rotation_migrates_rotates_migrates_again_and_then_drops_the_old_key() {
    let env = env_with_floor(
        "db-credrot",
        &[
            "keystone-db-controller",
            "keystone-api-controller",
            "keystone-fernet-controller",
        ],
        "20s",
    )
    .await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    env.drive_until(conditions::READY, "True", Outcome::Succeeded)
        .await;
    let keys = |s: Secret| -> std::collections::BTreeMap<String, Vec<u8>> {
        s.data.unwrap().into_iter().map(|(k, v)| (k, v.0)).collect()
    };
    let before = keys(env.secrets.get("keystone-credential-keys").await.unwrap());
    assert_eq!(before.len(), 2);
    let (status, _, _) = env
        .condition(conditions::CREDENTIAL_MIGRATION_READY)
        .await
        .unwrap();
    assert_eq!(status, "True", "no cycle: nothing to migrate");
    assert!(env.job_names("credential-migrate").await.is_empty());
    env.patch(json!({"metadata": {"annotations": {"keystone.openstack.org/rotate-credential-keys": "1"}}}))
        .await;
    let phase = |s: &Secret| {
        s.annotations()
            .get("keystone.openstack.org/credential-rotation-phase")
            .cloned()
            .unwrap_or_default()
    };
    // The first migration succeeds; the keys are rotated with the old primary kept.
    let rotated = wait::until("rotated", Duration::from_secs(90), || async {
        env.driver
            .drive_keystone(Outcome::Succeeded)
            .await
            .map_err(|e| e.to_string())?;
        let s = env
            .secrets
            .get("keystone-credential-keys")
            .await
            .map_err(|e| e.to_string())?;
        if phase(&s) == "PostMigrate" {
            Ok(s)
        } else {
            Err(phase(&s))
        }
    })
    .await;
    assert_eq!(keys(rotated.clone()).len(), 3, "the old primary is kept");
    let first = env.job_names("credential-migrate").await;
    assert_eq!(first.len(), 1, "{first:?}");
    let migrate_after: k8s_openapi::jiff::Timestamp =
        rotated.annotations()["keystone.openstack.org/credential-migrate-after"]
            .parse()
            .unwrap();
    // Until migrateAfter, the db controller waits and says when it will run.
    let message = wait::until(
        "CredentialMigrationReady=False Waiting",
        Duration::from_secs(15),
        || async {
            match env.condition(conditions::CREDENTIAL_MIGRATION_READY).await {
                Some((s, r, m)) if s == "False" && r == "Waiting" => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(message.contains("credential_migrate runs at"), "{message}");
    // The second migration fails once: reported, nothing dropped.
    let jobs = env.wait_jobs("credential-migrate", 2).await;
    let second = jobs.iter().find(|j| **j != first[0]).unwrap();
    let second = env.jobs.get(second).await.unwrap();
    let second_created = second.metadata.creation_timestamp.clone().unwrap().0;
    assert!(
        second_created.as_second() >= migrate_after.as_second(),
        "{second_created} < {migrate_after}"
    );
    let failed = env
        .fail_until_reported("credential-migrate", conditions::CREDENTIAL_MIGRATION_READY, 3)
        .await;
    assert!(
        failed.contains("kubectl -n") && failed.contains("retry-jobs"),
        "{failed}"
    );
    let held = env.secrets.get("keystone-credential-keys").await.unwrap();
    assert_eq!(phase(&held), "PostMigrate");
    assert_eq!(
        keys(held),
        keys(rotated),
        "nothing changes while the migration fails"
    );
    env.patch(json!({"metadata": {"annotations": {"keystone.openstack.org/retry-jobs": "credmig"}}}))
        .await;
    // Retried, it succeeds: Idle again with one cycle counted.
    let after = wait::until(
        "one credential rotation cycle",
        Duration::from_secs(150),
        || async {
            env.driver
                .drive_keystone(Outcome::Succeeded)
                .await
                .map_err(|e| e.to_string())?;
            let s = env
                .secrets
                .get("keystone-credential-keys")
                .await
                .map_err(|e| e.to_string())?;
            let a = s.annotations().clone();
            let phase = a.get("keystone.openstack.org/credential-rotation-phase").cloned();
            let count = a.get("keystone.openstack.org/credential-rotation-count").cloned();
            if phase.as_deref() == Some("Idle") && count.as_deref() == Some("1") {
                Ok(s)
            } else {
                Err(format!("phase {phase:?}, count {count:?}"))
            }
        },
    )
    .await;
    let after = keys(after);
    // Keystone's rotation: the staged key is the primary now, a new staged key, the old primary dropped.
    assert_eq!(after.len(), 2, "{:?}", after.keys());
    assert_eq!(
        after.get("2"),
        before.get("0"),
        "the old staged key is the primary"
    );
    assert!(
        !before.values().any(|k| Some(k) == after.get("0")),
        "a new staged key"
    );
    assert!(!after.contains_key("1"), "the old primary is dropped at the end");
    // Three migration Jobs ran: one before the rotation, one after the floor that failed, and its retry.
    let jobs = env.job_names("credential-migrate").await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let mut created = Vec::new();
    for j in &jobs {
        let job = env.jobs.get(j).await.unwrap();
        created.push((
            job.metadata.creation_timestamp.clone().unwrap().0,
            job_env(&job, "CREDENTIAL_KEYS_HASH").unwrap(),
        ));
    }
    created.sort();
    assert_ne!(
        created[0].1, created[1].1,
        "the migrations ran with different key sets"
    );
    assert_eq!(created[1].1, created[2].1, "the retry ran with the same keys");
    let ks = env.keystones.get("keystone").await.unwrap();
    let status = ks.status.unwrap();
    let rotation = status.fernet.unwrap().credential_rotation.unwrap();
    assert_eq!(rotation.phase, "Idle");
    let migrated = status.database.unwrap().credential_migration.unwrap();
    assert_eq!(migrated.keys_hash, created[2].1);
    assert!(migrated.started_at.0.as_second() >= migrate_after.as_second());
    env.ns.delete().await;
}

/// A Job the API server refuses (a quota) ends in its step's condition, naming the Job and the answer, while
/// the steps before it stay recorded: once their Jobs are gone (as their TTL removes them) nothing runs again,
/// and the refused step starts by itself when the refusal is lifted.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_job_is_reported_and_the_steps_before_it_never_run_again() {
    let env = env(
        "db-refused",
        &[
            "keystone-db-controller",
            "keystone-api-controller",
            "keystone-fernet-controller",
        ],
    )
    .await;
    let client = env.keystones.clone().into_client();
    // Room for the database and db-sync Jobs only.
    let quota = test_support::quota::limit(
        &client,
        &env.ns.name,
        "two-jobs",
        json!({"count/jobs.batch": "2"}),
    )
    .await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    let message = wait::until(
        "BootstrapReady RequestForbidden",
        Duration::from_secs(90),
        || async {
            env.driver
                .drive_keystone(Outcome::Succeeded)
                .await
                .map_err(|e| e.to_string())?;
            match env.condition(conditions::BOOTSTRAP_READY).await {
                Some((s, r, m)) if s == "False" && r == "RequestForbidden" => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        message.starts_with("creating Job keystone-bootstrap")
            && message.contains("exceeded quota: two-jobs")
            && message.contains("next attempt in"),
        "{message}"
    );
    for type_ in [conditions::DATABASE_READY, conditions::DB_SYNC_READY] {
        assert_eq!(
            env.condition(type_).await.map(|c| c.0).as_deref(),
            Some("True"),
            "{type_}"
        );
    }
    let recorded = env
        .keystones
        .get("keystone")
        .await
        .unwrap()
        .status
        .unwrap()
        .database
        .unwrap();
    assert!(
        recorded.db_create_hash.is_some() && recorded.db_sync_hash.is_some(),
        "{recorded:?}"
    );
    // The finished Jobs go, as their TTL would take them; that also makes room for bootstrap.
    for component in ["db-create", "db-sync"] {
        for job in env.job_names(component).await {
            env.jobs
                .delete(&job, &kube::api::DeleteParams::background())
                .await
                .unwrap();
        }
    }
    test_support::quota::lift(&quota, "two-jobs").await;
    env.drive_until(conditions::BOOTSTRAP_READY, "True", Outcome::Succeeded)
        .await;
    assert!(
        env.job_names("db-create").await.is_empty(),
        "the database step ran again"
    );
    assert!(env.job_names("db-sync").await.is_empty(), "db-sync ran again");
    env.ns.delete().await;
}

/// A Job whose pod cannot start (here its image cannot be pulled) is reported with the kubelet's reason while
/// it waits, long before the Job's one-hour deadline; once the pod runs, the step goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_pod_that_cannot_start_is_reported_before_the_deadline() {
    let env = env("db-stuck", &["keystone-db-controller"]).await;
    let ks: KeystoneAPI = serde_json::from_value(json!({
        "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI", "metadata": {"name": "keystone"},
        "spec": {"replicas": 0}
    }))
    .unwrap();
    env.keystones.create(&PostParams::default(), &ks).await.unwrap();
    let job = env.wait_jobs("db-create", 1).await.remove(0);
    let message = wait::until(
        "DatabaseReady PodsNotStarting",
        Duration::from_secs(60),
        || async {
            env.driver
                .drive_pending(
                    "app.kubernetes.io/component=db-create",
                    Outcome::Waiting {
                        reason: "ImagePullBackOff",
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            match env.condition(conditions::DATABASE_READY).await {
                Some((s, r, m)) if s == "False" && r == "PodsNotStarting" => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        message.contains(&format!("Job {job} is running but its pod cannot start"))
            && message.contains(&format!("{job}-"))
            && message.contains("ImagePullBackOff: simulated ImagePullBackOff"),
        "{message}"
    );
    // The image arrives: the pod runs to completion.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(env.keystones.clone().into_client(), &env.ns.name);
    for pod in pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
    {
        env.driver
            .set_status(&pod.name_any(), Outcome::Succeeded)
            .await
            .unwrap();
    }
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;
    env.ns.delete().await;
}
