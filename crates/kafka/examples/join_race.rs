//! Does a Kafka server's group coordinator settle when two consumers join at nearly the
//! same time? Plain librdkafka consumers, no Mee code.
//!
//! Each trial: a new 3-partition topic with a producer writing to it, a group that
//! already has committed offsets (as `update` leaves a new generation's group), then
//! two consumers subscribing `gap_ms` apart, both polling all the time. A trial passes
//! when the group is `Stable` with 2 members and the 3 partitions are split between
//! them within 40 s.
//!
//! ```text
//! MEE_KAFKA_BROKERS=127.0.0.1:19092 cargo run --release -p mee-kafka --example join_race -- [trials=10] [gap_ms=300]
//! ```
//!
//! `JOIN_RACE_DEBUG=1` prints librdkafka's group and protocol messages to stderr.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;
const SETTLE_WITHIN: Duration = Duration::from_secs(40);

/// Prints librdkafka's log lines, tagged with the consumer and the trial's clock.
struct Logger {
    consumer: usize,
    start: Instant,
}

impl ClientContext for Logger {
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        let t = self.start.elapsed().as_secs_f64();
        eprintln!("[{t:>8.3}] c{} {facility} {message}", self.consumer);
    }
}

impl ConsumerContext for Logger {}

fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// The settings `mee_kafka::consumer` uses.
fn member(brokers: &str, group: &str, logger: Logger) -> BaseConsumer<Logger> {
    let mut c = config(brokers);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000");
    if std::env::var_os("JOIN_RACE_DEBUG").is_some() {
        c.set("debug", "cgrp,protocol")
            .set_log_level(RDKafkaLogLevel::Debug);
    }
    c.create_with_context(logger).expect("a consumer")
}

/// Commit offset 0 of every partition for `group` without joining it.
fn precommit(brokers: &str, group: &str, topic: &str) {
    let c: BaseConsumer = config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .expect("an offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// Whether the group settled, its last state, how long it took.
fn trial(brokers: &str, topic: &str, gap: Duration) -> (bool, String, Duration) {
    let group = format!("{topic}-group");
    let stop = Arc::new(AtomicBool::new(false));
    let assigned = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut threads = Vec::new();
    let producer: BaseProducer = config(brokers).create().expect("a producer");
    let producing = {
        let (topic, stop) = (topic.to_string(), stop.clone());
        thread::spawn(move || {
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = (i % 97).to_string();
                let _ = producer.send(BaseRecord::to(&topic).key(&key).payload("{}"));
                producer.poll(Duration::ZERO);
                thread::sleep(Duration::from_millis(2));
            }
            let _ = producer.flush(Duration::from_secs(5));
        })
    };
    precommit(brokers, &group, topic);
    let start = Instant::now();
    for i in 0..2 {
        let (brokers, group, topic) = (brokers.to_string(), group.clone(), topic.to_string());
        let (stop, assigned) = (stop.clone(), assigned.clone());
        threads.push(thread::spawn(move || {
            thread::sleep(gap * i as u32);
            let logger = Logger { consumer: i, start };
            let c = member(&brokers, &group, logger);
            c.subscribe(&[&topic]).expect("subscribe");
            while !stop.load(Ordering::Relaxed) {
                let _ = c.poll(Duration::from_millis(100));
                let n = c.assignment().map_or(0, |a| a.count());
                assigned[i].store(n, Ordering::Relaxed);
            }
        }));
    }
    let lister: BaseConsumer = config(brokers).create().expect("a client");
    let mut state = String::from("not listed");
    let settled = loop {
        thread::sleep(Duration::from_millis(200));
        if let Ok(list) = lister.fetch_group_list(Some(&group), Duration::from_secs(5))
            && let Some(g) = list.groups().first()
        {
            state = format!("{} with {} members", g.state(), g.members().len());
        }
        let [a, b] = [0, 1].map(|i| assigned[i].load(Ordering::Relaxed));
        if a > 0 && b > 0 && a + b == PARTITIONS as usize && state == "Stable with 2 members" {
            break true;
        }
        if start.elapsed() > SETTLE_WITHIN {
            break false;
        }
    };
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a consumer thread");
    }
    producing.join().expect("the producer thread");
    (settled, state, took)
}

#[tokio::main]
async fn main() {
    let brokers = std::env::var("MEE_KAFKA_BROKERS").expect("MEE_KAFKA_BROKERS");
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().map_or(10, |s| s.parse().expect("trials"));
    let gap = Duration::from_millis(args.next().map_or(300, |s| s.parse().expect("gap_ms")));
    let admin: AdminClient<DefaultClientContext> = config(&brokers).create().expect("admin");
    let mut stalled = 0;
    for t in 0..trials {
        let topic = format!("join-race-{}-{t}", std::process::id());
        let new = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
        admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .expect("create the topic");
        eprintln!("=== trial {t}");
        let (settled, state, took) = trial(&brokers, &topic, gap);
        stalled += usize::from(!settled);
        let verdict = if settled { "settled" } else { "STALLED" };
        println!("trial {t}: {verdict} after {took:.1?}, group {state}");
        let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    }
    println!("{stalled} of {trials} trials stalled");
}
