//! Any bytes as a server's side of an availability check: the first byte
//! picks the kind (HTTP, TCP, PostgreSQL, Redis, AMQP), the rest is what
//! the server sends before it hangs up. The check must end with a result,
//! never panic, and never take more memory than its bounds.
#![no_main]

use std::{
    io::Write,
    os::unix::net::UnixStream,
    time::Duration,
};

use curvemon_agent::{
    checks::{Record, amqp, config::Secret, http, postgres, redis, tcp},
    net::{Address, Conn, Deadline, Timed},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, server)) = data.split_first() else { return };
    // What fits a socket buffer, so the server's side needs no thread.
    let server = &server[..server.len().min(48 * 1024)];
    let (client, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(server).unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut conn = Conn::new(client, Deadline::after(Duration::from_secs(1)), |s| s as &dyn Timed);
    let mut record = Record::default();
    let address = Address::Unix("/nonexistent".into());
    let password = || Some(Secret::new("pw".into()));
    let _ = match kind % 5 {
        0 => http::Http {
            url: http::Url::parse("http://127.0.0.1:1/health").unwrap(),
            method: if kind & 0x80 == 0 { "GET".into() } else { "HEAD".into() },
            accept: http::Accept::default(),
            body: Some(regex_lite::Regex::new("ok").unwrap()),
            max_bytes: 4096,
            tls: None,
        }
        .exchange(&mut conn, &mut record),
        1 => tcp::Tcp {
            address,
            tls: None,
            send: Some("PING\r\n".into()),
            expect: Some(regex_lite::Regex::new("^\\+PONG").unwrap()),
        }
        .exchange(&mut conn),
        2 => postgres::Postgres {
            address,
            tls: None,
            database: "shop".into(),
            user: "shop".into(),
            password: password(),
        }
        .exchange(&mut conn, &mut record),
        3 => redis::Redis { address, tls: None, user: None, password: password() }
            .exchange(&mut conn, &mut record),
        _ => amqp::Amqp {
            address,
            tls: None,
            vhost: "/".into(),
            user: "guest".into(),
            password: Secret::new("guest".into()),
        }
        .exchange(&mut conn, &mut record),
    };
    drop(peer);
});
