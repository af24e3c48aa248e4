//! The identity API calls the catalog controllers need: services, endpoints, regions, domains, projects,
//! users and role assignments.
//!
//! Conventions: a delete of something already gone (404) succeeds; lookups by name return `None` when there is
//! no match and filter on the exact name client-side too (MySQL's default collation makes Keystone's `name`
//! filter case-insensitive); a create that races with another creator (409) is resolved where the object can
//! be found again (regions, projects) and reported otherwise.

use reqwest::{Method, StatusCode};
use serde_json::{Map, json};

use crate::client::KeystoneClient;
use crate::error::{Error, Result};
use crate::types::{
    Domain, Endpoint, Interface, OWNER_ATTRIBUTE, Project, Region, Role, RoleAssignment, Service,
    ServicePatch, User,
};

impl KeystoneClient {
    /// `GET /v3/services[?type=]`.
    pub async fn list_services(&self, service_type: Option<&str>) -> Result<Vec<Service>> {
        let query = filters(&[("type", service_type)]);
        self.call(Method::GET, &["services"], &query, None, None)
            .await?
            .list("services")
    }

    /// `POST /v3/services`.
    pub async fn create_service(
        &self,
        service_type: &str,
        name: &str,
        description: Option<&str>,
        enabled: bool,
        owner: Option<&str>,
    ) -> Result<Service> {
        let mut service = Map::new();
        if let Some(o) = owner {
            service.insert(OWNER_ATTRIBUTE.into(), o.into());
        }
        service.insert("type".into(), service_type.into());
        service.insert("name".into(), name.into());
        if let Some(d) = description {
            service.insert("description".into(), d.into());
        }
        service.insert("enabled".into(), enabled.into());
        let body = json!({ "service": service });
        self.call(Method::POST, &["services"], &[], Some(&body), None)
            .await?
            .object("service")
    }

    /// `PATCH /v3/services/{id}` with only the fields set in `patch`.
    pub async fn update_service(&self, id: &str, patch: &ServicePatch) -> Result<Service> {
        let body = json!({ "service": patch });
        self.call(Method::PATCH, &["services", id], &[], Some(&body), None)
            .await?
            .object("service")
    }

    /// `DELETE /v3/services/{id}`; already gone is success. Keystone deletes the service's endpoints with it.
    pub async fn delete_service(&self, id: &str) -> Result<()> {
        self.delete(&["services", id]).await
    }

    /// `GET /v3/endpoints` filtered by any of service, interface and region.
    pub async fn list_endpoints(
        &self,
        service_id: Option<&str>,
        interface: Option<Interface>,
        region_id: Option<&str>,
    ) -> Result<Vec<Endpoint>> {
        let query = filters(&[
            ("service_id", service_id),
            ("interface", interface.map(Interface::as_str)),
            ("region_id", region_id),
        ]);
        self.call(Method::GET, &["endpoints"], &query, None, None)
            .await?
            .list("endpoints")
    }

    /// `POST /v3/endpoints` (enabled).
    pub async fn create_endpoint(
        &self,
        service_id: &str,
        interface: Interface,
        url: &str,
        region_id: &str,
        owner: Option<&str>,
    ) -> Result<Endpoint> {
        let mut endpoint = Map::new();
        endpoint.insert("service_id".into(), service_id.into());
        endpoint.insert("interface".into(), interface.as_str().into());
        endpoint.insert("url".into(), url.into());
        endpoint.insert("region_id".into(), region_id.into());
        endpoint.insert("enabled".into(), true.into());
        if let Some(o) = owner {
            endpoint.insert(OWNER_ATTRIBUTE.into(), o.into());
        }
        let body = json!({ "endpoint": endpoint });
        self.call(Method::POST, &["endpoints"], &[], Some(&body), None)
            .await?
            .object("endpoint")
    }

    /// `PATCH /v3/endpoints/{id}` setting the URL.
    pub async fn update_endpoint(&self, id: &str, url: &str) -> Result<Endpoint> {
        let body = json!({ "endpoint": { "url": url } });
        self.call(Method::PATCH, &["endpoints", id], &[], Some(&body), None)
            .await?
            .object("endpoint")
    }

    /// `DELETE /v3/endpoints/{id}`; already gone is success.
    pub async fn delete_endpoint(&self, id: &str) -> Result<()> {
        self.delete(&["endpoints", id]).await
    }

    /// Makes sure region `id` exists: `GET /v3/regions/{id}`, and on 404 `POST /v3/regions`, where a 409
    /// (created meanwhile) is success. Returns whether this call created it.
    pub async fn ensure_region(&self, id: &str) -> Result<bool> {
        let found = self.call(Method::GET, &["regions", id], &[], None, None).await?;
        match found.status {
            StatusCode::NOT_FOUND => {}
            s if s.is_success() => return Ok(false),
            _ => return Err(found.into_error()),
        }
        let body = json!({ "region": { "id": id } });
        let created = self
            .call(Method::POST, &["regions"], &[], Some(&body), None)
            .await?;
        match created.status {
            StatusCode::CONFLICT => Ok(false),
            s if s.is_success() => {
                created.object::<Region>("region")?;
                Ok(true)
            }
            _ => Err(created.into_error()),
        }
    }

    /// The domain named `name` (`GET /v3/domains?name=`).
    pub async fn find_domain_by_name(&self, name: &str) -> Result<Option<Domain>> {
        let query = [("name", name)];
        let domains: Vec<Domain> = self
            .call(Method::GET, &["domains"], &query, None, None)
            .await?
            .list("domains")?;
        exactly_named(domains, name, "domain", |d| &d.name)
    }

    /// The project named `name` in domain `domain_id` (`GET /v3/projects?name=&domain_id=`).
    pub async fn find_project(&self, name: &str, domain_id: &str) -> Result<Option<Project>> {
        let query = [("name", name), ("domain_id", domain_id)];
        let projects: Vec<Project> = self
            .call(Method::GET, &["projects"], &query, None, None)
            .await?
            .list("projects")?;
        let projects = projects
            .into_iter()
            .filter(|p| p.domain_id == domain_id)
            .collect();
        exactly_named(projects, name, "project", |p| &p.name)
    }

    /// `POST /v3/projects` (enabled). On 409 the project is looked up again and returned: it was created by
    /// someone else meanwhile.
    pub async fn create_project(
        &self,
        name: &str,
        domain_id: &str,
        description: Option<&str>,
    ) -> Result<Project> {
        let mut project = Map::new();
        project.insert("name".into(), name.into());
        project.insert("domain_id".into(), domain_id.into());
        if let Some(d) = description {
            project.insert("description".into(), d.into());
        }
        project.insert("enabled".into(), true.into());
        let body = json!({ "project": project });
        let created = self
            .call(Method::POST, &["projects"], &[], Some(&body), None)
            .await?;
        if created.status != StatusCode::CONFLICT {
            return created.object("project");
        }
        let conflict = created.into_error();
        match self.find_project(name, domain_id).await? {
            Some(project) => Ok(project),
            // Taken by a name this client's exact match does not see (a case variant): report it.
            None => Err(conflict),
        }
    }

    /// The user named `name` in domain `domain_id` (`GET /v3/users?name=&domain_id=`).
    pub async fn find_user(&self, name: &str, domain_id: &str) -> Result<Option<User>> {
        let query = [("name", name), ("domain_id", domain_id)];
        let users: Vec<User> = self
            .call(Method::GET, &["users"], &query, None, None)
            .await?
            .list("users")?;
        let users = users.into_iter().filter(|u| u.domain_id == domain_id).collect();
        exactly_named(users, name, "user", |u| &u.name)
    }

    /// `POST /v3/users` (enabled). A 409 is returned as [`Error::Conflict`]: the caller decides whether to
    /// adopt the existing user (and then set its password with [`update_user_password`](Self::update_user_password)).
    pub async fn create_user(
        &self,
        name: &str,
        domain_id: &str,
        password: &str,
        default_project_id: Option<&str>,
        owner: Option<&str>,
    ) -> Result<User> {
        let mut user = Map::new();
        if let Some(o) = owner {
            user.insert(OWNER_ATTRIBUTE.into(), o.into());
        }
        user.insert("name".into(), name.into());
        user.insert("domain_id".into(), domain_id.into());
        user.insert("password".into(), password.into());
        user.insert("enabled".into(), true.into());
        if let Some(p) = default_project_id {
            user.insert("default_project_id".into(), p.into());
        }
        let body = json!({ "user": user });
        self.call(Method::POST, &["users"], &[], Some(&body), Some(password))
            .await?
            .object("user")
    }

    /// Sets a user's password as an administrator: `PATCH /v3/users/{id}` `{"user": {"password": ...}}`
    /// (not the self-service `POST /v3/users/{id}/password`, which needs the old password).
    pub async fn update_user_password(&self, id: &str, password: &str) -> Result<()> {
        let body = json!({ "user": { "password": password } });
        self.call(Method::PATCH, &["users", id], &[], Some(&body), Some(password))
            .await?
            .success()
    }

    /// Sets (or with `None` clears) a user's [`OWNER_ATTRIBUTE`]: `PATCH /v3/users/{id}`. Used when a
    /// pre-existing user is adopted, and when the adopting object lets it go.
    pub async fn set_user_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        let body = json!({ "user": { OWNER_ATTRIBUTE: owner } });
        self.call(Method::PATCH, &["users", id], &[], Some(&body), None)
            .await?
            .success()
    }

    /// Every effective role assignment of a user, through its groups and inheritance too
    /// (`GET /v3/role_assignments?user.id=&effective`).
    pub async fn user_role_assignments(&self, user_id: &str) -> Result<Vec<RoleAssignment>> {
        let query = [("user.id", user_id), ("effective", "")];
        self.call(Method::GET, &["role_assignments"], &query, None, None)
            .await?
            .list("role_assignments")
    }

    /// `DELETE /v3/users/{id}`; already gone is success.
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        self.delete(&["users", id]).await
    }

    /// The global role named `name` (`GET /v3/roles?name=`; domain-specific roles are not listed).
    pub async fn find_role(&self, name: &str) -> Result<Option<Role>> {
        let query = [("name", name)];
        let roles: Vec<Role> = self
            .call(Method::GET, &["roles"], &query, None, None)
            .await?
            .list("roles")?;
        exactly_named(roles, name, "role", |r| &r.name)
    }

    /// `PUT /v3/projects/{p}/users/{u}/roles/{r}`; granting an existing assignment again is success.
    pub async fn grant_project_role(&self, project_id: &str, user_id: &str, role_id: &str) -> Result<()> {
        let path = ["projects", project_id, "users", user_id, "roles", role_id];
        self.call(Method::PUT, &path, &[], None, None).await?.success()
    }

    /// `HEAD /v3/projects/{p}/users/{u}/roles/{r}`: whether the user has the role on the project directly.
    pub async fn has_project_role(&self, project_id: &str, user_id: &str, role_id: &str) -> Result<bool> {
        let path = ["projects", project_id, "users", user_id, "roles", role_id];
        let reply = self.call(Method::HEAD, &path, &[], None, None).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(reply.into_error()),
        }
    }

    /// The role named `name`, created (`POST /v3/roles`) when missing. Keystone's bootstrap creates `admin`,
    /// `member` and `reader` but not `service`. A create that races with another creator (409) is resolved
    /// by looking the role up again.
    pub async fn ensure_role(&self, name: &str) -> Result<Role> {
        if let Some(role) = self.find_role(name).await? {
            return Ok(role);
        }
        let body = json!({ "role": { "name": name } });
        match self
            .call(Method::POST, &["roles"], &[], Some(&body), None)
            .await?
            .object("role")
        {
            Err(Error::Conflict { .. }) => self.find_role(name).await?.ok_or_else(|| Error::Conflict {
                method: "POST".to_owned(),
                path: "/v3/roles".to_owned(),
                message: format!("role {name} exists but cannot be found by name"),
            }),
            other => other,
        }
    }

    /// `DELETE /v3/projects/{p}/users/{u}/roles/{r}`; an assignment that does not exist is success.
    pub async fn revoke_project_role(&self, project_id: &str, user_id: &str, role_id: &str) -> Result<()> {
        self.delete(&["projects", project_id, "users", user_id, "roles", role_id])
            .await
    }

    /// Whether `password` authenticates `username` (in the domain named `domain_name`): an unscoped
    /// `POST /v3/auth/tokens` as that user, without this client's token. `Ok(false)` on 401. Used to change a
    /// service user's password only when it differs, since Keystone revokes a user's tokens when its
    /// password is updated.
    pub async fn password_works(&self, username: &str, domain_name: &str, password: &str) -> Result<bool> {
        let url = self.url(&["auth", "tokens"], &[])?;
        let body = json!({
            "auth": { "identity": { "methods": ["password"], "password": { "user": {
                "name": username, "domain": { "name": domain_name }, "password": password
            } } } }
        });
        let reply = self
            .send(&Method::POST, url, None, Some(&body), &[password])
            .await?;
        match reply.status {
            StatusCode::UNAUTHORIZED => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(reply.into_error()),
        }
    }

    async fn delete(&self, segments: &[&str]) -> Result<()> {
        let reply = self.call(Method::DELETE, segments, &[], None, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        reply.success()
    }
}

/// The query pairs of the filters that are set.
fn filters<'a>(pairs: &[(&'a str, Option<&'a str>)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect()
}

/// The one item whose name is exactly `name`, if any.
fn exactly_named<T>(
    items: Vec<T>,
    name: &str,
    what: &'static str,
    name_of: fn(&T) -> &String,
) -> Result<Option<T>> {
    let mut matches: Vec<T> = items.into_iter().filter(|i| name_of(i) == name).collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        count => Err(Error::Ambiguous {
            what,
            name: name.to_owned(),
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_become_query_pairs() {
        assert_eq!(
            filters(&[("a", Some("1")), ("b", None), ("c", Some("3"))]),
            vec![("a", "1"), ("c", "3")]
        );
    }
}
