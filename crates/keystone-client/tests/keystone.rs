//! Request/response handling of the Keystone client against a fake Keystone serving recorded responses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::time::Duration;

use fake::{Fake, Issuer, Reply, Seen, token_reply};
use keystone_client::{Config, Error, Interface, KeystoneClient, Scope, ServicePatch, USER_AGENT};
use serde_json::{Value, json};

const PASSWORD: &str = "s3cr3t-Adm1n-pw";
const SERVICE_PASSWORD: &str = "Pl4cement-pw-9f3a";
const PLACEMENT_ID: &str = "4f3b0c4fd1be4b44b3a0c1e4a1a5b2c3";

fn client(fake: &Fake) -> KeystoneClient {
    let mut config = Config::new(fake.url(), "admin", PASSWORD);
    config.timeout = Duration::from_secs(5);
    KeystoneClient::new(config).unwrap()
}

fn assert_no_secret(text: &str, tokens: &[&str]) {
    assert!(!text.contains(PASSWORD), "admin password in: {text}");
    assert!(!text.contains(SERVICE_PASSWORD), "service password in: {text}");
    for t in tokens {
        assert!(!text.contains(t), "token {t} in: {text}");
    }
}

#[tokio::test]
async fn authenticates_with_system_scope_and_sends_the_token() {
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "services_list.json")).await;
    let keystone = client(&fake);

    let services = keystone.list_services(Some("placement")).await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let auth = &seen[0];
    assert!(auth.is_auth());
    assert_eq!(
        auth.json(),
        json!({"auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}
            },
            "scope": {"system": {"all": true}}
        }})
    );
    assert!(auth.headers.get("x-auth-token").is_none());
    let get = &seen[1];
    assert!(get.is("GET", "/v3/services"));
    assert_eq!(get.query, "type=placement");
    assert_eq!(get.token(), "tok-1");
    for request in &seen {
        assert_eq!(request.headers["accept"], "application/json");
        assert_eq!(request.headers["user-agent"], USER_AGENT);
        assert!(USER_AGENT.starts_with("keystone-operator/"));
    }

    assert_eq!(services.len(), 3);
    assert_eq!(services[1].id, PLACEMENT_ID);
    assert_eq!(services[1].service_type, "placement");
    assert_eq!(services[1].name.as_deref(), Some("placement"));
    assert_eq!(services[1].description.as_deref(), Some("Placement Service"));
    assert_eq!((services[2].name.as_deref(), services[2].enabled), (None, false));
}

#[tokio::test]
async fn the_token_is_cached_across_calls_and_clones() {
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "services_list.json")).await;
    let keystone = client(&fake);

    for _ in 0..5 {
        keystone.list_services(None).await.unwrap();
    }
    // Concurrent callers on clones wait for the one token instead of each authenticating.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let k = keystone.clone();
            tokio::spawn(async move { k.list_services(None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    // The recorded token was issued in 2025: it is kept for its one-hour lifetime, measured from now.
    assert_eq!(fake.auth_count(), 1);
    assert_eq!(keystone.token_issued_count(), 1);
    assert_eq!(fake.calls().len(), 15);
    assert!(fake.calls().iter().all(|s| s.token() == "tok-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_authenticate_once() {
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "services_list.json")).await;
    let keystone = client(&fake);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let k = keystone.clone();
            tokio::spawn(async move { k.list_services(None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.auth_count(), 1);
    assert_eq!(fake.calls().len(), 8);
}

#[tokio::test]
async fn a_token_near_expiry_is_replaced() {
    // 2 s lifetime: reused for half of it (1 s), then replaced.
    let n = Issuer::default();
    let fake = Fake::start(move |s| {
        if s.is_auth() {
            let t = n.issue();
            let token = t.headers[0].1.clone();
            token_reply(
                &token,
                Some("2025-03-14T10:00:00.000000Z"),
                "2025-03-14T10:00:02.000000Z",
            )
        } else {
            Reply::fixture(200, "services_list.json")
        }
    })
    .await;
    let keystone = client(&fake);

    keystone.list_services(None).await.unwrap();
    keystone.list_services(None).await.unwrap();
    assert_eq!(fake.auth_count(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    keystone.list_services(None).await.unwrap();

    assert_eq!(fake.auth_count(), 2);
    let tokens: Vec<_> = fake.calls().iter().map(|s| s.token().to_owned()).collect();
    assert_eq!(tokens, ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn without_issued_at_an_expired_token_is_not_reused() {
    let fake = Fake::start(|s| {
        if s.is_auth() {
            token_reply("tok", None, "2000-01-01T00:00:00.000000Z")
        } else {
            Reply::fixture(200, "services_list.json")
        }
    })
    .await;
    let keystone = client(&fake);
    keystone.list_services(None).await.unwrap();
    keystone.list_services(None).await.unwrap();
    assert_eq!(fake.auth_count(), 2);
}

#[tokio::test]
async fn a_401_reauthenticates_once_and_retries() {
    let fake = Fake::with_tokens(|s| {
        if s.token() == "tok-1" {
            Reply::fixture(401, "error_401.json")
        } else {
            Reply::fixture(200, "services_list.json")
        }
    })
    .await;
    let keystone = client(&fake);

    let services = keystone.list_services(None).await.unwrap();

    assert_eq!(services.len(), 3);
    assert_eq!(fake.auth_count(), 2);
    let tokens: Vec<_> = fake.calls().iter().map(|s| s.token().to_owned()).collect();
    assert_eq!(tokens, ["tok-1", "tok-2"]);
    // The fresh token is kept.
    keystone.list_services(None).await.unwrap();
    assert_eq!(fake.auth_count(), 2);
}

#[tokio::test]
async fn a_second_401_is_an_error_not_a_loop() {
    let fake = Fake::with_tokens(|_| Reply::fixture(401, "error_401.json")).await;
    let keystone = client(&fake);

    let err = keystone.delete_service(PLACEMENT_ID).await.unwrap_err();

    assert_eq!(err.category(), "Unauthorized");
    assert_eq!(err.status(), Some(401));
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("The request you have made requires authentication."),
        "{text}"
    );
    assert!(
        text.contains(&format!("DELETE /v3/services/{PLACEMENT_ID}")),
        "{text}"
    );
    assert_no_secret(&text, &["tok-1", "tok-2"]);
    assert_eq!(fake.auth_count(), 2);
    assert_eq!(fake.calls().len(), 2);
    // The rejected token is not reused by the next call.
    let _ = keystone.delete_service(PLACEMENT_ID).await;
    assert_eq!(fake.calls()[2].token(), "tok-3");
}

#[tokio::test]
async fn failed_authentication_is_unauthorized_with_a_hint_and_no_retry() {
    let fake = Fake::start(|_| Reply::fixture(401, "error_401.json")).await;
    let keystone = client(&fake);

    let err = keystone.list_services(None).await.unwrap_err();

    assert_eq!(err.category(), "Unauthorized");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("The request you have made requires authentication."),
        "{text}"
    );
    assert!(text.contains("'admin'") && text.contains("'Default'"), "{text}");
    assert!(text.contains("role on the system"), "{text}");
    assert_no_secret(&text, &[]);
    assert_no_secret(&format!("{err:?}"), &[]);
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(keystone.token_issued_count(), 0);
}

#[tokio::test]
async fn a_token_that_is_not_system_scoped_is_refused() {
    let fake = Fake::start(|s| {
        if s.is_auth() {
            let mut r = Reply::fixture(201, "token_project.json");
            r.headers.push(("x-subject-token", "tok-project".into()));
            r
        } else {
            Reply::fixture(200, "services_list.json")
        }
    })
    .await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert_eq!(err.category(), "Decode");
    assert!(err.to_string().contains("not system-scoped"), "{err}");
    assert!(fake.calls().is_empty());

    let fake = Fake::start(|_| Reply::fixture(201, "token_system.json")).await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert!(err.to_string().contains("X-Subject-Token"), "{err}");
}

#[tokio::test]
async fn a_403_is_forbidden_without_reauthentication() {
    let fake = Fake::with_tokens(|_| Reply::fixture(403, "error_403.json")).await;
    let err = client(&fake)
        .create_service("placement", "placement", None, true, None)
        .await
        .unwrap_err();
    assert_eq!((err.category(), err.status()), ("Forbidden", Some(403)));
    assert!(err.to_string().contains("identity:create_service"), "{err}");
    assert_eq!(fake.auth_count(), 1);
}

#[tokio::test]
async fn ensure_region_creates_on_404_and_takes_409_as_existing() {
    // Created by someone else between our GET and POST.
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "GET" => Reply::fixture(404, "error_404_region.json"),
        _ => Reply::fixture(409, "error_409_region.json"),
    })
    .await;
    assert!(!client(&fake).ensure_region("RegionTwo").await.unwrap());
    let calls = fake.calls();
    assert!(calls[0].is("GET", "/v3/regions/RegionTwo"));
    assert!(calls[1].is("POST", "/v3/regions"));
    assert_eq!(calls[1].json(), json!({"region": {"id": "RegionTwo"}}));

    // Missing: created.
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "GET" => Reply::fixture(404, "error_404_region.json"),
        _ => Reply::fixture(201, "region_created.json"),
    })
    .await;
    assert!(client(&fake).ensure_region("RegionTwo").await.unwrap());

    // Present: nothing written.
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "region_created.json")).await;
    assert!(!client(&fake).ensure_region("RegionTwo").await.unwrap());
    assert_eq!(fake.calls().len(), 1);

    // Any other failure is reported with Keystone's message.
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "GET" => Reply::fixture(404, "error_404_region.json"),
        _ => Reply::fixture(403, "error_403.json"),
    })
    .await;
    let err = client(&fake).ensure_region("RegionTwo").await.unwrap_err();
    assert_eq!(err.category(), "Forbidden");
}

#[tokio::test]
async fn path_segments_are_percent_encoded() {
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "region_created.json")).await;
    client(&fake).ensure_region("Region One/../x").await.unwrap();
    assert_eq!(fake.calls()[0].path, "/v3/regions/Region%20One%2F..%2Fx");
}

#[tokio::test]
async fn create_project_resolves_a_409_by_finding_the_project() {
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "POST" => Reply::fixture(409, "error_409_project.json"),
        _ => Reply::fixture(200, "projects_list.json"),
    })
    .await;
    let project = client(&fake)
        .create_project("service", "default", Some("Service project"))
        .await
        .unwrap();
    assert_eq!(project.id, "e5f9a1b3c5d74e9f8a0b2c4d6e8f0a1b");
    let calls = fake.calls();
    assert_eq!(
        calls[0].json(),
        json!({"project": {"name": "service", "domain_id": "default", "description": "Service project", "enabled": true}})
    );
    assert!(calls[1].is("GET", "/v3/projects"));
    assert_eq!(calls[1].query, "name=service&domain_id=default");

    // 409 but no project of exactly that name: the conflict is reported.
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "POST" => Reply::fixture(409, "error_409_project.json"),
        _ => Reply::body(200, r#"{"projects": [], "links": {}}"#.into()),
    })
    .await;
    let err = client(&fake)
        .create_project("service", "default", None)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "Conflict");
    assert!(
        err.to_string().contains("two projects with the same name"),
        "{err}"
    );
}

#[tokio::test]
async fn deleting_what_is_already_gone_succeeds() {
    let fake = Fake::with_tokens(|s| match s.path.as_str() {
        p if p.starts_with("/v3/services/") => Reply::fixture(404, "error_404_service.json"),
        p if p.starts_with("/v3/endpoints/") => Reply::empty(204),
        p if p.starts_with("/v3/users/gone") => Reply::body(404, r#"{"error": {"code": 404, "message": "Could not find user: gone.", "title": "Not Found"}}"#.into()),
        _ => Reply::body(500, r#"{"error": {"code": 500, "message": "An unexpected error prevented the server from fulfilling your request.", "title": "Internal Server Error"}}"#.into()),
    })
    .await;
    let keystone = client(&fake);
    keystone.delete_service(PLACEMENT_ID).await.unwrap();
    keystone
        .delete_endpoint("0c7e7c4f2a8d4b7e9a1f3c5d7e9b1a3c")
        .await
        .unwrap();
    keystone.delete_user("gone").await.unwrap();
    let err = keystone.delete_user("broken").await.unwrap_err();
    assert_eq!(
        (err.category(), err.status(), err.is_transient()),
        ("Api", Some(500), true)
    );
    assert!(err.to_string().contains("unexpected error prevented"), "{err}");
    assert!(fake.calls().iter().all(|s| s.method == "DELETE"));
}

#[tokio::test]
async fn a_truncated_list_is_an_error() {
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "services_truncated.json")).await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert_eq!(err.category(), "Truncated");
    assert!(matches!(err, Error::Truncated { .. }));
    assert!(err.to_string().contains("GET /v3/services"), "{err}");
}

#[tokio::test]
async fn errors_carry_keystones_message_and_never_a_secret() {
    // A server that echoes the password and the token back must not get them into an error.
    let fake = Fake::with_tokens(|s| match s.path.as_str() {
        "/v3/users" => Reply::body(
            400,
            json!({"error": {"code": 400, "title": "Bad Request",
                "message": format!("Invalid input for field 'password': '{SERVICE_PASSWORD}' from {}", s.token())}})
            .to_string(),
        ),
        p if p.starts_with("/v3/services/") => Reply::fixture(404, "error_404_service.json"),
        _ => Reply::body(502, format!("<html><body>Bad gateway {PASSWORD}</body></html>")),
    })
    .await;
    let keystone = client(&fake);

    let err = keystone
        .create_user("placement", "default", SERVICE_PASSWORD, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "Api");
    let text = err.to_string();
    assert!(
        text.contains("Invalid input for field 'password': '<redacted>' from <redacted>"),
        "{text}"
    );
    assert_no_secret(&text, &["tok-1"]);
    assert_no_secret(&format!("{err:?}"), &["tok-1"]);

    let patch = ServicePatch {
        enabled: Some(false),
        ..ServicePatch::default()
    };
    let err = keystone.update_service(PLACEMENT_ID, &patch).await.unwrap_err();
    assert_eq!((err.category(), err.status()), ("NotFound", Some(404)));
    assert!(
        err.to_string()
            .contains("Could not find service: 4f3b0c4fd1be4b44b3a0c1e4a1a5b2c3."),
        "{err}"
    );

    let err = keystone.list_endpoints(None, None, None).await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    // Not Keystone's error document (a proxy's page): its size only, never its content.
    assert!(
        err.to_string().contains("not a Keystone error document") && !err.to_string().contains("Bad gateway"),
        "{err}"
    );

    let mut config = Config::new(fake.url(), "admin", PASSWORD);
    config.ca_bundle_pem = Some(fake::fixture("ca.pem").into_bytes());
    let debug = format!("{config:?} {keystone:?}");
    assert!(
        debug.contains("<redacted>") && debug.contains("token_issued_count: 1"),
        "{debug}"
    );
    assert_no_secret(&debug, &["tok-1"]);
}

#[tokio::test]
async fn services_are_created_and_patched() {
    let fake = Fake::with_tokens(|_| Reply::fixture(201, "service_created.json")).await;
    let keystone = client(&fake);

    let service = keystone
        .create_service(
            "placement",
            "placement",
            Some("Placement Service"),
            true,
            Some("KeystoneService openstack/placement"),
        )
        .await
        .unwrap();
    assert_eq!(service.id, PLACEMENT_ID);
    let patch = ServicePatch {
        description: Some("Placement".into()),
        ..ServicePatch::default()
    };
    keystone.update_service(PLACEMENT_ID, &patch).await.unwrap();
    keystone
        .create_service("placement", "placement", None, false, None)
        .await
        .unwrap();

    let calls = fake.calls();
    assert!(calls[0].is("POST", "/v3/services"));
    assert_eq!(
        calls[0].json(),
        json!({"service": {"type": "placement", "name": "placement", "description": "Placement Service", "enabled": true,
                           "keystone_operator_owner": "KeystoneService openstack/placement"}})
    );
    assert!(calls[1].is("PATCH", &format!("/v3/services/{PLACEMENT_ID}")));
    assert_eq!(calls[1].json(), json!({"service": {"description": "Placement"}}));
    assert_eq!(
        calls[2].json(),
        json!({"service": {"type": "placement", "name": "placement", "enabled": false}})
    );
}

#[tokio::test]
async fn endpoints_are_listed_created_and_updated() {
    let fake = Fake::with_tokens(|s| match s.method.as_str() {
        "GET" => Reply::fixture(200, "endpoints_list.json"),
        "POST" => Reply::fixture(201, "endpoint_updated.json"),
        _ => Reply::fixture(200, "endpoint_updated.json"),
    })
    .await;
    let keystone = client(&fake);

    let endpoints = keystone
        .list_endpoints(Some(PLACEMENT_ID), Some(Interface::Internal), Some("RegionOne"))
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0].interface, Interface::Internal);
    assert_eq!(endpoints[0].region_id.as_deref(), Some("RegionOne"));
    assert_eq!(endpoints[0].url, "http://placement-internal.openstack.svc:8778");
    assert_eq!(
        (endpoints[1].region_id.as_deref(), endpoints[1].enabled),
        (None, false)
    );
    keystone
        .list_endpoints(None, Some(Interface::Public), None)
        .await
        .unwrap();

    keystone
        .create_endpoint(
            PLACEMENT_ID,
            Interface::Public,
            "https://placement.example.com",
            "RegionOne",
            None,
        )
        .await
        .unwrap();
    let updated = keystone.update_endpoint(
        "0c7e7c4f2a8d4b7e9a1f3c5d7e9b1a3c",
        "http://placement-internal.openstack.svc:8780",
    );
    assert_eq!(
        updated.await.unwrap().url,
        "http://placement-internal.openstack.svc:8780"
    );

    let calls = fake.calls();
    assert_eq!(
        calls[0].query,
        format!("service_id={PLACEMENT_ID}&interface=internal&region_id=RegionOne")
    );
    assert_eq!(calls[1].query, "interface=public");
    assert!(calls[2].is("POST", "/v3/endpoints"));
    assert_eq!(
        calls[2].json(),
        json!({"endpoint": {"service_id": PLACEMENT_ID, "interface": "public",
            "url": "https://placement.example.com", "region_id": "RegionOne", "enabled": true}})
    );
    assert!(calls[3].is("PATCH", "/v3/endpoints/0c7e7c4f2a8d4b7e9a1f3c5d7e9b1a3c"));
    assert_eq!(
        calls[3].json(),
        json!({"endpoint": {"url": "http://placement-internal.openstack.svc:8780"}})
    );
}

#[tokio::test]
async fn domains_users_and_roles() {
    let fake = Fake::with_tokens(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/v3/domains") => Reply::fixture(200, "domains_list.json"),
        ("GET", "/v3/users") => Reply::fixture(200, "users_list.json"),
        ("POST", "/v3/users") => Reply::fixture(201, "user_created.json"),
        ("PATCH", _) => Reply::fixture(200, "user_created.json"),
        ("GET", "/v3/roles") => Reply::fixture(200, "roles_list.json"),
        ("PUT", _) => Reply::empty(204),
        ("HEAD", p) if p.ends_with("/roles/yes") => Reply::empty(204),
        ("HEAD", _) => Reply::empty(404),
        _ => Reply::empty(500),
    })
    .await;
    let keystone = client(&fake);

    let domain = keystone.find_domain_by_name("Default").await.unwrap().unwrap();
    assert_eq!(domain.id, "default");
    assert_eq!(keystone.find_domain_by_name("default").await.unwrap(), None);

    // Keystone on MySQL matches names case-insensitively; only the exact name counts.
    let user = keystone.find_user("placement", "default").await.unwrap().unwrap();
    assert_eq!(user.id, "f0e1d2c3b4a54968a7b6c5d4e3f2a1b0");
    assert_eq!(
        user.default_project_id.as_deref(),
        Some("e5f9a1b3c5d74e9f8a0b2c4d6e8f0a1b")
    );

    let created = keystone
        .create_user(
            "placement",
            "default",
            SERVICE_PASSWORD,
            Some("e5f9a1b3c5d74e9f8a0b2c4d6e8f0a1b"),
            Some("KeystoneService openstack/placement"),
        )
        .await
        .unwrap();
    keystone
        .update_user_password(&created.id, "new-password")
        .await
        .unwrap();

    let role = keystone.find_role("service").await.unwrap().unwrap();
    assert_eq!((role.name.as_str(), role.domain_id.as_deref()), ("service", None));
    assert_eq!(keystone.find_role("Service").await.unwrap(), None);
    keystone.grant_project_role("p1", "u1", &role.id).await.unwrap();
    assert!(keystone.has_project_role("p1", "u1", "yes").await.unwrap());
    assert!(!keystone.has_project_role("p1", "u1", "no").await.unwrap());

    let calls = fake.calls();
    let by = |m: &str, p: &str| -> Seen { calls.iter().find(|s| s.is(m, p)).unwrap().clone() };
    assert_eq!(by("GET", "/v3/domains").query, "name=Default");
    assert_eq!(by("GET", "/v3/users").query, "name=placement&domain_id=default");
    assert_eq!(
        by("POST", "/v3/users").json(),
        json!({"user": {"name": "placement", "domain_id": "default", "password": SERVICE_PASSWORD,
            "enabled": true, "default_project_id": "e5f9a1b3c5d74e9f8a0b2c4d6e8f0a1b",
            "keystone_operator_owner": "KeystoneService openstack/placement"}})
    );
    assert_eq!(
        by("PATCH", "/v3/users/f0e1d2c3b4a54968a7b6c5d4e3f2a1b0").json(),
        json!({"user": {"password": "new-password"}})
    );
    assert_eq!(by("GET", "/v3/roles").query, "name=service");
    by(
        "PUT",
        "/v3/projects/p1/users/u1/roles/2d4f6a8c0e1b4d3f5a7c9e1b3d5f7a9c",
    );
    by("HEAD", "/v3/projects/p1/users/u1/roles/yes");
}

#[tokio::test]
async fn role_assignments_and_the_owner_mark() {
    let assignments = json!({"role_assignments": [
        {"role": {"id": "r1"}, "scope": {"project": {"id": "service"}}, "user": {"id": "u1"}},
        {"role": {"id": "r2"}, "scope": {"domain": {"id": "default"}}, "user": {"id": "u1"}},
        {"role": {"id": "r3"}, "scope": {"system": {"all": true}}, "user": {"id": "u1"}},
        {"role": {"id": "r4"}, "scope": {"OS-INHERIT:inherited_to": "projects"}, "user": {"id": "u1"}}
    ], "links": {"next": null}});
    let fake = Fake::with_tokens(move |s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/v3/role_assignments") => Reply::body(200, assignments.to_string()),
        ("PATCH", _) => Reply::fixture(200, "user_created.json"),
        _ => Reply::empty(500),
    })
    .await;
    let keystone = client(&fake);
    let got = keystone.user_role_assignments("u1").await.unwrap();
    assert_eq!(
        got.iter()
            .map(|a| (a.role_id.as_str(), a.scope.clone()))
            .collect::<Vec<_>>(),
        [
            ("r1", Scope::Project("service".into())),
            ("r2", Scope::Domain("default".into())),
            ("r3", Scope::System),
            (
                "r4",
                Scope::Other(r#"{"OS-INHERIT:inherited_to":"projects"}"#.into())
            ),
        ]
    );
    keystone
        .set_user_owner("u1", Some("KeystoneService openstack/placement"))
        .await
        .unwrap();
    keystone.set_user_owner("u1", None).await.unwrap();
    let calls = fake.calls();
    let listed = calls
        .iter()
        .find(|s| s.is("GET", "/v3/role_assignments"))
        .unwrap();
    assert_eq!(listed.query, "user.id=u1&effective=");
    let patches: Vec<Value> = calls
        .iter()
        .filter(|s| s.is("PATCH", "/v3/users/u1"))
        .map(Seen::json)
        .collect();
    assert_eq!(
        patches,
        [
            json!({"user": {"keystone_operator_owner": "KeystoneService openstack/placement"}}),
            json!({"user": {"keystone_operator_owner": null}})
        ]
    );
}

#[tokio::test]
async fn outages_and_timeouts_are_transport_errors() {
    // Nothing listens on a port just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = KeystoneClient::new(Config::new(url, "admin", PASSWORD))
        .unwrap()
        .list_services(None)
        .await;
    let err = err.unwrap_err();
    assert_eq!(err.category(), "Transport");
    assert!(err.is_transient());
    assert!(err.to_string().contains("POST /v3/auth/tokens"), "{err}");

    let fake =
        Fake::with_tokens(|_| Reply::fixture(200, "services_list.json").delayed(Duration::from_secs(3)))
            .await;
    let mut config = Config::new(fake.url(), "admin", PASSWORD);
    config.timeout = Duration::from_millis(300);
    let err = KeystoneClient::new(config)
        .unwrap()
        .list_services(None)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "Timeout");
    assert!(err.to_string().contains("GET /v3/services"), "{err}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let huge = format!(
        r#"{{"services": [], "pad": "{}"}}"#,
        "x".repeat(keystone_client::MAX_BODY)
    );
    let fake = Fake::with_tokens(move |_| Reply::body(200, huge.clone())).await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert_eq!(err.category(), "Decode");
    assert!(err.to_string().contains("larger than"), "{err}");
    // Just under the cap is read.
    let fits = format!(
        r#"{{"services": [], "links": {{}}, "pad": "{}"}}"#,
        "x".repeat(1 << 20)
    );
    let fake = Fake::with_tokens(move |_| Reply::body(200, fits.clone())).await;
    assert!(client(&fake).list_services(None).await.unwrap().is_empty());
}

/// Proxy variables in the environment are ignored: the request (with the admin password) goes straight to
/// Keystone. The environment is the process's, so the check runs in a child process of this test binary.
#[tokio::test]
async fn proxy_variables_are_ignored() {
    const CHILD: &str = "KEYSTONE_CLIENT_TEST_PROXY_CHILD";
    if let Ok(url) = std::env::var(CHILD) {
        // The child: HTTP_PROXY and ALL_PROXY point at a listener that would see the password.
        let services = KeystoneClient::new(Config::new(url, "admin", PASSWORD))
            .unwrap()
            .list_services(None)
            .await
            .unwrap();
        assert_eq!(services.len(), 3);
        return;
    }
    let fake = Fake::with_tokens(|_| Reply::fixture(200, "services_list.json")).await;
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "proxy_variables_are_ignored", "--nocapture"])
        .env(CHILD, fake.url())
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the client connected to the proxy"
    );
    assert!(
        fake.seen().iter().any(Seen::is_auth),
        "Keystone was not reached directly"
    );
}

#[tokio::test]
async fn a_body_that_is_not_keystones_is_a_decode_error() {
    let fake = Fake::with_tokens(|_| Reply::body(200, r#"{"services": [{"id": 1}]}"#.into())).await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert_eq!(err.category(), "Decode");
    let fake = Fake::with_tokens(|_| Reply::body(200, "<html>".into())).await;
    let err = client(&fake).list_services(None).await.unwrap_err();
    assert_eq!(err.category(), "Decode");
}

#[test]
fn the_ca_bundle_is_checked_when_the_client_is_built() {
    let with_ca = |pem: &[u8]| {
        let mut config = Config::new("https://keystone-internal.openstack.svc:5000", "admin", PASSWORD);
        config.ca_bundle_pem = Some(pem.to_vec());
        KeystoneClient::new(config)
    };

    let client = with_ca(fake::fixture("ca.pem").as_bytes()).unwrap();
    assert_eq!(
        client.base_url(),
        "https://keystone-internal.openstack.svc:5000/v3"
    );

    let cases: [(&[u8], &str); 3] = [
        (b"this is not a certificate", "no PEM certificate"),
        // Broken base64 inside the PEM block, and well-formed base64 that is not a DER certificate.
        (
            b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
            "certificate",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            "certificate",
        ),
    ];
    for (pem, want) in cases {
        let err = with_ca(pem).unwrap_err();
        assert_eq!(err.category(), "CaBundle", "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid CA bundle: ") && text.contains(want),
            "{text}"
        );
        assert_no_secret(&text, &[]);
    }
}

#[test]
fn the_configuration_is_checked() {
    for (url, user, password) in [
        ("keystone:5000", "admin", PASSWORD),
        ("http://k:5000", "", PASSWORD),
        ("http://k:5000", "admin", ""),
    ] {
        let err = KeystoneClient::new(Config::new(url, user, password)).unwrap_err();
        assert_eq!(err.category(), "Config", "{err}");
    }
    let mut config = Config::new("http://k:5000", "admin", PASSWORD);
    config.timeout = Duration::ZERO;
    assert_eq!(KeystoneClient::new(config).unwrap_err().category(), "Config");
}

#[tokio::test]
async fn ensure_role_creates_a_missing_role_and_resolves_a_race() {
    let created = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = created.clone();
    let fake = Fake::with_tokens(move |s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/v3/roles") if s.query == "name=service" && c.load(std::sync::atomic::Ordering::SeqCst) => {
            Reply::fixture(200, "roles_list.json")
        }
        ("GET", "/v3/roles") => Reply::body(200, json!({"roles": [], "links": {}}).to_string()),
        ("POST", "/v3/roles") if s.json()["role"]["name"] == "service" => {
            // Another creator won: Keystone says 409, the role is there now.
            c.store(true, std::sync::atomic::Ordering::SeqCst);
            Reply::body(
                409,
                json!({"error": {"code": 409, "title": "Conflict", "message": "Duplicate entry"}})
                    .to_string(),
            )
        }
        ("POST", "/v3/roles") => Reply::body(
            201,
            json!({"role": {"id": "r-new", "name": s.json()["role"]["name"], "domain_id": null}}).to_string(),
        ),
        _ => Reply::empty(500),
    })
    .await;
    let keystone = client(&fake);
    let role = keystone.ensure_role("service").await.unwrap();
    assert_eq!(role.id, "2d4f6a8c0e1b4d3f5a7c9e1b3d5f7a9c");
    let role = keystone.ensure_role("observer").await.unwrap();
    assert_eq!(role.id, "r-new");
}

#[tokio::test]
async fn revoking_a_role_and_checking_a_password() {
    let fake = Fake::with_tokens(|s| match (s.method.as_str(), s.path.as_str()) {
        ("DELETE", p) if p.ends_with("/roles/gone") => Reply::empty(404),
        ("DELETE", _) => Reply::empty(204),
        _ => Reply::empty(500),
    })
    .await;
    let keystone = client(&fake);
    keystone.revoke_project_role("p1", "u1", "r1").await.unwrap();
    keystone.revoke_project_role("p1", "u1", "gone").await.unwrap();
    assert!(
        fake.calls()
            .iter()
            .any(|s| s.is("DELETE", "/v3/projects/p1/users/u1/roles/r1"))
    );

    // The password check authenticates as the service user, unscoped, without the admin token.
    let checker = Fake::start(|s| {
        if s.is_auth() && s.json()["auth"]["identity"]["password"]["user"]["password"] == SERVICE_PASSWORD {
            Reply::body(
                201,
                json!({"token": {"expires_at": "2025-03-14T11:26:12.000000Z"}}).to_string(),
            )
        } else if s.is_auth() && s.json()["auth"]["identity"]["password"]["user"]["name"] == "admin" {
            Issuer::default().issue()
        } else {
            Reply::fixture(401, "error_401.json")
        }
    })
    .await;
    let keystone = client(&checker);
    assert!(
        keystone
            .password_works("placement", "Default", SERVICE_PASSWORD)
            .await
            .unwrap()
    );
    assert!(
        !keystone
            .password_works("placement", "Default", "wrong")
            .await
            .unwrap()
    );
    let seen = checker.seen();
    assert_eq!(seen.len(), 2, "no admin token is needed for the check");
    let auth = seen[0].json();
    assert_eq!(
        auth["auth"]["identity"]["password"]["user"]["domain"]["name"],
        "Default"
    );
    assert!(auth["auth"].get("scope").is_none(), "the check is unscoped");
    assert_eq!(seen[0].token(), "");
}
