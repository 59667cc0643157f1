//! The services of one `sync` benchmark run: `listen` and `sync` as child processes,
//! a first generation built by `update`, and what they leave behind deleted.

use crate::common::{cleanup, config_toml, http_client, redis_del, unique};
use crate::fixture;
use anyhow::{bail, ensure};
use mee_core::AppConfig;
use mee_mysql::mysql_async;
use mee_test_support::{ServiceProcess, StackEnv};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The service binaries built beside this one.
pub(super) struct Bins {
    listen: PathBuf,
    update: PathBuf,
    sync: PathBuf,
}

impl Bins {
    pub(super) fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin = |name: &str| {
            let p = exe.with_file_name(name);
            ensure!(
                p.exists(),
                "{} is missing: `cargo build --release -p mee-listen -p mee-update -p mee-sync` \
                 (scripts/bench sync does)",
                p.display()
            );
            Ok(p)
        };
        Ok(Self {
            listen: bin("listen")?,
            update: bin("update")?,
            sync: bin("sync")?,
        })
    }
}

/// A pool of admin connections (the services' user may only read).
pub(super) fn admin_pool(env: &StackEnv) -> mysql_async::Pool {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.mysql_host.clone())
        .tcp_port(env.mysql_port)
        .user(Some(env.mysql_admin_user.clone()))
        .pass(Some(env.mysql_admin_password.clone()))
        .prefer_socket(false)
        .pool_opts(mysql_async::PoolOpts::default().with_constraints(
            mysql_async::PoolConstraints::new(4, 64).expect("valid constraints"),
        ));
    mysql_async::Pool::new(opts)
}

/// `listen` running, a first generation built by `update` (live), `sync` once started.
pub(super) struct Stack {
    pub(super) name: String,
    pub(super) schema: String,
    task: String,
    pub(super) alias: String,
    toml: String,
    pub(super) cfg: AppConfig,
    es_url: String,
    bins_sync: PathBuf,
    pub(super) listen: Option<ServiceProcess>,
    pub(super) sync: Option<ServiceProcess>,
    pub(super) generation: Option<String>,
    files: Vec<PathBuf>,
}

impl Stack {
    pub(super) async fn start(
        env: &StackEnv,
        bins: &Bins,
        masters: u64,
        es_url: &str,
    ) -> anyhow::Result<Stack> {
        let name = unique("mee_bench_sync");
        let schema = fixture::schema(masters);
        let toml = config_toml(env, &schema, &name, es_url)?;
        let cfg = AppConfig::from_toml_str(&toml, Default::default())?;
        let dir = std::env::temp_dir();
        let (config, handler) = (
            dir.join(format!("{name}.toml")),
            dir.join(format!("{name}.yml")),
        );
        let alias = format!("{name}_orders");
        std::fs::write(&config, &toml)?;
        std::fs::write(&handler, fixture::handler_with_alias(&alias))?;
        let mut stack = Stack {
            task: format!("{name}_task"),
            alias,
            name,
            schema,
            toml,
            cfg,
            es_url: es_url.to_owned(),
            bins_sync: bins.sync.clone(),
            listen: None,
            sync: None,
            generation: None,
            files: vec![config.clone(), handler.clone()],
        };
        let started = async {
            let mut listen = ServiceProcess::spawn(
                &bins.listen.to_string_lossy(),
                &["-d", "bench", "--from", "now"],
                &stack.toml,
                &[],
            );
            tokio::task::block_in_place(|| listen.wait_healthy(Duration::from_secs(60)));
            stack.listen = Some(listen);
            let t = Instant::now();
            let (update, task) = (bins.update.clone(), stack.task.clone());
            let out = tokio::task::spawn_blocking(move || {
                Command::new(update)
                    .arg("-c")
                    .arg(&handler)
                    .arg("-n")
                    .arg(&task)
                    .arg("--config")
                    .arg(&config)
                    .env_remove("RUST_LOG")
                    .output()
            })
            .await??;
            let stdout = String::from_utf8_lossy(&out.stdout);
            stack.generation = stdout
                .split_once("generation ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned);
            if !out.status.success() {
                bail!(
                    "update exited with {}: {stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ensure!(
                stack.generation.is_some(),
                "no generation in update's output: {stdout}"
            );
            eprintln!(
                "{}: listen up, update built generation {} into {es_url} in {:.1} s",
                stack.name,
                stack.generation.as_deref().unwrap_or("?"),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        .await;
        match started {
            Ok(()) => Ok(stack),
            Err(e) => {
                stack.stop(env).await;
                Err(e)
            }
        }
    }

    pub(super) fn topics(&self) -> Vec<String> {
        vec![self.cfg.kafka.topic_for("bench")]
    }

    fn group(&self) -> String {
        format!("{}.{}", self.task, self.generation.as_deref().unwrap_or(""))
    }

    pub(super) async fn start_sync(&mut self) -> anyhow::Result<()> {
        let mut sync = ServiceProcess::spawn(
            &self.bins_sync.to_string_lossy(),
            &["-n", &self.task],
            &self.toml,
            &[],
        );
        tokio::task::block_in_place(|| sync.wait_healthy(Duration::from_secs(60)));
        self.sync = Some(sync);
        Ok(())
    }

    async fn lag(&self) -> anyhow::Result<u64> {
        Ok(mee_kafka::group_lag(
            &self.cfg.kafka,
            &self.group(),
            &self.topics(),
            Duration::from_secs(10),
        )
        .await?
        .total)
    }

    /// Wait until `sync` has committed everything published so far.
    pub(super) async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.lag().await? == 0 {
                return Ok(());
            }
            ensure!(
                start.elapsed() < timeout,
                "sync still behind after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stop the services and delete what the run created.
    pub(super) async fn stop(mut self, env: &StackEnv) {
        for (what, p) in [("sync", self.sync.take()), ("listen", self.listen.take())] {
            if let Some(mut p) = p {
                let log = p.stderr();
                let errors = log
                    .lines()
                    .filter(|l| l.contains("\"ERROR\"") || l.contains("\"level\":\"error\""))
                    .count();
                if errors > 0 {
                    let keep = std::env::temp_dir().join(format!("{}_{what}.log", self.name));
                    let _ = std::fs::write(&keep, &log);
                    eprintln!(
                        "warning: {what} logged {errors} errors; log kept in {}",
                        keep.display()
                    );
                }
                if p.try_exit().is_none() {
                    tokio::task::block_in_place(|| p.terminate(Duration::from_secs(30)));
                }
                drop(p);
            }
        }
        let Ok(http) = http_client() else { return };
        cleanup(
            env,
            &self.cfg,
            &http,
            &self.es_url,
            &self.alias,
            &self.task,
            self.generation.as_deref(),
        )
        .await;
        let key = format!("{}:listen:bench:position", self.cfg.redis.key_prefix);
        if let Err(e) = redis_del(&env.redis_url, &[key]) {
            eprintln!("warning: could not delete listen's position key: {e:#}");
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}
