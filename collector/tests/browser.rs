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

    // The 7-day range reads the store; the points taken so far are all in
    // it, the first one still the oldest.
    let oldest = js(page, "return curvemon.hostRange()[1]").await;
    js(
        page,
        r#"document.querySelector('#host-range button[data-range="604800"]').click(); return 0"#,
    )
    .await;
    wait_js(page, "the 7-day range", "return curvemon.hostRange()", |v| {
        v[0] == json!(604_800) && v[1].as_u64() <= oldest.as_u64() && v[1].as_u64().is_some()
    })
    .await;
    assert!(js(page, "return curvemon.hostPoints()").await.as_u64() > first.as_u64());

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

/// The example application (examples/shop.py, the real `statsd` client)
/// on two hosts: the Applications view lists it, and its page draws one
/// CPU and one memory line per instance, in distinct colours, and a
/// calls/s and a percentiles chart per timer, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_view_shows_one_line_per_instance() {
    let python = std::env::var_os("CURVEMON_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python3")
    });
    assert!(python.exists(), "{} is missing: run scripts/test", python.display());
    let shop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/shop.py");
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&["--app-step", "1s"], "collector.log");
    let mut running = Vec::new();
    for name in ["shop-a", "shop-b"] {
        let keys = fleet.agent_keys(name, true);
        let socket = fleet.path(&format!("{name}.sock"));
        let socket_s = socket.display().to_string();
        // The host page's process groups: this host's shop instance.
        let config = fleet.path(&format!("{name}.toml"));
        let groups = format!(
            "[intervals]\nprocess = \"1s\"\n\n[[process]]\nname = \"shop\"\ncmdline = \"shop.py .*{name}.sock\"\n"
        );
        std::fs::write(&config, groups).unwrap();
        let config = config.display().to_string();
        running.push(fleet.start_agent(
            name,
            &keys,
            &["--interval", "500ms", "--statsd-stream", &socket_s, "--config", &config],
        ));
        wait_for("the agent's StatsD socket", LIMIT, || socket.exists().then_some(()));
        let address = format!("unix://{socket_s}");
        running.push(Proc::spawn(
            &python,
            &[shop.to_str().unwrap(), "--name", "shop", "--statsd", &address, "--rate", "30"],
            fleet.path(&format!("{name}-app.log")),
            name,
        ));
    }
    let browser = browser(&fleet).await;
    let page = &browser.client;
    let base = format!("http://127.0.0.1:{}/", fleet.http_port);
    page.goto(&format!("{base}#/apps")).await.unwrap();
    let row = "return document.querySelector('#apps tr[data-app=\"shop\"] td:nth-child(2)')?.textContent ?? null";
    wait_js(page, "shop listed with two instances up", row, |v| *v == json!("2 / 2")).await;
    std::fs::write(screenshot_path("apps.png"), page.screenshot().await.unwrap()).unwrap();

    page.goto(&format!("{base}#/app/shop")).await.unwrap();
    wait_js(page, "one line per instance", "return curvemon.appLines()", |v| *v == json!(2)).await;
    wait_js(page, "points for both instances", "return curvemon.appInstancePoints()", |v| {
        v.as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|n| n.as_u64() > Some(3)))
    })
    .await;
    wait_js(page, "a chart pair per timer", "return curvemon.appTimers()", |v| {
        *v == json!(["checkout_seconds", "lookup_seconds"])
    })
    .await;
    wait_js(page, "closed steps of the timers, live", "return curvemon.appTimerPoints()", |v| {
        v.as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|n| n.as_u64() >= Some(2)))
    })
    .await;
    let colors = js(page, "return curvemon.lineColors('#a-cpu')").await;
    let colors = colors.as_array().unwrap();
    assert_eq!(colors.len(), 2);
    assert_ne!(colors[0], colors[1], "distinct colours per line");
    std::fs::write(screenshot_path("app.png"), page.screenshot().await.unwrap()).unwrap();

    // A host page charts its process groups: this host's shop.
    let id = fleet.host("shop-a").unwrap()["id"].as_str().unwrap().to_string();
    wait_for("the host's process group in the API", LIMIT, || {
        let groups = fleet.json(&format!("/api/hosts/{id}/groups"))?;
        groups["mem_bytes"].get("group:shop").map(|_| ())
    });
    page.goto(&format!("{base}#/host/{id}")).await.unwrap();
    wait_js(page, "the host's process group", "return curvemon.hostGroups()", |v| {
        *v == json!(["group:shop"])
    })
    .await;
    std::fs::write(screenshot_path("host-groups.png"), page.screenshot().await.unwrap()).unwrap();

    // The fleet's charts: one colour per host, no two alike.
    page.goto(&base).await.unwrap();
    wait_js(page, "the fleet chart's lines", "return curvemon.lineColors('#fleet-cpu')", |v| {
        v.as_array().is_some_and(|a| a.len() == 2 && a[0] != a[1])
    })
    .await;
    assert_eq!(js(page, "return curvemon.errors()").await, json!([]), "no script errors");
    browser.client.close().await.unwrap();
}

/// The Checks view lists failing checks first, draws the picked check's
/// durations, and follows a Redis check down and back up without a
/// reload; the host page shows the host's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_view_follows_a_check_down_and_back() {
    let mut redis = common::servers::Redis::start(&[]);
    let fleet = Fleet::new();
    let _collector = fleet.start_collector(&[], "collector.log");
    let keys = fleet.agent_keys("checker", true);
    let config = fleet.path("checker.toml");
    let closed = free_port();
    std::fs::write(
        &config,
        format!(
            "[[check]]\nname = \"cache\"\nkind = \"redis\"\naddress = \"127.0.0.1:{}\"\ninterval = \"1s\"\n\n\
             [[check]]\nname = \"legacy-api\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{closed}\"\ninterval = \"1s\"\n",
            redis.port
        ),
    )
    .unwrap();
    let _agent = fleet.start_agent(
        "checker",
        &keys,
        &["--interval", "500ms", "--config", config.to_str().unwrap()],
    );
    let browser = browser(&fleet).await;
    let page = &browser.client;
    let base = format!("http://127.0.0.1:{}/", fleet.http_port);
    page.goto(&format!("{base}#/checks")).await.unwrap();
    wait_js(page, "the failing check first", "return curvemon.checkOrder()", |v| {
        *v == json!(["legacy-api", "cache"])
    })
    .await;
    let state = "return curvemon.checkState('checker', 'cache')";
    wait_js(page, "cache up", state, |v| *v == json!("up")).await;
    wait_js(page, "the picked check's chart gains points", "return curvemon.checkPoints()", |v| {
        v.as_u64() >= Some(3)
    })
    .await;
    std::fs::write(screenshot_path("checks.png"), page.screenshot().await.unwrap()).unwrap();

    js(page, "window.__noReload = true; return true").await;
    redis.stop();
    wait_js(page, "cache down", state, |v| *v == json!("down")).await;
    let why =
        "return document.querySelector('#checks tr[data-check=\"cache\"] td.detail').textContent";
    let text = js(page, why).await;
    assert!(
        text.as_str().unwrap().starts_with("refused")
            || text.as_str().unwrap().starts_with("protocol"),
        "{text}"
    );
    redis.start_again();
    wait_js(page, "cache up again", state, |v| *v == json!("up")).await;
    assert_eq!(js(page, "return window.__noReload === true").await, json!(true), "no reload");

    let id = fleet.host("checker").unwrap()["id"].as_str().unwrap().to_string();
    page.goto(&format!("{base}#/host/{id}")).await.unwrap();
    wait_js(
        page,
        "the host's checks",
        "return [curvemon.hostCheckState('cache'), curvemon.hostCheckState('legacy-api')]",
        |v| *v == json!(["up", "down"]),
    )
    .await;
    std::fs::write(screenshot_path("host-checks.png"), page.screenshot().await.unwrap()).unwrap();
    assert_eq!(js(page, "return curvemon.errors()").await, json!([]), "no script errors");
    browser.client.close().await.unwrap();
}
