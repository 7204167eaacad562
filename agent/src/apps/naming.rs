//! From what applications send to names Prometheus accepts.
//!
//! StatsD names are dotted paths with any characters (`shop.api.GET /users`);
//! Prometheus names are `[a-zA-Z_:][a-zA-Z0-9_:]*`. Every character outside
//! that set becomes `_`, runs of `_` from it are kept as they are, and a
//! leading digit gets a `_` before it, as statsd_exporter does. Label names
//! drop `:` too. What the collector adds itself (`host`, `app`,
//! `instance`) is renamed `exported_host` and so on, as Prometheus renames
//! a target's own labels.

use curvemon_protocol::validate::{self, MAX_LABEL_VALUE_LEN, MAX_NAME_LEN};

/// `text` as a Prometheus metric name; `None` when nothing is left.
pub fn metric_name(text: &str) -> Option<String> {
    sanitize(text, true, MAX_NAME_LEN - 8)
}

/// `text` as a Prometheus label name; `None` when nothing is left.
pub fn label_name(text: &str) -> Option<String> {
    let name = sanitize(text, false, 100)?;
    let name = if name.starts_with("__") { format!("x{name}") } else { name };
    Some(match name.as_str() {
        "host" | "app" | "instance" | "job" => format!("exported_{name}"),
        _ => name,
    })
}

/// A label value: any text, cut at the collector's limit (on a character
/// boundary).
pub fn label_value(text: &str) -> String {
    let mut value = text.to_string();
    truncate(&mut value, MAX_LABEL_VALUE_LEN);
    value
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn sanitize(text: &str, colon: bool, max: usize) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 1);
    for (i, c) in text.trim().chars().enumerate() {
        let ok = c.is_ascii_alphabetic()
            || c == '_'
            || (colon && c == ':')
            || (i > 0 && c.is_ascii_digit());
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
            out.push(c);
        } else {
            out.push(if ok { c } else { '_' });
        }
        if out.len() >= max {
            break;
        }
    }
    (!out.is_empty() && out.bytes().any(|b| b != b'_')).then_some(out)
}

/// An application or instance name: control characters become `_`, and
/// it is cut at `max` bytes; `None` when nothing printable is left.
pub fn display_name(text: &str, max: usize) -> Option<String> {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.trim().chars().map(|c| if c.is_control() { '_' } else { c }) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    (!out.trim_matches('_').is_empty()).then_some(out)
}

/// The name a series of `kind` is exported under: counters end in
/// `_total`, timers (converted from milliseconds) in `_seconds`.
pub fn exported(base: &str, suffix: &str) -> String {
    if suffix.is_empty() || base.ends_with(suffix) {
        base.to_string()
    } else {
        format!("{base}{suffix}")
    }
}

/// Splits a StatsD name into application and metric: the `app` tag wins
/// (and a name that starts with the application and a dot loses that
/// prefix); otherwise the first dot-separated component is the application
/// (`shop.checkout.time` → `shop`, `checkout.time`); a name without a dot
/// and without a tag belongs to `default_app`.
pub fn split<'a>(
    name: &'a str,
    app_tag: Option<&'a str>,
    default_app: &'a str,
) -> (&'a str, &'a str) {
    if let Some(app) = app_tag.filter(|a| !a.is_empty()) {
        let rest = name.strip_prefix(app).and_then(|r| r.strip_prefix('.'));
        return (app, rest.filter(|r| !r.is_empty()).unwrap_or(name));
    }
    match name.split_once('.') {
        Some((app, rest)) if !app.is_empty() && !rest.is_empty() => (app, rest),
        _ => (default_app, name),
    }
}

/// Whether the collector would take this name (syntax and reserved
/// prefixes); the agent checks before declaring, so a bad name is counted
/// here rather than refused there.
pub fn acceptable(name: &str) -> bool {
    validate::is_metric_name(name)
        && !validate::RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(metric_name("checkout.time").as_deref(), Some("checkout_time"));
        assert_eq!(metric_name("GET /users").as_deref(), Some("GET__users"));
        assert_eq!(metric_name("5xx").as_deref(), Some("_5xx"));
        assert_eq!(metric_name("ok:ratio").as_deref(), Some("ok:ratio"));
        assert_eq!(metric_name("é"), None, "nothing but underscores is no name");
        assert_eq!(metric_name("  "), None);
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("a:b").as_deref(), Some("a_b"));
        assert_eq!(label_name("host").as_deref(), Some("exported_host"));
        assert_eq!(label_name("__x").as_deref(), Some("x__x"));
        assert_eq!(label_value(&"é".repeat(600)).len(), 1024);
        assert_eq!(exported("requests", "_total"), "requests_total");
        assert_eq!(exported("requests_total", "_total"), "requests_total");
        assert!(acceptable("requests_total") && !acceptable("curvemon_host_x"));
        assert_eq!(display_name("shop\0x", 128).as_deref(), Some("shop_x"));
        assert_eq!(display_name("\0\n", 128), None);
        assert_eq!(display_name(&"é".repeat(100), 128).map(|s| s.len()), Some(128));
    }

    #[test]
    fn applications_from_tags_or_prefixes() {
        assert_eq!(split("shop.checkout.time", None, "statsd"), ("shop", "checkout.time"));
        assert_eq!(split("checkout", None, "statsd"), ("statsd", "checkout"));
        assert_eq!(split("shop.x", Some("billing"), "statsd"), ("billing", "shop.x"));
        assert_eq!(split("shop.x", Some("shop"), "statsd"), ("shop", "x"));
        assert_eq!(split(".x", None, "statsd"), ("statsd", ".x"));
    }
}
