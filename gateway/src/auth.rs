//! Bearer tokens → principal and roles: opaque tokens listed by their SHA-256 in a
//! tokens file, and JWTs (HS256, RS256, EdDSA) whose signature, `exp`, `aud` and `iss`
//! are checked by `jsonwebtoken`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use busbar::policy::Principal;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::Gateway;

/// Role that opens the admin API.
pub const ADMIN_ROLE: &str = "admin";

/// Longest bearer token read, in bytes; longer is `unauthorized` without hashing it.
const MAX_TOKEN: usize = 16 * 1024;

/// The tokens file: opaque tokens by hash, and the JWT issuer trusted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Opaque tokens.
    #[serde(default)]
    pub tokens: Vec<OpaqueToken>,
    /// JWTs accepted, if any.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
}

/// One opaque token: its SHA-256 (hex), never the token itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueToken {
    /// Lower-case hex SHA-256 of the token's bytes.
    pub sha256: String,
    /// Principal the token acts as.
    pub principal: String,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// How JWTs are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// `HS256`, `RS256` or `EdDSA`.
    pub algorithm: String,
    /// HS256: the shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256 / EdDSA: path of the PEM public key.
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Claim holding the roles (an array of strings); default `roles`.
    #[serde(default)]
    pub roles_claim: Option<String>,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
}

/// Everything that turns a bearer token into a principal.
pub struct Authenticator {
    opaque: HashMap<String, Principal>,
    jwt: Option<Jwt>,
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Authenticator {
    /// Accepts no token at all: every API call answers 401.
    pub fn none() -> Self {
        Self::from_file(TokensFile::default(), 0.0).expect("an empty tokens file is valid")
    }

    /// Reads a tokens file (JSON, see gateway/README.md); `rate` calls per second per
    /// principal (0: unlimited).
    pub fn load(path: &str, rate: f64) -> busbar::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| busbar::Error::InvalidArgument(format!("cannot read tokens file {path:?}: {e}")))?;
        let file: TokensFile = serde_json::from_str(&text)
            .map_err(|e| busbar::Error::InvalidArgument(format!("tokens file {path:?}: {e}")))?;
        Self::from_file(file, rate)
    }

    /// Builds from parsed settings.
    pub fn from_file(file: TokensFile, rate: f64) -> busbar::Result<Self> {
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(busbar::Error::InvalidArgument(format!(
                "rate limit {rate} is not a number ≥ 0"
            )));
        }
        let mut opaque = HashMap::new();
        for t in file.tokens {
            let hash = t.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(busbar::Error::InvalidArgument(format!(
                    "token of {:?}: sha256 must be 64 hex digits",
                    t.principal
                )));
            }
            opaque.insert(hash, Principal::new(&t.principal, t.roles));
        }
        let jwt = file.jwt.map(jwt_checker).transpose()?;
        Ok(Authenticator {
            opaque,
            jwt,
            rate,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The principal of `token`, or 401.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > MAX_TOKEN {
            return Err(ApiError::unauthorized("bearer token too long"));
        }
        if let Some(p) = self.opaque.get(&sha256_hex(token.as_bytes())) {
            return Ok(p.clone());
        }
        let Some(jwt) = &self.jwt else {
            return Err(ApiError::unauthorized("unknown bearer token"));
        };
        if token.matches('.').count() != 2 {
            return Err(ApiError::unauthorized("unknown bearer token"));
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &jwt.key,
            &jwt.validation,
        )
        .map_err(|e| ApiError::unauthorized(format!("JWT refused: {e}")))?;
        let claims = data.claims;
        let name = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::unauthorized("JWT has no sub"))?;
        let roles: Vec<&str> = match claims.get(&jwt.roles_claim) {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ApiError::unauthorized("JWT roles must be strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ApiError::unauthorized(
                    "JWT roles claim must be an array of strings",
                ))
            }
        };
        Ok(Principal::new(name, roles))
    }

    /// Takes one call from `principal`'s budget, or 429 `rate_limited`.
    pub fn spend(&self, principal: &str) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let burst = self.rate.max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(principal.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} calls per second for principal {principal:?}",
                    self.rate
                ),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

fn jwt_checker(s: JwtSettings) -> busbar::Result<Jwt> {
    let bad = |m: String| busbar::Error::InvalidArgument(format!("tokens file jwt: {m}"));
    let pem = || -> busbar::Result<Vec<u8>> {
        let path = s
            .public_key_file
            .as_deref()
            .ok_or_else(|| bad("public_key_file is required".into()))?;
        std::fs::read(path).map_err(|e| bad(format!("cannot read {path:?}: {e}")))
    };
    let (algorithm, key) = match s.algorithm.as_str() {
        "HS256" => {
            let secret = s
                .secret
                .as_deref()
                .ok_or_else(|| bad("HS256 needs secret".into()))?;
            if secret.len() < 32 {
                return Err(bad("the HS256 secret must hold at least 32 bytes".into()));
            }
            (Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes()))
        }
        "RS256" => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(&pem()?).map_err(|e| bad(e.to_string()))?,
        ),
        "EdDSA" => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_pem(&pem()?).map_err(|e| bad(e.to_string()))?,
        ),
        other => return Err(bad(format!("algorithm {other:?} is not HS256, RS256 or EdDSA"))),
    };
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[s.audience.as_str()]);
    validation.set_issuer(&[s.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
    validation.leeway = 30;
    Ok(Jwt {
        key,
        validation,
        roles_claim: s.roles_claim.unwrap_or_else(|| "roles".into()),
    })
}

/// Lower-case hex SHA-256 of `bytes` (how the tokens file names a token).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// 403 unless the caller holds the admin role.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.roles.iter().any(|r| r == ADMIN_ROLE) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "principal {:?} lacks the {ADMIN_ROLE:?} role the admin API needs",
                self.0.name
            )))
        }
    }
}

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        let token = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
                let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(ApiError::unauthorized("expected Authorization: Bearer <token>"));
                }
                token.trim().to_owned()
            }
            // Browsers cannot set headers on EventSource or WebSocket: GETs may carry the
            // token as `access_token` (RFC 6750 §2.3).
            None if parts.method == axum::http::Method::GET => {
                query_token(parts.uri.query()).ok_or_else(|| ApiError::unauthorized("no bearer token"))?
            }
            None => return Err(ApiError::unauthorized("no bearer token")),
        };
        let principal = gw.auth.principal(&token)?;
        gw.auth.spend(&principal.name)?;
        Ok(Caller(principal))
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| percent_decode(v))
        .filter(|t| !t.is_empty())
}

/// `%XX` and `+` decoding of a query value (invalid escapes are kept as they are).
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
