//! Access control: bearer tokens with roles, checked in one place.
//!
//! A token reads `c2m_<id>_<secret>`: the id is public (logs, `c2m token list`, revoking),
//! the secret is 32 random bytes shown once at creation. The store keeps only the
//! SHA-256 of the secret; a request's secret is hashed and compared with
//! [`subtle::ConstantTimeEq`], so timing reveals nothing about a stored hash. (A plain
//! hash is enough: the secret is random and long, so there is nothing to brute-force
//! that a slow hash would protect.)
//!
//! [`AuthLayer`] wraps the whole gRPC router. For each `c2m.v1` method it looks up the
//! roles allowed in [`allowed_roles`] (the one table; a method missing from it is
//! admin-only), authenticates the `authorization: Bearer ...` header, and passes the
//! [`Principal`] on in the request's extensions. Health and reflection stay open, so
//! probes and `grpcurl list` work without a token. Handlers that act for a factory ask the
//! principal for the factory they may act for ([`Principal::factory_scope`]), so a factory
//! token reaches only its own work orders whatever ids it sends.
//!
//! Verified tokens are cached for `--token-cache` (2 s by default) so a busy storefront
//! does not cost a store read per request; a revoked token therefore stops working within
//! that time on every replica.
//!
//! Under mutual TLS (`--tls-client-ca`) a factory token is half of the factory's
//! credentials; the other half is the client certificate the TLS handshake verified
//! (rustls has already checked it against the client CA; see [`crate::tls`]). The token
//! is accepted only on a connection whose certificate names the token's factory
//! ([`crate::tls::CertificateNames::names`]: a DNS subject alternative name, or the
//! subject CN when there is none). No certificate is UNAUTHENTICATED, like a missing
//! token: the caller has not proved who it is. A certificate of another factory is
//! PERMISSION_DENIED, like naming another factory: both credentials are genuine, they just
//! do not give this token to this connection. Storefront and admin tokens need no
//! certificate. The check sits here, in [`Authenticator::check`], so no handler has to
//! remember it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::body::BoxBody;
use tonic::Status;

use c2m_domain::{DomainError, Principal, Role};
use c2m_store::{NewToken, Store, StoredToken};

use crate::status::{edge_status, store_status, Edge};

/// Roles that may call a `c2m.v1` method (`Service/Method`). Admin may call everything.
pub fn allowed_roles(method: &str) -> &'static [Role] {
    use Role::*;
    match method {
        "PreorderService/PlacePreorder"
        | "PreorderService/GetPreorder"
        | "PreorderService/ListPreorders"
        | "PreorderService/CancelPreorder"
        | "PreorderService/PayBalance"
        | "CampaignService/GetCampaign"
        | "CampaignService/ListCampaigns"
        | "CampaignService/ListBatches"
        | "EventService/Subscribe" => &[Admin, Storefront],
        "FactoryService/Subscribe" | "FactoryService/Ack" | "FactoryService/Report" => {
            &[Admin, Factory]
        }
        _ => &[Admin],
    }
}

/// A freshly made token: what to show once, and what to store.
pub struct IssuedToken {
    pub token: String,
    pub stored: NewToken,
}

/// Makes a token for `role` (bound to `factory` for factory tokens).
pub fn issue(role: Role, factory: Option<&str>, label: &str) -> Result<IssuedToken, DomainError> {
    c2m_domain::access::check_binding(role, factory)?;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex(&id);
    let secret = hex(&secret);
    Ok(IssuedToken {
        token: format!("c2m_{id}_{secret}"),
        stored: NewToken {
            id,
            secret_hash: hash(&secret),
            role,
            factory: factory.map(|f| f.trim().to_owned()),
            label: label.to_owned(),
        },
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `token` (`c2m_<id>_<secret>`) is `stored`'s and not revoked.
pub fn is_active_token(stored: &StoredToken, token: &str) -> bool {
    parse(token.trim()).is_some_and(|(id, secret)| {
        id == stored.token.id
            && stored.revoked_at.is_none()
            && bool::from(
                hash(secret)
                    .as_bytes()
                    .ct_eq(stored.token.secret_hash.as_bytes()),
            )
    })
}

/// Splits `c2m_<id>_<secret>`; `None` for anything else.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("c2m_")?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (id.len() == 16 && secret.len() == 64 && hexish(id) && hexish(secret)).then_some((id, secret))
}

/// Token id -> the stored token (or `None`: unknown) and when it was read.
type TokenCache = HashMap<String, (Option<StoredToken>, Instant)>;

/// Checks tokens against the store, with a short cache.
pub struct Authenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: Mutex<TokenCache>,
    /// Mutual TLS is on: a factory token needs a client certificate naming its factory.
    factory_certificates: bool,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Authenticator {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
            factory_certificates: false,
        }
    }

    /// Factory tokens are accepted only with a verified client certificate naming their
    /// factory (the server has `--tls-client-ca`).
    pub fn with_factory_certificates(mut self, required: bool) -> Self {
        self.factory_certificates = required;
        self
    }

    /// The cache, locked. It is only a cache: after a panic elsewhere poisoned its lock it
    /// is still a map of tokens read from the store, so it is used as it is rather than
    /// failing every later call.
    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn lookup(&self, id: &str) -> Result<Option<StoredToken>, Status> {
        if let Some((t, at)) = self.cache().get(id) {
            if at.elapsed() < self.ttl {
                return Ok(t.clone());
            }
        }
        let t = self.store.token(id).await.map_err(store_status)?;
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            // Unknown ids are cached too (so a flood of bad tokens cannot hammer the
            // store); keep the map bounded.
            cache.clear();
        }
        cache.insert(id.to_owned(), (t.clone(), Instant::now()));
        Ok(t)
    }

    /// The principal for an `authorization` header value, or UNAUTHENTICATED.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, Status> {
        let Some(value) = header else {
            return Err(edge_status(Edge::TokenMissing));
        };
        // The scheme is case-insensitive (RFC 9110, 11.1): `BEARER` is `Bearer`.
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| edge_status(Edge::TokenMalformed))?;
        let bad = || edge_status(Edge::TokenInvalid);
        let (id, secret) = parse(token).ok_or_else(bad)?;
        let stored = self.lookup(id).await?.ok_or_else(bad)?;
        let given = hash(secret);
        if !bool::from(given.as_bytes().ct_eq(stored.token.secret_hash.as_bytes())) {
            return Err(bad());
        }
        if stored.revoked_at.is_some() {
            return Err(bad());
        }
        Ok(Principal {
            token_id: stored.token.id,
            role: stored.token.role,
            factory: stored.token.factory,
        })
    }

    /// Under mutual TLS, a factory principal stands only if `client_cert` (the DER of the
    /// certificate the handshake verified, if the client presented one) names its factory.
    fn check_factory_certificate(
        &self,
        principal: &Principal,
        client_cert: Option<&[u8]>,
    ) -> Result<(), Status> {
        if !self.factory_certificates || principal.role != Role::Factory {
            return Ok(());
        }
        let factory = principal.factory.as_deref().unwrap_or_default();
        let Some(der) = client_cert else {
            return Err(edge_status(Edge::CertificateRequired {
                factory: factory.to_owned(),
            }));
        };
        let names = crate::tls::CertificateNames::from_der(der).map_err(|e| {
            edge_status(Edge::CertificateUnreadable {
                error: e.to_string(),
            })
        })?;
        if names.names_factory(factory) {
            Ok(())
        } else {
            Err(edge_status(Edge::CertificateMismatch {
                names: names.to_string(),
                factory: factory.to_owned(),
            }))
        }
    }

    /// Authenticates and authorises a call to `path` (`/package.Service/Method`) that came
    /// on a connection with `client_cert` (the verified client certificate, DER); `None`
    /// for paths that need no token (health, reflection).
    pub async fn check(
        &self,
        path: &str,
        header: Option<&str>,
        client_cert: Option<&[u8]>,
    ) -> Result<Option<Principal>, Status> {
        let Some(method) = path.strip_prefix("/c2m.v1.") else {
            return Ok(None);
        };
        let principal = self.authenticate(header).await?;
        // The role first: a call the role may never make is refused as such, not sent off
        // to fix a certificate that would not help (the token is verified already, so the
        // order tells nothing more).
        if !allowed_roles(method).contains(&principal.role) {
            return Err(edge_status(Edge::RoleNotAllowed {
                role: principal.role.to_string(),
                method: method.to_owned(),
            }));
        }
        self.check_factory_certificate(&principal, client_cert)?;
        Ok(Some(principal))
    }
}

/// The principal of a request; absent when access control is off (`--no-auth`), which
/// acts as admin.
pub fn principal<T>(req: &tonic::Request<T>) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal {
            token_id: "no-auth".into(),
            role: Role::Admin,
            factory: None,
        })
}

/// What a server stream needs to end itself once the token that opened it is revoked:
/// put in the request's extensions beside its [`Principal`] (absent with `--no-auth`).
#[derive(Clone)]
pub struct TokenWatch {
    auth: Arc<Authenticator>,
    token_id: String,
}

impl TokenWatch {
    /// Whether the token still stands, read as every call's check reads it (cached for
    /// `--token-cache`). A store that cannot answer keeps the stream: a revocation is
    /// seen at the next look that succeeds.
    async fn stands(&self) -> bool {
        match self.auth.lookup(&self.token_id).await {
            Ok(Some(t)) => t.revoked_at.is_none(),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

/// A server stream (its messages arriving on `rx`) that ends with UNAUTHENTICATED
/// (`TOKEN_INVALID`) within about `--token-cache` of its token's revocation. A token is
/// checked when a call starts; without this, a stream opened before a revocation (a
/// leaked factory token's work order feed, a consumer's event stream) ran on for as long
/// as the client kept it, though the docs promise a revoked token stops working within
/// `--token-cache`.
pub(crate) fn until_revoked<T: prost::Message + Send + 'static>(
    watch: Option<TokenWatch>,
    rx: crate::services::feed::QueueRx<T>,
) -> Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>> {
    let Some(watch) = watch else {
        return Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    };
    let every = watch.auth.ttl.max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The check runs as the connection polls the stream, not in a task of its own: a task
    // forwarding from `rx` sat in its send while the client did not read, noticing neither
    // a revocation nor the end of `rx`, and outlived the connection. Polled here, a stream
    // its client does not read costs nothing but itself, and goes with its connection.
    Box::pin(futures::stream::unfold(
        Some((rx, watch, tick)),
        |state| async move {
            let (mut rx, watch, mut tick) = state?;
            loop {
                tokio::select! {
                    item = rx.recv() => return item.map(|item| (item, Some((rx, watch, tick)))),
                    _ = tick.tick() => {
                        if !watch.stands().await {
                            tracing::info!(token = %watch.token_id, "stream ended: token revoked");
                            return Some((Err(edge_status(Edge::TokenInvalid)), None));
                        }
                    }
                }
            }
        },
    ))
}

/// The tower layer that puts [`Authenticator::check`] in front of every call.
#[derive(Clone)]
pub struct AuthLayer(pub Option<Arc<Authenticator>>);

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<BoxBody>> for AuthService<S>
where
    S: tower_service::Service<http::Request<BoxBody>, Response = http::Response<BoxBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<BoxBody>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(auth) = self.auth.clone() else {
            return Box::pin(inner.call(req));
        };
        Box::pin(async move {
            let header = authorization(req.headers());
            // tonic puts the connection's details (what the handshake found) in every
            // request's extensions; the first certificate is the client's own (the rest is
            // its chain).
            let certs = req
                .extensions()
                .get::<crate::handshake::PeerInfo>()
                .and_then(|info| info.certs.clone());
            let client_cert = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
            match auth
                .check(req.uri().path(), header.as_deref(), client_cert)
                .await
            {
                Ok(Some(p)) => {
                    tracing::debug!(token = %p.token_id, role = %p.role, "authenticated");
                    req.extensions_mut().insert(TokenWatch {
                        auth: auth.clone(),
                        token_id: p.token_id.clone(),
                    });
                    req.extensions_mut().insert(p);
                    inner.call(req).await
                }
                Ok(None) => inner.call(req).await,
                Err(status) => {
                    tracing::info!(path = %req.uri().path(), code = ?status.code(), "refused");
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    /// A token with a line break inside is refused, not left out; the whitespace around a
    /// token (a file's last newline) is trimmed; no token sends nothing.
    #[test]
    fn a_bearer_refuses_a_token_a_header_cannot_carry() {
        assert_eq!(
            Bearer::new(Some("c2m_abc\ndef")).err(),
            Some(UnsendableToken)
        );
        assert_eq!(
            Bearer::new(Some("c2m_abc\u{e9}")).err(),
            Some(UnsendableToken)
        );
        let b = Bearer::new(Some(" c2m_abc\n")).unwrap();
        assert_eq!(b.0.unwrap().to_str().unwrap(), "Bearer c2m_abc");
        assert!(Bearer::new(None).unwrap().0.is_none());
    }

    use super::*;

    #[test]
    fn tokens_parse_and_hash() {
        let t = issue(Role::Factory, Some("cixi-1"), "line 1").unwrap();
        let (id, secret) = parse(&t.token).unwrap();
        assert_eq!(id, t.stored.id);
        assert_eq!(hash(secret), t.stored.secret_hash);
        assert_ne!(t.stored.secret_hash, secret, "only the hash is stored");
        assert!(parse("c2m_short_x").is_none());
        assert!(parse(&t.token.replace("c2m_", "xyz_")).is_none());
        assert!(issue(Role::Factory, None, "").is_err());
    }

    #[test]
    fn the_role_table_defaults_to_admin_only() {
        assert_eq!(
            allowed_roles("CatalogueService/ImportScenario"),
            &[Role::Admin]
        );
        assert_eq!(allowed_roles("SomethingNew/Method"), &[Role::Admin]);
        assert!(allowed_roles("PreorderService/PlacePreorder").contains(&Role::Storefront));
        assert!(!allowed_roles("PreorderService/PlacePreorder").contains(&Role::Factory));
        assert!(allowed_roles("FactoryService/Report").contains(&Role::Factory));
    }

    /// An authenticator on a store of its own (in the returned folder) that knows one
    /// storefront token, which it returns.
    async fn storefront_authenticator() -> (tempfile::TempDir, Authenticator, IssuedToken) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            c2m_store::sqlite::SqliteStore::open(&dir.path().join("c2m.db"))
                .await
                .unwrap(),
        );
        let t = issue(Role::Storefront, None, "shop").unwrap();
        store
            .create_token(&t.stored, chrono::Utc::now())
            .await
            .unwrap();
        (dir, Authenticator::new(store, Duration::from_secs(2)), t)
    }

    /// The scheme is read whatever its case; a header that is not `Bearer <token>`, two
    /// headers, and a value outside visible ASCII are each told apart from a missing one.
    /// Before, `BEARER` was malformed while `bearer` passed, a non-ASCII value was
    /// `TOKEN_MISSING`, and of two headers the first one counted.
    #[tokio::test]
    async fn the_authorization_header_is_read_as_sent() {
        let (_dir, auth, t) = storefront_authenticator().await;
        let reason = |r: Result<Principal, Status>| match r {
            Ok(_) => "OK".to_owned(),
            Err(s) => tonic_types::StatusExt::get_details_error_info(&s)
                .map(|i| i.reason)
                .unwrap_or_default(),
        };
        let headers = |values: &[&[u8]]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(
                    http::header::AUTHORIZATION,
                    http::HeaderValue::from_bytes(v).unwrap(),
                );
            }
            authorization(&h)
        };
        for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
            let h = headers(&[format!("{scheme} {}", t.token).as_bytes()]);
            assert_eq!(
                reason(auth.authenticate(h.as_deref()).await),
                "OK",
                "{scheme}"
            );
        }
        let ours = format!("Bearer {}", t.token);
        let cases: [(&[&[u8]], &str); 5] = [
            (&[], "TOKEN_MISSING"),
            (&[b"Basic dXNlcjpwYXNz"], "TOKEN_MALFORMED"),
            (&[b"Bearer c2m_\xc3\xa9t\xc3\xa9"], "TOKEN_INVALID"),
            (&[b"B\xc3\xa9arer x"], "TOKEN_MALFORMED"),
            (
                &[b"Bearer c2m_not_ours", ours.as_bytes()],
                "TOKEN_MALFORMED",
            ),
        ];
        for (values, want) in cases {
            let h = headers(values);
            assert_eq!(
                reason(auth.authenticate(h.as_deref()).await),
                want,
                "{values:?}"
            );
        }
    }

    /// A call that died at the handshake reads as what happened, each cause once, and a
    /// refused client certificate is told apart (and is lasting, for the factory client).
    #[test]
    fn a_transport_error_shows_its_causes_once_and_names_a_refused_certificate() {
        #[derive(Debug)]
        struct Cause(&'static str, Option<Arc<Cause>>);
        impl std::fmt::Display for Cause {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Cause {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|c| c as _)
            }
        }
        let failed = |chain: Cause| {
            let mut s = Status::unknown("transport error");
            s.set_source(Arc::new(chain));
            s
        };
        let alert = failed(Cause(
            "connection error",
            Some(Arc::new(Cause("received fatal alert: UnknownCA", None))),
        ));
        assert_eq!(
            status_line(&alert),
            "Unknown: transport error: connection error: received fatal alert: UnknownCA"
        );
        assert!(certificate_refused(&alert));
        let hint = client_hint(&alert, "https://h:1", true, std::path::Path::new("data"));
        assert!(hint.unwrap().contains("--tls-client-ca"));
        let doubled = failed(Cause(
            "invalid peer certificate: UnknownIssuer",
            Some(Arc::new(Cause("UnknownIssuer", None))),
        ));
        assert_eq!(
            status_line(&doubled),
            "Unknown: transport error: invalid peer certificate: UnknownIssuer"
        );
        assert!(!certificate_refused(&doubled));
    }

    /// A panic while the token cache was locked must not turn every later call into a
    /// panic (the independent client's defect 3).
    #[tokio::test]
    async fn a_poisoned_cache_does_not_fail_later_calls() {
        let (_dir, auth, t) = storefront_authenticator().await;
        std::thread::scope(|s| {
            let holder = s.spawn(|| {
                let _guard = auth.cache.lock().unwrap();
                panic!("a bug while the cache is locked");
            });
            assert!(holder.join().is_err());
        });
        assert!(auth.cache.is_poisoned());
        let header = format!("Bearer {}", t.token);
        for _ in 0..2 {
            let p = auth
                .authenticate(Some(&header))
                .await
                .expect("authenticated");
            assert_eq!(p.role, Role::Storefront);
        }
    }
}

/// The `authorization` header as `authenticate` reads it. A value with bytes outside
/// visible ASCII is read as it is (such a token is no token of ours: `TOKEN_INVALID`, or
/// `TOKEN_MALFORMED` without the scheme), not taken for a missing header; and two headers
/// are refused (`TOKEN_MALFORMED`, as an empty value is) rather than the first one
/// believed, whichever a proxy put first.
fn authorization(headers: &http::HeaderMap) -> Option<String> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(String::new());
    }
    Some(String::from_utf8_lossy(first.as_bytes()).into_owned())
}

/// The client side, for the example binaries and tests: sends `authorization: Bearer
/// <token>` on every call (nothing without a token).
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// Refuses a token that cannot be a header value: leaving it out would have the server
    /// answer `TOKEN_MISSING` about a token the user did give (a newline pasted into it).
    pub fn new(token: Option<&str>) -> Result<Bearer, UnsendableToken> {
        let Some(t) = token.map(str::trim) else {
            return Ok(Bearer(None));
        };
        if !t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(UnsendableToken);
        }
        let value = format!("Bearer {t}").parse().map_err(|_| UnsendableToken)?;
        Ok(Bearer(Some(value)))
    }
}

/// A token holding a character an HTTP header cannot carry (a newline or another control
/// character, or one outside ASCII): no c2m token does, so it was mistyped or mangled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the token cannot be sent: it holds a character a header cannot carry (a line break, \
     another control character, or one outside ASCII); check --token or C2M_TOKEN"
)]
pub struct UnsendableToken;

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

/// The token a client should send: the one given (`--token` / `C2M_TOKEN`), else the
/// first admin token a local server wrote to `DATA_DIR/admin.token`, else none.
pub fn client_token(given: Option<String>, data_dir: &std::path::Path) -> Option<String> {
    given.or_else(|| {
        std::fs::read_to_string(data_dir.join("admin.token"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    })
}

/// A refused call as a client shows it to a person: the code, the message, and the
/// reason from its `ErrorInfo` when there is one (`FailedPrecondition: batch cap ...
/// [BATCH_CAP]`), instead of tonic's debug form with the details as raw bytes.
pub fn status_line(s: &Status) -> String {
    use tonic_types::StatusExt;
    match s.get_error_details().error_info() {
        Some(i) => format!("{:?}: {} [{}]", s.code(), s.message(), i.reason),
        // Not the server's answer (a transport error: a TLS alert, a reset): its causes
        // say what happened, where tonic's message is only "transport error".
        None => format!("{:?}: {}", s.code(), causes(s)),
    }
}

/// A status's message and the causes beneath it, `message: cause: cause`, each said once:
/// rustls's and hyper's errors repeat their source in their own text ("invalid peer
/// certificate: UnknownIssuer: invalid peer certificate: UnknownIssuer").
pub fn causes(s: &Status) -> String {
    let sources = std::iter::successors(std::error::Error::source(s), |e| e.source());
    said_once(std::iter::once(s.message().to_owned()).chain(sources.map(|e| e.to_string())))
}

/// Texts joined with `: `, each left out when what is already said contains it.
fn said_once(texts: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for text in texts {
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// The TLS alerts a server sends when it refuses a client certificate: lasting, until the
/// certificate changes (a factory's client stops on them rather than retrying for ever).
const CERTIFICATE_ALERTS: [&str; 6] = [
    "UnknownCA",
    "CertificateExpired",
    "BadCertificate",
    "UnsupportedCertificate",
    "CertificateUnknown",
    "CertificateRevoked",
];

/// Whether a failed call is the server refusing this client's certificate at the
/// handshake (a fatal TLS alert naming it).
pub fn certificate_refused(s: &Status) -> bool {
    let text = causes(s);
    text.contains("received fatal alert")
        && CERTIFICATE_ALERTS.iter().any(|alert| text.contains(alert))
}

/// What a client could do about a refused call, when the refusal alone does not say:
/// no token was found to send (none given, no `admin.token` in the data directory), or
/// a plaintext address for what may be a TLS server (the call then dies without a
/// status of the server's).
pub fn client_hint(
    s: &Status,
    addr: &str,
    token_given: bool,
    data_dir: &std::path::Path,
) -> Option<String> {
    use tonic_types::StatusExt;
    let reason = s.get_error_details().error_info().map(|i| i.reason.clone());
    if reason.as_deref() == Some("TOKEN_MISSING") && !token_given {
        return Some(format!(
            "no token was sent: none given (--token or C2M_TOKEN), and no admin.token in {}",
            data_dir.display()
        ));
    }
    let dropped = matches!(
        s.code(),
        tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
    ) && reason.is_none();
    if dropped && certificate_refused(s) {
        return Some(
            "the server refused this client certificate: check that --tls-cert is signed by \
             the server's --tls-client-ca, valid now, and made for client authentication \
             (clientAuth)"
                .into(),
        );
    }
    if dropped && addr.starts_with("https://") && causes(s).contains("InvalidContentType") {
        return Some(format!(
            "the server at {addr} answered in plaintext: it serves without TLS, so use http://"
        ));
    }
    if dropped && addr.starts_with("http://") {
        return Some(format!(
            "the call ended without an answer from c2m; if the server at {addr} serves TLS \
             (--tls-cert), use https:// with --tls-ca"
        ));
    }
    None
}

/// What an example client prints when it fails (`error: …`, and a `hint: …` line when
/// [`client_hint`] has one): a refused call is an answer, shown as the status the server
/// chose; anything else with its chain of causes.
pub fn client_error(
    e: &anyhow::Error,
    addr: &str,
    token_given: bool,
    data_dir: &std::path::Path,
) -> String {
    match e.downcast_ref::<Status>() {
        Some(s) => match client_hint(s, addr, token_given, data_dir) {
            Some(hint) => format!("error: {}\nhint: {hint}", status_line(s)),
            None => format!("error: {}", status_line(s)),
        },
        None => {
            let out = format!("error: {}", said_once(e.chain().map(|c| c.to_string())));
            // A connection that failed before any call: its TLS alert is the same hint.
            let status = e.chain().find_map(|c| c.downcast_ref::<Status>());
            match status.and_then(|s| client_hint(s, addr, token_given, data_dir)) {
                Some(hint) => format!("{out}\nhint: {hint}"),
                None => out,
            }
        }
    }
}
