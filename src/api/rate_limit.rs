//! Rate limits: per client address (every HTTP request, before anything
//! else is done with it) and per session (`session`, `submit`, `back`,
//! `sessionUpdated` with a token, keyed by the session id). Both are
//! governor's GCRA: `n` requests per minute, in bursts of up to `n`;
//! 0 turns a limit off. Over the limit the answer is `RATE_LIMITED` with
//! `Retry-After` (HTTP header, and `extensions.retryAfterSeconds`).
//!
//! The client address is the TCP peer: behind a proxy every client shares
//! the proxy's address, so raise or turn off the per-address limit there
//! and limit at the proxy. Keys idle for a whole period are dropped by
//! [`RateLimits::forget_idle`], which the application calls once a minute,
//! so the state stays bounded by the clients of the last minute.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};

use super::error::ApiError;

/// The configured limits, in requests per minute; 0 is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_address_per_minute: u32,
    pub per_session_per_minute: u32,
}

/// The limiters' state, shared by the HTTP layer and the resolvers.
pub struct RateLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Keyed by a hash of the session id, so a long id sent by a client
    /// costs no more memory than a short one.
    per_session: Option<DefaultKeyedRateLimiter<u64>>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_address", &self.per_address.is_some())
            .field("per_session", &self.per_session.is_some())
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Arc<RateLimits> {
        Arc::new(RateLimits {
            per_address: limiter(config.per_address_per_minute),
            per_session: limiter(config.per_session_per_minute),
            hasher: foldhash::fast::RandomState::default(),
        })
    }

    /// Counts a request from `address`.
    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        match &self.per_address {
            None => Ok(()),
            Some(limiter) => verdict(limiter.check_key(&address)),
        }
    }

    /// Counts an operation on session `id`.
    pub fn check_session(&self, id: &str) -> Result<(), ApiError> {
        match &self.per_session {
            None => Ok(()),
            Some(limiter) => verdict(limiter.check_key(&self.hasher.hash_one(id))),
        }
    }

    /// Drops the state of keys that are back to a full burst.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_session {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn verdict(
    outcome: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
) -> Result<(), ApiError> {
    outcome.map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            // Whole seconds, rounded up: `Retry-After` has no fractions.
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    })
}

/// The per-address limit as an axum middleware. A request without a peer
/// address (a router served without connect info, as in embedders' tests)
/// is not counted.
pub async fn per_address(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(ip) = peer
        && let Err(err) = limits.check_address(ip)
    {
        return super::http::error_response(&err, super::negotiate::Media::Json);
    }
    next.run(request).await
}

/// The `Retry-After` value of a rate-limit error.
pub(crate) fn retry_after(err: &ApiError) -> Option<HeaderValue> {
    match err {
        ApiError::RateLimited { retry_after_secs } => Some(HeaderValue::from(*retry_after_secs)),
        _ => None,
    }
}
