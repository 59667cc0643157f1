use crate::apply::now_ms;
use crate::report::BatchReport;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// `sync`'s Prometheus metrics, labelled by task and generation.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub events_consumed: IntCounterVec,
    pub events_skipped: IntCounterVec,
    pub documents: IntCounterVec,
    pub bulk_seconds: HistogramVec,
    pub batch_events: HistogramVec,
    pub stage_seconds: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub rebuild_needed: IntCounterVec,
    pub batch_failures: IntCounterVec,
}

const GEN: &[&str] = &["task", "generation"];

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = |extra: &'static [&'static str]| -> Vec<&'static str> {
            GEN.iter().chain(extra).copied().collect()
        };
        let m = Self {
            events_consumed: IntCounterVec::new(
                Opts::new(
                    "mee_sync_events_consumed_total",
                    "Change events read from Kafka",
                ),
                &labels(&["table", "type"]),
            )?,
            events_skipped: IntCounterVec::new(
                Opts::new(
                    "mee_sync_events_skipped_total",
                    "Events that need no write: a table the handler does not read (table), both images fail the filter (filter), harmless DDL (ddl), a TRUNCATE or DDL read from a partition other than 0, reported from partition 0 (ddl_copy), a master row's change a remembered write already includes (covered)",
                ),
                &labels(&["reason"]),
            )?,
            documents: IntCounterVec::new(
                Opts::new(
                    "mee_sync_documents_total",
                    "Document writes by outcome: indexed, deleted, conflict (a newer version was there), dead_lettered, covered (not rebuilt: an earlier write already included the change)",
                ),
                &labels(&["outcome"]),
            )?,
            bulk_seconds: HistogramVec::new(
                HistogramOpts::new("mee_sync_bulk_seconds", "Latency of _bulk requests").buckets(
                    vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                ),
                GEN,
            )?,
            batch_events: HistogramVec::new(
                HistogramOpts::new("mee_sync_batch_events", "Events per applied batch")
                    .buckets(vec![1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 20000.0]),
                GEN,
            )?,
            stage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "mee_sync_stage_seconds",
                    "Time a batch spends per stage: filter (skipping what the handler does not read), trace (finding affected documents), \
                     search (items found by `query` in Elasticsearch), build (reading them \
                     from MySQL), write (Elasticsearch), dead_letter, wait (done, waiting for \
                     earlier batches before its offsets are committed)",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ]),
                &labels(&["stage"]),
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "mee_sync_consumer_lag_messages",
                    "Messages in the change topics after the generation's committed offsets",
                ),
                GEN,
            )?,
            lag_seconds: GaugeVec::new(
                Opts::new(
                    "mee_sync_replication_lag_seconds",
                    "Now minus the commit time of the last applied event (0 when idle and caught up)",
                ),
                GEN,
            )?,
            rebuild_needed: IntCounterVec::new(
                Opts::new(
                    "mee_sync_rebuild_needed_total",
                    "TRUNCATE or DDL on a table the handler reads: run `update` to rebuild the task",
                ),
                &labels(&["table", "type"]),
            )?,
            batch_failures: IntCounterVec::new(
                Opts::new(
                    "mee_sync_batch_failures_total",
                    "Attempts to apply a batch that failed transiently and were retried",
                ),
                GEN,
            )?,
        };
        registry.register(Box::new(m.events_consumed.clone()))?;
        registry.register(Box::new(m.events_skipped.clone()))?;
        registry.register(Box::new(m.documents.clone()))?;
        registry.register(Box::new(m.bulk_seconds.clone()))?;
        registry.register(Box::new(m.batch_events.clone()))?;
        registry.register(Box::new(m.stage_seconds.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        registry.register(Box::new(m.rebuild_needed.clone()))?;
        registry.register(Box::new(m.batch_failures.clone()))?;
        Ok(m)
    }

    /// Count what applying a batch of `events` messages did.
    pub(crate) fn record(&self, labels: &[&str; 2], events: usize, r: &BatchReport) {
        let [task, generation] = *labels;
        for (table, kind, n) in &r.consumed {
            self.events_consumed
                .with_label_values(&[task, generation, table, kind])
                .inc_by(*n);
        }
        for (reason, n) in &r.skipped {
            self.events_skipped
                .with_label_values(&[task, generation, reason])
                .inc_by(*n);
        }
        for (table, kind) in &r.rebuild_needed {
            self.rebuild_needed
                .with_label_values(&[task, generation, table, kind])
                .inc();
        }
        for (outcome, n) in [
            ("indexed", r.indexed),
            ("deleted", r.deleted),
            ("conflict", r.conflicts),
            ("dead_lettered", r.dead_lettered),
            ("covered", r.covered),
        ] {
            self.documents
                .with_label_values(&[task, generation, outcome])
                .inc_by(n);
        }
        for d in &r.bulk_latencies {
            self.bulk_seconds
                .with_label_values(labels)
                .observe(d.as_secs_f64());
        }
        for (stage, d) in &r.stages {
            self.stage_seconds
                .with_label_values(&[task, generation, stage])
                .observe(d.as_secs_f64());
        }
        self.batch_events
            .with_label_values(labels)
            .observe(events as f64);
        if let Some(ts) = r.newest_commit_ms {
            let lag = now_ms().saturating_sub(ts) as f64 / 1000.0;
            self.lag_seconds.with_label_values(labels).set(lag);
        }
    }
}
