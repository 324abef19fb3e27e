//! Rate limiting an HTTP service with `distkit::ratelimit::tower::RateLimitLayer`, against
//! the Redis named by `REDIS_URL` (default `redis://127.0.0.1:6379`; it only touches keys
//! under a prefix of its own).
//!
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p distkit --features tower --example tower`
//!
//! The service is a `tower::service_fn` of `http` requests and responses; the same layer goes
//! into an axum `Router::layer` or a hyper server's `ServiceBuilder` unchanged. Requests are
//! sent with `ServiceExt::oneshot`, so the example needs no listening socket.

use std::convert::Infallible;
use std::sync::Arc;

use distkit::DistkitRedisKey;
use distkit::ratelimit::tower::RateLimitLayer;
use distkit::ratelimit::{GcraLimiter, GcraOptions, GcraRate};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The Redis to use: `REDIS_URL`, else a server on this machine's default port.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other run uses, so the example never touches anybody's data.
fn unique_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("tower-example-{}-{millis}", std::process::id())
}

/// The application: greets the tenant.
async fn hello(request: Request<String>) -> std::result::Result<Response<String>, Infallible> {
    let tenant = request
        .headers()
        .get("x-tenant")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("stranger");
    Ok(Response::new(format!("hello, {tenant}")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let client = distkit::connect(&redis_url()).await?;
    let limiter = Arc::new(GcraLimiter::new(GcraOptions::new(
        DistkitRedisKey::try_from(unique_prefix())?,
        client,
    )));
    // 1 request per second per tenant on average, bursts of 3; the tenant from a header
    // (requests without one are not limited).
    let layer = RateLimitLayer::new(
        limiter,
        GcraRate::per_second(1, 3)?,
        |request: &Request<String>| {
            let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
            DistkitRedisKey::try_from(tenant).ok()
        },
    );
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(hello));

    for attempt in 1..=5 {
        let request = Request::builder()
            .uri("/hello")
            .header("x-tenant", "acme")
            .body(String::new())?;
        let response = service.clone().oneshot(request).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "request {attempt}: {} (RateLimit-Limit {}, RateLimit-Remaining {}, RateLimit-Reset {} s, Retry-After {} s) {:?}",
            response.status(),
            header("ratelimit-limit"),
            header("ratelimit-remaining"),
            header("ratelimit-reset"),
            header("retry-after"),
            response.body(),
        );
        if attempt <= 3 {
            assert_eq!(response.status(), StatusCode::OK, "within the burst");
        } else {
            assert_eq!(
                response.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "beyond the burst"
            );
        }
    }
    Ok(())
}
