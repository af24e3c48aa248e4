//! Rotation punctuality: many KeystoneAPIs rotating their fernet keys every 30 s; for every rotation, when the
//! bench saw the key Secret change against when it was due (the previous rotation's time, as recorded on the
//! Secret, plus the interval).

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use keystone_fernet_controller::build::secrets::{LAST_ROTATION, ROTATION_COUNT};
use keystone_types::labels;

use crate::fleet::{self, percentile};
use crate::operator::Operator;

/// The rotation interval used (above the fernet controller's `--min-rotation-interval 20s` in the bench).
const INTERVAL_S: f64 = 30.0;

fn epoch() -> f64 {
    crate::epoch()
}

fn record(secret: &Secret) -> Option<(i64, f64)> {
    let a = secret.annotations();
    let count = a.get(ROTATION_COUNT)?.parse().ok()?;
    let last = a.get(LAST_ROTATION)?.parse::<Timestamp>().ok()?;
    Some((count, last.as_millisecond() as f64 / 1000.0))
}

/// `instances` KeystoneAPIs over `max_namespaces` namespaces, watched for `window`.
pub async fn run(
    bin_dir: &std::path::Path,
    instances: usize,
    max_namespaces: usize,
    window: Duration,
) -> anyhow::Result<(String, Value)> {
    let mut op = Operator::install("bench-rotation", false, bin_dir).await?;
    op.start_all().await?;
    let nss = fleet::namespaces(&op.admin, "rotation", instances.min(max_namespaces)).await?;
    let driver = fleet::drive_pods(&op.admin);
    // 16 = ceil((1m + 1m + 5m) / 30s) + 2 keys, the fewest admission accepts for these settings.
    let spec = json!({
        "replicas": 1,
        "token": { "expiration": "1m", "allowExpiredWindow": "1m" },
        "fernet": { "rotationInterval": "30s", "maxActiveKeys": 16 },
    });
    fleet::converge(&op.admin, &nss, instances, &spec, Duration::from_secs(600)).await?;
    eprintln!("bench: rotation: {instances} KeystoneAPIs Ready; watching rotations for {window:?}");

    let secrets: Api<Secret> = Api::all(op.admin.clone());
    let cfg = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::COMPONENT,
        labels::component::FERNET_KEYS
    ));
    let stream = watcher(secrets, cfg).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let mut last: HashMap<String, (i64, f64)> = HashMap::new();
    // Seconds late (negative: early) as the bench saw it, and as the controller recorded it.
    let (mut seen_late, mut recorded_late) = (Vec::new(), Vec::new());
    let mut skipped = 0u64;
    let end = tokio::time::Instant::now() + window;
    while let Ok(next) = tokio::time::timeout_at(end, stream.next()).await {
        let Some(Ok(secret)) = next else {
            continue;
        };
        let now = epoch();
        let Some((count, at)) = record(&secret) else {
            continue;
        };
        let key = format!("{}/{}", secret.namespace().unwrap_or_default(), secret.name_any());
        if let Some(&(prev_count, prev_at)) = last.get(&key) {
            if count == prev_count + 1 {
                let due = prev_at.floor() + INTERVAL_S;
                seen_late.push(now - due);
                recorded_late.push(at - due);
            } else if count > prev_count + 1 {
                skipped += (count - prev_count - 1) as u64;
            }
        }
        last.insert(key, (count, at));
    }
    driver.abort();
    op.uninstall().await;

    seen_late.sort_by(f64::total_cmp);
    recorded_late.sort_by(f64::total_cmp);
    let row = |v: &[f64]| {
        format!(
            "{:.3} s | {:.3} s | {:.3} s | {:.3} s",
            v.first().copied().unwrap_or(0.0),
            percentile(v, 50.0),
            percentile(v, 95.0),
            v.last().copied().unwrap_or(0.0)
        )
    };
    let md = format!(
        "## Rotation punctuality\n\n{instances} KeystoneAPIs in {} namespaces rotating every {INTERVAL_S} s, watched \
         for {} s: {} rotations measured (from each Secret's second rotation seen on), {skipped} rotations \
         missed between two observations. Lateness = time - (previous rotation + interval); negative is early.\n\n\
         | | min | p50 | p95 | max |\n|---|---|---|---|---|\n\
         | Secret change seen by a watch | {} |\n| rotation time the controller recorded | {} |\n",
        nss.len(),
        window.as_secs(),
        seen_late.len(),
        row(&seen_late),
        row(&recorded_late)
    );
    Ok((
        md,
        json!({
            "instances": instances, "interval_seconds": INTERVAL_S, "window_seconds": window.as_secs(),
            "rotations": seen_late.len(), "skipped": skipped,
            "seen_lateness_seconds": seen_late, "recorded_lateness_seconds": recorded_late,
        }),
    ))
}
