use crate::MySqlError;
use mee_core::config::{MySqlConfig, TlsMode};
use mysql_async::{ClientIdentity, Conn, Opts, OptsBuilder, Pool, PoolOpts, SslOpts};
use std::time::Duration;

/// Connection options for logical database `database`; the default schema is the
/// configured one. Fails only on TLS settings that cannot be used.
pub fn opts(database: &str, cfg: &MySqlConfig) -> Result<Opts, MySqlError> {
    let mut b = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.expose().to_string()))
        .db_name(Some(cfg.schema_name(database).to_string()))
        .prefer_socket(false)
        .stmt_cache_size(256)
        // TIMESTAMP values in UTC; text in utf8mb4 whatever the server default.
        .setup(vec!["SET time_zone = '+00:00', NAMES utf8mb4"])
        // No COM_RESET_CONNECTION when a connection goes back to the pool: it costs a
        // round trip and drops the prepared statements. We keep no other session state.
        .pool_opts(PoolOpts::default().with_reset_connection(false));
    if cfg.tls.mode != TlsMode::Disabled {
        let mut ssl = SslOpts::default()
            .with_danger_skip_domain_validation(cfg.tls.mode == TlsMode::VerifyCa);
        if let Some(ca) = &cfg.tls.ca_file {
            ssl = ssl.with_root_certs(vec![ca.clone().into()]);
        }
        match (&cfg.tls.client_cert_file, &cfg.tls.client_key_file) {
            (Some(cert), Some(key)) => {
                ssl = ssl.with_client_identity(Some(ClientIdentity::new(
                    cert.clone().into(),
                    key.clone().into(),
                )));
            }
            (None, None) => {}
            _ => {
                return Err(MySqlError::Tls {
                    database: database.to_string(),
                    message: "client_cert_file and client_key_file must be set together".into(),
                });
            }
        }
        b = b.ssl_opts(Some(ssl));
    }
    Ok(b.into())
}

/// One connection, bounded by `connect_timeout_ms`.
pub async fn connect(database: &str, cfg: &MySqlConfig) -> Result<Conn, MySqlError> {
    let o = opts(database, cfg)?;
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    match tokio::time::timeout(timeout, Conn::new(o)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(MySqlError::Connect {
            database: database.to_string(),
            host: cfg.host.clone(),
            port: cfg.port,
            source,
        }),
        Err(_) => Err(MySqlError::ConnectTimeout {
            database: database.to_string(),
            host: cfg.host.clone(),
            port: cfg.port,
            timeout_ms: cfg.connect_timeout_ms,
        }),
    }
}

/// A connection pool (lazy: connects on first use).
pub fn pool(database: &str, cfg: &MySqlConfig) -> Result<Pool, MySqlError> {
    Ok(Pool::new(opts(database, cfg)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mee_core::Secret;

    fn cfg() -> MySqlConfig {
        MySqlConfig {
            host: "db.example".into(),
            port: 3307,
            user: "mee".into(),
            password: Secret::new("pw"),
            schema: Some("shop_prod".into()),
            server_id: Some(9),
            connect_timeout_ms: 100,
            tls: Default::default(),
        }
    }

    #[test]
    fn options_follow_the_config() {
        let o = opts("shop", &cfg()).expect("opts");
        assert_eq!(o.ip_or_hostname(), "db.example");
        assert_eq!(o.tcp_port(), 3307);
        assert_eq!(o.user(), Some("mee"));
        assert_eq!(o.db_name(), Some("shop_prod"));
        assert!(o.ssl_opts().is_none());
    }

    #[test]
    fn verify_ca_skips_only_the_host_name() {
        let mut c = cfg();
        c.tls.mode = TlsMode::VerifyCa;
        c.tls.ca_file = Some("/etc/ca.pem".into());
        let o = opts("shop", &c).expect("opts");
        let ssl = o.ssl_opts().expect("tls on");
        assert!(ssl.skip_domain_validation());
        assert_eq!(ssl.root_certs().len(), 1);
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        let mut c = cfg();
        c.tls.mode = TlsMode::VerifyIdentity;
        c.tls.client_cert_file = Some("/c.pem".into());
        assert!(matches!(opts("shop", &c), Err(MySqlError::Tls { .. })));
    }
}
