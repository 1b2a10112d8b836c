//! Optional user identity: a JWT the app's backend signs (HS256 with a
//! shared secret, or RS256/ES256 with public keys from a JWKS file), sent
//! by the app as `X-User-Token`. With it configured, a session belongs to
//! the verified subject (`sub`): `startFlow` takes `user.id` from the token,
//! and the session's token works only together with a JWT of the same
//! subject (the stored token hash covers both, so a mismatch answers
//! exactly like a wrong session token).

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::JwkSet};
use serde::Deserialize;

use crate::codes::Code;

/// What `--jwt-*` configure.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub secret: Option<String>,
    pub jwks: Option<PathBuf>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway_secs: u64,
}

enum Keys {
    Secret(DecodingKey),
    Jwks(JwkSet),
}

/// Verifies user tokens; built once at startup.
pub struct Identity {
    keys: Keys,
    /// The checks per algorithm this server takes, built once.
    validations: Vec<(Algorithm, Validation)>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("this server binds sessions to users: send the user's JWT as `X-User-Token`")]
    Missing,
    #[error("the user token has expired")]
    Expired,
    #[error("the user token is not valid: {0}")]
    Invalid(String),
    #[error("`X-User-Token` names user `{subject}`, the request `{given}`")]
    UserMismatch { subject: String, given: String },
    #[error("user identity is misconfigured: {0}")]
    Config(String),
}

impl IdentityError {
    pub fn code(&self) -> Code {
        match self {
            IdentityError::Missing => Code::UserTokenRequired,
            IdentityError::Expired => Code::UserTokenExpired,
            IdentityError::Invalid(_) => Code::UserTokenInvalid,
            IdentityError::UserMismatch { .. } => Code::UserIdMismatch,
            IdentityError::Config(_) => Code::IdentityConfigInvalid,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Identity {
    /// `None` when no key is configured (identity off).
    pub fn from_config(config: &IdentityConfig) -> Result<Option<Identity>, IdentityError> {
        let bad = |m: &str| IdentityError::Config(m.to_owned());
        let keys = match (&config.secret, &config.jwks) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "give either --jwt-secret (HS256) or --jwt-jwks (RS256/ES256), not both",
                ));
            }
            (Some(secret), None) if secret.len() < 32 => {
                return Err(bad(
                    "--jwt-secret must be at least 32 bytes (HS256 needs a long random secret)",
                ));
            }
            (Some(secret), None) => Keys::Secret(
                DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| IdentityError::Config(format!("--jwt-secret: {e}")))?,
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    IdentityError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                    IdentityError::Config(format!("{} is not a JWKS: {e}", path.display()))
                })?;
                if set.keys.is_empty() {
                    return Err(IdentityError::Config(format!(
                        "{} holds no keys",
                        path.display()
                    )));
                }
                Keys::Jwks(set)
            }
        };
        let audience = config
            .audience
            .clone()
            .ok_or_else(|| bad("--jwt-audience is required with a JWT key"))?;
        let issuer = config
            .issuer
            .clone()
            .ok_or_else(|| bad("--jwt-issuer is required with a JWT key"))?;
        let algorithms: &[Algorithm] = match keys {
            Keys::Secret(_) => &[Algorithm::HS256],
            Keys::Jwks(_) => &[Algorithm::RS256, Algorithm::ES256],
        };
        let validations = algorithms
            .iter()
            .map(|&algorithm| {
                let mut v = Validation::new(algorithm);
                v.leeway = config.leeway_secs;
                v.set_audience(&[&audience]);
                v.set_issuer(&[&issuer]);
                v.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
                (algorithm, v)
            })
            .collect();
        Ok(Some(Identity { keys, validations }))
    }

    /// The verified subject of `jwt`.
    pub fn verify(&self, jwt: Option<&str>) -> Result<String, IdentityError> {
        let jwt = jwt.ok_or(IdentityError::Missing)?;
        let invalid = |e: jsonwebtoken::errors::Error| match e.kind() {
            ErrorKind::ExpiredSignature => IdentityError::Expired,
            kind => IdentityError::Invalid(format!("{kind:?}")),
        };
        let header = jsonwebtoken::decode_header(jwt).map_err(invalid)?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(IdentityError::Invalid(format!(
                "algorithm {:?}; this server takes {:?}",
                header.alg,
                self.validations.iter().map(|(a, _)| a).collect::<Vec<_>>()
            )));
        };
        let key = match &self.keys {
            Keys::Secret(key) => key.clone(),
            Keys::Jwks(set) => {
                let jwk = match &header.kid {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or_else(|| {
                    IdentityError::Invalid("no key of the JWKS has this `kid`".into())
                })?;
                DecodingKey::from_jwk(jwk).map_err(invalid)?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(jwt, &key, validation).map_err(invalid)?;
        if data.claims.sub.is_empty() {
            return Err(IdentityError::Invalid("empty `sub`".into()));
        }
        Ok(data.claims.sub)
    }
}

/// The secret a session's token hash is taken over: the token alone, or the
/// token and the subject it is bound to.
pub fn bind(token: &str, subject: Option<&str>) -> String {
    match subject {
        Some(sub) => format!("{token}\u{0}{sub}"),
        None => token.to_owned(),
    }
}
