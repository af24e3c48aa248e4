//! The end-to-end scenarios, in order, on one KeystoneAPI (they build on each other, as a user's would; the
//! catalog scenario comes last because it ends by deleting the KeystoneAPI).
//! Run with `make e2e` (root: the local node). Each scenario prints its duration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use keystone_e2e::{ADMIN_PASSWORD, DB_PASSWORD, DB_ROOT_PASSWORD, Env, Keystone, Load, NAMESPACE, Targets};
use keystone_types::catalog::{KeystoneEndpoint, KeystoneService};
use keystone_types::conditions;

const NAME: &str = "keystone";
const NEW_ADMIN_PASSWORD: &str = "new-adm$'\"{{a}}%";
const NEW_DB_PASSWORD: &str = "new-db$'\"`{{b}}%";

/// Scenario 1: the seed's basic example with two replicas and hostile passwords comes up; a real client
/// issues a token on one replica that validates on the other; the catalog matches `status.apiEndpoints`;
/// an EC2 credential is created (scenario 7 decrypts it again).
async fn basic_example(env: &Env) -> String {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let _ = secrets.delete("osp-secret", &DeleteParams::default()).await;
    test_support::keystone::create_osp_secret(
        &env.client,
        NAMESPACE,
        ADMIN_PASSWORD,
        DB_PASSWORD,
        DB_ROOT_PASSWORD,
    )
    .await;
    // The seed README's basic example, with replicas: 2.
    test_support::keystone::create(
        &env.client,
        NAMESPACE,
        NAME,
        json!({
            "containerImage": "quay.io/podified-antelope-centos9/openstack-keystone:current-podified",
            "replicas": 2,
            "secret": "osp-secret"
        }),
    )
    .await;
    let ks = env
        .wait_condition(NAME, conditions::READY, "True", Duration::from_secs(300))
        .await;
    let ips = env.api_pod_ips(NAME).await;
    assert_eq!(ips.len(), 2, "two API pods Ready: {ips:?}");
    let (a, b) = (&ips[0], &ips[1]);

    // The real client issues on replica A; the token validates on replica B (no cache configured:
    // validation decrypts with B's copy of the keys).
    let issued = env
        .openstack(
            &format!("http://{a}:5000/v3"),
            ADMIN_PASSWORD,
            &["token", "issue"],
        )
        .await
        .unwrap();
    let token = issued["id"].as_str().unwrap().to_owned();
    let ksc = Keystone::default();
    assert_eq!(ksc.validate(b, &token, &token, false).await.unwrap(), 200);

    // The identity endpoints Keystone serves are the ones the operator published.
    // As a client in the cluster: through the internal Service name.
    let published = ks.status.unwrap().api_endpoints.unwrap();
    let internal = format!("{}/v3", published.internal.clone().unwrap());
    let endpoints = env
        .openstack(&internal, ADMIN_PASSWORD, &["endpoint", "list"])
        .await
        .unwrap();
    let url = |iface: &str| {
        endpoints
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Interface"] == iface && e["Service Type"] == "identity")
            .map(|e| e["URL"].as_str().unwrap().to_owned())
    };
    assert_eq!(url("public"), published.public, "{endpoints}");
    assert_eq!(url("internal"), published.internal, "{endpoints}");

    // An EC2 credential, encrypted with the credential keys.
    let cred = env
        .openstack(&internal, ADMIN_PASSWORD, &["ec2", "credentials", "create"])
        .await
        .unwrap();
    cred["access"]
        .as_str()
        .unwrap_or_else(|| panic!("no access key in {cred}"))
        .to_owned()
}

/// Waits until the API pods of `NAME` are `n` Ready pods, none of them in `old`; returns (name, address).
async fn rolled(env: &Env, old: &[String], timeout: Duration) -> Vec<(String, String)> {
    let old = old.to_vec();
    test_support::wait::until("API pods rolled", timeout, || async {
        let pods = env.api_pods(NAME).await;
        if pods.len() == 2 && pods.iter().all(|(n, _)| !old.contains(n)) {
            Ok(pods)
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await
}

fn pod_names(pods: &[(String, String)]) -> Vec<String> {
    pods.iter().map(|(n, _)| n.clone()).collect()
}

async fn patch_spec(env: &Env, spec: serde_json::Value) {
    env.keystones()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap();
}

async fn pod_uid(env: &Env, pod: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    pods.get(pod).await.unwrap().metadata.uid.unwrap()
}

type KeyFiles = BTreeMap<String, Vec<u8>>;

/// The fernet key Secret's data (file name → key).
async fn fernet_keys(env: &Env) -> Result<KeyFiles, String> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    Ok(secrets
        .get(&keystone_types::names::fernet_keys_secret(NAME))
        .await
        .map_err(|e| e.to_string())?
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Sets annotation `key` on the KeystoneAPI (a manual rotation request is a new value).
async fn annotate(env: &Env, key: &str, value: &str) {
    env.keystones()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap();
}

/// One key set the fernet Secret held, as the watcher saw it.
#[derive(Debug)]
struct Seen {
    count: i64,
    last_rotation: String,
    keys: KeyFiles,
    /// When each watched pod's volume first held exactly these keys, after the Secret did.
    reached: Vec<Option<Duration>>,
    /// How long the watcher saw this set before it stopped or the set changed again.
    observed_for: Duration,
}

/// Watches the fernet Secret and the key volumes of the given pods (every 100 ms): every key set in order,
/// and how long each took to reach each pod.
struct Watcher {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<Vec<Seen>>,
}

impl Watcher {
    fn start(env: &Env, uids: Vec<String>) -> Watcher {
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicI64::new(-1));
        let (stop2, count2) = (stop.clone(), count.clone());
        let task = tokio::spawn(async move {
            let name = keystone_types::names::fernet_keys_secret(NAME);
            let mut seen: Vec<(Seen, Instant)> = Vec::new();
            // Bounded: the scenario's own timeouts end long before.
            let deadline = Instant::now() + Duration::from_secs(1200);
            loop {
                // The last pass runs after the stop request: a set that reached the pods just before it counts.
                let last_pass = stop2.load(Ordering::Relaxed) || Instant::now() >= deadline;
                if let Ok(s) = secrets.get(&name).await {
                    let keys: KeyFiles = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    if seen.last().is_none_or(|(l, _)| l.keys != keys) {
                        let a = s.metadata.annotations.unwrap_or_default();
                        let c: i64 = a
                            .get("keystone.openstack.org/rotation-count")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(-1);
                        count2.store(c, Ordering::Relaxed);
                        if let Some((l, at)) = seen.last_mut() {
                            l.observed_for = at.elapsed();
                        }
                        seen.push((
                            Seen {
                                count: c,
                                last_rotation: a
                                    .get("keystone.openstack.org/last-rotation-time")
                                    .cloned()
                                    .unwrap_or_default(),
                                keys,
                                reached: vec![None; uids.len()],
                                observed_for: Duration::ZERO,
                            },
                            Instant::now(),
                        ));
                    }
                }
                for (s, at) in seen.iter_mut().rev().take(2) {
                    for (i, uid) in uids.iter().enumerate() {
                        if s.reached[i].is_none() && keystone_e2e::pod_volume(uid, "fernet-keys") == s.keys {
                            s.reached[i] = Some(at.elapsed());
                        }
                    }
                }
                if last_pass {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if let Some((l, at)) = seen.last_mut() {
                l.observed_for = at.elapsed();
            }
            seen.into_iter().map(|(s, _)| s).collect()
        });
        Watcher { stop, count, task }
    }

    fn count(&self) -> i64 {
        self.count.load(Ordering::Relaxed)
    }

    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

async fn wait_count(w: &Watcher, at_least: i64, timeout: Duration) {
    test_support::wait::until(&format!("rotation {at_least}"), timeout, || async {
        let c = w.count();
        if c >= at_least {
            Ok(())
        } else {
            Err(format!("at rotation {c}"))
        }
    })
    .await;
}

fn unix(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("last-rotation-time {rfc3339:?}: {e}"))
        .as_second()
}

/// Every change of the key set is exactly one Keystone rotation: the count goes up by one, at least the floor
/// after the last one, the staged key becomes the primary, a new staged key appears, and no other key is
/// lost (below `max_keys` nothing is pruned).
fn assert_rotations(seen: &[Seen], max_keys: usize) {
    for w in seen.windows(2) {
        let (old, new) = (&w[0], &w[1]);
        assert_eq!(
            new.count,
            old.count + 1,
            "a skipped or double rotation: {} → {}",
            old.count,
            new.count
        );
        let gap = unix(&new.last_rotation) - unix(&old.last_rotation);
        assert!(
            gap >= 20,
            "rotation {} came {gap}s after the previous one (floor 20s)",
            new.count
        );
        let primary = new
            .keys
            .keys()
            .filter_map(|k| k.parse::<u32>().ok())
            .max()
            .unwrap();
        assert_eq!(
            new.keys.get(&primary.to_string()),
            old.keys.get("0"),
            "rotation {}: the staged key did not become the primary",
            new.count
        );
        assert!(
            !old.keys.values().any(|k| Some(k) == new.keys.get("0")),
            "rotation {}: the new staged key is not new",
            new.count
        );
        assert!(new.keys.len() <= max_keys);
        if old.keys.len() < max_keys {
            for (i, k) in old.keys.iter().filter(|(i, _)| i.as_str() != "0") {
                assert_eq!(new.keys.get(i), Some(k), "rotation {}: key {i} lost", new.count);
            }
        }
    }
}

/// Scenarios 2 and 6: rotations every 20 s (the lowered floor) under continuous issue/validate traffic on both
/// replicas, one of which sees every Secret change 8 s late; each controller is SIGKILLed and restarted on the
/// way. Then pruning is safe: with the key count lowered, a manual rotation that would drop the key of a token
/// past expiry but inside its allow-expired window waits (the status says until when); after a memcached flush
/// the token still validates with `allow_expired` on both replicas, and once the key count is raised again the
/// request runs at once.
async fn rotation_under_load(env: &mut Env) -> String {
    const ROTATIONS: i64 = 10;
    const LAG_S: u64 = 8;
    const EXPIRATION: Duration = Duration::from_secs(120);
    const WINDOW: Duration = Duration::from_secs(240);
    // 35 = ceil((2m + 4m + 5m) / 20s) + 2, the fewest keys admission accepts for these settings.
    const MAX_KEYS: usize = 35;
    let before = pod_names(&env.api_pods(NAME).await);
    patch_spec(
        env,
        json!({"token": {"expiration": "2m", "allowExpiredWindow": "4m"},
               "fernet": {"rotationInterval": "20s", "maxActiveKeys": MAX_KEYS}}),
    )
    .await;
    let pods = rolled(env, &before, Duration::from_secs(180)).await;
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    let ips: Vec<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    // The second replica's kubelet is slow: every Secret change reaches it 8 s late.
    let lagging = &pods[1].0;
    let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    pod_api
        .patch(
            lagging,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "local-node.keystone.openstack.org/volume-lag": format!("{LAG_S}s")}}})),
        )
        .await
        .unwrap();
    let mut uids = Vec::new();
    for (n, _) in &pods {
        uids.push(pod_uid(env, n).await);
    }
    // The pods were just rolled: every Keystone worker process imports Keystone on its first request. Warm
    // them before the load starts, so that the load measures rotations, not start-up.
    let warm = Keystone::default();
    for ip in &ips {
        for round in 0..4 {
            test_support::wait::until(
                &format!("{ip} answers (warm-up {round})"),
                Duration::from_secs(120),
                || async {
                    let auth = warm.issue(ip, ADMIN_PASSWORD).await?;
                    match warm.validate(ip, &auth, &auth, false).await? {
                        200 => Ok(()),
                        code => Err(format!("validate: HTTP {code}")),
                    }
                },
            )
            .await;
        }
    }
    let watcher = Watcher::start(env, uids.clone());
    wait_count(&watcher, 0, Duration::from_secs(10)).await;
    let base = watcher.count();
    let load = Load::start(
        env.client.clone(),
        Targets::Pods(ips.clone()),
        ADMIN_PASSWORD.into(),
        watcher.count.clone(),
        Duration::from_secs(900),
        2,
    );
    let ksc = Keystone::default();
    let period = Duration::from_secs(20 * (ROTATIONS as u64 + 4));

    // Scenario 6, during the rotations: each controller is SIGKILLed once and restarted.
    wait_count(&watcher, base + 2, period).await;
    env.crash_and_restart("api", "20s").await;
    println!(
        "e2e: api controller SIGKILLed and restarted after rotation {}",
        watcher.count()
    );
    wait_count(&watcher, base + 4, period).await;
    // Just before the next rotation is due: the restarted controller must neither rotate twice nor skip.
    tokio::time::sleep(Duration::from_millis(18_500)).await;
    env.crash_and_restart("fernet", "20s").await;
    println!(
        "e2e: fernet controller SIGKILLed and restarted 18.5 s after rotation {}",
        base + 4
    );
    // The token whose key the pruning below would remove: past expiry but inside its allow-expired window then.
    wait_count(&watcher, base + 5, period).await;
    let old_token = ksc.issue(&ips[0], ADMIN_PASSWORD).await.unwrap();
    let old_at = Instant::now();
    let old_rotation = watcher.count();
    wait_count(&watcher, base + 6, period).await;
    env.crash_and_restart("db", "20s").await;
    println!(
        "e2e: db controller SIGKILLed and restarted after rotation {}",
        watcher.count()
    );
    wait_count(&watcher, base + ROTATIONS, period).await;
    let stats = load.finish().await;
    // The last key set reaches both pods (the lagging one 8 s late).
    test_support::wait::until(
        "the last key set on both pods",
        Duration::from_secs(30),
        || async {
            let keys = fernet_keys(env).await?;
            if uids
                .iter()
                .all(|u| keystone_e2e::pod_volume(u, "fernet-keys") == keys)
            {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    let seen = watcher.finish().await;

    assert!(
        stats.failures.is_empty(),
        "{} failed requests under rotation:\n{}",
        stats.failures.len(),
        stats.failures.join("\n")
    );
    let rotations = seen.last().unwrap().count - base;
    assert!(rotations >= ROTATIONS, "{rotations} rotations");
    assert!(stats.validated_across_rotations > 0);
    assert_rotations(&seen, MAX_KEYS);
    // The lag was real: the second pod got every rotated set 8 s late, the first at once.
    let lags = |i: usize| -> Vec<f64> {
        seen.iter()
            .skip(1)
            .filter_map(|s| s.reached[i])
            .map(|d| d.as_secs_f64())
            .collect()
    };
    let (fresh, late) = (lags(0), lags(1));
    // Every set that stayed long enough reached both pods (the lagging one keeps a set it saw for < 8 s).
    for s in seen.iter().skip(1) {
        if s.observed_for >= Duration::from_secs(LAG_S + 7) {
            assert!(
                s.reached.iter().all(Option::is_some),
                "the key set of rotation {} (in the Secret for {:?}) never reached a pod: {:?}",
                s.count,
                s.observed_for,
                s.reached
            );
        }
    }
    assert!(fresh.iter().all(|l| *l < 3.0), "the first pod lagged: {fresh:?}");
    assert!(
        late.iter()
            .all(|l| *l >= (LAG_S - 1) as f64 && *l < (LAG_S + 7) as f64),
        "the lagging pod's delays: {late:?}"
    );
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);

    // Pruning is safe. Fewer keys (with the interval admission then requires) and memcached caching on: the
    // next rotation would drop the key of `old_token`, past its expiry but inside its allow-expired window.
    let before = pod_names(&env.api_pods(NAME).await);
    patch_spec(
        env,
        json!({"memcachedServers": [format!("memcached.{NAMESPACE}.svc:11211")],
               "fernet": {"rotationInterval": "11m", "maxActiveKeys": 3}}),
    )
    .await;
    let pods = rolled(env, &before, Duration::from_secs(180)).await;
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    let ips: Vec<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    // The token is past its expiry and still inside its allow-expired window on both replicas.
    test_support::wait::until(
        "the token expired, inside its window",
        EXPIRATION + Duration::from_secs(30),
        || expired_inside_window(&ksc, &ips, &old_token),
    )
    .await;
    let count = env.rotation_count(NAME).await;
    assert!(count > old_rotation, "the token's key is still the primary");
    // A manual rotation request waits, and the status says until when and why.
    annotate(env, "keystone.openstack.org/rotate-fernet-keys", "e2e-2-prune").await;
    let deferred = test_support::wait::until(
        "the deferred request in the status",
        Duration::from_secs(60),
        || async {
            let ks = env.keystones().get(NAME).await.map_err(|e| e.to_string())?;
            let message = ks
                .status
                .and_then(|s| s.conditions)
                .and_then(|cs| cs.into_iter().find(|c| c.type_ == conditions::FERNET_KEYS_READY))
                .map(|c| c.message)
                .unwrap_or_default();
            if message.contains("request \"e2e-2-prune\" runs at") {
                Ok(message)
            } else {
                Err(message)
            }
        },
    )
    .await;
    assert!(deferred.contains("may still verify tokens"), "{deferred}");
    // Nothing was dropped: with the cache flushed, both replicas still verify the token with allow_expired.
    expired_inside_window(&ksc, &ips, &old_token).await.unwrap();
    assert_eq!(env.rotation_count(NAME).await, count, "the request rotated");
    let age = old_at.elapsed();
    assert!(
        age > EXPIRATION && age < EXPIRATION + WINDOW,
        "the token is {age:?} old: not inside its allow-expired window"
    );
    // With room for one more key the request runs at once, dropping nothing. (maxActiveKeys is in keystone.conf:
    // the pods roll, and the next scenario must start from the rolled ones.)
    let before = pod_names(&pods);
    patch_spec(env, json!({"fernet": {"maxActiveKeys": MAX_KEYS}})).await;
    let pods = rolled(env, &before, Duration::from_secs(180)).await;
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    let ips: Vec<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    test_support::wait::until("the deferred request ran", Duration::from_secs(60), || async {
        let now = env.rotation_count(NAME).await;
        if now > count {
            Ok(())
        } else {
            Err(format!("count {now}"))
        }
    })
    .await;
    assert!(fernet_keys(env).await.unwrap().len() > 3);
    expired_inside_window(&ksc, &ips, &old_token).await.unwrap();
    format!(
        "{rotations} rotations under load, {} tokens issued, {} validations ({} of tokens issued before a later \
         rotation, {} within {} s of expiry; {} refusals answered after expiry), 0 failures; key sets reached the lagging pod after ≤ {:.1} s and the other after ≤ {:.1} s; \
         a manual rotation that would have dropped the key of a token {:.0} s old (inside its allow-expired window) waited, and the token kept validating",
        stats.issued,
        stats.validated,
        stats.validated_across_rotations,
        stats.validated_near_expiry,
        keystone_e2e::expiry::MARGIN.as_secs(),
        stats.refused_after_expiry,
        max(&late),
        max(&fresh),
        age.as_secs_f64()
    )
}

/// Whether `token` is past its expiry and inside its allow-expired window on every pod at `ips`, with the token
/// cache flushed: refused plainly (404), accepted with `allow_expired` (200).
async fn expired_inside_window(ksc: &Keystone, ips: &[String], token: &str) -> Result<(), String> {
    for ip in ips {
        let auth = ksc.issue(ip, ADMIN_PASSWORD).await?;
        keystone_e2e::flush_memcached().await;
        let plain = ksc.validate(ip, &auth, token, false).await?;
        let allowed = ksc.validate(ip, &auth, token, true).await?;
        if (plain, allowed) != (404, 200) {
            return Err(format!("{ip}: plain {plain}, allow_expired {allowed}"));
        }
    }
    Ok(())
}

/// Scenario 3: a config change through `customServiceConfig` rolls the pods and takes effect; a key rotation
/// alone rolls nothing.
async fn config_change(env: &Env) {
    let ksc = Keystone::default();
    let before = env.api_pods(NAME).await;
    let ip = before[0].1.clone();
    let token = ksc.issue(&ip, ADMIN_PASSWORD).await.unwrap();
    // A second user, so that a page of one is truncated.
    let (code, _) = ksc.get(&ip, &token, "/v3/users").await.unwrap();
    assert_eq!(code, 200);
    let published = env
        .keystones()
        .get(NAME)
        .await
        .unwrap()
        .status
        .unwrap()
        .api_endpoints
        .unwrap();
    let internal = format!("{}/v3", published.internal.unwrap());
    let _ = env
        .openstack(
            &internal,
            ADMIN_PASSWORD,
            &["user", "create", "--password", "e2e-user-pw", "e2e-user"],
        )
        .await;
    env.keystones()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"customServiceConfig": "[DEFAULT]\nlist_limit = 1\n"}})),
        )
        .await
        .unwrap();
    let after = rolled(env, &pod_names(&before), Duration::from_secs(180)).await;
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    for (_, ip) in &after {
        let token = ksc.issue(ip, ADMIN_PASSWORD).await.unwrap();
        let (code, body) = ksc.get(ip, &token, "/v3/users").await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["users"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(body["truncated"], true, "{body}");
    }
    // A rotation alone: the keys change, the pods stay.
    let count = env.rotation_count(NAME).await;
    annotate(env, "keystone.openstack.org/rotate-fernet-keys", "e2e-3").await;
    test_support::wait::until("rotated", Duration::from_secs(90), || async {
        let now = env.rotation_count(NAME).await;
        if now > count {
            Ok(())
        } else {
            Err(format!("count {now}"))
        }
    })
    .await;
    env.wait_condition(
        NAME,
        conditions::FERNET_KEYS_READY,
        "True",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(env.api_pods(NAME).await, after, "a rotation rolled the pods");
}

/// Whether MariaDB on the node accepts `keystone` with `password` (PyMySQL from the host, UTF-8 bytes).
fn database_accepts(password: &str) -> bool {
    std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, pymysql; pymysql.connect(host=os.environ['H'], user='keystone', \
             password=os.environ['P'].encode(), database='keystone').close()",
        ])
        .env("H", keystone_e2e::node_address())
        .env("P", password)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn set_password(env: &Env, key: &str, value: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    secrets
        .patch(
            "osp-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {key: value}})),
        )
        .await
        .unwrap();
}

/// Scenario 4: a new admin password in the Secret re-runs bootstrap (the new one authenticates, the old does
/// not); a new database password is applied to the database, then the pods roll onto it.
async fn password_changes(env: &Env) -> String {
    let ksc = Keystone::default();
    const NEW_ADMIN: &str = NEW_ADMIN_PASSWORD;
    set_password(env, "AdminPassword", NEW_ADMIN).await;
    let ip = env.api_pod_ips(NAME).await[0].clone();
    test_support::wait::until(
        "the new admin password authenticates",
        Duration::from_secs(120),
        || async { ksc.issue(&ip, NEW_ADMIN).await.map(|_| ()) },
    )
    .await;
    let old = ksc.issue(&ip, ADMIN_PASSWORD).await;
    assert!(
        old.as_ref().is_err_and(|e| e.contains("401")),
        "the old admin password still works: {old:?}"
    );
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(60))
        .await;

    const NEW_DB: &str = NEW_DB_PASSWORD;
    assert!(database_accepts(DB_PASSWORD));
    let old_pods = env.api_pods(NAME).await;
    let before = pod_names(&old_pods);
    // A client keeps issuing and validating through the Service while the password changes and the pods roll.
    let load = service_load(env, NEW_ADMIN);
    set_password(env, "KeystoneDatabasePassword", NEW_DB).await;
    let after = rolled(env, &before, Duration::from_secs(180)).await;
    assert!(
        database_accepts(NEW_DB),
        "the database does not take the new password"
    );
    assert!(
        !database_accepts(DB_PASSWORD),
        "the database still takes the old password"
    );
    for (_, ip) in &after {
        // Issuing reads the database: the new pods connect with the new password.
        ksc.issue(ip, NEW_ADMIN).await.unwrap();
    }
    env.wait_condition(NAME, conditions::READY, "True", Duration::from_secs(60))
        .await;
    let stats = load.finish().await;
    // MariaDB keeps one password per user: between the db Job's ALTER USER and their termination, the old
    // pods cannot open new database connections (a known limitation, README "Database"). Requests they
    // serve from pooled connections work; others may fail. The new pods must never fail.
    let (on_old, on_new): (Vec<&String>, Vec<&String>) = stats
        .failures
        .iter()
        .partition(|f| old_pods.iter().any(|(_, ip)| f.contains(&format!(" on {ip}:"))));
    assert!(
        on_new.is_empty(),
        "{} failed requests on the new pods during the database password change:\n{}",
        on_new.len(),
        on_new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    format!(
        "{} tokens issued and {} validations through the Service during the database password roll; 0 failures \
         on the new pods, {} on the old pods while they were replaced",
        stats.issued,
        stats.validated,
        on_old.len()
    )
}

/// Token traffic through the internal Service (its ready endpoints, request by request).
fn service_load(env: &Env, password: &str) -> Load {
    Load::start(
        env.client.clone(),
        Targets::Service(keystone_types::names::service(
            NAME,
            keystone_types::v1beta1::Endpoint::Internal,
        )),
        password.to_owned(),
        Arc::new(AtomicI64::new(0)),
        Duration::from_secs(600),
        1,
    )
}

/// Scenario 5: a new image (another tag of the node's stand-in) is db-synced before any pod runs it; the pods
/// then roll onto it with no failed request.
async fn image_change(env: &Env) -> String {
    use k8s_openapi::api::batch::v1::Job;
    const NEW_IMAGE: &str = "quay.io/podified-antelope-centos9/openstack-keystone:e2e-next";
    let before = pod_names(&env.api_pods(NAME).await);
    let load = service_load(env, NEW_ADMIN_PASSWORD);
    patch_spec(env, json!({"containerImage": NEW_IMAGE})).await;
    let pods = rolled(env, &before, Duration::from_secs(300)).await;
    let ks = env
        .wait_condition(NAME, conditions::READY, "True", Duration::from_secs(120))
        .await;
    let stats = load.finish().await;
    assert!(
        stats.failures.is_empty(),
        "{} failed requests during the image change:\n{}",
        stats.failures.len(),
        stats.failures.join("\n")
    );
    let status = ks.status.unwrap();
    assert_eq!(
        status.api.and_then(|a| a.deployed_image).as_deref(),
        Some(NEW_IMAGE)
    );
    assert_eq!(
        status.database.and_then(|d| d.synced_image).as_deref(),
        Some(NEW_IMAGE)
    );
    // db-sync ran with the new image and finished before the first pod on it was created.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), NAMESPACE);
    let prefix = format!("{}-", keystone_types::names::db_sync_job(NAME));
    let image_of = |j: &Job| {
        j.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .image
            .clone()
    };
    let synced: Vec<Job> = jobs
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
        .filter(|j| image_of(j).as_deref() == Some(NEW_IMAGE))
        .collect();
    assert_eq!(synced.len(), 1, "one db-sync Job for the new image");
    let job = &synced[0];
    let done = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("the db-sync Job for the new image completed")
        .0;
    let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    for (name, _) in &pods {
        let pod = pod_api.get(name).await.unwrap();
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some(NEW_IMAGE));
        let created = pod.metadata.creation_timestamp.unwrap().0;
        assert!(
            created >= done,
            "pod {name} was created at {created}, before db-sync finished at {done}"
        );
    }
    format!(
        "db-sync finished at {done}, pods created after it; {} tokens issued and {} validations through the \
         Service during the roll, 0 failures",
        stats.issued, stats.validated
    )
}

/// Scenario 7: deleting the KeystoneAPI removes every child it owns, while the database and the credential
/// keys stay. Re-created without its credential key Secret, it makes no new keys for a database that holds
/// credentials (`CredentialsWithoutKeys`); with the Secret restored, Keystone decrypts the EC2 credential made
/// in scenario 1.
async fn delete_and_recreate(env: &Env, access: &str, admin_password: &str, db_password: &str) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let cred_name = keystone_types::names::credential_keys_secret(NAME);
    let cred_before = secrets.get(&cred_name).await.unwrap().data;
    let spec = env.keystones().get(NAME).await.unwrap().spec;
    env.keystones()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    let selector = format!("app.kubernetes.io/instance={NAME}");
    let lp = kube::api::ListParams::default().labels(&selector);
    test_support::wait::until(
        "owned children garbage-collected",
        Duration::from_secs(120),
        || async {
            let ns = NAMESPACE;
            let c = env.client.clone();
            let left = [
                Api::<Deployment>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<Service>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<ConfigMap>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                Api::<Job>::namespaced(c.clone(), ns)
                    .list(&lp)
                    .await
                    .map(|l| l.items.len()),
                secrets
                    .get_opt(&keystone_types::names::fernet_keys_secret(NAME))
                    .await
                    .map(|s| usize::from(s.is_some())),
                env.keystones()
                    .get_opt(NAME)
                    .await
                    .map(|k| usize::from(k.is_some())),
            ];
            let left: Vec<usize> = left.into_iter().map(|r| r.unwrap_or(1)).collect();
            if left.iter().all(|n| *n == 0) {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        secrets.get(&cred_name).await.unwrap().data,
        cred_before,
        "the credential keys must survive the KeystoneAPI"
    );
    assert!(
        database_accepts(db_password),
        "the database went with the KeystoneAPI"
    );

    // Without its credential keys the re-created KeystoneAPI must not make new ones: the database holds the EC2
    // credential of scenario 1, which new keys could never decrypt. Restoring the Secret (here: from the copy
    // taken above, as from a backup) is the way out.
    let mut kept = secrets.get(&cred_name).await.unwrap();
    secrets
        .delete(&cred_name, &DeleteParams::default())
        .await
        .unwrap();
    let ks = keystone_types::KeystoneAPI::new(NAME, spec);
    env.keystones().create(&PostParams::default(), &ks).await.unwrap();
    let refused = test_support::wait::until("CredentialsWithoutKeys", Duration::from_secs(180), || async {
        let ks = env.keystones().get(NAME).await.map_err(|e| e.to_string())?;
        let c = ks
            .status
            .and_then(|s| s.conditions)
            .and_then(|cs| {
                cs.into_iter()
                    .find(|c| c.type_ == conditions::CREDENTIAL_KEYS_READY)
            })
            .ok_or("no CredentialKeysReady")?;
        if c.reason == "CredentialsWithoutKeys" {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert_eq!(refused.reason, "CredentialsWithoutKeys", "{refused:?}");
    assert!(refused.message.contains("encrypted credentials"), "{refused:?}");
    assert!(
        secrets.get_opt(&cred_name).await.unwrap().is_none(),
        "new credential keys were made for a database that holds credentials"
    );
    kept.metadata = kube::api::ObjectMeta {
        name: kept.metadata.name.clone(),
        labels: kept.metadata.labels.clone(),
        annotations: kept.metadata.annotations.clone(),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &kept).await.unwrap();
    let ks = env
        .wait_condition(NAME, conditions::READY, "True", Duration::from_secs(300))
        .await;
    let internal = format!(
        "{}/v3",
        ks.status.unwrap().api_endpoints.unwrap().internal.unwrap()
    );
    let creds = env
        .openstack(&internal, admin_password, &["ec2", "credentials", "list"])
        .await
        .unwrap();
    let found = creds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Access"] == access)
        .unwrap_or_else(|| panic!("credential {access} not listed: {creds}"));
    // Listing decrypts the blob: the secret is there only if the kept keys still decrypt it.
    assert!(found["Secret"].as_str().is_some_and(|s| s.len() >= 16), "{found}");
}

/// The credential key Secret's (phase, completed cycles).
async fn credential_cycle_state(env: &Env) -> (String, i64) {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let s = secrets
        .get(&keystone_types::names::credential_keys_secret(NAME))
        .await
        .unwrap();
    let a = s.metadata.annotations.unwrap_or_default();
    (
        a.get("keystone.openstack.org/credential-rotation-phase")
            .cloned()
            .unwrap_or_default(),
        a.get("keystone.openstack.org/credential-rotation-count")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    )
}

/// The distinct key hashes Keystone recorded for the stored credentials (each row names the key that
/// encrypted it).
fn credential_key_hashes(db_password: &str) -> Vec<String> {
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, pymysql; c = pymysql.connect(host=os.environ['H'], user='keystone', \
             password=os.environ['P'].encode(), database='keystone'); cur = c.cursor(); \
             cur.execute('SELECT DISTINCT key_hash FROM credential'); \
             print('\\n'.join(sorted(r[0] for r in cur.fetchall())))",
        ])
        .env("H", keystone_e2e::node_address())
        .env("P", db_password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Access key → secret of every EC2 credential, as `openstack ec2 credentials list` shows them (decrypted).
async fn ec2_credentials(env: &Env, internal: &str, password: &str) -> BTreeMap<String, String> {
    env.openstack(internal, password, &["ec2", "credentials", "list"])
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["Access"].as_str().unwrap().to_owned(),
                c["Secret"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Scenario 8 (issue 10): two credential key rotation cycles with a real Keystone, the api and fernet
/// controllers SIGKILLed mid-cycle in the first and the db controller in the second: every stored credential
/// still decrypts, and after each cycle all of them are encrypted with one key (the new primary).
async fn credential_rotation(env: &mut Env, admin_password: &str, db_password: &str) -> String {
    let ks = env.keystones().get(NAME).await.unwrap();
    let internal = format!(
        "{}/v3",
        ks.status.unwrap().api_endpoints.unwrap().internal.unwrap()
    );
    // One more credential, so that the table holds rows from before and after the re-creation.
    env.openstack(&internal, admin_password, &["ec2", "credentials", "create"])
        .await
        .unwrap();
    let before = ec2_credentials(env, &internal, admin_password).await;
    assert!(before.len() >= 2, "{before:?}");
    let (_, start) = credential_cycle_state(env).await;
    let mut kills = Vec::new();
    for cycle in 1..=2i64 {
        annotate(
            env,
            "keystone.openstack.org/rotate-credential-keys",
            &format!("e2e-8-{cycle}"),
        )
        .await;
        // Mid-cycle crashes: in the first cycle the api controller, then the fernet controller once the keys
        // are rotated; in the second the db controller.
        let victims: &[(&str, &[&str])] = if cycle == 1 {
            &[
                ("api", &["PreMigrate", "PostMigrate"]),
                ("fernet", &["PostMigrate"]),
            ]
        } else {
            &[("db", &["PreMigrate", "PostMigrate"])]
        };
        for (victim, phases) in victims {
            let phase =
                test_support::wait::until(&format!("phase {phases:?}"), Duration::from_secs(120), || async {
                    let (phase, _) = credential_cycle_state(env).await;
                    if phases.contains(&phase.as_str()) {
                        Ok(phase)
                    } else {
                        Err(phase)
                    }
                })
                .await;
            env.crash_and_restart(victim, "20s").await;
            kills.push(format!("{victim} in {phase}"));
        }
        test_support::wait::until(
            &format!("credential cycle {cycle} completed"),
            Duration::from_secs(240),
            || async {
                let (phase, count) = credential_cycle_state(env).await;
                if phase == "Idle" && count == start + cycle {
                    Ok(())
                } else {
                    Err(format!("{phase} {count}"))
                }
            },
        )
        .await;
        // Every credential decrypts with the rotated keys, on the new primary only.
        let after = ec2_credentials(env, &internal, admin_password).await;
        assert_eq!(
            after, before,
            "credentials changed or became unreadable in cycle {cycle}"
        );
        let hashes = credential_key_hashes(db_password);
        assert_eq!(
            hashes.len(),
            1,
            "rows on more than one key after cycle {cycle}: {hashes:?}"
        );
    }
    format!(
        "2 credential rotation cycles ({}), {} EC2 credentials readable after each, all rows on one key",
        kills.join(", "),
        before.len()
    )
}

/// The condition `type_` of a catalog object's status is `status` for its current generation.
fn catalog_condition(
    conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    generation: Option<i64>,
    type_: &str,
    status: &str,
) -> Result<(), String> {
    let c = conditions
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .ok_or_else(|| format!("no {type_} condition"))?;
    if c.status == status && c.observed_generation == generation {
        Ok(())
    } else {
        Err(format!("{type_}={} ({}: {})", c.status, c.reason, c.message))
    }
}

async fn service_ready(services: &Api<KeystoneService>, name: &str) {
    test_support::wait::until(
        &format!("KeystoneService {name} Ready"),
        Duration::from_secs(90),
        || async {
            let s = services.get(name).await.map_err(|e| e.to_string())?;
            let st = s.status.unwrap_or_default();
            catalog_condition(st.conditions.as_ref(), s.metadata.generation, "Ready", "True")
        },
    )
    .await;
}

async fn endpoint_ready(endpoints: &Api<KeystoneEndpoint>, name: &str) {
    test_support::wait::until(
        &format!("KeystoneEndpoint {name} Ready"),
        Duration::from_secs(90),
        || async {
            let e = endpoints.get(name).await.map_err(|e| e.to_string())?;
            let st = e.status.unwrap_or_default();
            catalog_condition(st.conditions.as_ref(), e.metadata.generation, "Ready", "True")
        },
    )
    .await;
}

/// The catalog as `openstack catalog list` shows it: service name → (type, interface → URL).
async fn catalog(
    env: &Env,
    internal: &str,
    password: &str,
) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let list = env
        .openstack(internal, password, &["catalog", "list"])
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for entry in list.as_array().unwrap() {
        let mut urls = BTreeMap::new();
        for e in entry["Endpoints"].as_array().into_iter().flatten() {
            urls.insert(
                e["interface"].as_str().unwrap_or_default().to_owned(),
                e["url"].as_str().unwrap_or_default().to_owned(),
            );
        }
        out.insert(
            entry["Name"].as_str().unwrap_or_default().to_owned(),
            (entry["Type"].as_str().unwrap_or_default().to_owned(), urls),
        );
    }
    out
}

/// Whether `user` authenticates with `password` (project `service`): a real token request through the CLI.
async fn authenticates(env: &Env, internal: &str, user: &str, password: &str) -> Result<(), String> {
    env.openstack_as(internal, (user, "service"), password, &["token", "issue"])
        .await
        .map(|_| ())
}

/// Scenario 9 (issue 9): the catalog CRDs against the real Keystone. A KeystoneService and a KeystoneEndpoint
/// register placement (visible in `openstack catalog list`, the service user authenticates); a URL change is
/// applied; a password change in the Secret is applied (the new password authenticates, the old does not);
/// deleting both removes the service, its endpoints and its user; with the KeystoneAPI deleted first, deleting
/// catalog objects completes at once.
async fn catalog_resources(env: &mut Env, admin_password: &str) -> String {
    let ks = env.keystones().get(NAME).await.unwrap();
    let internal = ks.status.unwrap().api_endpoints.unwrap().internal.unwrap();
    // The controller runs on the host: it reaches the internal Service through a local proxy.
    let proxy = keystone_e2e::ServiceProxy::start(
        &env.client,
        &keystone_types::names::service(NAME, keystone_types::v1beta1::Endpoint::Internal),
        5000,
    )
    .await;
    env.api_args = vec![
        "--keystone-url".into(),
        format!("{NAMESPACE}/{NAME}={}", proxy.url()),
    ];
    env.crash_and_restart("api", "20s").await;

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let _ = secrets
        .delete("catalog-passwords", &DeleteParams::default())
        .await;
    const PW1: &str = "placement$'\"`{{p}}% one";
    const PW2: &str = "placement$'\"`{{p}}% two";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "catalog-passwords"},
        "stringData": {"PlacementPassword": PW1, "Other": "x"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();

    let services: Api<KeystoneService> = Api::namespaced(env.client.clone(), NAMESPACE);
    let endpoints: Api<KeystoneEndpoint> = Api::namespaced(env.client.clone(), NAMESPACE);
    let t = Instant::now();
    let svc: KeystoneService = serde_json::from_value(json!({
        "metadata": {"name": "placement"},
        "spec": {"serviceType": "placement", "serviceName": "placement", "serviceDescription": "Placement",
                 "serviceUser": "placement", "secret": "catalog-passwords", "passwordSelector": "PlacementPassword"}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let ep: KeystoneEndpoint = serde_json::from_value(json!({
        "metadata": {"name": "placement"},
        "spec": {"serviceName": "placement", "endpoints": {
            "public": "http://placement-public.example:8778", "internal": "http://placement-internal.e2e.svc:8778"}}
    }))
    .unwrap();
    endpoints.create(&PostParams::default(), &ep).await.unwrap();
    service_ready(&services, "placement").await;
    endpoint_ready(&endpoints, "placement").await;
    let registered_in = t.elapsed();
    let cat = catalog(env, &internal, admin_password).await;
    let (type_, urls) = cat
        .get("placement")
        .unwrap_or_else(|| panic!("placement not in the catalog: {cat:?}"));
    assert_eq!(type_, "placement");
    assert_eq!(
        urls.get("public").map(String::as_str),
        Some("http://placement-public.example:8778")
    );
    assert_eq!(
        urls.get("internal").map(String::as_str),
        Some("http://placement-internal.e2e.svc:8778")
    );
    assert_eq!(urls.len(), 2, "{urls:?}");
    authenticates(env, &internal, "placement", PW1).await.unwrap();
    let roles = env
        .openstack(
            &internal,
            admin_password,
            &["role", "assignment", "list", "--user", "placement", "--names"],
        )
        .await
        .unwrap();
    let role_names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Role"].as_str().unwrap())
        .collect();
    assert_eq!(
        role_names,
        ["service"],
        "only the service role unless grantAdminRole: {roles}"
    );

    // A URL change, and the admin interface added.
    endpoints
        .patch(
            "placement",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"endpoints": {
                "public": "https://placement.example.org", "admin": "http://placement-admin:8778"}}})),
        )
        .await
        .unwrap();
    endpoint_ready(&endpoints, "placement").await;
    let cat = catalog(env, &internal, admin_password).await;
    let urls = &cat["placement"].1;
    assert_eq!(
        urls.get("public").map(String::as_str),
        Some("https://placement.example.org")
    );
    assert_eq!(
        urls.get("admin").map(String::as_str),
        Some("http://placement-admin:8778")
    );
    assert_eq!(urls.len(), 3, "{urls:?}");

    // Another key of the Secret changes: the password is not touched (its tokens stay valid).
    secrets
        .patch(
            "catalog-passwords",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"Other": "y"}})),
        )
        .await
        .unwrap();
    // The password changes: the new one authenticates, the old one no longer does.
    secrets
        .patch(
            "catalog-passwords",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"PlacementPassword": PW2}})),
        )
        .await
        .unwrap();
    let version = secrets
        .get("catalog-passwords")
        .await
        .unwrap()
        .metadata
        .resource_version;
    test_support::wait::until(
        "the new service password applied",
        Duration::from_secs(90),
        || async {
            let s = services.get("placement").await.map_err(|e| e.to_string())?;
            let st = s.status.unwrap_or_default();
            if st.password_secret_version == version {
                catalog_condition(st.conditions.as_ref(), s.metadata.generation, "Ready", "True")
            } else {
                Err(format!("passwordSecretVersion {:?}", st.password_secret_version))
            }
        },
    )
    .await;
    authenticates(env, &internal, "placement", PW2).await.unwrap();
    assert!(
        authenticates(env, &internal, "placement", PW1).await.is_err(),
        "the old password still works"
    );
    let metrics = env.controllers[0].metrics().await;
    let password_updates: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("keystone_api_catalog_keystone_changes_total") && l.contains("password_updated")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(password_updates, 1.0, "exactly one password update:\n{metrics}");

    // Deleting both removes the endpoints, the service and the user from Keystone.
    endpoints
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    services
        .delete("placement", &DeleteParams::default())
        .await
        .unwrap();
    test_support::wait::until("catalog objects deleted", Duration::from_secs(60), || async {
        match (
            services.get_opt("placement").await,
            endpoints.get_opt("placement").await,
        ) {
            (Ok(None), Ok(None)) => Ok(()),
            other => Err(format!(
                "{:?}",
                (other.0.map(|o| o.is_some()), other.1.map(|o| o.is_some()))
            )),
        }
    })
    .await;
    let cat = catalog(env, &internal, admin_password).await;
    assert!(
        !cat.contains_key("placement"),
        "placement still in the catalog: {cat:?}"
    );
    let user = env
        .openstack(&internal, admin_password, &["user", "show", "placement"])
        .await;
    assert!(user.is_err(), "the service user is still there: {user:?}");

    let hostile = hostile_tenant(env, &internal, admin_password, &services, &endpoints).await;
    let adopted = adoption(env, &internal, admin_password, &services, &proxy.url()).await;

    // The KeystoneAPI goes first (as in a namespace deletion): catalog objects then delete at once.
    let svc: KeystoneService = serde_json::from_value(json!({
        "metadata": {"name": "nova"},
        "spec": {"serviceType": "compute", "serviceName": "nova", "serviceUser": "nova",
                 "secret": "catalog-passwords", "passwordSelector": "PlacementPassword", "grantAdminRole": true}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let ep: KeystoneEndpoint = serde_json::from_value(json!({
        "metadata": {"name": "nova"},
        "spec": {"serviceName": "nova", "endpoints": {"internal": "http://nova-internal:8774/v2.1"}}
    }))
    .unwrap();
    endpoints.create(&PostParams::default(), &ep).await.unwrap();
    service_ready(&services, "nova").await;
    endpoint_ready(&endpoints, "nova").await;
    let roles = env
        .openstack(
            &internal,
            admin_password,
            &["role", "assignment", "list", "--user", "nova", "--names"],
        )
        .await
        .unwrap();
    let mut role_names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Role"].as_str().unwrap())
        .collect();
    role_names.sort_unstable();
    assert_eq!(
        role_names,
        ["admin", "service"],
        "grantAdminRole adds admin: {roles}"
    );
    env.keystones()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    test_support::wait::until("KeystoneAPI gone", Duration::from_secs(60), || async {
        match env.keystones().get_opt(NAME).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;
    let t_delete = Instant::now();
    endpoints.delete("nova", &DeleteParams::default()).await.unwrap();
    services.delete("nova", &DeleteParams::default()).await.unwrap();
    test_support::wait::until(
        "catalog objects deleted without a KeystoneAPI",
        Duration::from_secs(30),
        || async {
            match (services.get_opt("nova").await, endpoints.get_opt("nova").await) {
                (Ok(None), Ok(None)) => Ok(()),
                other => Err(format!(
                    "{:?}",
                    (other.0.map(|o| o.is_some()), other.1.map(|o| o.is_some()))
                )),
            }
        },
    )
    .await;
    let deleted_in = t_delete.elapsed();
    for p in &env.controllers {
        let out = p.output();
        for secret in [PW1, PW2, admin_password] {
            assert!(!out.contains(secret), "a password in the controller logs");
        }
    }
    drop(proxy);
    format!(
        "service + endpoints Ready {registered_in:?} after creation; URL change and password change applied \
         (1 password update); deletion removed service, endpoints and user; {hostile}; {adopted}; without a KeystoneAPI \
         deleted in {deleted_in:?}"
    )
}

/// The message of a catalog object's condition `type_` once it is `status` with `reason` for the current
/// generation (earlier steps may report other reasons first).
async fn catalog_reason<K>(api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str) -> String
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + k8s_openapi::serde::Serialize,
{
    test_support::wait::until(
        &format!("{name} {type_}={status} ({reason})"),
        Duration::from_secs(90),
        || async {
            let o = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?).unwrap();
            let generation = o["metadata"]["generation"].as_i64();
            o["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["type"] == type_
                        && c["status"] == status
                        && c["reason"] == reason
                        && c["observedGeneration"].as_i64() == generation
                })
                .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
                .ok_or_else(|| format!("{}", o["status"]))
        },
    )
    .await
}

/// Issue 19: a tenant who may create catalog objects gets nothing beyond them. KeystoneServices naming the
/// KeystoneAPI's admin user and another KeystoneService's user, with passwords the tenant chose, are refused
/// (`UserNotAdoptable`, `UserConflict`): both existing passwords keep working and the tenant's do not authenticate. A KeystoneService
/// and a KeystoneEndpoint aimed at the identity service bootstrap registered change neither its enabled flag
/// nor its endpoints (`EndpointConflict`). Deleting them all changes nothing in Keystone.
async fn hostile_tenant(
    env: &Env,
    internal: &str,
    admin_password: &str,
    services: &Api<KeystoneService>,
    endpoints: &Api<KeystoneEndpoint>,
) -> String {
    const TENANT_PW: &str = "chosen-by-the-tenant";
    const GLANCE_PW: &str = "glance-real-password";
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let _ = secrets.delete("tenant-passwords", &DeleteParams::default()).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tenant-passwords"},
        "stringData": {"Tenant": TENANT_PW, "Glance": GLANCE_PW}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let create_svc =
        |name: &str, type_: &str, service: &str, user: &str, key: &str, extra: serde_json::Value| {
            let mut spec = json!({"serviceType": type_, "serviceName": service, "serviceUser": user,
                              "secret": "tenant-passwords", "passwordSelector": key});
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<KeystoneService>(json!({"metadata": {"name": name}, "spec": spec}))
                .unwrap()
        };
    // A legitimate service with its own user.
    services
        .create(
            &PostParams::default(),
            &create_svc("glance", "image", "glance", "glance", "Glance", json!({})),
        )
        .await
        .unwrap();
    service_ready(services, "glance").await;
    let identity_before = catalog(env, internal, admin_password).await["keystone"].clone();

    for (name, obj) in [
        // One service per type: scenario 3 left `list_limit = 1`, and a truncated list is refused.
        (
            "hijack-admin",
            create_svc(
                "hijack-admin",
                "hijack-a",
                "hijack-admin",
                "admin",
                "Tenant",
                json!({}),
            ),
        ),
        (
            "hijack-glance",
            create_svc(
                "hijack-glance",
                "hijack-b",
                "hijack-glance",
                "glance",
                "Tenant",
                json!({}),
            ),
        ),
        // Bootstrap's identity service, asked to be disabled and described anew, with a fresh user.
        (
            "hijack-identity",
            create_svc(
                "hijack-identity",
                "identity",
                "keystone",
                "tenant-user",
                "Tenant",
                json!({"enabled": false, "serviceDescription": "hijacked"}),
            ),
        ),
    ] {
        services
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let ep: KeystoneEndpoint = serde_json::from_value(json!({
        "metadata": {"name": "hijack-identity"},
        "spec": {"serviceName": "keystone", "endpoints": {"public": "http://attacker.example:5000"}}
    }))
    .unwrap();
    endpoints.create(&PostParams::default(), &ep).await.unwrap();

    // The admin user is never adoptable; glance's user belongs to the glance KeystoneService.
    for (name, reason, why) in [
        ("hijack-admin", "UserNotAdoptable", "admin user"),
        ("hijack-glance", "UserConflict", "belongs to KeystoneService"),
    ] {
        let message = catalog_reason(services, name, "UserReady", "False", reason).await;
        assert!(
            message.contains("already exists") && message.contains(why),
            "{name}: {message}"
        );
    }
    let message = catalog_reason(
        endpoints,
        "hijack-identity",
        "EndpointsReady",
        "False",
        "EndpointConflict",
    )
    .await;
    assert!(message.contains("did not create"), "{message}");
    // The admin and glance keep their passwords; the tenant's authenticates as neither.
    env.openstack(internal, admin_password, &["token", "issue"])
        .await
        .expect("the admin password still works");
    assert!(
        env.openstack(internal, TENANT_PW, &["token", "issue"])
            .await
            .is_err(),
        "the tenant became admin"
    );
    authenticates(env, internal, "glance", GLANCE_PW)
        .await
        .expect("glance's password still works");
    assert!(
        authenticates(env, internal, "glance", TENANT_PW).await.is_err(),
        "the tenant took glance over"
    );
    let identity = env
        .openstack(internal, admin_password, &["service", "show", "keystone"])
        .await
        .unwrap();
    assert_eq!(
        identity["enabled"], true,
        "the identity service was disabled: {identity}"
    );
    assert_ne!(identity["description"], "hijacked", "{identity}");
    assert_eq!(
        catalog(env, internal, admin_password).await["keystone"],
        identity_before
    );

    // Deleting them changes nothing the tenant did not create.
    for name in ["hijack-admin", "hijack-glance", "hijack-identity", "glance"] {
        services.delete(name, &DeleteParams::default()).await.unwrap();
    }
    endpoints
        .delete("hijack-identity", &DeleteParams::default())
        .await
        .unwrap();
    test_support::wait::until("hostile objects deleted", Duration::from_secs(60), || async {
        let left = services
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len()
            + endpoints
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await;
    env.openstack(internal, admin_password, &["token", "issue"])
        .await
        .expect("admin after deletion");
    let identity = env
        .openstack(internal, admin_password, &["service", "show", "keystone"])
        .await
        .unwrap();
    assert_eq!(identity["enabled"], true);
    assert_eq!(
        catalog(env, internal, admin_password).await["keystone"],
        identity_before
    );
    "a tenant's KeystoneServices naming the admin and glance users were refused (UserNotAdoptable, UserConflict) and both \
     passwords kept working, the identity service and endpoints stayed as bootstrap made them \
     (EndpointConflict), deleting the hostile objects changed nothing"
        .to_owned()
}

/// Issue 19: adopting a user the operator did not create is the KeystoneAPI owner's opt-in
/// (`keystone.openstack.org/adopt-service-users`), never the tenant's: a listed hand-made user with a role on the
/// service project only is adopted (its password becomes the Secret's, deleting the object keeps the user and
/// clears the mark); a listed user with a role elsewhere, and the admin user even when listed, are refused
/// (`UserNotAdoptable`) and keep their passwords.
async fn adoption(
    env: &Env,
    internal: &str,
    admin_password: &str,
    services: &Api<KeystoneService>,
    keystone_url: &str,
) -> String {
    const OLD_PW: &str = "set-by-hand";
    const SECRET_PW: &str = "from-the-secret";
    let keystone = keystone_client::KeystoneClient::new(keystone_client::Config::new(
        keystone_url,
        "admin",
        admin_password,
    ))
    .unwrap();
    let domain = keystone.find_domain_by_name("Default").await.unwrap().unwrap();
    let service = keystone
        .find_project("service", &domain.id)
        .await
        .unwrap()
        .unwrap();
    let admin_project = keystone.find_project("admin", &domain.id).await.unwrap().unwrap();
    let member = keystone.ensure_role("member").await.unwrap();
    // Made by hand, as an older deployment tool would: one with a role on the service project, one with a role
    // on another project (one assignment each: scenario 3 left `list_limit = 1`, and a truncated list of
    // assignments is refused, never read as "no other roles").
    for (user, project) in [("legacy", &service), ("wide", &admin_project)] {
        if let Some(u) = keystone.find_user(user, &domain.id).await.unwrap() {
            keystone.delete_user(&u.id).await.unwrap();
        }
        let u = keystone
            .create_user(user, &domain.id, OLD_PW, Some(&project.id), None)
            .await
            .unwrap();
        keystone
            .grant_project_role(&project.id, &u.id, &member.id)
            .await
            .unwrap();
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let _ = secrets.delete("adopt-passwords", &DeleteParams::default()).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "adopt-passwords"}, "stringData": {"Password": SECRET_PW}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let svc = |name: &str, type_: &str, user: &str| -> KeystoneService {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"serviceType": type_, "serviceName": name, "serviceUser": user,
                     "secret": "adopt-passwords", "passwordSelector": "Password"}}))
        .unwrap()
    };
    // Not listed yet: refused like any user the operator did not create.
    services
        .create(&PostParams::default(), &svc("adopt-legacy", "adopt-a", "legacy"))
        .await
        .unwrap();
    let message = catalog_reason(services, "adopt-legacy", "UserReady", "False", "UserConflict").await;
    assert!(
        message.contains("keystone.openstack.org/adopt-service-users"),
        "{message}"
    );
    // The KeystoneAPI's owner allows three names; only legacy qualifies.
    annotate(
        env,
        "keystone.openstack.org/adopt-service-users",
        "legacy, wide, admin",
    )
    .await;
    // A change of the spec wakes the object at once (the annotation alone is seen at its next requeue).
    services
        .patch(
            "adopt-legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceDescription": "adopted"}})),
        )
        .await
        .unwrap();
    for (name, type_, user) in [
        ("adopt-wide", "adopt-b", "wide"),
        ("adopt-admin", "adopt-c", "admin"),
    ] {
        services
            .create(&PostParams::default(), &svc(name, type_, user))
            .await
            .unwrap();
    }
    service_ready(services, "adopt-legacy").await;
    let status = services.get("adopt-legacy").await.unwrap().status.unwrap();
    assert_eq!(status.user_adopted, Some(true), "{status:?}");
    authenticates(env, internal, "legacy", SECRET_PW)
        .await
        .expect("the adopted user has the Secret's password");
    assert!(authenticates(env, internal, "legacy", OLD_PW).await.is_err());
    let message = catalog_reason(services, "adopt-wide", "UserReady", "False", "UserNotAdoptable").await;
    assert!(message.contains("roles outside the service project"), "{message}");
    let message = catalog_reason(services, "adopt-admin", "UserReady", "False", "UserNotAdoptable").await;
    assert!(message.contains("admin user"), "{message}");
    env.openstack_as(internal, ("wide", "admin"), OLD_PW, &["token", "issue"])
        .await
        .expect("wide keeps its password");
    env.openstack(internal, admin_password, &["token", "issue"])
        .await
        .expect("the admin keeps its password");
    // Deleting the adopting object keeps the user and lets it go.
    for name in ["adopt-legacy", "adopt-wide", "adopt-admin"] {
        services.delete(name, &DeleteParams::default()).await.unwrap();
    }
    test_support::wait::until("adopting objects deleted", Duration::from_secs(60), || async {
        let left = services
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await;
    let legacy = keystone.find_user("legacy", &domain.id).await.unwrap();
    let legacy = legacy.expect("the adopted user stays after its object is deleted");
    assert_eq!(legacy.owner, None, "the mark is cleared");
    annotate(env, "keystone.openstack.org/adopt-service-users", "").await;
    for user in ["legacy", "wide"] {
        if let Some(u) = keystone.find_user(user, &domain.id).await.unwrap() {
            keystone.delete_user(&u.id).await.unwrap();
        }
    }
    "a hand-made user the KeystoneAPI listed was adopted (the Secret's password authenticates, deleting the object \
     kept the user and cleared its mark); a listed user with a role outside the service project and the listed \
     admin user were refused (UserNotAdoptable) and kept their passwords"
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_lifecycle() {
    let t = Instant::now();
    let mut env = Env::start("20s").await;
    println!("e2e: environment up in {:?}", t.elapsed());
    // A clean slate: an earlier run's KeystoneAPI goes first.
    let _ = env.keystones().delete(NAME, &DeleteParams::default()).await;
    test_support::wait::until("previous KeystoneAPI gone", Duration::from_secs(60), || async {
        match env.keystones().get_opt(NAME).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;

    let t = Instant::now();
    let access = basic_example(&env).await;
    println!(
        "e2e: scenario 1 (basic example, 2 replicas, real client) in {:?}; ec2 credential {access}",
        t.elapsed()
    );

    let t = Instant::now();
    let summary = rotation_under_load(&mut env).await;
    println!(
        "e2e: scenarios 2 and 6 (rotation under load with a lagging replica, controllers SIGKILLed, pruning) in {:?}: {summary}",
        t.elapsed()
    );

    let t = Instant::now();
    config_change(&env).await;
    println!(
        "e2e: scenario 3 (config change rolls the pods, a rotation does not) in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let summary = password_changes(&env).await;
    println!(
        "e2e: scenario 4 (admin and database password changes) in {:?}: {summary}",
        t.elapsed()
    );

    let t = Instant::now();
    let summary = image_change(&env).await;
    println!(
        "e2e: scenario 5 (image change: db-sync before the roll) in {:?}: {summary}",
        t.elapsed()
    );

    let t = Instant::now();
    delete_and_recreate(&env, &access, NEW_ADMIN_PASSWORD, NEW_DB_PASSWORD).await;
    println!(
        "e2e: scenario 7 (delete keeps the database and credential keys; re-created, credentials decrypt) in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let summary = credential_rotation(&mut env, NEW_ADMIN_PASSWORD, NEW_DB_PASSWORD).await;
    println!(
        "e2e: scenario 8 (credential key rotation with credential_migrate) in {:?}: {summary}",
        t.elapsed()
    );

    // Last: it ends by deleting the KeystoneAPI.
    let t = Instant::now();
    let summary = catalog_resources(&mut env, NEW_ADMIN_PASSWORD).await;
    println!(
        "e2e: scenario 9 (catalog: KeystoneService, KeystoneEndpoint) in {:?}: {summary}",
        t.elapsed()
    );
}
