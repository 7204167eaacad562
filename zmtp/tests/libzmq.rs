//! This client against a real libzmq ROUTER (the collector's socket type,
//! options and ZAP arrangement), over loopback TCP.

use std::time::{Duration, Instant};

use curvemon_keys::KeyPair;
use curvemon_zmtp::{Client, Keys, Options, ZmtpError};
use zeroize::Zeroizing;

const LIMIT: Duration = Duration::from_secs(10);

fn options() -> Options<'static> {
    Options { timeout: LIMIT, interrupt: None, max_message: 1 << 20, send_queue: 1 << 20 }
}

fn keys(ours: &KeyPair, server: &KeyPair) -> Keys {
    Keys {
        public: *ours.public.as_bytes(),
        secret: Zeroizing::new(*ours.secret.as_bytes()),
        server: *server.public.as_bytes(),
    }
}

/// A CURVE ROUTER on a free loopback port, and its endpoint.
fn router(ctx: &zmq::Context, server: &KeyPair) -> (zmq::Socket, String) {
    router_with(ctx, server, |_| {})
}

/// The same, with more options set before the bind (libzmq copies a
/// socket's options to its listener when it binds).
fn router_with(
    ctx: &zmq::Context,
    server: &KeyPair,
    configure: impl FnOnce(&zmq::Socket),
) -> (zmq::Socket, String) {
    let mut socket = ctx.socket(zmq::ROUTER).unwrap();
    configure(&socket);
    curvemon_link::apply_server(&mut socket, server).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(10_000).unwrap();
    socket.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = socket.get_last_endpoint().unwrap().unwrap();
    (socket, endpoint)
}

/// A ZAP handler that answers every request with `status`, and passes the
/// client key back as the User-Id, as the collector's does.
fn zap(ctx: &zmq::Context, status: &'static str) -> std::thread::JoinHandle<()> {
    let handler = ctx.socket(zmq::REP).unwrap();
    handler.bind("inproc://zeromq.zap.01").unwrap();
    handler.set_rcvtimeo(10_000).unwrap();
    std::thread::spawn(move || {
        while let Ok(request) = handler.recv_multipart(0) {
            let key = curvemon_keys::PublicKey::from_bytes(request[6].clone().try_into().unwrap());
            let reply: Vec<Vec<u8>> = vec![
                b"1.0".to_vec(),
                request[1].clone(),
                status.as_bytes().to_vec(),
                b"".to_vec(),
                key.to_z85().into_bytes(),
                b"".to_vec(),
            ];
            handler.send_multipart(reply, 0).unwrap();
        }
    })
}

fn receive(client: &mut Client) -> Vec<u8> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(message) = client.receive().unwrap() {
            return message;
        }
        assert!(Instant::now() < deadline, "no message from the ROUTER");
        let mut fds =
            [rustix::event::PollFd::from_borrowed_fd(client.fd(), rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 }))
            .unwrap();
    }
}

#[test]
fn messages_go_both_ways_with_the_key_authenticated() {
    let ctx = zmq::Context::new();
    let _zap = zap(&ctx, "200");
    let (server, agent) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (router, endpoint) = router(&ctx, &server);
    let mut client = Client::connect(&endpoint, keys(&agent, &server), &options()).unwrap();

    for size in [0, 5, 255, 256, 70_000, 1 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        assert!(client.send(&payload).unwrap());
        let deadline = Instant::now() + LIMIT;
        while client.wants_write() {
            client.flush().unwrap();
            assert!(Instant::now() < deadline);
        }
        let routing = router.recv_msg(0).unwrap();
        let mut got = router.recv_msg(0).unwrap();
        assert_eq!(got.len(), size);
        assert_eq!(&got[..], &payload[..]);
        assert_eq!(got.gets("User-Id"), Some(agent.public.to_z85().as_str()), "ZAP saw our key");
        assert_eq!(got.gets("Socket-Type"), Some("DEALER"));

        router.send(&routing[..], zmq::SNDMORE).unwrap();
        router.send(&payload[..], 0).unwrap();
        assert_eq!(receive(&mut client), payload);
    }
}

/// How connecting fails against a ROUTER whose ZAP handler answers
/// `status`, holding the expected key or (`impostor`) another one.
fn connect_error(status: &'static str, impostor: bool) -> ZmtpError {
    let ctx = zmq::Context::new();
    let _zap = zap(&ctx, status);
    let (server, other, agent) =
        (KeyPair::generate().unwrap(), KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (_router, endpoint) = router(&ctx, if impostor { &other } else { &server });
    Client::connect(&endpoint, keys(&agent, &server), &options()).err().unwrap()
}

#[test]
fn a_server_with_another_key_is_not_trusted() {
    // libzmq cannot open our HELLO and hangs up.
    let error = connect_error("200", true);
    assert!(matches!(error, ZmtpError::Closed(_)), "{error}");
}

#[test]
fn a_refusal_by_zap_is_reported_as_such() {
    let error = connect_error("400", false);
    assert!(matches!(error, ZmtpError::Refused(_)), "{error}");
}

#[test]
fn a_server_without_curve_is_named() {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let (server, agent) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let error = Client::connect(&endpoint, keys(&agent, &server), &options()).err().unwrap();
    // Named when libzmq's greeting arrives before it hangs up.
    assert!(
        matches!(&error, ZmtpError::Mechanism(m) if m == "NULL")
            || error.to_string().contains("may not use CURVE"),
        "{error}"
    );
}

#[test]
fn nothing_listening_is_a_connect_error_and_an_interrupt_stops_the_wait() {
    let (server, agent) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let error = Client::connect(&endpoint, keys(&agent, &server), &options()).err().unwrap();
    assert!(matches!(error, ZmtpError::Connect { .. }), "{error}");

    // A listener that never answers the greeting: only the interrupt ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", silent.local_addr().unwrap());
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &writer, b"x").unwrap();
    let interrupted = Options { interrupt: Some(std::os::fd::AsFd::as_fd(&reader)), ..options() };
    let error = Client::connect(&endpoint, keys(&agent, &server), &interrupted).err().unwrap();
    assert!(matches!(error, ZmtpError::Interrupted), "{error}");
}

#[test]
fn heartbeats_from_libzmq_are_answered_and_keep_the_connection() {
    let ctx = zmq::Context::new();
    let _zap = zap(&ctx, "200");
    let (server, agent) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    // libzmq drops a peer that sends nothing for 300 ms after a PING.
    let (router, endpoint) = router_with(&ctx, &server, |s| {
        s.set_heartbeat_ivl(50).unwrap();
        s.set_heartbeat_timeout(300).unwrap();
    });
    let monitor = curvemon_link::attach_monitor(&ctx, &router, "heartbeat").unwrap();
    let mut client = Client::connect(&endpoint, keys(&agent, &server), &options()).unwrap();
    assert!(client.send(b"hello").unwrap());
    let routing = router.recv_msg(0).unwrap();
    let _ = router.recv_msg(0).unwrap();

    // Idle for ten heartbeat timeouts, answering only what libzmq sends.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        assert_eq!(client.receive().unwrap(), None, "PINGs are not messages");
        client.flush().unwrap();
        let mut fds =
            [rustix::event::PollFd::from_borrowed_fd(client.fd(), rustix::event::PollFlags::IN)];
        rustix::event::poll(
            &mut fds,
            Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 20_000_000 }),
        )
        .unwrap();
    }
    while let Some(event) = curvemon_link::read_event(&monitor).unwrap() {
        assert_ne!(
            event.kind,
            curvemon_link::EventKind::Disconnected,
            "libzmq dropped us: {event:?}"
        );
    }
    router.send(&routing[..], zmq::SNDMORE).unwrap();
    router.send(&b"still here"[..], 0).unwrap();
    assert_eq!(receive(&mut client), b"still here");
}
