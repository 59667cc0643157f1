//! A TCP proxy a test can cut: stands between a service and a server to make the
//! server unreachable (connections refused and dropped) and reachable again, without
//! stopping the shared server other tests use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Bumped when cut: connections from an earlier epoch end.
    epoch: Arc<AtomicU64>,
}

impl TcpProxy {
    /// Listen on 127.0.0.1:<ephemeral> and forward to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let down = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let target = target.to_string();
        let (d, e) = (down.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound); // refused, as a dead server would
                    continue;
                }
                let (target, e) = (target.clone(), e.clone());
                let born = e.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let pipe = copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while e.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = pipe => {}
                        () = cut => {}
                    }
                });
            }
        });
        Self { addr, down, epoch }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drop every open connection and refuse new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
