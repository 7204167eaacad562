//! Socket monitor events: libzmq reports connects, disconnects and handshake
//! results on an inproc PAIR socket, two frames per event (RFC: `zmq_socket_monitor`).

/// What happened on a monitored socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A connection was established (before the CURVE handshake).
    Connected,
    /// A connect attempt will be retried after the reconnect interval.
    ConnectRetried,
    /// A peer connected to a bound socket.
    Accepted,
    /// A connection was closed or lost.
    Disconnected,
    /// The CURVE handshake completed: the peer is authenticated.
    HandshakeSucceeded,
    /// The handshake failed without detail (often: the peer closed it).
    HandshakeFailedNoDetail,
    /// The handshake failed on a protocol or cryptographic error.
    HandshakeFailedProtocol,
    /// ZAP refused the peer; the value is the ZAP status code.
    HandshakeFailedAuth,
    /// Anything else (listening, bind failures, ...).
    Other(u16),
}

/// One decoded monitor event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The event's value: a file descriptor, an errno, a protocol error code
    /// or a ZAP status code, depending on the kind.
    pub value: u32,
    /// The endpoint (for a bound socket, the peer's `tcp://address:port`).
    pub endpoint: String,
}

impl Event {
    /// Words for a failed handshake, for logs: libzmq's protocol error code
    /// for [`EventKind::HandshakeFailedProtocol`], an errno otherwise.
    pub fn describe(&self) -> String {
        let text = match (self.kind, self.value) {
            (EventKind::HandshakeFailedProtocol, 0x1100_0001) => {
                "cryptographic error (wrong server key, or corrupted traffic)"
            }
            (EventKind::HandshakeFailedProtocol, 0x1100_0002) => {
                "mechanism mismatch (one side does not use CURVE)"
            }
            (EventKind::HandshakeFailedProtocol, 0x1000_0000..=0x1000_00ff) => {
                "ZMTP protocol error"
            }
            (EventKind::HandshakeFailedProtocol, 0x2000_0000..=0x2000_00ff) => {
                "the ZAP handler answered badly"
            }
            (EventKind::HandshakeFailedProtocol, _) => "protocol error",
            (EventKind::HandshakeFailedAuth, _) => "refused by the ZAP handler",
            (_, 32 | 104) => "the peer closed the connection mid-handshake",
            _ => "handshake failed",
        };
        format!("{text} (code {:#x})", self.value)
    }
}

const EVENT_CONNECTED: u16 = 0x0001;
const EVENT_CONNECT_RETRIED: u16 = 0x0004;
const EVENT_ACCEPTED: u16 = 0x0020;
const EVENT_DISCONNECTED: u16 = 0x0200;
const EVENT_HANDSHAKE_FAILED_NO_DETAIL: u16 = 0x0800;
const EVENT_HANDSHAKE_SUCCEEDED: u16 = 0x1000;
const EVENT_HANDSHAKE_FAILED_PROTOCOL: u16 = 0x2000;
const EVENT_HANDSHAKE_FAILED_AUTH: u16 = 0x4000;

/// The events the collector (and tests playing agents) care about.
const WATCHED: u16 = EVENT_CONNECTED
    | EVENT_CONNECT_RETRIED
    | EVENT_ACCEPTED
    | EVENT_DISCONNECTED
    | EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | EVENT_HANDSHAKE_SUCCEEDED
    | EVENT_HANDSHAKE_FAILED_PROTOCOL
    | EVENT_HANDSHAKE_FAILED_AUTH;

/// Starts monitoring `socket` and returns the PAIR socket the events arrive
/// on. `name` must be unique within the context (it is an inproc endpoint).
///
/// # Errors
/// libzmq's error if the monitor cannot be set up.
pub fn attach_monitor(
    ctx: &zmq::Context,
    socket: &zmq::Socket,
    name: &str,
) -> zmq::Result<zmq::Socket> {
    let endpoint = format!("inproc://monitor-{name}");
    socket.monitor(&endpoint, i32::from(WATCHED))?;
    let pair = ctx.socket(zmq::PAIR)?;
    pair.set_linger(0)?;
    pair.connect(&endpoint)?;
    Ok(pair)
}

/// Reads one event without blocking; `Ok(None)` when none is waiting or the
/// event frames are not in the documented shape.
///
/// # Errors
/// libzmq's error other than "would block".
pub fn read_event(monitor: &zmq::Socket) -> zmq::Result<Option<Event>> {
    let first = match monitor.recv_bytes(zmq::DONTWAIT) {
        Ok(bytes) => bytes,
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !monitor.get_rcvmore()? {
        return Ok(None);
    }
    let endpoint = String::from_utf8_lossy(&monitor.recv_bytes(0)?).into_owned();
    Ok(decode(&first, endpoint))
}

fn decode(first: &[u8], endpoint: String) -> Option<Event> {
    if first.len() != 6 {
        return None;
    }
    // libzmq writes both fields in host byte order.
    let code = u16::from_ne_bytes([first[0], first[1]]);
    let value = u32::from_ne_bytes([first[2], first[3], first[4], first[5]]);
    let kind = match code {
        EVENT_CONNECTED => EventKind::Connected,
        EVENT_CONNECT_RETRIED => EventKind::ConnectRetried,
        EVENT_ACCEPTED => EventKind::Accepted,
        EVENT_DISCONNECTED => EventKind::Disconnected,
        EVENT_HANDSHAKE_SUCCEEDED => EventKind::HandshakeSucceeded,
        EVENT_HANDSHAKE_FAILED_NO_DETAIL => EventKind::HandshakeFailedNoDetail,
        EVENT_HANDSHAKE_FAILED_PROTOCOL => EventKind::HandshakeFailedProtocol,
        EVENT_HANDSHAKE_FAILED_AUTH => EventKind::HandshakeFailedAuth,
        other => EventKind::Other(other),
    };
    Some(Event { kind, value, endpoint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_frame() {
        let mut frame = EVENT_HANDSHAKE_FAILED_AUTH.to_ne_bytes().to_vec();
        frame.extend_from_slice(&400u32.to_ne_bytes());
        let event = decode(&frame, "tcp://127.0.0.1:5556".into()).unwrap();
        assert_eq!(event.kind, EventKind::HandshakeFailedAuth);
        assert_eq!(event.value, 400);
        assert_eq!(event.endpoint, "tcp://127.0.0.1:5556");
        assert_eq!(decode(&[1, 2, 3], String::new()), None);
    }
}
