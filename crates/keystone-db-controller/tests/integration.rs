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
            &["--min-rotation-interval", "5m"][..if c.contains("fernet") { 2 } else { 0 }],
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
        wait::until("JobFailed", Duration::from_secs(60), || async {
            env.driver
                .drive_pending(
                    "app.kubernetes.io/component=db-create",
                    Outcome::Failed { exit_code: 1 },
                )
                .await
                .map_err(|e| e.to_string())?;
            match env.condition(conditions::DATABASE_READY).await {
                Some((_, r, m)) if r == "JobFailed" => Ok(m),
                other => Err(format!("{other:?}")),
            }
        })
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
    wait::until("the first attempt to fail", Duration::from_secs(60), || async {
        env.driver
            .drive_pending(
                "app.kubernetes.io/component=db-create",
                Outcome::Failed { exit_code: 1 },
            )
            .await
            .map_err(|e| e.to_string())?;
        match env.condition(conditions::DATABASE_READY).await {
            Some((_, r, _)) if r == "JobFailed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // no annotation, no spec change: the second attempt starts after the 30 s back-off
    let names = env.wait_jobs("db-create", 2).await;
    assert!(names[1].ends_with("-1"), "{names:?}");
    env.drive_until(conditions::DATABASE_READY, "True", Outcome::Succeeded)
        .await;
    env.ns.delete().await;
}

/// Plays the fernet controller's side of a credential key rotation: publishes the cycle in the status.
async fn publish_cycle(env: &Env, phase: &str, migrate_after: Option<&str>) {
    let mut rotation = json!({"phase": phase});
    if let Some(t) = migrate_after {
        rotation["migrateAfter"] = json!(t);
    }
    env.keystones
        .patch_status(
            "keystone",
            &PatchParams::apply("test-fernet-cycle").force(),
            &Patch::Apply(json!({
                "apiVersion": "keystone.openstack.org/v1beta1", "kind": "KeystoneAPI",
                "status": {"fernet": {"credentialRotation": rotation}}
            })),
        )
        .await
        .unwrap();
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
async fn credential_migrate_runs_when_the_rotation_cycle_asks_and_not_before_its_time() {
    let env = env(
        "db-credmig",
        &[
            "keystone-db-controller",
            "keystone-api-controller",
            "keystone-fernet-controller",
        ],
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
    let (status, _, _) = env
        .condition(conditions::CREDENTIAL_MIGRATION_READY)
        .await
        .unwrap();
    assert_eq!(status, "True", "no cycle: nothing to migrate");
    assert!(env.job_names("credential-migrate").await.is_empty());
    let keys_hash = env
        .keystones
        .get("keystone")
        .await
        .unwrap()
        .status
        .unwrap()
        .fernet
        .unwrap()
        .credential_keys_hash
        .unwrap();

    // Before the rotation: a migration with the current keys, whose hash the Job checks.
    publish_cycle(&env, "PreMigrate", None).await;
    let jobs = env.wait_jobs("credential-migrate", 1).await;
    assert!(jobs[0].starts_with("keystone-cred-mig-"), "{jobs:?}");
    let job = env.jobs.get(&jobs[0]).await.unwrap();
    assert_eq!(
        job_env(&job, "CREDENTIAL_KEYS_HASH").as_deref(),
        Some(keys_hash.as_str())
    );
    let command = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .command
        .clone()
        .unwrap()
        .join(" ");
    assert!(
        command.contains("keystone-manage credential_migrate"),
        "{command}"
    );
    env.drive_until(conditions::CREDENTIAL_MIGRATION_READY, "True", Outcome::Succeeded)
        .await;
    let migrated = wait::until("the migration published", Duration::from_secs(30), || async {
        let ks = env.keystones.get("keystone").await.map_err(|e| e.to_string())?;
        ks.status
            .and_then(|s| s.database)
            .and_then(|d| d.credential_migration)
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(migrated.keys_hash, keys_hash);

    // After a rotation: not before migrateAfter, even though a migration with these keys already succeeded.
    let after = k8s_openapi::jiff::Timestamp::now() + std::time::Duration::from_secs(20);
    let after_text = after.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    publish_cycle(&env, "PostMigrate", Some(&after_text)).await;
    let message = env
        .drive_until(
            conditions::CREDENTIAL_MIGRATION_READY,
            "False",
            Outcome::Succeeded,
        )
        .await;
    assert!(message.contains("credential_migrate runs at"), "{message}");
    assert_eq!(env.job_names("credential-migrate").await.len(), 1);
    let jobs = env.wait_jobs("credential-migrate", 2).await;
    let second = jobs.iter().find(|j| **j != job.name_any()).unwrap();
    let created = env
        .jobs
        .get(second)
        .await
        .unwrap()
        .metadata
        .creation_timestamp
        .unwrap()
        .0;
    assert!(created.as_second() >= after.as_second(), "{created} < {after}");

    // A failed migration is reported and nothing is recorded for it.
    wait::until("the migration to fail", Duration::from_secs(60), || async {
        env.driver
            .drive_pending(
                "app.kubernetes.io/component=credential-migrate",
                Outcome::Failed { exit_code: 3 },
            )
            .await
            .map_err(|e| e.to_string())?;
        match env.condition(conditions::CREDENTIAL_MIGRATION_READY).await {
            Some((_, r, m)) if r == "JobFailed" => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    assert_eq!(
        ks.status.unwrap().database.unwrap().credential_migration,
        Some(migrated.clone()),
        "a failed migration must not be published"
    );
    // Retried on request; its success is published with a start at or after migrateAfter.
    env.patch(json!({"metadata": {"annotations": {"keystone.openstack.org/retry-jobs": "credmig"}}}))
        .await;
    env.drive_until(conditions::CREDENTIAL_MIGRATION_READY, "True", Outcome::Succeeded)
        .await;
    let ks = env.keystones.get("keystone").await.unwrap();
    let last = ks.status.unwrap().database.unwrap().credential_migration.unwrap();
    assert_eq!(last.keys_hash, keys_hash);
    assert!(last.started_at.0.as_second() >= after.as_second());
    env.ns.delete().await;
}
