//! `[[check]]` entries of the agent's config: every key checked against
//! its kind, every error naming its line.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use regex_lite::Regex;
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use super::{Check, Probe, Tls, amqp, http, postgres, redis, tcp};
use crate::net::Address;

/// One `[[check]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    name: Spanned<String>,
    kind: Spanned<String>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    expect_status: Option<Spanned<Vec<Status>>>,
    body_regex: Option<Spanned<String>>,
    max_bytes: Option<Spanned<usize>>,
    address: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    verify_tls: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    vhost: Option<Spanned<String>>,
}

/// An accepted status: a code (`204`) or a class (`"2xx"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Status {
    Code(u16),
    Class(String),
}

/// A password, wiped from memory when dropped and never printed.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a password.
    pub fn new(text: String) -> Self {
        Secret(Zeroizing::new(text))
    }

    /// The text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The default run interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The default timeout (and never more than half the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

type At<'a> = dyn Fn(usize, String) -> crate::options::ConfigFileError + 'a;

/// Reads every `[[check]]`; `file` is the config's path (an inline
/// `password` needs a config file others cannot read).
///
/// # Errors
/// The first problem, with its line.
pub fn parse(
    sections: &[Spanned<Section>],
    file: &Path,
    at: &At<'_>,
) -> Result<Vec<Check>, crate::options::ConfigFileError> {
    let mut checks: Vec<Check> = Vec::new();
    // TLS settings are built once per distinct (verify, ca_file): loading
    // the host's CA bundle is the costly part.
    let mut tls_cache: Vec<((bool, Option<PathBuf>), Tls)> = Vec::new();
    for spanned in sections {
        let start = spanned.span().start;
        let s = spanned.get_ref();
        let name = s.name.get_ref();
        curvemon_protocol::validate::check_name(name)
            .map_err(|e| at(s.name.span().start, format!("[[check]] name: {e}")))?;
        if checks.iter().any(|c| &c.name == name) {
            return Err(at(s.name.span().start, format!("[[check]] {name:?} is named twice")));
        }
        let err =
            |offset: usize, message: String| at(offset, format!("[[check]] {name}: {message}"));
        let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.get_ref())
                .map_err(|e| {
                    err(v.span().start, format!("{key}: expected a duration such as 10s: {e}"))
                })
                .and_then(|d| {
                    if d.is_zero() {
                        Err(err(v.span().start, format!("{key}: expected a duration above zero")))
                    } else {
                        Ok(d)
                    }
                }),
        };
        let interval = duration(&s.interval, "interval", DEFAULT_INTERVAL)?;
        let timeout = duration(&s.timeout, "timeout", DEFAULT_TIMEOUT.min(interval / 2))?;
        if timeout >= interval {
            let offset = s.timeout.as_ref().map_or(start, |t| t.span().start);
            return Err(err(
                offset,
                format!("timeout ({timeout:?}) must be shorter than interval ({interval:?})"),
            ));
        }
        let kind = s.kind.get_ref().as_str();
        let allowed: &[&str] = match kind {
            "http" => &[
                "url",
                "method",
                "expect_status",
                "body_regex",
                "max_bytes",
                "verify_tls",
                "ca_file",
            ],
            "tcp" => &["address", "tls", "verify_tls", "ca_file", "send", "expect"],
            "postgres" => &[
                "address",
                "tls",
                "verify_tls",
                "ca_file",
                "database",
                "user",
                "password",
                "password_file",
            ],
            "redis" => {
                &["address", "tls", "verify_tls", "ca_file", "user", "password", "password_file"]
            }
            "amqp" => &[
                "address",
                "tls",
                "verify_tls",
                "ca_file",
                "vhost",
                "user",
                "password",
                "password_file",
            ],
            other => {
                return Err(err(
                    s.kind.span().start,
                    format!("kind: expected http, tcp, postgres, redis or amqp, got {other:?}"),
                ));
            }
        };
        for (key, offset) in s.present() {
            if !allowed.contains(&key) {
                return Err(err(
                    offset,
                    format!("{key}: not a key of {kind} checks (they take {})", allowed.join(", ")),
                ));
            }
        }
        let required = |v: &Option<Spanned<String>>, key: &str| {
            v.as_ref()
                .map(|v| (v.get_ref().clone(), v.span().start))
                .ok_or_else(|| err(start, format!("expected `{key}`")))
        };
        let mut tls_for = |on: bool| -> Result<Option<Tls>, crate::options::ConfigFileError> {
            if !on {
                return Ok(None);
            }
            let verify = s.verify_tls.as_ref().is_none_or(|v| *v.get_ref());
            let ca_file = s.ca_file.as_ref().map(|c| PathBuf::from(c.get_ref()));
            if let Some((_, tls)) = tls_cache.iter().find(|(k, _)| *k == (verify, ca_file.clone()))
            {
                return Ok(Some(tls.clone()));
            }
            let offset = s.ca_file.as_ref().map_or(start, |c| c.span().start);
            let tls = Tls::new(verify, ca_file.as_deref()).map_err(|e| err(offset, e))?;
            tls_cache.push(((verify, ca_file), tls.clone()));
            Ok(Some(tls))
        };
        let tls_on = s.tls.as_ref().is_some_and(|t| *t.get_ref());
        let address =
            |default_port: Option<u16>| -> Result<Address, crate::options::ConfigFileError> {
                let (text, offset) = required(&s.address, "address")?;
                Address::parse(&text, default_port)
                    .map_err(|e| err(offset, format!("address: {e}")))
            };
        let password = password(s, file, &err)?;
        let user = s.user.as_ref().map(|u| u.get_ref().clone());
        let (probe, target) = match kind {
            "http" => {
                let (text, offset) = required(&s.url, "url")?;
                let url = http::Url::parse(&text).map_err(|e| err(offset, format!("url: {e}")))?;
                let method = match s.method.as_ref().map(|m| m.get_ref().to_ascii_uppercase()) {
                    None => "GET".to_string(),
                    Some(m) if m == "GET" || m == "HEAD" => m,
                    Some(m) => {
                        return Err(err(
                            s.method.as_ref().map_or(start, |m| m.span().start),
                            format!("method: expected GET or HEAD, got {m:?}"),
                        ));
                    }
                };
                let accept = match &s.expect_status {
                    None => http::Accept::default(),
                    Some(list) => http::Accept::from_list(list.get_ref().iter().map(|s| match s {
                        Status::Code(c) => Ok(http::StatusRule::Code(*c)),
                        Status::Class(c) => http::StatusRule::class(c),
                    }))
                    .map_err(|e| err(list.span().start, format!("expect_status: {e}")))?,
                };
                let body = match &s.body_regex {
                    None => None,
                    Some(r) => Some(Regex::new(r.get_ref()).map_err(|e| {
                        err(
                            r.span().start,
                            format!("body_regex: expected a regular expression: {e}"),
                        )
                    })?),
                };
                let tls = tls_for(url.https)?;
                let target = url.to_string();
                let probe = http::Http {
                    url,
                    method,
                    accept,
                    body,
                    max_bytes: s
                        .max_bytes
                        .as_ref()
                        .map_or(http::DEFAULT_MAX_BYTES, |m| *m.get_ref()),
                    tls,
                };
                (Probe::Http(probe), target)
            }
            "tcp" => {
                let address = address(None)?;
                let expect = match &s.expect {
                    None => None,
                    Some(r) => Some(Regex::new(r.get_ref()).map_err(|e| {
                        err(r.span().start, format!("expect: expected a regular expression: {e}"))
                    })?),
                };
                let target = address.to_string();
                let probe = tcp::Tcp {
                    address,
                    tls: tls_for(tls_on)?,
                    send: s.send.as_ref().map(|v| v.get_ref().clone()),
                    expect,
                };
                (Probe::Tcp(probe), target)
            }
            "postgres" => {
                let address = address(Some(5432))?;
                let user = user.ok_or_else(|| err(start, "expected `user`".into()))?;
                let database =
                    s.database.as_ref().map_or_else(|| user.clone(), |d| d.get_ref().clone());
                let target = format!("{address}/{database}");
                let probe =
                    postgres::Postgres { address, tls: tls_for(tls_on)?, database, user, password };
                (Probe::Postgres(probe), target)
            }
            "redis" => {
                let address = address(Some(6379))?;
                let target = address.to_string();
                if user.is_some() && password.is_none() {
                    return Err(err(start, "`user` needs `password` or `password_file`".into()));
                }
                let probe = redis::Redis { address, tls: tls_for(tls_on)?, user, password };
                (Probe::Redis(probe), target)
            }
            "amqp" => {
                let address = address(Some(if tls_on { 5671 } else { 5672 }))?;
                let vhost =
                    s.vhost.as_ref().map_or_else(|| "/".to_string(), |v| v.get_ref().clone());
                let target =
                    format!("{address}{}{vhost}", if vhost.starts_with('/') { "" } else { "/" });
                let probe = amqp::Amqp {
                    address,
                    tls: tls_for(tls_on)?,
                    vhost,
                    user: user.unwrap_or_else(|| "guest".into()),
                    password: password.unwrap_or_else(|| Secret(Zeroizing::new("guest".into()))),
                };
                (Probe::Amqp(probe), target)
            }
            _ => unreachable!("kinds are matched above"),
        };
        checks.push(Check { name: name.clone(), target, interval, timeout, probe });
    }
    Ok(checks)
}

impl Section {
    /// The optional keys present, with their offsets.
    fn present(&self) -> Vec<(&'static str, usize)> {
        let mut keys = Vec::new();
        macro_rules! key {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    keys.push((stringify!($field), v.span().start));
                }
            )*};
        }
        key!(
            url,
            method,
            expect_status,
            body_regex,
            max_bytes,
            address,
            tls,
            verify_tls,
            ca_file,
            send,
            expect,
            database,
            user,
            password,
            password_file,
            vhost
        );
        keys
    }
}

/// The password: from `password_file` (refused if group or others can read
/// it, as the keys are), or inline (refused if others can read the config).
fn password(
    s: &Section,
    file: &Path,
    err: &dyn Fn(usize, String) -> crate::options::ConfigFileError,
) -> Result<Option<Secret>, crate::options::ConfigFileError> {
    match (&s.password, &s.password_file) {
        (Some(_), Some(f)) => {
            Err(err(f.span().start, "give `password` or `password_file`, not both".into()))
        }
        (Some(p), None) => {
            if let Ok(meta) = std::fs::metadata(file)
                && meta.mode() & 0o004 != 0
            {
                return Err(err(
                    p.span().start,
                    format!(
                        "password: {} can be read by every user; use password_file, or chmod o-r {}",
                        file.display(),
                        file.display()
                    ),
                ));
            }
            Ok(Some(Secret(Zeroizing::new(p.get_ref().clone()))))
        }
        (None, Some(f)) => {
            let path = Path::new(f.get_ref());
            curvemon_keys::cert::check_private(path)
                .map_err(|e| err(f.span().start, format!("password_file: {e}")))?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                err(f.span().start, format!("password_file {}: {e}", path.display()))
            })?;
            let text = Zeroizing::new(text);
            Ok(Some(Secret(Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string()))))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use curvemon_protocol::CheckKind;

    use super::*;
    use crate::options::Options;

    fn parse_at(text: &str, path: &Path) -> Result<Vec<Check>, String> {
        Options::parse(text, path).map(|o| o.checks).map_err(|e| e.to_string())
    }

    fn parse(text: &str) -> Result<Vec<Check>, String> {
        parse_at(text, Path::new("/nonexistent/agent.toml"))
    }

    #[test]
    fn every_kind_with_its_defaults() {
        let checks = parse(
            r#"
[[check]]
name = "api"
kind = "http"
url = "https://127.0.0.1:8443/health"
interval = "30s"
expect_status = [200, "3xx"]

[[check]]
name = "cache"
kind = "redis"
address = "127.0.0.1"

[[check]]
name = "db"
kind = "postgres"
address = "db.internal"
user = "shop"

[[check]]
name = "queue"
kind = "amqp"
address = "mq.internal"
tls = true
verify_tls = false

[[check]]
name = "smtp"
kind = "tcp"
address = "127.0.0.1:25"
expect = "^220"
"#,
        )
        .unwrap();
        let kinds: Vec<CheckKind> = checks.iter().map(|c| c.probe.kind()).collect();
        assert_eq!(
            kinds,
            [
                CheckKind::Http,
                CheckKind::Redis,
                CheckKind::Postgres,
                CheckKind::Amqp,
                CheckKind::Tcp
            ]
        );
        let targets: Vec<&str> = checks.iter().map(|c| c.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "https://127.0.0.1:8443/health",
                "127.0.0.1:6379",
                "db.internal:5432/shop",
                "mq.internal:5671/",
                "127.0.0.1:25"
            ]
        );
        assert_eq!(checks[0].interval, Duration::from_secs(30));
        assert_eq!(checks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(checks[1].interval, DEFAULT_INTERVAL);
        let Probe::Amqp(amqp) = &checks[3].probe else { panic!() };
        assert_eq!(
            (amqp.user.as_str(), amqp.password.expose(), amqp.vhost.as_str()),
            ("guest", "guest", "/")
        );
        assert!(amqp.tls.is_some());
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            (
                "[[check]]\nname = \"x\"\nkind = \"ftp\"\n",
                "3: [[check]] x: kind: expected http, tcp",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"http\"\n\nvhost = \"/\"\n",
                "5: [[check]] x: vhost: not a key of http checks",
            ),
            ("[[check]]\nname = \"x\"\nkind = \"redis\"\n", "1: [[check]] x: expected `address`"),
            ("[[check]]\nname = \"x y\"\nkind = \"redis\"\n", "2: [[check]] name: check name"),
            (
                "[[check]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"h:1\"\ninterval = \"5s\"\ntimeout = \"5s\"\n",
                "6: [[check]] x: timeout (5s) must be shorter than interval (5s)",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"h\"\n",
                "4: [[check]] x: address: \"h\": expected host:port",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"http\"\nurl = \"http://h/\"\nexpect_status = [\"7xx\"]\n",
                "5: [[check]] x: expect_status:",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"http\"\nurl = \"http://h/\"\nbody_regex = \"(\"\n",
                "5: [[check]] x: body_regex: expected a regular expression",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"postgres\"\naddress = \"h\"\n",
                "1: [[check]] x: expected `user`",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"http\"\nurl = \"https://h/\"\nca_file = \"/nonexistent.pem\"\n",
                "5: [[check]] x: ca_file /nonexistent.pem",
            ),
            (
                "[[check]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"h:1\"\n[[check]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"h:1\"\n",
                "6: [[check]] \"x\" is named twice",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).err().unwrap_or_else(|| panic!("accepted {text:?}"));
            assert!(
                e.starts_with(&format!("/nonexistent/agent.toml:{expected}")),
                "{e}\nfor {text:?}"
            );
        }
    }

    #[test]
    fn passwords_must_not_be_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = dir.path().join("agent.toml");
        let with_file = format!(
            "[[check]]\nname = \"db\"\nkind = \"redis\"\naddress = \"h:1\"\npassword_file = \"{}\"\n",
            secret.display()
        );
        std::fs::write(&config, &with_file).unwrap();
        let e = parse_at(&with_file, &config).err().unwrap();
        assert!(e.contains(":5: [[check]] db: password_file:") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let checks = parse_at(&with_file, &config).unwrap();
        let Probe::Redis(redis) = &checks[0].probe else { panic!() };
        assert_eq!(
            redis.password.as_ref().unwrap().expose(),
            "s3cret",
            "the newline is not part of it"
        );
        assert!(!format!("{redis:?}").contains("s3cret"), "never printed");

        let inline = "[[check]]\nname = \"db\"\nkind = \"redis\"\naddress = \"h:1\"\npassword = \"s3cret\"\n";
        std::fs::write(&config, inline).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = parse_at(inline, &config).err().unwrap();
        assert!(
            e.contains(":5: [[check]] db: password:") && e.contains("use password_file"),
            "{e}"
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(parse_at(inline, &config).is_ok());
    }
}
