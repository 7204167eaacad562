//! The HTTP side off loopback: a token is required, or the operator must
//! say --http-insecure; browsers authenticate through a cookie.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    time::Duration,
};

use common::{Fleet, Proc, collector_bin, free_port, run, wait_for};

const TOKEN: &str = "s3cret-token-for-the-api-0123";

/// A raw HTTP/1.0 GET with extra header lines; the whole response.
fn get(port: u16, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n{headers}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn status(response: &str) -> u16 {
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn token_file(fleet: &Fleet, mode: u32) -> std::path::PathBuf {
    let path = fleet.path("api.token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn off_loopback_the_collector_needs_a_token_or_an_explicit_opt_out() {
    let fleet = Fleet::new();
    let keys = fleet.collector_keys();
    let (ok, _, err) =
        run(&collector_bin(), &["--keys", keys.to_str().unwrap(), "--http", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(err.contains("--http-token-file") && err.contains("--http-insecure"), "{err}");

    let loose = token_file(&fleet, 0o644);
    let (ok, _, err) = run(
        &collector_bin(),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--http",
            "0.0.0.0:0",
            "--http-token-file",
            loose.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains(&format!("chmod 600 {}", loose.display())), "{err}");
}

#[test]
fn token_header_cookie_and_public_metrics() {
    let fleet = Fleet::new();
    let token = token_file(&fleet, 0o600);
    let keys = fleet.collector_keys();
    let port = free_port();
    let listen = fleet.endpoint();
    let http = format!("0.0.0.0:{port}");
    let _collector = Proc::spawn(
        &collector_bin(),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--listen",
            &listen,
            "--http",
            &http,
            "--http-token-file",
            token.to_str().unwrap(),
            "--metrics-public",
        ],
        fleet.path("collector.log"),
        "collector",
    );
    wait_for("the collector to answer", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| status(&get(port, "/healthz", "")) == 401)
            .filter(|x| *x)
    });

    assert_eq!(status(&get(port, "/api/hosts", "")), 401);
    assert_eq!(
        status(&get(port, "/api/hosts", "Authorization: Bearer wrong-token-000000000\r\n")),
        401
    );
    assert_eq!(
        status(&get(port, "/api/hosts", &format!("Authorization: Bearer {TOKEN}\r\n"))),
        200
    );
    assert_eq!(status(&get(port, "/api/stream", "")), 401, "streams too");

    // A browser: one visit with ?token= sets the cookie and cleans the URL.
    let visit = get(port, &format!("/?token={TOKEN}"), "");
    assert_eq!(status(&visit), 303, "{visit}");
    let cookie_line = visit
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie =
        cookie_line.split_once(':').unwrap().1.split(';').next().unwrap().trim().to_string();
    assert_eq!(status(&get(port, "/", &format!("Cookie: {cookie}\r\n"))), 200);
    assert_eq!(status(&get(port, "/api/hosts", &format!("Cookie: other=1; {cookie}\r\n"))), 200);
    assert_eq!(status(&get(port, "/?token=not-the-token-0000000", "")), 401);

    // --metrics-public: Prometheus scrapes without credentials.
    assert_eq!(status(&get(port, "/metrics", "")), 200);
}
