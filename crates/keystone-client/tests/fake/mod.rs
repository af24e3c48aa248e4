//! A fake Keystone on 127.0.0.1: records every request and answers what the test's handler says, mostly
//! recorded Keystone bodies from `tests/fixtures/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    pub fn is_auth(&self) -> bool {
        self.is("POST", "/v3/auth/tokens")
    }

    pub fn token(&self) -> &str {
        self.headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// What the fake answers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    /// A fixture body with a status.
    pub fn fixture(status: u16, name: &str) -> Reply {
        Reply::body(status, fixture(name))
    }

    pub fn body(status: u16, body: String) -> Reply {
        Reply {
            status,
            headers: vec![],
            body,
            delay: Duration::ZERO,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply::body(status, String::new())
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The recorded system-scoped token response, with `token` in `X-Subject-Token` and the given times
/// (`issued_at` removed when `None`).
pub fn token_reply(token: &str, issued_at: Option<&str>, expires_at: &str) -> Reply {
    let mut body: Value = serde_json::from_str(&fixture("token_system.json")).unwrap();
    let t = body["token"].as_object_mut().unwrap();
    match issued_at {
        Some(i) => t.insert("issued_at".into(), i.into()),
        None => t.remove("issued_at"),
    };
    t.insert("expires_at".into(), expires_at.into());
    let mut reply = Reply::body(201, body.to_string());
    reply.headers.push(("x-subject-token", token.to_owned()));
    reply
}

/// Hands out `tok-1`, `tok-2`, ... with the recorded one-hour lifetime (issued in 2025: the cache must go by
/// the lifetime, not by the local clock).
#[derive(Clone, Default)]
pub struct Issuer(Arc<AtomicUsize>);

impl Issuer {
    pub fn issue(&self) -> Reply {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        token_reply(
            &format!("tok-{n}"),
            Some("2025-03-14T10:26:12.000000Z"),
            "2025-03-14T11:26:12.000000Z",
        )
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
struct St {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = St {
            handler: Arc::new(handler),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(handle).with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, seen }
    }

    /// A fake that issues tokens and answers every other request with `handler`.
    pub async fn with_tokens(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let issuer = Issuer::default();
        Fake::start(move |s| if s.is_auth() { issuer.issue() } else { handler(s) }).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests other than authentication.
    pub fn calls(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| !s.is_auth()).collect()
    }

    pub fn auth_count(&self) -> usize {
        self.seen().iter().filter(|s| s.is_auth()).count()
    }
}

async fn handle(State(st): State<St>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    st.seen.lock().unwrap().push(seen.clone());
    let reply = (st.handler)(&seen);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    if !reply.body.is_empty() {
        response = response.header("content-type", "application/json");
    }
    for (k, v) in reply.headers {
        response = response.header(k, v);
    }
    response.body(Body::from(reply.body)).unwrap()
}
