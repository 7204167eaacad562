//! One `[[remote_write]]` target of the collector's config file.

use std::{path::PathBuf, sync::Arc, time::Duration};

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Target {
    /// Names its position in the store's journal (default: the URL), so a
    /// restarted collector resumes each target where it left off.
    pub name: String,
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Extra request headers (`X-Scope-OrgID` for Mimir, ...).
    pub headers: Vec<(String, String)>,
    /// A file holding a bearer token, read at start.
    pub bearer_token_file: Option<PathBuf>,
    /// A PEM file of CAs to trust besides the host's.
    pub ca_file: Option<PathBuf>,
    /// Values per request, at most (Prometheus's own default is 2,000; a
    /// host sample of ~200 series is never split).
    pub batch_values: usize,
    /// Host samples the target may fall behind by; past it the oldest are
    /// skipped and counted (`curvemon_remote_write_dropped_samples_total`).
    pub queue_samples: u64,
    /// One request's time limit.
    pub timeout: Duration,
    /// How often `curvemon_host_up` is sent for every host.
    pub liveness_every: Duration,
}

/// Defaults of the optional keys.
pub const DEFAULT_BATCH_VALUES: usize = 10_000;
/// A day of 1,000 hosts at 10 s, or an hour and a half of 10,000 at 1 s.
pub const DEFAULT_QUEUE_SAMPLES: u64 = 8_640_000;
/// See [`Target::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// See [`Target::liveness_every`].
pub const DEFAULT_LIVENESS_EVERY: Duration = Duration::from_secs(15);

impl Target {
    /// The HTTP client for this target: its CAs (the host's and
    /// `ca_file`), its timeout, statuses returned rather than raised.
    ///
    /// # Errors
    /// `ca_file` cannot be read or holds no certificate.
    pub fn agent(&self) -> anyhow::Result<ureq::Agent> {
        use anyhow::Context as _;
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading ca_file {}", path.display()))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(PemItem::Certificate(c)) = item {
                    roots.push(c.to_owned());
                }
            }
            anyhow::ensure!(
                roots.len() > before,
                "ca_file {}: no PEM certificate in it",
                path.display()
            );
        }
        let tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots))).build();
        Ok(ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("curvemon-collector/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into())
    }

    /// The bearer token, if configured.
    ///
    /// # Errors
    /// The file cannot be read, is readable by others, or is empty.
    pub fn bearer_token(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context as _;
        let Some(path) = &self.bearer_token_file else { return Ok(None) };
        curvemon_keys::cert::check_private(path)?;
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading bearer_token_file {}", path.display()))?
            .trim()
            .to_string();
        anyhow::ensure!(!token.is_empty(), "bearer_token_file {}: it is empty", path.display());
        Ok(Some(token))
    }
}
