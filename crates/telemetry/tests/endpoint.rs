//! The metrics endpoint serves Prometheus text and reports health.

use mee_telemetry::{CancellationToken, Health, serve};
use prometheus::{IntCounter, Registry};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn serves_metrics_and_health_until_shutdown() {
    let registry = Registry::new();
    let counter = IntCounter::new("mee_test_events_total", "events").expect("metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("register");
    counter.inc_by(3);
    let health = Health::default();
    let shutdown = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        registry,
        health.clone(),
        shutdown.clone(),
    )
    .await
    .expect("serve");

    let metrics = get(server.addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("mee_test_events_total 3"), "{metrics}");

    let starting = get(server.addr, "/healthz").await;
    assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
    assert!(starting.contains("starting"), "{starting}");
    health.set_healthy();
    assert!(
        get(server.addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    health.set_unhealthy("kafka unreachable");
    let down = get(server.addr, "/healthz").await;
    assert!(
        down.starts_with("HTTP/1.1 503") && down.contains("kafka unreachable"),
        "{down}"
    );

    shutdown.cancel();
    server.task.await.expect("join").expect("clean stop");
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = serve(
        addr,
        Registry::new(),
        Health::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("port is taken");
    assert!(err.to_string().contains("metrics_listen"), "{err}");
}
