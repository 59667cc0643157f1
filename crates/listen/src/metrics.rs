use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// `listen`'s Prometheus metrics, labelled by source database.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub events_read: IntCounterVec,
    pub events_published: IntCounterVec,
    pub bytes_published: IntCounter,
    pub publish_errors: IntCounter,
    pub position_file: IntGauge,
    pub position_offset: IntGauge,
    pub lag_seconds: Gauge,
    pub duplicates: IntCounter,
    /// The service's `mee_dependency_up` gauges (unregistered stand-ins until `run`
    /// puts the service's in): Kafka confirms events, the binlog stream is open.
    pub kafka_up: IntGauge,
    pub mysql_up: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry, database: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("database", database);
        let m = Self {
            events_read: IntCounterVec::new(
                opts(
                    "mee_listen_events_read_total",
                    "Change events read from the binlog",
                ),
                &["table", "type"],
            )?,
            events_published: IntCounterVec::new(
                opts(
                    "mee_listen_events_published_total",
                    "Change events Kafka confirmed",
                ),
                &["table", "type"],
            )?,
            bytes_published: IntCounter::with_opts(opts(
                "mee_listen_bytes_published_total",
                "Bytes of change events Kafka confirmed",
            ))?,
            publish_errors: IntCounter::with_opts(opts(
                "mee_listen_publish_errors_total",
                "Events Kafka refused or timed out (listen resumes from the last confirmed position)",
            ))?,
            position_file: IntGauge::with_opts(opts(
                "mee_listen_position_file",
                "Binlog file number of the last confirmed position",
            ))?,
            position_offset: IntGauge::with_opts(opts(
                "mee_listen_position_offset",
                "Binlog offset of the last confirmed position",
            ))?,
            lag_seconds: Gauge::with_opts(opts(
                "mee_listen_replication_lag_seconds",
                "Now minus the commit time of the last confirmed transaction (0 when idle and caught up)",
            ))?,
            duplicates: IntCounter::with_opts(opts(
                "mee_listen_duplicates_after_restart_total",
                "Events published again after a restart (at-least-once; sync ignores them by version)",
            ))?,
            kafka_up: IntGauge::new("kafka_up", "stand-in")?,
            mysql_up: IntGauge::new("mysql_up", "stand-in")?,
        };
        registry.register(Box::new(m.events_read.clone()))?;
        registry.register(Box::new(m.events_published.clone()))?;
        registry.register(Box::new(m.bytes_published.clone()))?;
        registry.register(Box::new(m.publish_errors.clone()))?;
        registry.register(Box::new(m.position_file.clone()))?;
        registry.register(Box::new(m.position_offset.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        Ok(m)
    }
}
