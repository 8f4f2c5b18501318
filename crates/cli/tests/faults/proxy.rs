//! A TCP proxy between stint and PostgreSQL that can be paused: a network partition on demand.
//!
//! While paused, the proxy accepts connections and keeps every socket open but moves no byte in
//! either direction, as a cut cable or a dropped route does (no reset, no error: the client's
//! reads and writes just wait). Resuming lets the held bytes through.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; dropping it stops it (its runtime goes with it).
pub(crate) struct Proxy {
    pub addr: SocketAddr,
    paused: Arc<watch::Sender<bool>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let paused = Arc::new(watch::Sender::new(false));
        let accepting = paused.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let paused = accepting.subscribe();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, paused).await;
                    }
                });
            }
        });
        Self {
            addr,
            paused,
            _runtime: runtime,
        }
    }

    /// Stops moving bytes, on every connection, old and new.
    pub(crate) fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Lets bytes through again.
    pub(crate) fn resume(&self) {
        self.paused.send_replace(false);
    }
}

/// Copies both ways until either side closes, holding each chunk while paused.
async fn forward(client: TcpStream, server: TcpStream, paused: watch::Receiver<bool>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, paused.clone()) => {}
        () = pump(server_read, client_write, paused) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // A chunk read just before the pause is held until the resume, like the rest.
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
