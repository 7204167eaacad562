//! The dashboard in a real headless Chromium (Debian's chromium and
//! chromium-driver), driven over WebDriver: two live agents show up, the CPU
//! chart gains points, a killed agent's row turns stale then down without a
//! reload, the host view fills its charts. Screenshots of both views go to
//! target/screenshots/ for a person to look at.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{Fleet, Proc, free_port, wait_for};
use fantoccini::{Client, ClientBuilder};
use rustix::process::Signal;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

struct Browser {
    client: Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

async fn browser(fleet: &Fleet) -> Browser {
    let port = free_port();
    let driver = Proc::spawn(
        std::path::Path::new("/usr/bin/chromedriver"),
        &[&format!("--port={port}")],
        fleet.path("chromedriver.log"),
        "chromedriver",
    );
    wait_for("chromedriver to listen", LIMIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium");
    Browser { client, _driver: driver, _profile: profile }
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Evaluates `script` until `ok` accepts its value, or fails after [`LIMIT`].
async fn wait_js(client: &Client, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let value = js(client, script).await;
        if ok(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last value {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_the_fleet_live() {
    let fleet = Fleet::new();
    let alpha = fleet.agent_keys("alpha", true);
    let beta = fleet.agent_keys("beta", true);
    let _collector =
        fleet.start_collector(&["--stale-after", "2s", "--down-after", "5s"], "collector.log");
    let _a = fleet.start_agent("alpha", &alpha, &["--interval", "500ms"]);
    let mut b = fleet.start_agent("beta", &beta, &["--interval", "500ms"]);
    fleet.wait_host("alpha", "up", LIMIT, |h| h["latest"]["cpu_percent"].is_number());
    fleet.wait_host("beta", "up", LIMIT, |h| h["latest"]["cpu_percent"].is_number());

    let browser = browser(&fleet).await;
    let page = &browser.client;
    let base = format!("http://127.0.0.1:{}/", fleet.http_port);
    page.goto(&base).await.unwrap();

    let both_up = "return [curvemon.hostState('alpha'), curvemon.hostState('beta')]";
    wait_js(page, "both hosts up", both_up, |v| *v == json!(["up", "up"])).await;
    let before = js(page, "return curvemon.fleetPoints('alpha')").await.as_u64().unwrap();
    wait_js(page, "the CPU chart to gain points", "return curvemon.fleetPoints('alpha')", |v| {
        v.as_u64().is_some_and(|n| n >= before + 4)
    })
    .await;
    std::fs::write(screenshot_path("fleet.png"), page.screenshot().await.unwrap()).unwrap();

    // Kill one agent: its row goes stale, then down, with no reload.
    js(page, "window.__noReload = true; return true").await;
    b.signal(Signal::KILL);
    b.wait_exit(LIMIT);
    wait_js(page, "beta stale", "return curvemon.hostState('beta')", |v| *v == json!("stale"))
        .await;
    wait_js(page, "beta down", "return curvemon.hostState('beta')", |v| *v == json!("down")).await;
    assert_eq!(
        js(page, "return window.__noReload === true").await,
        json!(true),
        "the page was not reloaded"
    );
    assert_eq!(js(page, "return curvemon.hostState('alpha')").await, json!("up"));
    std::fs::write(screenshot_path("fleet-beta-down.png"), page.screenshot().await.unwrap())
        .unwrap();

    // The host view: last hour from history, then live.
    let id = fleet.host("alpha").unwrap()["id"].as_str().unwrap().to_string();
    page.goto(&format!("{base}#/host/{id}")).await.unwrap();
    let first = wait_js(page, "host charts filled", "return curvemon.hostPoints()", |v| {
        v.as_u64() > Some(3)
    })
    .await;
    wait_js(page, "host charts growing", "return curvemon.hostPoints()", |v| {
        v.as_u64() > first.as_u64()
    })
    .await;
    std::fs::write(screenshot_path("host.png"), page.screenshot().await.unwrap()).unwrap();

    let errors = js(page, "return curvemon.errors()").await;
    assert_eq!(errors, json!([]), "no script errors");
    let delays: Vec<f64> =
        serde_json::from_value(js(page, "return curvemon.delays()").await).unwrap();
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    if !sorted.is_empty() {
        eprintln!(
            "sample taken on the agent → point on the page: median {} ms, max {} ms over {} points",
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
            sorted.len()
        );
    }
    browser.client.close().await.unwrap();
}
