//! CURVE on libzmq sockets.

use curvemon_keys::{KeyPair, PublicKey};
use thiserror::Error;

/// The ZAP domain the collector's ROUTER announces; the ZAP handler only
/// answers for it.
pub const ZAP_DOMAIN: &str = "curvemon";

/// A libzmq set-up problem, with the fix in the message.
#[derive(Debug, Error)]
pub enum LinkError {
    /// libzmq was built without CURVE (libsodium).
    #[error(
        "the linked libzmq {version} has no CURVE support; install a libzmq built with libsodium \
         (Debian/Ubuntu: apt-get install libzmq3-dev) and rebuild"
    )]
    NoCurve {
        /// libzmq's version, as `x.y.z`.
        version: String,
    },
    /// A socket option was refused.
    #[error("setting {option} on a zmq socket failed: {error}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// libzmq's error (in the message, not a `source()`).
        error: zmq::Error,
    },
}

/// Fails with an actionable error unless libzmq can do CURVE.
///
/// # Errors
/// [`LinkError::NoCurve`].
pub fn require_curve() -> Result<(), LinkError> {
    // zmq 0.9 returns Option<bool> (None when libzmq predates zmq_has).
    if zmq::has("curve") == Some(true) {
        Ok(())
    } else {
        let (major, minor, patch) = zmq::version();
        Err(LinkError::NoCurve { version: format!("{major}.{minor}.{patch}") })
    }
}

fn opt(option: &'static str) -> impl FnOnce(zmq::Error) -> LinkError {
    move |source| LinkError::Option { option, error: source }
}

/// Makes `socket` a CURVE client of the server whose public key is `server`.
///
/// # Errors
/// [`LinkError::Option`].
pub fn apply_client(
    socket: &zmq::Socket,
    ours: &KeyPair,
    server: &PublicKey,
) -> Result<(), LinkError> {
    socket.set_curve_serverkey(server.as_bytes()).map_err(opt("ZMQ_CURVE_SERVERKEY"))?;
    socket.set_curve_publickey(ours.public.as_bytes()).map_err(opt("ZMQ_CURVE_PUBLICKEY"))?;
    socket.set_curve_secretkey(ours.secret.as_bytes()).map_err(opt("ZMQ_CURVE_SECRETKEY"))?;
    Ok(())
}

/// Makes `socket` a CURVE server that asks the ZAP handler about every
/// client. Call this before `bind`, and bind the ZAP handler before that:
/// libzmq admits every client that knows the server key when no handler is
/// bound, unless `ZMQ_ZAP_ENFORCE_DOMAIN` is set, which this also sets.
///
/// # Errors
/// [`LinkError::Option`].
pub fn apply_server(socket: &mut zmq::Socket, ours: &KeyPair) -> Result<(), LinkError> {
    socket.set_curve_server(true).map_err(opt("ZMQ_CURVE_SERVER"))?;
    socket.set_curve_secretkey(ours.secret.as_bytes()).map_err(opt("ZMQ_CURVE_SECRETKEY"))?;
    socket.set_zap_domain(ZAP_DOMAIN).map_err(opt("ZMQ_ZAP_DOMAIN"))?;
    set_zap_enforce_domain(socket)?;
    Ok(())
}

/// `ZMQ_ZAP_ENFORCE_DOMAIN` (93) is a libzmq 4.3 draft option that the zmq
/// crate does not wrap. With it, a CURVE server whose ZAP handler is missing
/// refuses every client instead of admitting them all.
#[allow(unsafe_code)]
fn set_zap_enforce_domain(socket: &mut zmq::Socket) -> Result<(), LinkError> {
    const ZMQ_ZAP_ENFORCE_DOMAIN: i32 = 93;
    let on: i32 = 1;
    // SAFETY: the socket pointer is valid for the life of `socket`, which we
    // borrow mutably; the option value is a 4-byte int that outlives the call.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_ZAP_ENFORCE_DOMAIN,
            (&on as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LinkError::Option {
            option: "ZMQ_ZAP_ENFORCE_DOMAIN",
            error: zmq::Error::from_raw(zmq_errno()),
        })
    }
}

#[allow(unsafe_code)]
fn zmq_errno() -> i32 {
    // SAFETY: zmq_errno reads a thread-local; no arguments.
    unsafe { zmq_sys::zmq_errno() }
}
