//! The dashboard: a page and its assets, all embedded in the binary, so the
//! browser never loads anything from another origin (the CSP says so too).

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Only this origin; no inline scripts or styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    with_headers("text/html; charset=utf-8", include_bytes!("../../assets/index.html"))
}

/// `GET /assets/{file}`: the page's scripts and styles.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body): (&'static str, &'static [u8]) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", include_bytes!("../../assets/app.js")),
        "checks.js" => ("text/javascript; charset=utf-8", include_bytes!("../../assets/checks.js")),
        "app.css" => ("text/css; charset=utf-8", include_bytes!("../../assets/app.css")),
        "uplot.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
        ),
        "uplot.css" => {
            ("text/css; charset=utf-8", include_bytes!("../../assets/vendor/uplot/uPlot.min.css"))
        }
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    with_headers(content_type, body)
}
