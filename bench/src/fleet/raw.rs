//! The yardstick for the ingest ceiling: a bare libzmq ROUTER with CURVE
//! (no ZAP handler, so any client key) whose thread only receives and
//! counts messages, as the collector's router thread receives them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use curvemon_keys::KeyPair;

/// The server and its counter.
pub struct Server {
    pub endpoint: String,
    pair: KeyPair,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> anyhow::Result<Server> {
        let pair = KeyPair::generate()?;
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::ROUTER)?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(pair.secret.as_bytes())?;
        socket.set_linger(0)?;
        let port = crate::free_port()?;
        let endpoint = format!("tcp://127.0.0.1:{port}");
        socket.bind(&endpoint)?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                let _ctx = ctx;
                while !stop.load(Ordering::Relaxed) {
                    if socket.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
                        continue;
                    }
                    while let Ok(_routing) = socket.recv_msg(zmq::DONTWAIT) {
                        while socket.get_rcvmore().unwrap_or(false) {
                            let _ = socket.recv_msg(0);
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Ok(Server { endpoint, pair, received, stop, thread: Some(thread) })
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Its public key.
    pub fn public(&self) -> curvemon_keys::PublicKey {
        self.pair.public
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
