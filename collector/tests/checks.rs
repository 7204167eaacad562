//! Availability checks against real servers (Redis, PostgreSQL, RabbitMQ,
//! an HTTPS server, plain TCP), run by a real agent and reported to a real
//! collector over CURVE: each check passes when its service answers
//! correctly, fails with the documented reason when it does not, goes down
//! when its server stops and comes back when it starts again, and the
//! collector logs each change and exposes it on `/metrics`. Each server is
//! started once, by the one test that uses it.

mod common;

use std::{net::TcpListener, os::unix::fs::PermissionsExt as _, time::Duration};

use common::{
    Fleet, Proc, http_get, parse_exposition, promtool_check,
    servers::{self, Https, Postgres, RabbitMq, Redis},
    wait_for,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Starts a collector and an agent named `host` whose config holds `checks`
/// (TOML, mode 0600 as passwords require).
fn fleet_with_checks(host: &str, checks: &str) -> (Fleet, Proc, Proc) {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys(host, true);
    let collector = fleet.start_collector(&[], "collector.log");
    let config = fleet.path("agent.toml");
    std::fs::write(&config, checks).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = fleet.start_agent(
        host,
        &keys,
        &["--interval", "500ms", "--config", config.to_str().unwrap()],
    );
    (fleet, collector, agent)
}

/// The API's view of check `name`.
fn check(fleet: &Fleet, name: &str) -> Option<Value> {
    let checks = fleet.json("/api/checks")?;
    checks.as_array()?.iter().find(|c| c["name"] == name).cloned()
}

/// Polls until check `name` is in `state` (and `ok` holds); returns it.
fn wait_check(fleet: &Fleet, name: &str, state: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("check {name} {state}"), LIMIT, || {
        check(fleet, name).filter(|c| c["state"] == state && ok(c))
    })
}

/// Waits for every `(name, state, reason)`; returns the checks by name.
fn wait_all(fleet: &Fleet, expected: &[(&str, &str, Option<&str>)]) -> Vec<Value> {
    expected
        .iter()
        .map(|(name, state, reason)| {
            wait_check(fleet, name, state, |c| match reason {
                Some(r) => c["reason"] == *r,
                None => c["reason"].is_null(),
            })
        })
        .collect()
}

fn metric(fleet: &Fleet, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = http_get(fleet.http_port, "/metrics")?.1;
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_exposition(&text).get(&(name.to_string(), labels)).copied()
}

/// The labels every check series carries.
fn labels<'a>(
    host: &'a str,
    check: &'a Value,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("host", host),
        ("check", check["name"].as_str().unwrap()),
        ("kind", check["kind"].as_str().unwrap()),
        ("target", check["target"].as_str().unwrap()),
    ];
    all.extend_from_slice(extra);
    all
}

/// Stops a server and starts it again: the check goes down with reason
/// `refused`, comes back up, and the collector logs both changes with the
/// host, check and reason.
fn down_and_back<S>(
    fleet: &Fleet,
    collector: &Proc,
    name: &str,
    server: &mut S,
    stop: fn(&mut S),
    start: fn(&mut S),
) {
    stop(server);
    wait_check(fleet, name, "down", |c| c["reason"] == "refused");
    collector.wait_for_log(&format!("check={name} kind="), LIMIT);
    start(server);
    wait_check(fleet, name, "up", |_| true);
    let log = collector.log();
    let down = format!("Check down. host=\"web-01\" check={name} ");
    let up = format!("Check up again. host=\"web-01\" check={name} ");
    assert!(log.contains(&down) && log.contains(&up), "no change logged for {name}:\n{log}");
    // The first failing run may have met the server dying mid-answer
    // (`protocol`, `timeout`); the API said `refused` above.
    assert!(log.lines().any(|l| l.contains(&down) && l.contains("reason=")), "{log}");
}

#[test]
fn redis_and_tcp_checks() {
    let mut open = Redis::start(&[]);
    let locked = Redis::start(&[
        "--requirepass",
        "cache-pw",
        "--user",
        "app",
        "on",
        ">app-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, "cache-pw\n").unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        r#"
[[check]]
name = "cache"
kind = "redis"
address = "127.0.0.1:{open}"
interval = "1s"

[[check]]
name = "cache-password"
kind = "redis"
address = "127.0.0.1:{locked}"
password_file = "{file}"
interval = "1s"

[[check]]
name = "cache-acl"
kind = "redis"
address = "127.0.0.1:{locked}"
user = "app"
password = "app-pw"
interval = "1s"

[[check]]
name = "cache-wrong-password"
kind = "redis"
address = "127.0.0.1:{locked}"
password = "guess"
interval = "1s"

[[check]]
name = "cache-no-password"
kind = "redis"
address = "127.0.0.1:{locked}"
interval = "1s"

[[check]]
name = "ping"
kind = "tcp"
address = "127.0.0.1:{open}"
send = "PING\r\n"
expect = "^\\+PONG"
interval = "1s"

[[check]]
name = "ping-wrong-answer"
kind = "tcp"
address = "127.0.0.1:{open}"
send = "QUIT\r\n"
expect = "^\\+PONG"
interval = "1s"
"#,
        open = open.port,
        locked = locked.port,
        file = password_file.display()
    );
    let (fleet, collector, agent) = fleet_with_checks("web-01", &config);
    let checks = wait_all(
        &fleet,
        &[
            ("cache", "up", None),
            ("cache-password", "up", None),
            ("cache-acl", "up", None),
            ("cache-wrong-password", "down", Some("auth")),
            ("cache-no-password", "down", Some("auth")),
            ("ping", "up", None),
            ("ping-wrong-answer", "down", Some("body")),
        ],
    );
    assert_eq!(checks[0]["server"], "master", "Redis's role");
    assert!(checks[3]["detail"].as_str().unwrap().contains("WRONGPASS"), "{}", checks[3]);
    assert!(checks[4]["detail"].as_str().unwrap().contains("NOAUTH"), "{}", checks[4]);
    assert!(checks[0]["phases"]["connect"].as_f64().unwrap() > 0.0);
    let up = metric(&fleet, "curvemon_check_up", &labels("web-01", &checks[0], &[]));
    assert_eq!(up, Some(1.0));
    let failure = labels("web-01", &checks[3], &[("reason", "auth")]);
    assert_eq!(metric(&fleet, "curvemon_check_failure", &failure), Some(1.0));
    let text = http_get(fleet.http_port, "/metrics").unwrap().1;
    let (code, out) = promtool_check(&text);
    assert_ne!(code, Some(1), "promtool could not parse /metrics:\n{out}");
    assert!(!out.contains("curvemon_check"), "promtool's lint of the check series: {out}");
    // The password never appears anywhere the collector shows.
    assert!(
        !text.contains("app-pw")
            && !fleet.json("/api/checks").unwrap().to_string().contains("app-pw")
    );
    assert!(!agent.log().contains("app-pw"));

    down_and_back(&fleet, &collector, "cache", &mut open, Redis::stop, Redis::start_again);
    wait_check(&fleet, "ping", "up", |_| true);
}

#[test]
fn postgres_checks() {
    let mut pg = Postgres::start();
    let config = format!(
        r#"
[[check]]
name = "db"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "shop"
password = "shop-pw"
interval = "1s"

[[check]]
name = "db-md5"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "legacy"
password = "legacy-pw"
interval = "1s"

[[check]]
name = "db-socket-trust"
kind = "postgres"
address = "{socket}"
database = "postgres"
user = "postgres"
interval = "1s"

[[check]]
name = "db-tls"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "shop"
password = "shop-pw"
tls = true
verify_tls = false
interval = "1s"

[[check]]
name = "db-tls-untrusted"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "shop"
password = "shop-pw"
tls = true
interval = "1s"

[[check]]
name = "db-wrong-password"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "shop"
user = "shop"
password = "guess"
interval = "1s"

[[check]]
name = "db-missing-database"
kind = "postgres"
address = "127.0.0.1:{port}"
database = "nosuch"
user = "shop"
password = "shop-pw"
interval = "1s"
"#,
        port = pg.port,
        socket = pg.socket().display()
    );
    let (fleet, collector, _agent) = fleet_with_checks("web-01", &config);
    let checks = wait_all(
        &fleet,
        &[
            ("db", "up", None),
            ("db-md5", "up", None),
            ("db-socket-trust", "up", None),
            ("db-tls", "up", None),
            ("db-tls-untrusted", "down", Some("tls")),
            ("db-wrong-password", "down", Some("auth")),
            ("db-missing-database", "down", Some("auth")),
        ],
    );
    let version = checks[0]["server"].as_str().unwrap();
    assert!(version.starts_with(|c: char| c.is_ascii_digit()), "server_version {version:?}");
    assert!(checks[3]["cert_not_after"].as_i64().unwrap() > 0, "{}", checks[3]);
    assert!(checks[3]["phases"]["tls"].as_f64().unwrap() > 0.0, "{}", checks[3]);
    assert!(checks[4]["detail"].as_str().unwrap().contains("certificate"), "{}", checks[4]);
    assert!(checks[5]["detail"].as_str().unwrap().starts_with("SQLSTATE 28P01"), "{}", checks[5]);
    assert!(checks[6]["detail"].as_str().unwrap().starts_with("SQLSTATE 3D000"), "{}", checks[6]);
    down_and_back(&fleet, &collector, "db", &mut pg, Postgres::stop, Postgres::start_again);
}

#[test]
fn rabbitmq_checks() {
    let rabbit = RabbitMq::start();
    let config = format!(
        r#"
[[check]]
name = "queue"
kind = "amqp"
address = "127.0.0.1:{port}"
vhost = "shop"
user = "shopper"
password = "shop-pw"
interval = "1s"

[[check]]
name = "queue-wrong-password"
kind = "amqp"
address = "127.0.0.1:{port}"
vhost = "shop"
user = "shopper"
password = "guess"
interval = "1s"

[[check]]
name = "queue-wrong-vhost"
kind = "amqp"
address = "127.0.0.1:{port}"
vhost = "nosuch"
user = "shopper"
password = "shop-pw"
interval = "1s"
"#,
        port = rabbit.port
    );
    let (fleet, collector, _agent) = fleet_with_checks("web-01", &config);
    let checks = wait_all(
        &fleet,
        &[
            ("queue", "up", None),
            ("queue-wrong-password", "down", Some("auth")),
            ("queue-wrong-vhost", "down", Some("auth")),
        ],
    );
    assert!(checks[0]["server"].as_str().unwrap().starts_with("RabbitMQ "), "{}", checks[0]);
    assert!(checks[1]["detail"].as_str().unwrap().contains("403"), "{}", checks[1]);
    assert!(checks[2]["detail"].as_str().unwrap().contains("530"), "{}", checks[2]);
    down_and_back(&fleet, &collector, "queue", &mut &rabbit, |r| r.stop_app(), |r| r.start_app());
}

#[test]
fn http_checks() {
    let mut https = Https::start();
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        r#"
[[check]]
name = "api"
kind = "http"
url = "https://127.0.0.1:{port}/health"
ca_file = "{cert}"
body_regex = "^ok"
interval = "1s"

[[check]]
name = "api-by-name"
kind = "http"
url = "https://localhost:{port}/health"
verify_tls = false
method = "HEAD"
interval = "1s"

[[check]]
name = "api-untrusted"
kind = "http"
url = "https://127.0.0.1:{port}/health"
interval = "1s"

[[check]]
name = "api-error"
kind = "http"
url = "https://127.0.0.1:{port}/fail"
verify_tls = false
interval = "1s"

[[check]]
name = "api-degraded"
kind = "http"
url = "https://127.0.0.1:{port}/degraded"
verify_tls = false
body_regex = "^ok"
interval = "1s"

[[check]]
name = "api-refused"
kind = "http"
url = "http://127.0.0.1:{refused}/health"
interval = "1s"

[[check]]
name = "api-silent"
kind = "http"
url = "http://127.0.0.1:{silent}/health"
interval = "5s"
timeout = "2s"
"#,
        port = https.port,
        cert = https.cert.display(),
        silent = silent.local_addr().unwrap().port(),
    );
    let (fleet, collector, _agent) = fleet_with_checks("web-01", &config);
    let checks = wait_all(
        &fleet,
        &[
            ("api", "up", None),
            ("api-by-name", "up", None),
            ("api-untrusted", "down", Some("tls")),
            ("api-error", "down", Some("status")),
            ("api-degraded", "down", Some("body")),
            ("api-refused", "down", Some("refused")),
            ("api-silent", "down", Some("timeout")),
        ],
    );
    let api = &checks[0];
    assert_eq!(api["http_status"], 200);
    assert_eq!(api["cert_not_after"].as_i64(), Some(servers::not_after(&https.cert)));
    for phase in ["connect", "tls", "first_byte"] {
        assert!(api["phases"][phase].as_f64().unwrap() > 0.0, "{phase}: {api}");
    }
    assert!(api["phases"]["dns"].is_null(), "an address needs no lookup: {api}");
    assert!(checks[1]["phases"]["dns"].as_f64().is_some(), "a name is looked up: {}", checks[1]);
    assert!(checks[2]["detail"].as_str().unwrap().contains("certificate"), "{}", checks[2]);
    assert_eq!(checks[3]["http_status"], 500);
    // The silent server: given up at the timeout, not later.
    let silent_check = &checks[6];
    let took = silent_check["seconds"].as_f64().unwrap();
    assert!((1.9..3.0).contains(&took), "timed out after {took} s: {silent_check}");
    assert!(silent_check["detail"].as_str().unwrap().contains("waiting for the response"));
    // Meanwhile the host's samples kept their interval (500 ms).
    let host = fleet.host("web-01").unwrap();
    let id = host["id"].as_str().unwrap();
    let history = fleet.json(&format!("/api/hosts/{id}/history?metric=cpu_percent")).unwrap();
    let times: Vec<u64> =
        history["t"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(times.len() >= 4 && worst < 1_500, "samples {} apart at worst: {times:?}", worst);

    let expiry = labels("web-01", api, &[]);
    let exported = metric(&fleet, "curvemon_check_tls_cert_expiry_timestamp_seconds", &expiry);
    assert_eq!(exported, Some(servers::not_after(&https.cert) as f64));
    let status =
        metric(&fleet, "curvemon_check_http_status_code", &labels("web-01", &checks[3], &[]));
    assert_eq!(status, Some(500.0));
    let phase = labels("web-01", api, &[("phase", "first_byte")]);
    assert!(metric(&fleet, "curvemon_check_duration_seconds", &phase).is_some());

    down_and_back(&fleet, &collector, "api", &mut https, Https::stop, Https::start_again);
    drop(silent);
}
