//! `GET /`: a fleet table that refreshes itself from `/api/hosts`. Served
//! from the binary; it loads nothing from any other origin.

use axum::response::Html;

/// The page.
pub async fn index() -> Html<&'static str> {
    Html(include_str!("../../assets/index.html"))
}
