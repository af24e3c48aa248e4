//! KeystoneEndpoint: for the service of the KeystoneService with this `serviceName` (once that is Ready),
//! exactly one endpoint per interface in the spec, in the region (default: the KeystoneAPI's), created or
//! updated to the spec's URL; an endpoint this object registered on an interface no longer in the spec is
//! deleted; several endpoints on one interface are reported (`Duplicates`), never silently kept or guessed
//! between. Deletion removes the endpoints this object registered.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};

use keystone_client::{Interface, KeystoneClient};
use keystone_types::catalog::conditions::{
    ENDPOINTS_READY, KEYSTONE_API_READY, READY, SERVICE_READY, reasons,
};
use keystone_types::catalog::{
    ENDPOINT_FINALIZER, KeystoneEndpoint, KeystoneEndpointStatus, KeystoneService, RegisteredEndpoint,
};
use operator_common::conditions::Desired;

use super::service::past_deadline;
use super::target::{NoTarget, resolve};
use super::{
    CLEANUP_DEADLINE, Catalog, ENDPOINT_FIELD_MANAGER, Error, RESYNC, from_finalizer, keystone_condition,
    next_conditions, ready, retry,
};

/// The metric label of this controller.
pub const KIND: &str = "KeystoneEndpoint";

const INTERFACES: [Interface; 3] = [Interface::Public, Interface::Internal, Interface::Admin];

/// Reconciles one KeystoneEndpoint.
#[tracing::instrument(skip_all, fields(name = %ep.name_any(), namespace = ep.namespace().unwrap_or_default()))]
pub async fn reconcile(ep: Arc<KeystoneEndpoint>, ctx: Arc<Catalog>) -> Result<Action, Error> {
    ctx.metrics.runs.with_label_values(&[KIND]).inc();
    let _timer = ctx.metrics.duration.with_label_values(&[KIND]).start_timer();
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let api: Api<KeystoneEndpoint> = Api::namespaced(ctx.client.clone(), &ns);
    let backoff_key = super::key(ep.as_ref());
    let action = finalizer(&api, ENDPOINT_FINALIZER, ep, |event| async {
        match event {
            Finalizer::Apply(ep) => apply(&ep, &ctx).await,
            Finalizer::Cleanup(ep) => cleanup(&ep, &ctx).await,
        }
    })
    .await
    .map_err(|e| from_finalizer(&name, e))?;
    ctx.backoff.reset(&backoff_key);
    Ok(action)
}

/// After a failed reconcile: backoff per object.
pub fn error_policy(ep: Arc<KeystoneEndpoint>, error: &Error, ctx: Arc<Catalog>) -> Action {
    retry(KIND, ep.as_ref(), error, &ctx)
}

/// The service ID of the Ready KeystoneService this endpoint belongs to. Read from the API server (see
/// `target::find_keystone` for why not from a watch cache).
async fn service_id(
    ctx: &Catalog,
    ep: &KeystoneEndpoint,
    keystone_api: &str,
) -> Result<Result<String, Desired>, Error> {
    let ns = ep.namespace().unwrap_or_default();
    let name = &ep.spec.service_name;
    let waiting = |m: String| Desired::not_ok(SERVICE_READY, reasons::WAITING_FOR_SERVICE, m);
    let services = Api::<KeystoneService>::namespaced(ctx.client.clone(), &ns)
        .list(&Default::default())
        .await
        .map_err(|source| Error::Kube {
            name: ep.name_any(),
            source,
        })?;
    let candidates: Vec<_> = services
        .items
        .into_iter()
        .filter(|s| s.spec.service_name == *name && s.metadata.deletion_timestamp.is_none())
        .filter(|s| {
            s.status
                .as_ref()
                .and_then(|st| st.keystone_api.as_deref())
                .is_none_or(|k| k == keystone_api)
        })
        .collect();
    let svc = match candidates.as_slice() {
        [] => {
            return Ok(Err(waiting(format!(
                "there is no KeystoneService with serviceName {name} in namespace {ns}"
            ))));
        }
        [one] => one,
        several => {
            return Ok(Err(Desired::not_ok(
                SERVICE_READY,
                reasons::DUPLICATES,
                format!(
                    "several KeystoneServices have serviceName {name} ({}); keep one",
                    several
                        .iter()
                        .map(|s| s.name_any())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )));
        }
    };
    let status = svc.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == READY))
        .is_some_and(|c| c.status == "True" && c.observed_generation == svc.metadata.generation);
    Ok(match (ready, status.service_id) {
        (true, Some(id)) => Ok(id),
        _ => Err(waiting(format!(
            "KeystoneService {} is not Ready",
            svc.name_any()
        ))),
    })
}

async fn apply(ep: &KeystoneEndpoint, ctx: &Catalog) -> Result<Action, Error> {
    let ns = ep.namespace().unwrap_or_default();
    let mut status = ep.status.clone().unwrap_or_default();
    let target = match resolve(
        &ctx.client,
        &ctx.admin,
        &ctx.urls,
        &ns,
        ep.spec.keystone_api.as_deref(),
    )
    .await
    {
        Ok(t) => t,
        Err(NoTarget { condition, .. }) => {
            write_status(ep, ctx, status, [Some(condition), None, None]).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let api_ok = Desired::ok(
        KEYSTONE_API_READY,
        reasons::SUCCEEDED,
        format!("KeystoneAPI {} is Ready", target.name),
    );
    status.keystone_api = Some(target.name.clone());
    let service_id = match service_id(ctx, ep, &target.name).await? {
        Ok(id) => id,
        Err(condition) => {
            write_status(ep, ctx, status, [Some(api_ok), Some(condition), None]).await?;
            // The KeystoneService's status changes wake us.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let service_ok = Desired::ok(
        SERVICE_READY,
        reasons::SUCCEEDED,
        format!("service {} has ID {service_id}", ep.spec.service_name),
    );
    let region = ep.spec.region.clone().unwrap_or_else(|| target.region.clone());
    let result = sync_endpoints(ep, ctx, &target.keystone, &service_id, &region, &status).await;
    // Endpoints of an earlier service or region are no longer ours to track.
    status.service_id = Some(service_id);
    status.region = Some(region);
    let (condition, outcome) = match result {
        Ok((registered, condition)) => {
            status.endpoints = Some(registered);
            (condition, Ok(()))
        }
        Err(failed) => {
            let (step, e, registered) = *failed;
            status.endpoints = Some(registered);
            (keystone_condition(ENDPOINTS_READY, &step, &e), Err((step, e)))
        }
    };
    write_status(ep, ctx, status, [Some(api_ok), Some(service_ok), Some(condition)]).await?;
    outcome
        .map(|()| Action::requeue(RESYNC))
        .map_err(|(step, source)| Error::Keystone {
            name: ep.name_any(),
            step,
            source,
        })
}

type SyncError = Box<(String, keystone_client::Error, Vec<RegisteredEndpoint>)>;

/// Makes Keystone hold exactly the spec's endpoints for `service_id` in `region`; returns what is registered
/// (also on failure, so the status keeps tracking what exists) and the `EndpointsReady` condition.
async fn sync_endpoints(
    ep: &KeystoneEndpoint,
    ctx: &Catalog,
    keystone: &KeystoneClient,
    service_id: &str,
    region: &str,
    status: &KeystoneEndpointStatus,
) -> Result<(Vec<RegisteredEndpoint>, Desired), SyncError> {
    let tracked: BTreeSet<String> = status.endpoints.iter().flatten().map(|e| e.id.clone()).collect();
    let mark = super::owner_of(ep);
    // Ours: created by this object (our owner mark; or, before the mark, recorded in our status). Found
    // endpoints (bootstrap's identity endpoints, another tool's) are never updated or deleted.
    let ours = |e: &keystone_client::Endpoint| {
        super::is_ours(
            e.owner.as_deref(),
            &mark,
            &e.id,
            tracked.get(&e.id).map(String::as_str),
        )
    };
    let mut conflicts = Vec::new();
    let same_place =
        status.service_id.as_deref() == Some(service_id) && status.region.as_deref() == Some(region);
    let mut registered = Vec::new();
    let mut duplicates = Vec::new();
    let fail =
        |step: String, e, registered: &Vec<RegisteredEndpoint>| Err(Box::new((step, e, registered.clone())));

    if let Err(e) = keystone.ensure_region(region).await {
        return fail(format!("ensuring region {region}"), e, &registered);
    }
    // Endpoints of this object in another service or region (the spec or the service changed): removed.
    if !same_place {
        for old in status.endpoints.iter().flatten() {
            if let Err(e) = keystone.delete_endpoint(&old.id).await {
                return fail(format!("deleting old endpoint {}", old.id), e, &registered);
            }
        }
    }
    for interface in INTERFACES {
        let want = ep.spec.endpoints.get(interface.as_str());
        let existing = match keystone
            .list_endpoints(Some(service_id), Some(interface), Some(region))
            .await
        {
            Ok(e) => e,
            Err(e) => return fail(format!("listing {interface} endpoints"), e, &registered),
        };
        match (want, existing.as_slice()) {
            (None, existing) => {
                // Not (or no longer) in the spec: remove the ones this object registered.
                for e in existing.iter().filter(|e| ours(e)) {
                    if let Err(err) = keystone.delete_endpoint(&e.id).await {
                        return fail(
                            format!("deleting {interface} endpoint {}", e.id),
                            err,
                            &registered,
                        );
                    }
                    ctx.metrics
                        .changes
                        .with_label_values(&[KIND, "endpoint_deleted"])
                        .inc();
                }
            }
            (Some(url), []) => match keystone
                .create_endpoint(service_id, interface, url, region, Some(&mark))
                .await
            {
                Ok(created) => {
                    ctx.metrics
                        .changes
                        .with_label_values(&[KIND, "endpoint_created"])
                        .inc();
                    registered.push(RegisteredEndpoint {
                        interface: interface.as_str().to_owned(),
                        url: created.url,
                        id: created.id,
                    });
                }
                Err(e) => return fail(format!("creating the {interface} endpoint"), e, &registered),
            },
            (Some(_), [one]) if !ours(one) => {
                conflicts.push(format!("{interface}: {} ({})", one.id, one.url));
            }
            (Some(url), [one]) => {
                let mut url_now = one.url.clone();
                if one.url != *url {
                    match keystone.update_endpoint(&one.id, url).await {
                        Ok(updated) => url_now = updated.url,
                        Err(e) => return fail(format!("updating the {interface} endpoint"), e, &registered),
                    }
                    ctx.metrics
                        .changes
                        .with_label_values(&[KIND, "endpoint_updated"])
                        .inc();
                }
                registered.push(RegisteredEndpoint {
                    interface: interface.as_str().to_owned(),
                    url: url_now,
                    id: one.id.clone(),
                });
            }
            (Some(_), several) => {
                // Report; keep tracking the ones that are ours so deletion still removes them.
                duplicates.push(format!(
                    "{interface}: {}",
                    several
                        .iter()
                        .map(|e| format!("{} ({})", e.id, e.url))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                for e in several.iter().filter(|e| ours(e)) {
                    registered.push(RegisteredEndpoint {
                        interface: interface.as_str().to_owned(),
                        url: e.url.clone(),
                        id: e.id.clone(),
                    });
                }
            }
        }
    }
    registered.sort();
    let condition = if !conflicts.is_empty() {
        Desired::not_ok(
            ENDPOINTS_READY,
            reasons::ENDPOINT_CONFLICT,
            format!(
                "Keystone already has endpoints of service {service_id} in region {region} that this \
                 KeystoneEndpoint did not create ({}); they are left as they are: remove them in Keystone or \
                 drop those interfaces from spec.endpoints",
                conflicts.join("; ")
            ),
        )
    } else if duplicates.is_empty() {
        Desired::ok(
            ENDPOINTS_READY,
            reasons::SUCCEEDED,
            format!(
                "region {region}: {}",
                registered
                    .iter()
                    .map(|e| format!("{}:{}", e.interface, e.url))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )
    } else {
        Desired::not_ok(
            ENDPOINTS_READY,
            reasons::DUPLICATES,
            format!(
                "Keystone has several endpoints of service {service_id} in region {region} on one interface ({}); \
                 delete the extra ones in Keystone",
                duplicates.join("; ")
            ),
        )
    };
    Ok((registered, condition))
}

async fn write_status(
    ep: &KeystoneEndpoint,
    ctx: &Catalog,
    mut status: KeystoneEndpointStatus,
    steps: [Option<Desired>; 3],
) -> Result<(), Error> {
    let [api, service, endpoints] = steps;
    let waiting =
        |type_: &'static str| Desired::not_ok(type_, reasons::WAITING, "waiting for an earlier step");
    let desired = vec![
        api.unwrap_or_else(|| waiting(KEYSTONE_API_READY)),
        service.unwrap_or_else(|| waiting(SERVICE_READY)),
        endpoints.unwrap_or_else(|| waiting(ENDPOINTS_READY)),
    ];
    let mut all = desired.clone();
    all.push(ready(&desired));
    let current = ep.status.clone().unwrap_or_default();
    let generation = ep.metadata.generation;
    let (conditions, changed) = next_conditions(current.conditions.as_ref(), &all, generation);
    status.conditions = Some(conditions);
    status.observed_generation = generation;
    if !changed && status == current {
        return Ok(());
    }
    let name = ep.name_any();
    let api: Api<KeystoneEndpoint> = Api::namespaced(ctx.client.clone(), &ep.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "keystone.openstack.org/v1beta1",
        "kind": "KeystoneEndpoint",
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(ENDPOINT_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube { name, source })?;
    Ok(())
}

/// Deletion: remove the endpoints this object registered; let go at once without a usable KeystoneAPI, and
/// after [`CLEANUP_DEADLINE`] of failures.
async fn cleanup(ep: &KeystoneEndpoint, ctx: &Catalog) -> Result<Action, Error> {
    let ns = ep.namespace().unwrap_or_default();
    let status = ep.status.clone().unwrap_or_default();
    let target = match resolve(
        &ctx.client,
        &ctx.admin,
        &ctx.urls,
        &ns,
        ep.spec.keystone_api.as_deref().or(status.keystone_api.as_deref()),
    )
    .await
    {
        Ok(t) => t,
        Err(NoTarget { condition, .. }) => {
            let created = status.endpoints.as_ref().is_some_and(|e| !e.is_empty());
            let what = created.then_some("the endpoints");
            if let Some(waiting) = super::wait_to_delete(ctx, ep, &condition, what).await {
                write_status(ep, ctx, status.clone(), [Some(waiting), None, None]).await?;
                // An error keeps the finalizer (kube-runtime removes it after a cleanup that returns Ok).
                return Err(Error::DeletionWaiting {
                    name: ep.name_any(),
                    what: what.unwrap_or_default().to_owned(),
                });
            }
            tracing::info!(reason = %condition.reason, "{}; leaving Keystone as it is", condition.message);
            return Ok(Action::await_change());
        }
    };
    for e in status.endpoints.iter().flatten() {
        if let Err(source) = target.keystone.delete_endpoint(&e.id).await {
            if past_deadline(ep) {
                super::publish(
                    ctx,
                    ep,
                    EventType::Warning,
                    "CleanupAbandoned",
                    format!(
                        "deleting endpoint {} failed for {}s since deletion started ({source}); the finalizer is \
                         removed and the endpoints may remain",
                        e.id,
                        CLEANUP_DEADLINE.as_secs()
                    ),
                )
                .await;
                return Ok(Action::await_change());
            }
            return Err(Error::Keystone {
                name: ep.name_any(),
                step: format!("deleting endpoint {}", e.id),
                source,
            });
        }
        ctx.metrics
            .changes
            .with_label_values(&[KIND, "endpoint_deleted"])
            .inc();
    }
    Ok(Action::await_change())
}
