//! Leader failover: two replicas of each controller with the chart's leader-election timings (lease 15 s,
//! renew deadline 10 s, retry 2 s) and converged KeystoneAPIs; the leader is stopped — gracefully (SIGTERM, as
//! a rollout or a drain does: it releases the lease) or killed (SIGKILL, as a crash or OOM kill: the lease
//! must expire) — and the standby is timed to taking the lease, to its first reconcile, and to having
//! reconciled every KeystoneAPI once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fleet::{self, percentile};
use crate::operator::{CONTROLLERS, Operator};

/// One failover: seconds from the signal to the standby's lease, first reconcile, and all reconciled.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Failover {
    lease: f64,
    first_reconcile: f64,
    all_reconciled: f64,
}

async fn fail_over(
    op: &mut Operator,
    controller: &'static str,
    signal: &str,
    keystones: usize,
) -> anyhow::Result<Failover> {
    let leader = op
        .leader(controller)
        .await
        .ok_or_else(|| anyhow::anyhow!("no {controller} replica leads"))?;
    let standby = op
        .replicas
        .iter()
        .enumerate()
        .position(|(i, r)| i != leader && r.controller == controller)
        .ok_or_else(|| anyhow::anyhow!("no {controller} standby"))?;
    // A random moment within two retry periods: the standby polls the Lease every retry period, so a signal
    // sent at a fixed delay after it started would always find it at the same point of its cycle.
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos(),
    ) % 4000;
    tokio::time::sleep(Duration::from_millis(1000 + jitter)).await;
    let t0 = Instant::now();
    op.replicas[leader].process.signal(signal);
    let standby = &op.replicas[standby];
    let standby_name = standby.name.clone();
    let (mut lease, mut first) = (None, None);
    let deadline = Duration::from_secs(120);
    let all = loop {
        let runs = standby.metric("reconcile_runs_total").await.unwrap_or(0.0);
        if lease.is_none() && standby.metric("leader").await == Some(1.0) {
            lease = Some(t0.elapsed().as_secs_f64());
        }
        if first.is_none() && runs > 0.0 {
            first = Some(t0.elapsed().as_secs_f64());
        }
        if runs >= keystones as f64 {
            break t0.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            t0.elapsed() < deadline,
            "{controller}: standby {standby_name} has not reconciled {keystones} KeystoneAPIs {deadline:?} after \
             SIG{signal} to the leader ({runs} runs)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // The old leader goes; a new standby takes its place for the next round.
    op.stop(leader, "KILL").await;
    op.start(controller).await?;
    Ok(Failover {
        lease: lease.unwrap_or(all),
        first_reconcile: first.unwrap_or(all),
        all_reconciled: all,
    })
}

/// `rounds` failovers per controller and signal, with `keystones` converged KeystoneAPIs.
pub async fn run(
    bin_dir: &std::path::Path,
    rounds: usize,
    keystones: usize,
) -> anyhow::Result<(String, Value)> {
    let mut op = Operator::install("bench-failover", false, bin_dir).await?;
    op.start_all().await?;
    op.start_all().await?;
    let nss = fleet::namespaces(&op.admin, "failover", keystones.min(10)).await?;
    let driver = fleet::drive_pods(&op.admin);
    fleet::converge(
        &op.admin,
        &nss,
        keystones,
        &json!({"replicas": 1}),
        Duration::from_secs(600),
    )
    .await?;

    let mut md = format!(
        "## Leader failover\n\nTwo replicas per controller, leader election with the chart's timings (lease 15 s, \
         renew deadline 10 s, retry 2 s), {keystones} converged KeystoneAPIs; {rounds} rounds per controller and \
         signal. Seconds from the signal to the leader until the standby holds the lease / runs its first \
         reconcile / has reconciled every KeystoneAPI (median, max in parentheses).\n\n\
         | controller | SIGTERM (rollout, drain) | SIGKILL (crash, OOM kill) |\n|---|---|---|\n"
    );
    let mut js = serde_json::Map::new();
    for c in CONTROLLERS {
        let mut cells = Vec::new();
        let mut per_signal = serde_json::Map::new();
        for signal in ["TERM", "KILL"] {
            let mut runs = Vec::new();
            for _ in 0..rounds {
                let f = fail_over(&mut op, c, signal, keystones).await?;
                eprintln!("bench: failover {c} SIG{signal}: {f:?}");
                runs.push(f);
            }
            let stat = |get: fn(&Failover) -> f64| {
                let mut v: Vec<f64> = runs.iter().map(get).collect();
                v.sort_by(f64::total_cmp);
                format!(
                    "{:.2} ({:.2})",
                    percentile(&v, 50.0),
                    v.last().copied().unwrap_or(0.0)
                )
            };
            cells.push(format!(
                "{} / {} / {}",
                stat(|f| f.lease),
                stat(|f| f.first_reconcile),
                stat(|f| f.all_reconciled)
            ));
            per_signal.insert(signal.to_owned(), serde_json::to_value(&runs)?);
        }
        md.push_str(&format!("| {c} | {} | {} |\n", cells[0], cells[1]));
        js.insert(c.to_owned(), Value::Object(per_signal));
    }
    driver.abort();
    op.uninstall().await;
    Ok((
        md,
        json!({ "keystoneapis": keystones, "rounds": rounds, "controllers": js }),
    ))
}
