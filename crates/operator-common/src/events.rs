//! Publishing Events about a KeystoneAPI. A failure to publish is logged and otherwise ignored: an Event is
//! information for a human, never a reason to fail a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// Publishes an Event with `reason` (PascalCase, also used as the action) and `note` (never a secret).
pub async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(%error, reason, "cannot publish event");
    }
}
