//! What the `update` and `sync` benchmarks share: the names and app config of one run
//! and the deletion of what it created, calls to an Elasticsearch API, and figures of
//! processes and of the machine read from `/proc`.

use anyhow::{Context, ensure};
use mee_core::AppConfig;
use mee_test_support::StackEnv;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The app config of one run: the fixture as logical database `bench`, a key prefix
/// and change topics of its own, Elasticsearch at `es_url`, JSON logs.
pub(crate) fn config_toml(
    env: &StackEnv,
    schema: &str,
    name: &str,
    es_url: &str,
) -> anyhow::Result<String> {
    let toml = env.app_config_toml(&[("bench", schema)], name);
    let es_section = format!("[elasticsearch]\nurl = \"{}\"\n", env.es_url);
    ensure!(
        toml.contains(&es_section) && toml.contains("[kafka]\n"),
        "unexpected app config layout from test-support:\n{toml}"
    );
    Ok(toml
        .replace(
            &es_section,
            &format!("[elasticsearch]\nurl = \"{es_url}\"\n"),
        )
        .replace(
            "[kafka]\n",
            &format!("[kafka]\ntopic_pattern = \"{name}.{{database}}\"\n"),
        )
        + "[telemetry]\nlog_level = \"info\"\nlog_format = \"json\"\n")
}

/// Delete what a run created: its indices (whatever the alias points at, and any
/// `<alias>_*` left by a failed run), change and dead-letter topics, consumer group and
/// Redis keys. Failures are reported, not fatal.
pub(crate) async fn cleanup(
    env: &StackEnv,
    cfg: &AppConfig,
    http: &reqwest::Client,
    es_url: &str,
    alias: &str,
    task: &str,
    generation: Option<&str>,
) {
    let mut indices = Vec::new();
    for path in [format!("/_alias/{alias}"), format!("/{alias}_*")] {
        if let Ok((200, Value::Object(found))) = es_call(http, es_url, "GET", &path, None).await {
            indices.extend(found.keys().cloned());
        }
    }
    if let Some(g) = generation {
        indices.push(mee_core::generation::index_name(alias, g));
    }
    indices.sort();
    indices.dedup();
    for index in indices {
        delete_index(http, es_url, &index).await;
    }
    let topics = [
        cfg.kafka.topic_for("bench"),
        mee_core::dead_letter::dead_letter_topic(task),
    ];
    mee_test_support::delete_topics(&cfg.kafka, &topics).await;
    if let Some(g) = generation {
        let group = format!("{task}.{g}");
        if let Err(e) = mee_kafka::delete_group(&cfg.kafka, &group, Duration::from_secs(30)).await {
            eprintln!("warning: could not delete consumer group {group}: {e}");
        }
    }
    let keys = [
        format!("{}:task:{task}:generations", cfg.redis.key_prefix),
        format!("{}:task:{task}:lock", cfg.redis.key_prefix),
    ];
    if let Err(e) = redis_del(&env.redis_url, &keys) {
        eprintln!("warning: could not delete Redis keys {keys:?}: {e:#}");
    }
}

/// `DEL keys...` over RESP, for a `redis://host:port[/db]` URL without credentials.
pub(crate) fn redis_del(url: &str, keys: &[String]) -> anyhow::Result<()> {
    let rest = url.strip_prefix("redis://").context("only redis:// URLs")?;
    ensure!(!rest.contains('@'), "URLs with credentials are not handled");
    let (host, db) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let command = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    let mut expected = 1;
    let mut request = String::new();
    if !db.is_empty() {
        request.push_str(&command(&["SELECT", db]));
        expected += 1;
    }
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    request.push_str(&command(&del));
    s.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while answer.iter().filter(|b| **b == b'\n').count() < expected {
        let n = s.read(&mut buf)?;
        ensure!(n > 0, "Redis closed the connection");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    ensure!(!answer.contains("-ERR"), "Redis answered {answer}");
    Ok(())
}

pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// Warn when the Elasticsearch API holds documents from earlier runs (tests that failed
/// leave theirs): the local emulator keeps every index in memory and its pauses grow
/// with what it holds, which shows in the latency figures.
pub(crate) async fn warn_if_crowded(es_url: &str) {
    const CROWDED_DOCS: u64 = 100_000;
    let Ok(http) = http_client() else { return };
    let Ok((200, Value::Array(indices))) =
        es_call(&http, es_url, "GET", "/_cat/indices?format=json", None).await
    else {
        return;
    };
    let docs: u64 = indices
        .iter()
        .filter_map(|i| i["docs.count"].as_str()?.parse::<u64>().ok())
        .sum();
    if docs > CROWDED_DOCS {
        eprintln!(
            "warning: {es_url} already holds {} indices with {docs} documents; the local \
             emulator slows down with what it holds: for comparable figures, run \
             `scripts/dev-down --wipe` first",
            indices.len()
        );
    }
}

/// One request to an Elasticsearch API: (status, JSON body or Null).
pub(crate) async fn es_call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = http.request(method.parse()?, &url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// `GET /<index>/_count` after a refresh.
pub(crate) async fn count(http: &reqwest::Client, base: &str, index: &str) -> anyhow::Result<u64> {
    es_call(http, base, "POST", &format!("/{index}/_refresh"), None).await?;
    let (status, body) = es_call(http, base, "GET", &format!("/{index}/_count"), None).await?;
    ensure!(status == 200, "GET /{index}/_count: {status} {body}");
    body["count"].as_u64().context("no count in the answer")
}

pub(crate) async fn delete_index(http: &reqwest::Client, base: &str, index: &str) {
    match es_call(http, base, "DELETE", &format!("/{index}"), None).await {
        Ok((200 | 404, _)) => {}
        Ok((status, body)) => eprintln!("warning: DELETE /{index}: {status} {body}"),
        Err(e) => eprintln!("warning: DELETE /{index}: {e:#}"),
    }
}

/// The Elasticsearch API's node name (`noida-db` on the local stack).
pub(crate) async fn es_name(base: &str) -> anyhow::Result<String> {
    let (status, body) = es_call(&http_client()?, base, "GET", "/", None).await?;
    ensure!(status == 200, "GET {base}/: {status} {body}");
    Ok(body["name"].as_str().unwrap_or("Elasticsearch").to_owned())
}

/// A name of lowercase letters, digits and `_`, unique to this process and call.
pub(crate) fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfffff
    )
}

/// The 1-minute load average, as text.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// VmHWM (peak RSS) of a running process (`self` or a pid), kB.
pub(crate) fn vm_hwm_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The pid of a local-stack server started by `scripts/dev-up`: `mariadb` or `noida`.
pub(crate) fn server_pid(server: &str) -> Option<u32> {
    let path = mee_test_support::workspace_root().join(format!(".dev/{server}/{server}.pid"));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// User + system CPU time of a running process (`self` or a pid), seconds: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks of 1/100 s (Linux's USER_HZ).
pub(crate) fn cpu_secs(pid: impl std::fmt::Display) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
