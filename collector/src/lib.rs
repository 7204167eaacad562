//! The curvemon collector as a library.
//!
//! Threads and tasks, and who owns what:
//! - the ZAP thread ([`auth`]) owns the REP socket that authenticates every
//!   CURVE handshake against the allowlist;
//! - the router thread ([`router`]) owns the ROUTER socket and its monitor,
//!   applies messages to the [`registry::Registry`], sweeps liveness and
//!   pings agents;
//! - tokio serves HTTP ([`http`]) and reads the registry under its mutex;
//!   a task reloads the allowlist on SIGHUP.
//!
//! Shutdown: the token given to [`run`] stops the HTTP server gracefully,
//! then a flag stops both socket threads (they poll with short timeouts),
//! their sockets close with linger 0, and the zmq context is dropped last.

pub mod acks;
pub mod apps;
pub mod auth;
pub mod checks;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod derive;
pub mod export;
pub mod exposition;
pub mod groups;
pub mod handshakes;
pub mod history;
pub mod http;
pub mod registry;
pub mod router;
pub mod shapes;
pub mod stats;
pub mod store;
pub mod stream;
pub mod time;
pub mod view;

use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use curvemon_keys::{AuthorizedKeys, cert};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::Config;

/// Send buffer of each HTTP connection (the kernel doubles it).
const HTTP_SEND_BUFFER: usize = 64 * 1024;

/// Runs the collector until `shutdown` is cancelled.
///
/// # Errors
/// Set-up problems (keys, allowlist, binding), or the agent socket failing.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    curvemon_link::require_curve()?;
    let secret_path = config.keys_dir.join("collector.key_secret");
    let identity = cert::read_secret(&secret_path).with_context(|| {
        format!(
            "cannot load the collector's key; generate it with `collector keygen --keys {}`",
            config.keys_dir.display()
        )
    })?;
    let allow_dir = config.allow_dir();
    let allowlist = load_allowlist(&allow_dir)?;
    let allowlist: auth::SharedAllowlist = Arc::new(RwLock::new(allowlist));

    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http))?;
    let http_addr = listener.local_addr()?;

    let ctx = zmq::Context::new();
    // The ZAP handler must be bound before the ROUTER accepts anyone.
    let zap = ctx.socket(zmq::REP)?;
    zap.set_linger(0)?;
    zap.bind(auth::ZAP_ENDPOINT).context("binding the ZAP handler")?;
    let (socket, monitor) = router::bind(&ctx, &identity.pair, &config.listen)?;
    info!(public_key = %identity.pair.public, "Collector key (agents need {}).", config.keys_dir.join("collector.key").display());

    let registry = Arc::new(Mutex::new(
        registry::Registry::new(config.liveness, registry::DEFAULT_RETENTION)
            .with_app_step(config.app_step),
    ));
    let store: Arc<dyn store::Store> =
        Arc::new(store::RedbStore::open(&config.data_dir).with_context(|| {
            format!("opening the history store in {}", config.data_dir.display())
        })?);
    let writer = store::writer::start(
        Arc::clone(&store),
        store::writer::Retention { age: config.retention, bytes: config.retention_size },
        !config.file.remote_write.is_empty(),
    )?;
    let exporter = export::remote_write::Exporter::start(
        Arc::clone(&store),
        config.file.remote_write.clone(),
        Arc::clone(&registry),
    )?;
    let exports = Arc::new(exporter.stats.clone());
    let stats = Arc::new(stats::Stats::default());
    let hub = Arc::new(stream::Hub::new(config.stream_queue));
    let allowlist_generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let zap_thread = {
        let (allowlist, stats, stop) =
            (Arc::clone(&allowlist), Arc::clone(&stats), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || auth::serve(zap, allowlist, stats, stop))?
    };
    let store_stats = Arc::clone(&writer.stats);
    let router_thread = {
        let router = router::Router {
            socket,
            monitor,
            registry: Arc::clone(&registry),
            stats: Arc::clone(&stats),
            ping_interval: config.ping_interval,
            handshakes: std::cell::RefCell::default(),
            peers: handshakes::OwnDescriptors::open(),
            failure_log: std::cell::RefCell::default(),
            hub: Arc::clone(&hub),
            allowlist: Arc::clone(&allowlist),
            allowlist_generation: Arc::clone(&allowlist_generation),
            max_rate: config.max_rate,
            buckets: std::cell::RefCell::new(std::collections::HashMap::new()),
            writer,
            acks: std::cell::RefCell::default(),
            notifier: std::cell::RefCell::new(curvemon_notify::Notifier::from_env()),
        };
        let (stop, shutdown) = (Arc::clone(&stop), shutdown.clone());
        std::thread::Builder::new().name("router".into()).spawn(move || {
            let result = router.serve(&stop);
            if let Err(error) = &result {
                router::log_failure(error);
                shutdown.cancel();
            }
            result
        })?
    };
    let reload = tokio::spawn(watch_allowlist(
        Arc::clone(&allowlist),
        Arc::clone(&allowlist_generation),
        allow_dir,
        shutdown.clone(),
    ));

    info!(url = %format!("http://{http_addr}/"), "Serving the API and page.");
    let auth = http::auth::HttpAuth {
        token: config.http_token.clone(),
        metrics_public: config.metrics_public,
    };
    let app = http::app(http::AppState {
        registry,
        stats,
        hub,
        shutdown: shutdown.clone(),
        auth,
        store,
        store_stats,
        exports,
    });
    // A fixed send buffer per HTTP connection: Linux would otherwise grow it
    // toward 4 MiB for a live-stream client that stopped reading, before the
    // stream's own bounded queue could notice and drop it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&*tcp, HTTP_SEND_BUFFER);
    });
    // Agents' socket bound, router running, HTTP listening: systemd may
    // count the collector started (Type=notify).
    curvemon_notify::Notifier::from_env().ready(
        &format!("listening for agents on {}, HTTP on {http_addr}", config.listen),
        std::time::Instant::now(),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving HTTP");

    shutdown.cancel();
    stop.store(true, Ordering::Relaxed);
    let _ = reload.await;
    let joined = tokio::task::spawn_blocking(move || {
        let zap = zap_thread.join();
        let router = router_thread.join();
        // After the router (whose writer commits what it holds last).
        exporter.stop();
        (zap, router)
    })
    .await?;
    drop(ctx);
    served?;
    match joined {
        (Ok(()), Ok(Ok(()))) => {
            info!("Collector stopped.");
            Ok(())
        }
        (_, Ok(Err(error))) => Err(error.context("the agent socket failed")),
        _ => anyhow::bail!("a socket thread panicked"),
    }
}

fn load_allowlist(dir: &std::path::Path) -> anyhow::Result<Option<AuthorizedKeys>> {
    let list = AuthorizedKeys::load(dir)
        .with_context(|| format!("cannot load the allowlist {}", dir.display()))?;
    match &list {
        None => warn!(
            dir = %dir.display(),
            "No allowlist directory: ANY agent that knows this collector's public key may connect. \
             Create it and put agents' agent.key files in it to restrict access."
        ),
        Some(keys) if keys.is_empty() => {
            warn!(dir = %dir.display(), "The allowlist is empty: no agent can connect.");
        }
        Some(keys) => info!(dir = %dir.display(), keys = keys.len(), "Loaded the allowlist."),
    }
    Ok(list)
}

/// How often the allowlist directory is checked for changes.
const ALLOWLIST_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the allowlist on SIGHUP and when its directory changes (checked
/// every [`ALLOWLIST_POLL`]); a broken directory keeps the old list. Each
/// reload bumps `generation`, on which the router cuts revoked keys.
async fn watch_allowlist(
    allowlist: auth::SharedAllowlist,
    generation: Arc<std::sync::atomic::AtomicU64>,
    dir: std::path::PathBuf,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    if hup.is_none() {
        warn!("Cannot watch SIGHUP; the allowlist reloads when its directory changes.");
    }
    let mut seen = curvemon_keys::allowlist::fingerprint(&dir);
    let mut poll = tokio::time::interval(ALLOWLIST_POLL);
    loop {
        let by_signal = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = poll.tick() => false,
        };
        let now = curvemon_keys::allowlist::fingerprint(&dir);
        if !by_signal && now == seen {
            continue;
        }
        seen = now;
        match load_allowlist(&dir) {
            Ok(list) => {
                *allowlist.write().unwrap_or_else(std::sync::PoisonError::into_inner) = list;
                generation.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => error!(error = %format!("{e:#}"), "Keeping the previous allowlist."),
        }
    }
}
