use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// `update`'s Prometheus metrics, labelled by task.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub masters: IntCounter,
    pub documents: IntCounterVec,
    pub bulk_seconds: Histogram,
}

impl Metrics {
    pub fn register(registry: &Registry, task: &str) -> Result<Self, prometheus::Error> {
        let m = Self {
            masters: IntCounter::with_opts(
                Opts::new("mee_update_masters_read_total", "Master rows loaded")
                    .const_label("task", task),
            )?,
            documents: IntCounterVec::new(
                Opts::new(
                    "mee_update_documents_total",
                    "Documents written by the load, by outcome: indexed, conflict (a newer write was there), dead_lettered",
                )
                .const_label("task", task),
                &["outcome"],
            )?,
            bulk_seconds: Histogram::with_opts(
                HistogramOpts::new("mee_update_bulk_seconds", "Latency of _bulk requests")
                    .const_label("task", task)
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
        };
        registry.register(Box::new(m.masters.clone()))?;
        registry.register(Box::new(m.documents.clone()))?;
        registry.register(Box::new(m.bulk_seconds.clone()))?;
        Ok(m)
    }
}
