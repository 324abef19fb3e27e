//! A [tower](https://docs.rs/tower) layer that rate-limits HTTP requests with any limiter of
//! this module (feature `tower`).
//!
//! [`RateLimitLayer`] wraps a service of [`http::Request`]s and [`http::Response`]s. For
//! each request it takes a key from the request with a closure (a tenant, a user, an IP
//! address; `None` lets the request through unlimited) and charges one unit to it:
//!
//! - admitted: the request goes to the inner service, and its response gains the
//!   `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers;
//! - refused: the layer answers `429 Too Many Requests` itself, with those headers and
//!   `Retry-After`, and an empty body (`Default` of the response body type); the inner
//!   service is not called;
//! - the limiter failed (Redis unreachable, say): `503 Service Unavailable` by default (fail
//!   closed), or the request goes through unlimited with [`OnLimiterError::Admit`] (fail
//!   open). Either way the error is logged (`tracing`, warn).
//!
//! The header values are whole seconds, rounded up: `RateLimit-Limit` is
//! [`Decision::limit`] (a GCRA rate's burst, a sliding window's limit),
//! `RateLimit-Remaining` [`Decision::remaining`], `RateLimit-Reset`
//! [`Decision::reset_after`] and `Retry-After` [`Decision::retry_after`] (the field names of
//! the IETF `RateLimit` header fields draft, and RFC 9110's `Retry-After`).
//!
//! ```no_run
//! # use distkit_ratelimit as distkit; // the facade crate, as users name it
//! use std::sync::Arc;
//! use distkit::ratelimit::tower::RateLimitLayer;
//! use distkit::ratelimit::{GcraLimiter, GcraOptions, GcraRate};
//! use distkit::DistkitRedisKey;
//!
//! # async fn example() -> Result<(), distkit::DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let limiter = Arc::new(GcraLimiter::new(GcraOptions::new(
//!     DistkitRedisKey::try_from("api")?,
//!     client,
//! )));
//! // 10 requests per second per tenant, bursts of 20; the tenant from a header.
//! let layer = RateLimitLayer::new(limiter, GcraRate::per_second(10, 20)?, |request: &http::Request<String>| {
//!     let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
//!     DistkitRedisKey::try_from(tenant).ok()
//! });
//! // `layer` goes into a tower `ServiceBuilder` or an axum `Router::layer`.
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use distkit_core::DistkitRedisKey;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{Decision, Limiter};

/// `RateLimit-Limit`: [`Decision::limit`].
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: [`Decision::remaining`].
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: [`Decision::reset_after`], in whole seconds rounded up.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What the layer does with a request when the limiter fails (a Redis error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnLimiterError {
    /// Fail closed: answer `503 Service Unavailable` (the default).
    #[default]
    Unavailable,
    /// Fail open: let the request through, unlimited.
    Admit,
}

/// A [`Layer`] that rate-limits requests with `limiter`; see the [module docs](self).
pub struct RateLimitLayer<L: Limiter, K> {
    limiter: Arc<L>,
    params: Arc<L::Params>,
    key: Arc<K>,
    cost: u64,
    on_error: OnLimiterError,
}

impl<L: Limiter, K> RateLimitLayer<L, K> {
    /// A layer charging one unit per request to the key `key` takes from it, at `params`
    /// (a [`GcraRate`](super::GcraRate), or a sliding window's limit).
    pub fn new(limiter: Arc<L>, params: L::Params, key: K) -> Self {
        Self {
            limiter,
            params: Arc::new(params),
            key: Arc::new(key),
            cost: 1,
            on_error: OnLimiterError::default(),
        }
    }

    /// Charges `cost` units per request instead of 1 (a cost the limiter refuses as
    /// invalid, 0 or above the burst or limit, makes every request fail as the limiter
    /// failing does).
    #[must_use]
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// What to do when the limiter fails: [`OnLimiterError::Unavailable`] by default.
    #[must_use]
    pub fn on_limiter_error(mut self, on_error: OnLimiterError) -> Self {
        self.on_error = on_error;
        self
    }
}

impl<L: Limiter, K> Clone for RateLimitLayer<L, K> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            params: Arc::clone(&self.params),
            key: Arc::clone(&self.key),
            cost: self.cost,
            on_error: self.on_error,
        }
    }
}

impl<L: Limiter, K> fmt::Debug for RateLimitLayer<L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("cost", &self.cost)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl<S, L: Limiter, K> Layer<S> for RateLimitLayer<L, K> {
    type Service = RateLimit<S, L, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around `S`.
///
/// # Cancel safety
///
/// The future of a call (e.g. dropped when the client disconnects) is the limiter's `check`
/// followed by the inner service's call: dropped during the `check`, it is as the limiter's
/// `check` says (once its script was handed to the client, the cost may be charged with the
/// request never served); dropped afterwards, the cost was charged and the inner call is
/// dropped with it.
pub struct RateLimit<S, L: Limiter, K> {
    inner: S,
    layer: RateLimitLayer<L, K>,
}

impl<S: Clone, L: Limiter, K> Clone for RateLimit<S, L, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, L: Limiter, K> fmt::Debug for RateLimit<S, L, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, L, K, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, L, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    L: Limiter,
    K: Fn(&Request<ReqBody>) -> Option<DistkitRedisKey> + Send + Sync + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The inner service that was polled ready goes with this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let key = (layer.key)(&request);
        Box::pin(async move {
            let Some(key) = key else {
                return inner.call(request).await;
            };
            match layer.limiter.check(&key, &layer.params, layer.cost).await {
                Ok(decision) if decision.is_allowed() => {
                    let mut response = inner.call(request).await?;
                    set_headers(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => Ok(too_many_requests(&decision)),
                Err(error) => {
                    tracing::warn!(target: "distkit::ratelimit", %error, %key, "the rate limiter failed; the request is {}", match layer.on_error {
                        OnLimiterError::Admit => "let through",
                        _ => "refused with 503",
                    });
                    match layer.on_error {
                        OnLimiterError::Admit => inner.call(request).await,
                        OnLimiterError::Unavailable => {
                            let mut response = Response::new(ResBody::default());
                            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            Ok(response)
                        }
                    }
                }
            }
        })
    }
}

/// Whole seconds, rounded up.
fn seconds(duration: Duration) -> HeaderValue {
    let whole = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    HeaderValue::from(whole)
}

/// Sets the `RateLimit-*` headers of `decision` (and `Retry-After` for a refusal).
pub fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit()));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining()));
    headers.insert(RATELIMIT_RESET, seconds(decision.reset_after()));
    if let Some(retry_after) = decision.retry_after() {
        headers.insert(RETRY_AFTER, seconds(retry_after));
    }
}

/// The `429 Too Many Requests` answer to a refused request.
fn too_many_requests<B: Default>(decision: &Decision) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    set_headers(response.headers_mut(), decision);
    response
}
