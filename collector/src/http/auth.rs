//! Bearer-token authentication for the HTTP side.
//!
//! On a loopback address the API needs no token (only local users reach
//! it). On any other address the collector refuses to start without
//! `--http-token-file` unless `--http-insecure` is given on purpose. With a
//! token, every request needs `Authorization: Bearer <token>` or the
//! `curvemon_token` cookie; opening `/?token=<token>` once sets that cookie
//! (HttpOnly, SameSite=Strict), which is how a browser's EventSource, which
//! cannot send headers, authenticates. `--metrics-public` exempts
//! `/metrics` for a Prometheus without credentials.

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};

/// What the middleware needs.
#[derive(Clone)]
pub struct HttpAuth {
    /// The token; `None` disables the check.
    pub token: Option<String>,
    /// Serve `/metrics` without the token.
    pub metrics_public: bool,
}

const COOKIE: &str = "curvemon_token";

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}

fn query_token(request: &Request) -> Option<String> {
    request.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
}

/// The middleware: passes, sets the cookie from `?token=`, or answers 401.
pub async fn require(State(auth): State<HttpAuth>, request: Request, next: Next) -> Response {
    let Some(token) = &auth.token else { return next.run(request).await };
    if auth.metrics_public && request.uri().path() == "/metrics" {
        return next.run(request).await;
    }
    if let Some(given) = query_token(&request)
        && same(given.as_bytes(), token.as_bytes())
    {
        // Set the cookie and drop the token from the address bar.
        let mut response = Redirect::to(request.uri().path()).into_response();
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    match presented(&request) {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "this collector needs its API token: send `Authorization: Bearer <token>`, \
                 or open /?token=<token> once in a browser\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
