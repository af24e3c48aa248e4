//! KeystoneService: the catalog service (created, or adopted by type + name, and kept at the spec's
//! description and enabled flag), the `service` project, the service user with the Secret's password (changed
//! in Keystone only when it no longer authenticates: Keystone revokes a user's tokens on a password change),
//! and its roles on the `service` project — `service` always, `admin` only with `grantAdminRole`. Deletion
//! removes what this object created (not what it adopted); with its KeystoneAPI gone it removes nothing and
//! lets go.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};

use keystone_client::{KeystoneClient, ServicePatch};
use keystone_types::catalog::conditions::{KEYSTONE_API_READY, SERVICE_REGISTERED, USER_READY, reasons};
use keystone_types::catalog::{
    ADMIN_ROLE, KeystoneService, KeystoneServiceStatus, SERVICE_FINALIZER, SERVICE_PROJECT, SERVICE_ROLE,
};
use operator_common::conditions::Desired;

use super::target::{DEFAULT_DOMAIN, NoTarget, Target, resolve};
use super::{
    CLEANUP_DEADLINE, Catalog, Error, RESYNC, SERVICE_FIELD_MANAGER, from_finalizer, keystone_condition,
    next_conditions, ready, retry,
};

/// The metric label of this controller.
pub const KIND: &str = "KeystoneService";

/// Reconciles one KeystoneService.
#[tracing::instrument(skip_all, fields(name = %svc.name_any(), namespace = svc.namespace().unwrap_or_default()))]
pub async fn reconcile(svc: Arc<KeystoneService>, ctx: Arc<Catalog>) -> Result<Action, Error> {
    ctx.metrics.runs.with_label_values(&[KIND]).inc();
    let _timer = ctx.metrics.duration.with_label_values(&[KIND]).start_timer();
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<KeystoneService> = Api::namespaced(ctx.client.clone(), &ns);
    let backoff_key = super::key(svc.as_ref());
    let action = finalizer(&api, SERVICE_FINALIZER, svc, |event| async {
        match event {
            Finalizer::Apply(svc) => apply(&svc, &ctx).await,
            Finalizer::Cleanup(svc) => cleanup(&svc, &ctx).await,
        }
    })
    .await
    .map_err(|e| from_finalizer(&name, e))?;
    ctx.backoff.reset(&backoff_key);
    Ok(action)
}

/// After a failed reconcile: backoff per object.
pub fn error_policy(svc: Arc<KeystoneService>, error: &Error, ctx: Arc<Catalog>) -> Action {
    retry(KIND, svc.as_ref(), error, &ctx)
}

/// What this reconcile found and did, for the status.
#[derive(Default)]
struct Report {
    keystone_api: Option<Desired>,
    registered: Option<Desired>,
    user: Option<Desired>,
    status: KeystoneServiceStatus,
}

async fn apply(svc: &KeystoneService, ctx: &Catalog) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let mut report = Report {
        status: svc.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let target = match resolve(
        &ctx.client,
        &ctx.admin,
        &ctx.urls,
        &ns,
        svc.spec.keystone_api.as_deref(),
    )
    .await
    {
        Ok(t) => t,
        Err(NoTarget { condition, .. }) => {
            report.keystone_api = Some(condition);
            write_status(svc, ctx, report).await?;
            // A KeystoneAPI change (watched) wakes us; this is a safety net.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    report.keystone_api = Some(Desired::ok(
        KEYSTONE_API_READY,
        reasons::SUCCEEDED,
        format!("KeystoneAPI {} is Ready", target.name),
    ));
    report.status.keystone_api = Some(target.name.clone());

    let outcome = register(svc, ctx, &target, &mut report).await;
    let outcome = match outcome {
        Ok(()) => ensure_user(svc, ctx, &target, &mut report).await,
        Err(e) => Err(e),
    };
    write_status(svc, ctx, report).await?;
    outcome
        .map(|()| Action::requeue(RESYNC))
        .map_err(|(step, source)| Error::Keystone { name, step, source })
}

type StepResult = Result<(), (String, keystone_client::Error)>;

/// The catalog service: found by type + name, created when missing, patched to the spec.
async fn register(svc: &KeystoneService, ctx: &Catalog, target: &Target, report: &mut Report) -> StepResult {
    let spec = &svc.spec;
    let keystone = &target.keystone;
    let fail = |report: &mut Report, step: &str, e: keystone_client::Error| {
        report.registered = Some(keystone_condition(SERVICE_REGISTERED, step, &e));
        Err((step.to_owned(), e))
    };
    let services = match keystone.list_services(Some(&spec.service_type)).await {
        Ok(s) => s,
        Err(e) => return fail(report, "listing services", e),
    };
    let mut matching: Vec<_> = services
        .into_iter()
        .filter(|s| s.name.as_deref() == Some(spec.service_name.as_str()))
        .collect();
    let known = report.status.service_id.clone();
    if matching.len() > 1 {
        let ids: Vec<String> = matching.iter().map(|s| s.id.clone()).collect();
        report.registered = Some(Desired::not_ok(
            SERVICE_REGISTERED,
            reasons::DUPLICATES,
            format!(
                "Keystone has {} services of type {} named {} ({}); delete the extra ones in Keystone",
                ids.len(),
                spec.service_type,
                spec.service_name,
                ids.join(", ")
            ),
        ));
        // Keep working with the one we know, if any, so that the user and password stay right.
        matching.retain(|s| Some(&s.id) == known.as_ref());
        if matching.is_empty() {
            return Ok(());
        }
    }
    let mark = super::owner_of(svc);
    let created_before = match report.status.service_adopted {
        Some(false) => known.as_deref(),
        _ => None,
    };
    let service = match matching.pop() {
        Some(existing) => {
            if !super::is_ours(existing.owner.as_deref(), &mark, &existing.id, created_before) {
                // Found, not created by this object (bootstrap's identity service, another tool's, one made by
                // hand): used for its endpoints, never changed or deleted.
                report.status.service_adopted = Some(true);
                report.status.service_id = Some(existing.id.clone());
                report.registered = Some(Desired::ok(
                    SERVICE_REGISTERED,
                    reasons::SUCCEEDED,
                    format!(
                        "service {} ({}) exists in Keystone with ID {}, not created by this KeystoneService: \
                         used as found (its description and enabled flag are left as they are, and it stays \
                         when this object is deleted)",
                        spec.service_name, spec.service_type, existing.id
                    ),
                ));
                return Ok(());
            }
            report.status.service_adopted = Some(false);
            existing
        }
        None => {
            let created = match keystone
                .create_service(
                    &spec.service_type,
                    &spec.service_name,
                    spec.service_description.as_deref(),
                    spec.enabled,
                    Some(&mark),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => return fail(report, "creating the service", e),
            };
            ctx.metrics
                .changes
                .with_label_values(&[KIND, "service_created"])
                .inc();
            tracing::info!(id = %created.id, "created service {} ({})", spec.service_name, spec.service_type);
            report.status.service_adopted = Some(false);
            created
        }
    };
    let mut patch = ServicePatch::default();
    if service.enabled != spec.enabled {
        patch.enabled = Some(spec.enabled);
    }
    if let Some(d) = &spec.service_description
        && service.description.as_ref() != Some(d)
    {
        patch.description = Some(d.clone());
    }
    if patch.enabled.is_some() || patch.description.is_some() {
        if let Err(e) = keystone.update_service(&service.id, &patch).await {
            report.status.service_id = Some(service.id);
            return fail(report, "updating the service", e);
        }
        ctx.metrics
            .changes
            .with_label_values(&[KIND, "service_updated"])
            .inc();
    }
    if report.registered.is_none() {
        report.registered = Some(Desired::ok(
            SERVICE_REGISTERED,
            reasons::SUCCEEDED,
            format!(
                "service {} ({}) is {} in Keystone with ID {}",
                spec.service_name,
                spec.service_type,
                if spec.enabled { "enabled" } else { "disabled" },
                service.id
            ),
        ));
    }
    report.status.service_id = Some(service.id);
    Ok(())
}

/// The password of the service user, from its Secret, with the Secret's resourceVersion.
async fn service_password(
    svc: &KeystoneService,
    ctx: &Catalog,
) -> Result<Result<(String, String), String>, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let (secret_name, key) = (&svc.spec.secret, &svc.spec.password_selector);
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(secret_name)
        .await
        .map_err(|source| Error::Kube {
            name: svc.name_any(),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok(Err(format!("Secret {secret_name} (spec.secret) does not exist")));
    };
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => Ok(Ok((p, secret.resource_version().unwrap_or_default()))),
        None => Ok(Err(format!(
            "Secret {secret_name} has no key {key} (spec.passwordSelector), or it is empty"
        ))),
    }
}

/// The `service` project, the user with the Secret's password, and its roles.
async fn ensure_user(
    svc: &KeystoneService,
    ctx: &Catalog,
    target: &Target,
    report: &mut Report,
) -> StepResult {
    let spec = &svc.spec;
    let keystone = &target.keystone;
    let (password, version) = match service_password(svc, ctx).await {
        Ok(Ok(p)) => p,
        Ok(Err(message)) => {
            report.user = Some(Desired::not_ok(
                USER_READY,
                reasons::PASSWORD_SECRET_MISSING,
                message,
            ));
            return Ok(());
        }
        Err(e) => {
            report.user = Some(Desired::not_ok(USER_READY, reasons::WAITING, e.to_string()));
            return Ok(());
        }
    };
    let fail = |report: &mut Report, step: &str, e: keystone_client::Error| {
        report.user = Some(keystone_condition(USER_READY, step, &e));
        Err((step.to_owned(), e))
    };
    let domain = match keystone.find_domain_by_name(DEFAULT_DOMAIN).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            report.user = Some(Desired::not_ok(
                USER_READY,
                reasons::KEYSTONE_REQUEST_FAILED,
                format!("Keystone has no domain named {DEFAULT_DOMAIN}"),
            ));
            return Ok(());
        }
        Err(e) => return fail(report, "finding the Default domain", e),
    };
    let project = match keystone.find_project(SERVICE_PROJECT, &domain.id).await {
        Ok(Some(p)) => p,
        Ok(None) => match keystone
            .create_project(
                SERVICE_PROJECT,
                &domain.id,
                Some("Service users of the OpenStack services"),
            )
            .await
        {
            Ok(p) => {
                ctx.metrics
                    .changes
                    .with_label_values(&[KIND, "project_created"])
                    .inc();
                p
            }
            Err(e) => return fail(report, "creating the service project", e),
        },
        Err(e) => return fail(report, "finding the service project", e),
    };
    let mark = super::owner_of(svc);
    let created_before = match report.status.user_adopted {
        Some(false) => report.status.user_id.clone(),
        _ => None,
    };
    let user = match keystone.find_user(&spec.service_user, &domain.id).await {
        Ok(Some(u)) if super::is_ours(u.owner.as_deref(), &mark, &u.id, created_before.as_deref()) => {
            // Created by this object, or adopted by it earlier (the mark says so either way).
            if report.status.user_adopted != Some(true) {
                report.status.user_adopted = Some(false);
            }
            u
        }
        Ok(Some(u)) => {
            // The KeystoneAPI's admin, another KeystoneService's user, one made by hand: whoever may create
            // this object must not get to set its password, roles or enabled flag, unless the KeystoneAPI allows
            // adopting exactly this user and it has no role outside the service project.
            let refused = match adoption_refused(
                &u.name,
                u.owner.as_deref(),
                &target.name,
                &target.admin_user,
                &target.adoptable_users,
            ) {
                Some(refused) => Some(refused),
                None => match keystone.user_role_assignments(&u.id).await {
                    Ok(assignments) => roles_outside(&assignments, &project.id),
                    Err(e) => return fail(report, "listing the user's role assignments", e),
                },
            };
            if let Some((reason, why)) = refused {
                report.status.user_id = None;
                report.status.user_adopted = None;
                report.status.password_secret_version = None;
                report.user = Some(Desired::not_ok(
                    USER_READY,
                    reason,
                    format!(
                        "Keystone user {} (ID {}) already exists and was not created by this KeystoneService: {why}; \
                         its password, roles and enabled flag are left alone",
                        spec.service_user, u.id
                    ),
                ));
                return Ok(());
            }
            if let Err(e) = keystone.set_user_owner(&u.id, Some(&mark)).await {
                return fail(report, "marking the adopted user", e);
            }
            ctx.metrics
                .changes
                .with_label_values(&[KIND, "user_adopted"])
                .inc();
            tracing::info!(id = %u.id, "adopted service user {}", spec.service_user);
            crate::catalog::publish(
                ctx,
                svc,
                EventType::Normal,
                "UserAdopted",
                format!(
                    "Keystone user {} (ID {}) was adopted as KeystoneAPI {} allows ({}): its password and roles now \
                     follow this object; deleting the object keeps the user",
                    spec.service_user,
                    u.id,
                    target.name,
                    keystone_types::catalog::ADOPT_SERVICE_USERS
                ),
            )
            .await;
            report.status.user_adopted = Some(true);
            report.status.password_secret_version = None;
            u
        }
        Ok(None) => match keystone
            .create_user(
                &spec.service_user,
                &domain.id,
                &password,
                Some(&project.id),
                Some(&mark),
            )
            .await
        {
            Ok(u) => {
                ctx.metrics
                    .changes
                    .with_label_values(&[KIND, "user_created"])
                    .inc();
                tracing::info!(id = %u.id, "created service user {}", spec.service_user);
                report.status.user_adopted = Some(false);
                report.status.password_secret_version = Some(version.clone());
                u
            }
            Err(e) => return fail(report, "creating the service user", e),
        },
        Err(e) => return fail(report, "finding the service user", e),
    };
    report.status.user_id = Some(user.id.clone());

    // The password: only when the Secret changed since Keystone last had it, and only if it no longer
    // authenticates (another key of a shared Secret may have changed).
    let mut password_note = "";
    if report.status.password_secret_version.as_deref() != Some(version.as_str()) {
        let works = match keystone
            .password_works(&spec.service_user, DEFAULT_DOMAIN, &password)
            .await
        {
            Ok(w) => w,
            Err(e) => return fail(report, "checking the service user's password", e),
        };
        if !works {
            if let Err(e) = keystone.update_user_password(&user.id, &password).await {
                return fail(report, "updating the service user's password", e);
            }
            ctx.metrics
                .changes
                .with_label_values(&[KIND, "password_updated"])
                .inc();
            tracing::info!(id = %user.id, "updated the password of service user {}", spec.service_user);
            crate::catalog::publish(
                ctx,
                svc,
                EventType::Normal,
                "PasswordUpdated",
                format!(
                    "the password of Keystone user {} now matches Secret {} (its existing tokens are revoked)",
                    spec.service_user, spec.secret
                ),
            )
            .await;
            password_note = ", password updated";
        }
        report.status.password_secret_version = Some(version);
    }

    // Roles on the service project.
    let mut granted = vec![SERVICE_ROLE];
    if spec.grant_admin_role {
        granted.push(ADMIN_ROLE);
    }
    for role_name in &granted {
        let role = match keystone.ensure_role(role_name).await {
            Ok(r) => r,
            Err(e) => return fail(report, &format!("ensuring role {role_name}"), e),
        };
        match keystone.has_project_role(&project.id, &user.id, &role.id).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(e) = keystone.grant_project_role(&project.id, &user.id, &role.id).await {
                    return fail(report, &format!("granting role {role_name}"), e);
                }
                ctx.metrics
                    .changes
                    .with_label_values(&[KIND, "role_granted"])
                    .inc();
            }
            Err(e) => return fail(report, &format!("checking role {role_name}"), e),
        }
    }
    if !spec.grant_admin_role {
        // grantAdminRole was turned off: take back what we gave (the user is ours: created by this object).
        match keystone.find_role(ADMIN_ROLE).await {
            Ok(Some(admin)) => match keystone.has_project_role(&project.id, &user.id, &admin.id).await {
                Ok(true) => {
                    if let Err(e) = keystone
                        .revoke_project_role(&project.id, &user.id, &admin.id)
                        .await
                    {
                        return fail(report, "revoking role admin", e);
                    }
                    ctx.metrics
                        .changes
                        .with_label_values(&[KIND, "role_revoked"])
                        .inc();
                }
                Ok(false) => {}
                Err(e) => return fail(report, "checking role admin", e),
            },
            Ok(None) => {}
            Err(e) => return fail(report, "finding role admin", e),
        }
    }
    report.user = Some(Desired::ok(
        USER_READY,
        reasons::SUCCEEDED,
        format!(
            "user {} has the password of Secret {} and role{} {} on project {}{password_note}",
            spec.service_user,
            spec.secret,
            if granted.len() > 1 { "s" } else { "" },
            granted.join(", "),
            SERVICE_PROJECT
        ),
    ));
    Ok(())
}

async fn write_status(svc: &KeystoneService, ctx: &Catalog, report: Report) -> Result<(), Error> {
    let waiting =
        |type_: &'static str| Desired::not_ok(type_, reasons::WAITING, "waiting for an earlier step");
    let desired = vec![
        report.keystone_api.unwrap_or_else(|| waiting(KEYSTONE_API_READY)),
        report.registered.unwrap_or_else(|| waiting(SERVICE_REGISTERED)),
        report.user.unwrap_or_else(|| waiting(USER_READY)),
    ];
    let mut all = desired.clone();
    all.push(ready(&desired));
    let current = svc.status.clone().unwrap_or_default();
    let generation = svc.metadata.generation;
    let (conditions, changed) = next_conditions(current.conditions.as_ref(), &all, generation);
    let mut status = report.status;
    status.conditions = Some(conditions);
    status.observed_generation = generation;
    if !changed && status == current {
        return Ok(());
    }
    let name = svc.name_any();
    let api: Api<KeystoneService> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "keystone.openstack.org/v1beta1",
        "kind": "KeystoneService",
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(SERVICE_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube { name, source })?;
    Ok(())
}

/// Deletion: remove the service and the user if this object created them. Without a usable KeystoneAPI
/// (gone, being deleted, not Ready) there is nothing to talk to: let go at once. A Keystone that keeps
/// failing is retried with backoff until [`CLEANUP_DEADLINE`] after the deletion started, then let go with a
/// Warning Event.
async fn cleanup(svc: &KeystoneService, ctx: &Catalog) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let status = svc.status.clone().unwrap_or_default();
    let target = match resolve(
        &ctx.client,
        &ctx.admin,
        &ctx.urls,
        &ns,
        svc.spec
            .keystone_api
            .as_deref()
            .or(status.keystone_api.as_deref()),
    )
    .await
    {
        Ok(t) => t,
        Err(NoTarget { condition, .. }) => {
            let created = matches!(
                (
                    &status.user_id,
                    status.user_adopted,
                    &status.service_id,
                    status.service_adopted
                ),
                (Some(_), Some(false), _, _) | (_, _, Some(_), Some(false))
            );
            let what = created.then_some("the user and service");
            if let Some(waiting) = super::wait_to_delete(ctx, svc, &condition, what).await {
                let report = Report {
                    status: status.clone(),
                    keystone_api: Some(waiting),
                    ..Default::default()
                };
                write_status(svc, ctx, report).await?;
                // An error keeps the finalizer (kube-runtime removes it after a cleanup that returns Ok);
                // the retry backs off.
                return Err(Error::DeletionWaiting {
                    name: svc.name_any(),
                    what: what.unwrap_or_default().to_owned(),
                });
            }
            tracing::info!(reason = %condition.reason, "{}; leaving Keystone as it is", condition.message);
            return Ok(Action::await_change());
        }
    };
    match remove(svc, &status, &target.keystone, ctx).await {
        Ok(()) => Ok(Action::await_change()),
        Err((step, source)) if past_deadline(svc) => {
            crate::catalog::publish(
                ctx,
                svc,
                EventType::Warning,
                "CleanupAbandoned",
                format!(
                    "{step} failed for {}s since deletion started ({source}); the finalizer is removed and the \
                     Keystone objects may remain",
                    CLEANUP_DEADLINE.as_secs()
                ),
            )
            .await;
            Ok(Action::await_change())
        }
        Err((step, source)) => Err(Error::Keystone {
            name: svc.name_any(),
            step,
            source,
        }),
    }
}

async fn remove(
    svc: &KeystoneService,
    status: &KeystoneServiceStatus,
    keystone: &KeystoneClient,
    ctx: &Catalog,
) -> StepResult {
    if let (Some(id), Some(false)) = (&status.user_id, status.user_adopted) {
        keystone
            .delete_user(id)
            .await
            .map_err(|e| ("deleting the service user".to_owned(), e))?;
        ctx.metrics
            .changes
            .with_label_values(&[KIND, "user_deleted"])
            .inc();
        tracing::info!(%id, "deleted service user {}", svc.spec.service_user);
    }
    if let (Some(id), Some(true)) = (&status.user_id, status.user_adopted) {
        // Adopted: it stays, and is no longer this object's.
        match keystone.set_user_owner(id, None).await {
            Ok(()) | Err(keystone_client::Error::NotFound { .. }) => {}
            Err(e) => return Err(("releasing the adopted service user".to_owned(), e)),
        }
    }
    if let (Some(id), Some(false)) = (&status.service_id, status.service_adopted) {
        keystone
            .delete_service(id)
            .await
            .map_err(|e| ("deleting the service".to_owned(), e))?;
        ctx.metrics
            .changes
            .with_label_values(&[KIND, "service_deleted"])
            .inc();
        tracing::info!(%id, "deleted service {}", svc.spec.service_name);
    }
    Ok(())
}

/// Why a user the operator did not create may not be adopted, before looking at its roles: the KeystoneAPI
/// does not list it in `keystone.openstack.org/adopt-service-users`, it is the KeystoneAPI's admin user, or
/// another catalog object owns it. `None`: its roles decide.
fn adoption_refused(
    name: &str,
    owner: Option<&str>,
    keystone_api: &str,
    admin_user: &str,
    adoptable: &[String],
) -> Option<(&'static str, String)> {
    // Keystone on MySQL compares names without case: so does this.
    if name.eq_ignore_ascii_case(admin_user) {
        return Some((
            reasons::USER_NOT_ADOPTABLE,
            format!("it is the admin user of KeystoneAPI {keystone_api}, which is never adopted"),
        ));
    }
    if let Some(owner) = owner {
        return Some((reasons::USER_CONFLICT, format!("it belongs to {owner}")));
    }
    if !adoptable.iter().any(|u| u.eq_ignore_ascii_case(name)) {
        return Some((
            reasons::USER_CONFLICT,
            format!(
                "it may be another KeystoneService's user or one made by hand; to hand it to this object, whoever \
                 controls KeystoneAPI {keystone_api} lists it in the annotation {}",
                keystone_types::catalog::ADOPT_SERVICE_USERS
            ),
        ));
    }
    None
}

/// Roles of a user that is otherwise adoptable outside the service project: any makes it not adoptable.
fn roles_outside(
    assignments: &[keystone_client::RoleAssignment],
    service_project: &str,
) -> Option<(&'static str, String)> {
    use keystone_client::Scope;
    let outside: Vec<String> = assignments
        .iter()
        .filter(|a| a.scope != Scope::Project(service_project.to_owned()))
        .map(|a| match &a.scope {
            Scope::Project(p) => format!("role {} on project {p}", a.role_id),
            Scope::Domain(d) => format!("role {} on domain {d}", a.role_id),
            Scope::System => format!("role {} on the system", a.role_id),
            Scope::Other(s) => format!("role {} on {s}", a.role_id),
        })
        .collect();
    (!outside.is_empty()).then(|| {
        (
            reasons::USER_NOT_ADOPTABLE,
            format!(
                "it has roles outside the {SERVICE_PROJECT} project ({}), so it is not adopted although the \
                 KeystoneAPI allows it",
                outside.join(", ")
            ),
        )
    })
}

/// True when the deletion started more than [`CLEANUP_DEADLINE`] ago.
pub(crate) fn past_deadline<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.as_ref().is_some_and(|t| {
        let started = t.0.as_second();
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        now - started > CLEANUP_DEADLINE.as_secs() as i64
    })
}

#[cfg(test)]
mod tests {
    use keystone_client::{RoleAssignment, Scope};

    use super::*;

    #[test]
    fn only_a_listed_unowned_user_other_than_the_admin_may_be_adopted() {
        let listed = ["nova".to_owned(), "Admin".to_owned()];
        let refused = |name: &str, owner: Option<&str>| {
            adoption_refused(name, owner, "keystone", "admin", &listed).map(|(r, _)| r)
        };
        assert_eq!(refused("nova", None), None);
        assert_eq!(refused("NOVA", None), None, "Keystone on MySQL ignores case");
        assert_eq!(
            refused("admin", None),
            Some(reasons::USER_NOT_ADOPTABLE),
            "even when listed"
        );
        assert_eq!(refused("ADMIN", None), Some(reasons::USER_NOT_ADOPTABLE));
        assert_eq!(
            refused("nova", Some("KeystoneService other/nova")),
            Some(reasons::USER_CONFLICT)
        );
        assert_eq!(refused("glance", None), Some(reasons::USER_CONFLICT));
        let (_, why) = adoption_refused("glance", None, "keystone", "admin", &listed).unwrap();
        assert!(
            why.contains(keystone_types::catalog::ADOPT_SERVICE_USERS),
            "{why}"
        );
    }

    #[test]
    fn any_role_outside_the_service_project_prevents_adoption() {
        let on = |role: &str, scope: Scope| RoleAssignment {
            role_id: role.into(),
            scope,
        };
        let service = Scope::Project("svc".into());
        assert_eq!(roles_outside(&[], "svc"), None);
        assert_eq!(
            roles_outside(
                &[on("member", service.clone()), on("admin", service.clone())],
                "svc"
            ),
            None
        );
        for other in [
            Scope::Project("admin-project".into()),
            Scope::Domain("default".into()),
            Scope::System,
            Scope::Other("{}".into()),
        ] {
            let (reason, why) = roles_outside(
                &[on("member", service.clone()), on("admin", other.clone())],
                "svc",
            )
            .unwrap_or_else(|| panic!("{other:?} let it through"));
            assert_eq!(reason, reasons::USER_NOT_ADOPTABLE);
            assert!(why.contains("role admin on"), "{why}");
        }
    }
}
