//! Waiting for the changes made up to now to reach the index before suspects are
//! re-checked: `listen` has published MySQL's binlog up to its position of now, then
//! the live generation's consumer group (`sync`) has passed the change topics' ends of
//! that moment.

use super::Verifier;
use mee_redis::{Keys, PositionStore};
use std::time::{Duration, Instant};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

impl Verifier<'_> {
    /// Wait until the changes made up to now are in the index: `listen` has published
    /// MySQL's binlog up to its current position, and the live generation's consumer
    /// group (`sync`) has passed the change topics' current ends. Gives up after
    /// `--recheck-timeout` (once; later re-checks then do not wait).
    pub(super) async fn settle(&mut self, suspects: usize) -> anyhow::Result<()> {
        if self.lag_given_up {
            return Ok(());
        }
        let started = Instant::now();
        tracing::info!(
            documents = suspects,
            "waiting for listen and sync to apply the changes made so far, then re-checking"
        );
        match self.wait_for_lag(started + self.opts.recheck_timeout).await {
            Ok(true) => {
                tracing::info!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "caught up; re-checking"
                );
            }
            Ok(false) => {
                self.lag_given_up = true;
                self.note(format!(
                    "listen and sync did not catch up within {} s (--recheck-timeout; are `listen` \
                     and `sync -n {}` running?): the drift reported may include changes still in \
                     flight",
                    self.opts.recheck_timeout.as_secs(),
                    self.generation.map_or("<task>", |g| g.task.as_str())
                ));
            }
            Err(e) => {
                self.lag_given_up = true;
                self.note(format!(
                    "could not measure the sync lag ({e:#}); re-checked without waiting"
                ));
            }
        }
        self.interrupted()
    }

    /// `Ok(true)` once caught up, `Ok(false)` at the deadline.
    async fn wait_for_lag(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        let keys = Keys::new(&self.cfg.redis.key_prefix);
        let shown_url = mee_core::secret::redact_url(self.cfg.redis.url.expose());
        for db in self.databases.clone() {
            let now = self.binlog_position(&db).await?;
            let mut saved = PositionStore::new(self.redis.clone(), &keys, &db, &shown_url);
            loop {
                let Some(at) = saved.load().await? else {
                    self.note(format!(
                        "`listen -d {db}` has saved no position: changes it has not published \
                         yet were not waited for"
                    ));
                    break;
                };
                match at.binlog_cmp(&now) {
                    Some(o) if o.is_ge() => break,
                    None => {
                        self.note(format!(
                            "listen's position {at} and MySQL's {now} cannot be compared: \
                             changes `listen -d {db}` has not published yet were not waited for"
                        ));
                        break;
                    }
                    Some(_) if Instant::now() >= deadline => return Ok(false),
                    Some(_) => self.pause(Duration::from_millis(200)).await?,
                }
            }
        }
        let Some(g) = self.generation else {
            self.note(
                "no live generation in Redis, so no consumer group to wait for: re-checked \
                 without waiting for sync"
                    .into(),
            );
            return Ok(true);
        };
        let mark = mee_kafka::end_offsets(&self.cfg.kafka, &g.topics, KAFKA_TIMEOUT).await?;
        loop {
            let lag =
                mee_kafka::group_lag(&self.cfg.kafka, &g.group, &g.topics, KAFKA_TIMEOUT).await?;
            let behind = mark.iter().any(|m| {
                m.offset > 0
                    && !lag
                        .partitions
                        .iter()
                        .any(|(topic, partition, committed, _)| {
                            *topic == m.topic && *partition == m.partition && *committed >= m.offset
                        })
            });
            if !behind {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.pause(Duration::from_millis(250)).await?;
        }
    }

    /// Sleep for `d`; `Err` when shutdown is asked for meanwhile.
    async fn pause(&self, d: Duration) -> anyhow::Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.shutdown.cancelled() => self.interrupted(),
        }
    }

    /// MySQL's binlog position of database `db` now.
    pub(super) async fn binlog_position(
        &self,
        db: &str,
    ) -> anyhow::Result<mee_core::BinlogPosition> {
        let mysql = self.cfg.mysql_for(db).map_err(anyhow::Error::msg)?;
        self.retry("read the binlog position", || async move {
            let mut conn = mee_mysql::connect(db, mysql).await?;
            let pos = mee_mysql::binlog_position(&mut conn, db).await;
            conn.disconnect().await.ok();
            pos
        })
        .await
    }
}
