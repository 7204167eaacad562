//! The ZAP handler (ZeroMQ RFC 27): libzmq asks it about every CURVE client
//! during the handshake, before any message of that client reaches the
//! ROUTER. It runs on its own thread with a REP socket bound to
//! `inproc://zeromq.zap.01`, which must be bound before the ROUTER is.
//!
//! Every request gets a reply, even a malformed one (status 500): a REP
//! socket that skips a reply is stuck for good. The reply's user id is the
//! client's Z85 public key, which the router reads per message as `User-Id`.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, Ordering},
};

use curvemon_keys::{AuthorizedKeys, PublicKey};
use curvemon_link::ZAP_DOMAIN;
use tracing::{debug, error, warn};

use crate::stats::Stats;

/// The endpoint libzmq sends ZAP requests to.
pub const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The allowlist as the handler sees it: `None` admits any key.
pub type SharedAllowlist = Arc<RwLock<Option<AuthorizedKeys>>>;

/// A decision about one ZAP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// "200", "400" or "500".
    pub status: &'static str,
    /// Why, for the client's log and ours.
    pub text: String,
    /// The authenticated identity (Z85 key), empty unless 200.
    pub user_id: String,
}

/// Decides on a ZAP request's frames (RFC 27: version, request id, domain,
/// address, identity, mechanism, credentials...).
pub fn decide(frames: &[Vec<u8>], allowlist: Option<&AuthorizedKeys>) -> Verdict {
    let fail =
        |status, text: &str| Verdict { status, text: text.to_string(), user_id: String::new() };
    if frames.len() < 6 || frames[0] != b"1.0" {
        return fail("500", "malformed ZAP request");
    }
    if frames[2] != ZAP_DOMAIN.as_bytes() {
        return fail("400", "unknown ZAP domain");
    }
    if frames[5] != b"CURVE" || frames.len() != 7 {
        return fail("400", "only CURVE clients are accepted");
    }
    let Ok(key_bytes) = <[u8; 32]>::try_from(frames[6].as_slice()) else {
        return fail("400", "CURVE credential is not a 32-byte key");
    };
    let key = PublicKey::from_bytes(key_bytes);
    match allowlist {
        Some(list) if list.get(&key).is_none() => fail("400", "key not in authorized_agents"),
        _ => Verdict { status: "200", text: "OK".into(), user_id: key.to_z85() },
    }
}

/// Serves ZAP requests until `stop` is set. The socket must already be bound.
pub fn serve(
    socket: zmq::Socket,
    allowlist: SharedAllowlist,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match socket.poll(zmq::POLLIN, 200) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                error!(error = %e, "ZAP socket failed; no agent can connect until restart.");
                return;
            }
        }
        let frames = match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => continue,
            Err(e) => {
                error!(error = %e, "Reading a ZAP request failed.");
                continue;
            }
        };
        let verdict = {
            let guard = allowlist.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            decide(&frames, guard.as_ref())
        };
        let address =
            frames.get(3).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        if verdict.status == "200" {
            debug!(peer = %address, key = %verdict.user_id, "ZAP: admitted agent.");
        } else {
            let key = frames
                .get(6)
                .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
                .map(|k| PublicKey::from_bytes(k).to_z85())
                .unwrap_or_else(|| "-".into());
            Stats::bump(&stats.agents_refused);
            warn!(peer = %address, %key, reason = %verdict.text, "Refused an agent.");
        }
        let request_id = frames.get(1).cloned().unwrap_or_default();
        let reply: [&[u8]; 6] = [
            b"1.0",
            &request_id,
            verdict.status.as_bytes(),
            verdict.text.as_bytes(),
            verdict.user_id.as_bytes(),
            b"",
        ];
        if let Err(e) = socket.send_multipart(reply, 0) {
            error!(error = %e, "Sending a ZAP reply failed.");
        }
    }
    debug!("ZAP handler stopped.");
    let _ = socket.set_linger(0);
}

#[cfg(test)]
mod tests {
    use curvemon_keys::{KeyPair, cert};

    use super::*;

    fn request(domain: &[u8], mechanism: &[u8], credential: &[u8]) -> Vec<Vec<u8>> {
        vec![
            b"1.0".to_vec(),
            b"1".to_vec(),
            domain.to_vec(),
            b"127.0.0.1".to_vec(),
            b"".to_vec(),
            mechanism.to_vec(),
            credential.to_vec(),
        ]
    }

    #[test]
    fn open_collector_admits_any_curve_key() {
        let key = KeyPair::generate().unwrap().public;
        let v = decide(&request(b"curvemon", b"CURVE", key.as_bytes()), None);
        assert_eq!(v.status, "200");
        assert_eq!(v.user_id, key.to_z85());
    }

    #[test]
    fn allowlist_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let known = KeyPair::generate().unwrap();
        cert::write_pair(dir.path(), "known", &known, "known", false).unwrap();
        let list = AuthorizedKeys::load(dir.path()).unwrap().unwrap();
        assert_eq!(
            decide(&request(b"curvemon", b"CURVE", known.public.as_bytes()), Some(&list)).status,
            "200"
        );
        let stranger = KeyPair::generate().unwrap().public;
        let v = decide(&request(b"curvemon", b"CURVE", stranger.as_bytes()), Some(&list));
        assert_eq!((v.status, v.user_id.as_str()), ("400", ""));
    }

    #[test]
    fn malformed_requests_still_get_an_answer() {
        assert_eq!(decide(&[], None).status, "500");
        assert_eq!(decide(&vec![b"2.0".to_vec(); 7], None).status, "500");
        assert_eq!(decide(&request(b"other", b"CURVE", &[0; 32]), None).status, "400");
        assert_eq!(decide(&request(b"curvemon", b"NULL", b""), None).status, "400");
        assert_eq!(decide(&request(b"curvemon", b"CURVE", &[0; 31]), None).status, "400");
    }
}
