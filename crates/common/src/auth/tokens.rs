//! Signing, verifying and revoking tokens with the fleet's shared key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tonic::Status;

use super::access::Access;
use super::caller::Caller;
use super::claims::Claims;
use super::revocation;
use crate::cache::SharedCache;
use crate::config::{AccessKeys, AuthSettings};
use mall_types::time::unix_secs as unix_now;
use mall_types::{Role, TokenKind, UserId};

pub use crate::config::{DEFAULT_JWT_SECRET, MIN_SECRET_BYTES};
/// `iss` of every token.
pub const ISSUER: &str = "tiktokmall";
/// Allowed clock difference between instances when checking `exp`.
pub const CLOCK_LEEWAY_SECS: u64 = 5;

/// PKCS#8 v1 header of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Signs and verifies tokens and keeps the revocation list.
///
/// Two kinds, two keys, each accepted only with its own algorithm:
/// - access tokens (end users) are EdDSA, signed with `auth.signing_key`, which only auth
///   holds; every service verifies them with `auth.verify_key`;
/// - service tokens are HS256 with the fleet's shared `auth.jwt_secret`.
///
/// An HS256 token claiming to be an access token is refused, so a service holding the shared
/// secret cannot mint sessions.
pub struct Tokens {
    service_key: (EncodingKey, DecodingKey),
    /// `None` in every service but auth.
    access_signing: Option<EncodingKey>,
    access_verifying: DecodingKey,
    service_validation: Validation,
    access_validation: Validation,
    /// `access_validation` without the expiry check (Logout of an expired session).
    expired_access_validation: Validation,
    access_ttl: Duration,
    service_ttl: Duration,
    cache: SharedCache,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .field("signs_access_tokens", &self.access_signing.is_some())
            .finish_non_exhaustive()
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = CLOCK_LEEWAY_SECS;
    validation.set_issuer(&[ISSUER]);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss"]);
    validation.validate_aud = false;
    validation
}

impl Tokens {
    /// Service tokens with `settings.jwt_secret`, access tokens with `settings`' Ed25519 keys,
    /// revocations kept in `cache`. Keys the settings' validation would refuse verify nothing.
    pub fn new(settings: &AuthSettings, cache: SharedCache) -> Self {
        let secret = settings.jwt_secret.expose().as_bytes();
        let keys = settings.access_keys().unwrap_or_else(|e| {
            tracing::error!(error = %e, "access-token keys unusable: no access token verifies");
            AccessKeys {
                signing: None,
                verifying: [0; 32],
                development: false,
            }
        });
        let access_signing = keys.signing.map(|seed| {
            let mut der = ED25519_PKCS8_PREFIX.to_vec();
            der.extend_from_slice(&seed);
            EncodingKey::from_ed_der(&der)
        });
        let mut expired_access_validation = validation(Algorithm::EdDSA);
        expired_access_validation.validate_exp = false;
        Tokens {
            service_key: (
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            ),
            access_signing,
            access_verifying: DecodingKey::from_ed_der(&keys.verifying),
            service_validation: validation(Algorithm::HS256),
            access_validation: validation(Algorithm::EdDSA),
            expired_access_validation,
            access_ttl: settings.access_token_ttl,
            service_ttl: settings.service_token_ttl,
            cache,
        }
    }

    /// Lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// True when this service holds the access-token signing key (auth).
    pub fn signs_access_tokens(&self) -> bool {
        self.access_signing.is_some()
    }

    fn sign(&self, claims: &Claims) -> Result<String, Status> {
        let (algorithm, key) = if claims.typ == TokenKind::Access {
            let key = self.access_signing.as_ref().ok_or_else(|| {
                Status::failed_precondition(
                    "this service holds no access-token signing key (auth.signing_key)",
                )
            })?;
            (Algorithm::EdDSA, key)
        } else {
            (Algorithm::HS256, &self.service_key.0)
        };
        jsonwebtoken::encode(&Header::new(algorithm), claims, key)
            .map_err(|e| crate::error::internal(&e))
    }

    /// Issues an access token for a user session `sid`; returns it with its claims.
    pub fn issue_access(
        &self,
        user_id: UserId,
        username: &str,
        role: Role,
        sid: &str,
    ) -> Result<(String, Claims), Status> {
        let now = unix_now();
        let claims = Claims {
            sub: user_id.to_string(),
            name: username.to_string(),
            role,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(self.access_ttl.as_secs()).unwrap_or(900),
            sid: sid.to_string(),
            typ: TokenKind::Access,
            iss: ISSUER.into(),
            aud: String::new(),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Issues a short-lived service token for `service` calling `audience` (the only service
    /// that accepts it, see [`Tokens::admit`]); returns it with its expiry.
    pub fn issue_service(&self, service: &str, audience: &str) -> Result<(String, i64), Status> {
        let now = unix_now();
        let claims = Claims {
            sub: service.to_string(),
            name: service.to_string(),
            role: Role::Service,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(self.service_ttl.as_secs()).unwrap_or(60),
            sid: String::new(),
            typ: TokenKind::Service,
            iss: ISSUER.into(),
            aud: audience.to_string(),
        };
        Ok((self.sign(&claims)?, claims.exp))
    }

    /// Checks signature, algorithm (EdDSA for access tokens, HS256 for service tokens, nothing
    /// else), issuer, expiry, `nbf`, and that `iat` is not in the future (beyond
    /// [`CLOCK_LEEWAY_SECS`]); not revocation.
    pub fn decode(&self, token: &str) -> Result<Claims, Status> {
        self.decode_with(token, false)
    }

    /// Like [`Tokens::decode`] but accepts an expired access token: a correctly signed token
    /// whose session is to be ended (`Logout` after the access token expired).
    pub fn decode_expired_access(&self, token: &str) -> Result<Claims, Status> {
        let claims = self.decode_with(token, true)?;
        if claims.typ == TokenKind::Service {
            return Err(Self::not_an_end_user());
        }
        Ok(claims)
    }

    fn decode_with(&self, token: &str, allow_expired: bool) -> Result<Claims, Status> {
        let invalid = || Status::unauthenticated("invalid or expired token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let (key, validation, typ) = match header.alg {
            Algorithm::EdDSA if allow_expired => (
                &self.access_verifying,
                &self.expired_access_validation,
                TokenKind::Access,
            ),
            Algorithm::EdDSA => (
                &self.access_verifying,
                &self.access_validation,
                TokenKind::Access,
            ),
            Algorithm::HS256 => (
                &self.service_key.1,
                &self.service_validation,
                TokenKind::Service,
            ),
            _ => return Err(invalid()),
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|_| invalid())?
            .claims;
        let leeway = i64::try_from(CLOCK_LEEWAY_SECS).unwrap_or(5);
        if claims.typ != typ || claims.iat > unix_now() + leeway {
            return Err(invalid());
        }
        Ok(claims)
    }

    /// Whether `token` is a valid service token addressed to `audience` (signature, algorithm,
    /// expiry, type, audience); nothing is looked up, so admission can class a call by it.
    pub fn is_service_token_for(&self, token: &str, audience: &str) -> bool {
        self.decode(token)
            .is_ok_and(|claims| claims.typ == TokenKind::Service && claims.aud == audience)
    }

    /// Decodes `token` and checks it has not been revoked; returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, Status> {
        self.caller_from(self.decode(token)?).await
    }

    /// The caller `claims` (already decoded) stand for, checking an access token's revocation.
    async fn caller_from(&self, claims: Claims) -> Result<Caller, Status> {
        match claims.typ {
            TokenKind::Service => Ok(Caller::Service { name: claims.sub }),
            TokenKind::Access => {
                let invalid = || Status::unauthenticated("invalid or expired token");
                let user_id = claims
                    .sub
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| UserId::parse(id, "sub").ok())
                    .ok_or_else(invalid)?;
                // An access token speaks for a user or an admin, never a service.
                if claims.role == Role::Service {
                    return Err(invalid());
                }
                revocation::check(self.cache.as_ref(), &claims, user_id.get()).await?;
                Ok(Caller::User {
                    user_id,
                    username: claims.name.clone(),
                    role: claims.role,
                    claims: Box::new(claims),
                })
            }
        }
    }

    /// Like [`Tokens::verify`], for RPCs that act on the caller's own account: a missing token
    /// is `UNAUTHENTICATED`, a service token `PERMISSION_DENIED`.
    pub async fn verify_end_user(&self, token: Option<&str>) -> Result<(UserId, Claims), Status> {
        let token = token.ok_or_else(|| Status::unauthenticated("missing access token"))?;
        match self.verify(token).await? {
            Caller::User {
                user_id, claims, ..
            } => Ok((user_id, *claims)),
            Caller::Service { .. } => Err(Self::not_an_end_user()),
        }
    }

    fn not_an_end_user() -> Status {
        Status::permission_denied(
            "this RPC acts on an end user's own account; service tokens are not accepted",
        )
    }

    /// Decides whether a call with `bearer` may reach an RPC of `access` as `gate` describes it;
    /// returns the caller to attach (none for public RPCs).
    ///
    /// A service token must be addressed to `gate.audience` (else `UNAUTHENTICATED`: it was
    /// captured from a call to another service). The calling service is the token's subject, or
    /// with mutual TLS the name in the client certificate (the token's subject is then ignored);
    /// an internal RPC that does not name it is `PERMISSION_DENIED`.
    pub async fn admit(
        &self,
        access: Access,
        bearer: Option<&str>,
        gate: Gate<'_>,
    ) -> Result<Option<Caller>, Status> {
        if access == Access::Public {
            return Ok(None);
        }
        let token = bearer.ok_or_else(|| Status::unauthenticated("missing access token"))?;
        let claims = self.decode(token)?;
        let caller = if claims.typ == TokenKind::Service {
            Caller::Service {
                name: service_identity(&claims, &gate)?,
            }
        } else {
            self.caller_from(claims).await?
        };
        let allowed = match (&access, &caller) {
            (Access::Public, _) | (Access::User(_), Caller::User { .. }) => true,
            (Access::Internal(_) | Access::User(_), Caller::Service { name }) => {
                access.admits_service(name)
            }
            (Access::Internal(_), Caller::User { .. }) => {
                return Err(Status::permission_denied(format!(
                    "{} is internal: service credentials required",
                    gate.rpc
                )));
            }
            (Access::Admin, _) => caller.is_admin(),
        };
        if !allowed {
            return Err(Status::permission_denied(match &caller {
                Caller::Service { name }
                    if matches!(access, Access::Internal(_) | Access::User(_)) =>
                {
                    format!("service `{name}` may not call {}", gate.rpc)
                }
                _ => format!("{}: admin role required", gate.rpc),
            }));
        }
        Ok(Some(caller))
    }
}

/// What the answering server knows about a call besides its bearer token.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// The answering service (`payment`): service tokens must be addressed to it.
    pub audience: &'a str,
    /// The RPC called, for messages (`tiktokmall.payment.v1.PaymentService/Refund`).
    pub rpc: &'a str,
    /// How the caller's service identity is established.
    pub transport: Transport<'a>,
}

/// The connection a call came on, as far as identity goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// Plain TCP: the calling service is the subject of its (signed) service token.
    Plain,
    /// Mutual TLS: the calling service is the one named in its verified client certificate
    /// (`None` when the certificate names no service of the fleet).
    MutualTls {
        /// The service named by the client certificate.
        peer: Option<&'a str>,
    },
}

/// The calling service of a service token's `claims` arriving through `gate`.
fn service_identity(claims: &Claims, gate: &Gate<'_>) -> Result<String, Status> {
    if claims.aud != gate.audience {
        return Err(Status::unauthenticated(format!(
            "service token addressed to `{}`, not to `{}`",
            claims.aud, gate.audience
        )));
    }
    match gate.transport {
        Transport::Plain => Ok(claims.sub.clone()),
        Transport::MutualTls { peer: Some(peer) } => Ok(peer.to_string()),
        Transport::MutualTls { peer: None } => Err(Status::permission_denied(
            "the client certificate names no service of the fleet",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(id: u64) -> UserId {
        UserId::parse(id, "user_id").unwrap()
    }
    use mall_types::service::ServiceName;
    use std::sync::Arc;

    fn tokens() -> Tokens {
        let settings = crate::config::Settings::defaults("test").auth;
        let cache: SharedCache = Arc::new(crate::cache::MemoryCache::new("t:".into(), 100));
        futures::executor::block_on(revocation::publish_epoch(cache.as_ref(), "test")).unwrap();
        Tokens::new(&settings, cache)
    }

    #[test]
    fn only_the_holder_of_the_signing_key_mints_access_tokens() {
        let (private, public) = AccessKeys::generate();
        let cache: SharedCache = Arc::new(crate::cache::MemoryCache::new("k:".into(), 10));
        let mut settings = crate::config::Settings::defaults("test").auth;
        settings.verify_key = public.clone();
        let cart = Tokens::new(&settings, cache.clone());
        settings.signing_key = private.as_str().into();
        let auth = Tokens::new(&settings, cache);
        assert!(!cart.signs_access_tokens() && auth.signs_access_tokens());
        let err = cart
            .issue_access(uid(7), "alice", Role::User, "s")
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let (token, _) = auth.issue_access(uid(7), "alice", Role::User, "s").unwrap();
        assert_eq!(
            cart.decode(&token).unwrap().sub,
            "7",
            "cart verifies what auth signed"
        );
        // Service tokens still work both ways.
        let (service, _) = cart.issue_service("cart", "product").unwrap();
        assert_eq!(auth.decode(&service).unwrap().sub, "cart");
        // A signing key of another pair is a configuration error naming the key.
        settings.signing_key = AccessKeys::generate().0.as_str().into();
        let err = settings.access_keys().err().expect("mismatched pair");
        assert!(err.to_string().contains("auth.signing_key"), "{err}");
        settings.verify_key = "not base64".into();
        assert!(settings.access_keys().is_err());
    }

    #[tokio::test]
    async fn a_cache_without_revocation_epoch_fails_closed() {
        let t = tokens();
        let (token, _) = t.issue_access(uid(7), "alice", Role::User, "s1").unwrap();
        t.verify(&token).await.unwrap();
        revocation::withdraw_epoch(t.cache.as_ref()).await.unwrap();
        let err = t.verify(&token).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        // Service tokens carry no user state to revoke.
        let (service, _) = t.issue_service("checkout", "payment").unwrap();
        t.verify(&service).await.unwrap();
    }

    #[tokio::test]
    async fn future_iat_is_refused_and_expired_access_tokens_decode_only_for_logout() {
        let t = tokens();
        let (token, mut claims) = t.issue_access(uid(7), "alice", Role::User, "s1").unwrap();
        assert_eq!(t.decode_expired_access(&token).unwrap(), claims);
        claims.iat += 60;
        claims.nbf = claims.iat - 60;
        let future = t.sign(&claims).unwrap();
        assert_eq!(
            t.verify(&future).await.unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(t.decode_expired_access(&future).is_err());
        claims.iat -= 3600;
        claims.nbf = claims.iat;
        claims.exp = claims.iat + 60;
        let expired = t.sign(&claims).unwrap();
        assert!(t.decode(&expired).is_err());
        assert_eq!(t.decode_expired_access(&expired).unwrap().sid, "s1");
        let (service, _) = t.issue_service("checkout", "payment").unwrap();
        assert_eq!(
            t.decode_expired_access(&service).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[tokio::test]
    async fn access_tokens_round_trip_and_revoke() {
        let t = tokens();
        let (token, claims) = t.issue_access(uid(7), "alice", Role::User, "s1").unwrap();
        let caller = t.verify(&token).await.unwrap();
        assert_eq!(caller.user_id(), Some(uid(7)));
        assert!(caller.authorize(uid(7)).is_ok());
        assert_eq!(
            caller.authorize(uid(8)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        revocation::Revoked::Token(claims.jti.clone())
            .publish(t.cache.as_ref(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            t.verify(&token).await.unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[tokio::test]
    async fn forged_tokens_are_unauthenticated() {
        use base64::Engine as _;
        let t = tokens();
        let (token, _) = t.issue_access(uid(7), "alice", Role::User, "s1").unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        // Tampered payload (role escalated), original signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        );
        // alg=none, no signature.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        // Signed with another key pair.
        let other = {
            let mut s = crate::config::Settings::defaults("test").auth;
            (s.signing_key, s.verify_key) = {
                let (private, public) = AccessKeys::generate();
                (private.as_str().into(), public)
            };
            let cache = Arc::new(crate::cache::MemoryCache::new("o:".into(), 10));
            Tokens::new(&s, cache)
                .issue_access(uid(7), "alice", Role::Admin, "s1")
                .unwrap()
                .0
        };
        // An access token signed with the fleet's shared service secret, as a compromised
        // service could make one.
        let with_shared_secret = {
            let c: Claims = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
            let header = Header::new(Algorithm::HS256);
            jsonwebtoken::encode(&header, &c, &t.service_key.0).unwrap()
        };
        // Expired long ago.
        let expired = {
            let mut c: Claims = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
            c.iat -= 3600;
            c.nbf = c.iat;
            c.exp = c.iat + 60;
            t.sign(&c).unwrap()
        };
        for (what, bad) in [
            ("tampered", tampered),
            ("none", none),
            ("other key", other),
            ("shared secret", with_shared_secret),
            ("expired", expired),
            ("garbage", "x.y.z".into()),
        ] {
            let err = t.verify(&bad).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{what}");
        }
    }

    const PAYMENT_REFUND: Gate<'static> = Gate {
        audience: "payment",
        rpc: "payment/Refund",
        transport: Transport::Plain,
    };
    const FROM_CHECKOUT: Access = Access::Internal(&[ServiceName::Checkout]);

    fn code(r: Result<Option<Caller>, Status>) -> Option<tonic::Code> {
        r.err().map(|e| e.code())
    }

    #[tokio::test]
    async fn access_levels() {
        let t = tokens();
        let (user, _) = t.issue_access(uid(1), "u", Role::User, "s").unwrap();
        let (admin, _) = t.issue_access(uid(2), "a", Role::Admin, "s").unwrap();
        let (service, _) = t.issue_service("checkout", "payment").unwrap();
        let gate = PAYMENT_REFUND;
        assert_eq!(code(t.admit(Access::Public, None, gate).await), None);
        assert_eq!(
            code(t.admit(Access::User(&[]), None, gate).await),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(t.admit(Access::User(&[]), Some(&user), gate).await),
            None
        );
        assert_eq!(
            code(t.admit(FROM_CHECKOUT, Some(&user), gate).await),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(t.admit(FROM_CHECKOUT, Some(&admin), gate).await),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(t.admit(FROM_CHECKOUT, Some(&service), gate).await),
            None
        );
        assert_eq!(
            code(t.admit(Access::Admin, Some(&user), gate).await),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(t.admit(Access::Admin, Some(&service), gate).await),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(code(t.admit(Access::Admin, Some(&admin), gate).await), None);
    }

    #[tokio::test]
    async fn internal_rules_name_their_callers() {
        let t = tokens();
        let (cart, _) = t.issue_service("cart", "payment").unwrap();
        let err = t
            .admit(FROM_CHECKOUT, Some(&cart), PAYMENT_REFUND)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("`cart`"), "{}", err.message());
        assert!(
            err.message().contains("payment/Refund"),
            "{}",
            err.message()
        );
        let nobody = Access::Internal(&[]);
        let (checkout, _) = t.issue_service("checkout", "payment").unwrap();
        assert_eq!(
            code(t.admit(nobody, Some(&checkout), PAYMENT_REFUND).await),
            Some(tonic::Code::PermissionDenied)
        );
    }

    #[tokio::test]
    async fn service_tokens_are_accepted_only_by_their_audience() {
        let t = tokens();
        let (for_order, _) = t.issue_service("checkout", "order").unwrap();
        let err = t
            .admit(FROM_CHECKOUT, Some(&for_order), PAYMENT_REFUND)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("`order`"), "{}", err.message());
        // A token without any audience (as minted before audiences existed).
        let mut claims = t.decode(&for_order).unwrap();
        claims.aud = String::new();
        let no_aud = t.sign(&claims).unwrap();
        assert!(!no_aud.is_empty());
        assert_eq!(
            code(t.admit(FROM_CHECKOUT, Some(&no_aud), PAYMENT_REFUND).await),
            Some(tonic::Code::Unauthenticated)
        );
        // An access token has no audience and is accepted everywhere.
        let (user, _) = t.issue_access(uid(1), "u", Role::User, "s").unwrap();
        assert_eq!(
            code(
                t.admit(Access::User(&[]), Some(&user), PAYMENT_REFUND)
                    .await
            ),
            None
        );
    }

    #[tokio::test]
    async fn with_mutual_tls_the_certificate_names_the_caller() {
        let t = tokens();
        // A token claiming to be checkout, on a connection certified as cart.
        let (claims_checkout, _) = t.issue_service("checkout", "payment").unwrap();
        let mtls = |peer| Gate {
            transport: Transport::MutualTls { peer },
            ..PAYMENT_REFUND
        };
        let err = t
            .admit(FROM_CHECKOUT, Some(&claims_checkout), mtls(Some("cart")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("`cart`"), "{}", err.message());
        let (claims_cart, _) = t.issue_service("cart", "payment").unwrap();
        let caller = t
            .admit(FROM_CHECKOUT, Some(&claims_cart), mtls(Some("checkout")))
            .await
            .unwrap();
        assert_eq!(
            caller,
            Some(Caller::Service {
                name: "checkout".into()
            })
        );
        assert_eq!(
            code(t.admit(FROM_CHECKOUT, Some(&claims_cart), mtls(None)).await),
            Some(tonic::Code::PermissionDenied)
        );
    }
}
