//! Publishing the public endpoint: the spec's override URL, else an Ingress when the spec asks for one, else a
//! Route when the cluster serves Routes (its URL once the router admits it), else the Service's cluster DNS
//! name. The objects of the ways not taken are removed, so switching between them leaves nothing behind.

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use keystone_types::conditions::SERVICE_READY;
use keystone_types::v1beta1::Endpoint;
use keystone_types::{KeystoneAPI, names};
use operator_common::apply::apply_child;

use operator_common::backoff::FailedCall;

use crate::build::exposure::{ingress, ingress_url, route, route_resource, route_url};
use crate::read::Inputs;
use crate::{CONTROLLER, Error};

/// The public URL to publish, or `None` with the reason it is not known yet.
pub async fn publish_public(
    client: &Client,
    ks: &KeystoneAPI,
    inputs: &Inputs,
) -> Result<(Option<String>, Option<String>), Error> {
    let name = ks.name_any();
    let ns = ks.namespace().unwrap_or_default();
    let object = names::service(&name, Endpoint::Public);
    let err =
        |action, kind: &str| FailedCall::under(&name, SERVICE_READY, action, format!("{kind} {object}"));
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &route_resource());
    let overridden = ks.spec.endpoint_urls.as_ref().and_then(|o| o.public.clone());
    let use_ingress = overridden.is_none() && ks.spec.ingress.is_some();
    let use_route = overridden.is_none() && !use_ingress && inputs.routes_available;

    if !use_ingress {
        delete_if_ours(&ingresses, &object, &name)
            .await
            .map_err(err("deleting", "Ingress"))?;
    }
    if !use_route && inputs.routes_available {
        delete_if_ours(&routes, &object, &name)
            .await
            .map_err(err("deleting", "Route"))?;
    }
    if let Some(url) = overridden {
        return Ok((Some(url), None));
    }
    if let Some(spec) = ks.spec.ingress.as_ref() {
        apply_child(client, CONTROLLER, &ingress(ks, spec))
            .await
            .map_err(err("applying", "Ingress"))?;
        return Ok((Some(ingress_url(spec)), None));
    }
    if use_route {
        let pp = PatchParams::apply(CONTROLLER.field_manager()).force();
        let applied = routes
            .patch(&object, &pp, &Patch::Apply(&route(ks)))
            .await
            .map_err(err("applying", "Route"))?;
        return Ok(match route_url(&applied) {
            Some(url) => (Some(url), None),
            None => (
                None,
                Some(format!("Route {object} is not admitted by a router yet")),
            ),
        });
    }
    Ok((
        Some(crate::build::service::endpoint_url(ks, Endpoint::Public)),
        None,
    ))
}

async fn delete_if_ours<K>(api: &Api<K>, name: &str, instance: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(existing) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    let ours = existing
        .labels()
        .get(keystone_types::labels::MANAGED_BY)
        .map(String::as_str)
        == Some(CONTROLLER.field_manager())
        && existing
            .labels()
            .get(keystone_types::labels::INSTANCE)
            .map(String::as_str)
            == Some(instance);
    if ours {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
