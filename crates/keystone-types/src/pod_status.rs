//! What the kubelet reports about pods that do not start: shared by the api controller (the API Deployment's
//! pods) and the db controller (its Jobs' pods), so that a pod stuck on its image, its config or the scheduler
//! is named with the kubelet's reason long before any deadline.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The condition reason while a pod cannot start: the message names each pod with the kubelet's reason.
pub const PODS_NOT_STARTING: &str = "PodsNotStarting";

/// Whether the pod is Ready (and not being deleted).
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Container waiting reasons that mean the pod will not become ready by itself soon.
const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// How long a pod may stay in ContainerCreating (volumes, network) before it is reported.
pub const CREATING_DEADLINE_SECONDS: i64 = 300;

/// Why pods that are not ready cannot start, one line each (`pod: reason: message`), at `now`.
pub fn stuck_pods(pods: &[Pod], now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !pod_ready(p))
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(st) = pod.status.as_ref() else { continue };
        let unschedulable = st.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(c) = unschedulable {
            out.push(format!(
                "{name}: Unschedulable: {}",
                c.message.clone().unwrap_or_default()
            ));
            continue;
        }
        let since = st
            .start_time
            .as_ref()
            .or(pod.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        let waiting_for = now.as_second().saturating_sub(since.as_second());
        for cs in st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
        {
            let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = w.reason.as_deref().unwrap_or_default();
            let stuck = STUCK_REASONS.contains(&reason)
                || (reason == "ContainerCreating" && waiting_for > CREATING_DEADLINE_SECONDS)
                || (reason == "PodInitializing" && waiting_for > CREATING_DEADLINE_SECONDS);
            if stuck {
                let message = w.message.as_deref().unwrap_or_default();
                let mut line = format!("{name}: {reason}");
                if reason == "ContainerCreating" || reason == "PodInitializing" {
                    // A fixed text: a growing count would rewrite the status at every reconcile.
                    line.push_str(&format!(" for more than {CREATING_DEADLINE_SECONDS}s"));
                }
                if !message.is_empty() {
                    line.push_str(&format!(": {}", message.chars().take(200).collect::<String>()));
                }
                out.push(line);
                break;
            }
        }
    }
    out
}
