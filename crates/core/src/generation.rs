//! Generations of a task: one generation is one physical index being built or serving.
//!
//! A task (an index kept in sync, named by the user with `-n`) has generations. `update`
//! creates one ([`Generation::new`]), marks the change topics' end offsets for its
//! consumer group, loads every master row, then lets `sync` catch the group up and
//! swaps the alias; the old generation is retired. The metadata lives in Redis as JSON
//! (one field of a hash per generation):
//!
//! ```json
//! {"format":1,"task":"orders","id":"20261121083311123","alias":"orders",
//!  "index":"orders_20261121083311123","group":"orders.20261121083311123",
//!  "topics":["mee.shop"],"offsets_mark":[{"topic":"mee.shop","partition":0,"offset":42}],
//!  "handler_yaml":"orders: ...","handler_path":"conf/handlers/orders.yml",
//!  "state":"building","counters":{"documents_written":0,"documents_rejected":0,"masters_read":0},
//!  "created_at_ms":1795250000000,"updated_at_ms":1795250000000}
//! ```
//!
//! Readers refuse unknown fields and a `format` newer than [`GENERATION_FORMAT`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The format version written by this build.
pub const GENERATION_FORMAT: u32 = 1;

/// Length of a generation id: `YYYYMMDDhhmmssSSS`.
pub const GENERATION_ID_LEN: usize = 17;

/// Longest task name accepted (it is part of Redis keys and consumer group names).
pub const MAX_TASK_LEN: usize = 200;

/// Longest index name Elasticsearch accepts, in bytes.
const MAX_INDEX_BYTES: usize = 255;

/// Where a generation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationState {
    /// `update` is loading master rows into the new index; `sync` already applies changes.
    Building,
    /// Every master row is loaded; the group's lag is being worked off before the swap.
    CatchingUp,
    /// The alias points at this generation's index.
    Live,
    /// Replaced or dropped; `sync` no longer follows it.
    Retired,
}

impl GenerationState {
    /// Followed by `sync`: every state but [`GenerationState::Retired`].
    pub fn is_active(self) -> bool {
        self != GenerationState::Retired
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GenerationState::Building => "building",
            GenerationState::CatchingUp => "catching_up",
            GenerationState::Live => "live",
            GenerationState::Retired => "retired",
        }
    }

    /// Whether a generation may move from `self` to `to`: forward only, building →
    /// catching_up → live → retired, skipping catching_up (`update --no-wait`) or going
    /// straight to retired (a dropped build).
    pub fn may_become(self, to: GenerationState) -> bool {
        use GenerationState::*;
        matches!(
            (self, to),
            (Building, CatchingUp | Live | Retired)
                | (CatchingUp, Live | Retired)
                | (Live, Retired)
        )
    }
}

impl fmt::Display for GenerationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An offset of one partition of a topic (the next offset to read).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Progress counters of a generation's build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationCounters {
    #[serde(default)]
    pub documents_written: u64,
    #[serde(default)]
    pub documents_rejected: u64,
    #[serde(default)]
    pub masters_read: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// Format version of this JSON ([`GENERATION_FORMAT`]).
    pub format: u32,
    /// The task (`-n`) this generation belongs to.
    pub task: String,
    /// UTC creation time `YYYYMMDDhhmmssSSS`: ids sort by time.
    pub id: String,
    /// The alias users search (the handler's top-level key).
    pub alias: String,
    /// The physical index: `<alias lowercased>_<id>`.
    pub index: String,
    /// The Kafka consumer group `sync` uses for this generation: `<task>.<id>`.
    pub group: String,
    /// The change topics the handler's databases publish to.
    pub topics: Vec<String>,
    /// The change topics' end offsets committed for `group` before the first master row
    /// was read: every change after them reaches this generation through `sync`.
    #[serde(default)]
    pub offsets_mark: Vec<PartitionOffset>,
    /// A copy of the handler file, so `sync` needs no file.
    pub handler_yaml: String,
    /// Where the handler came from, for messages.
    pub handler_path: String,
    pub state: GenerationState,
    #[serde(default)]
    pub counters: GenerationCounters,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// When every master row was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at_ms: Option<u64>,
    /// The load's cursor: the master key (as JSON values) of the last page whose
    /// documents are all written. `update --resume` continues after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<Vec<serde_json::Value>>,
}

impl Generation {
    /// A new generation in state `building`, created at `now_ms` (milliseconds since the
    /// epoch), with id, index and group derived from them. Fails when the task name or
    /// the alias cannot make a valid group, Redis key or Elasticsearch index name.
    pub fn new(
        task: &str,
        alias: &str,
        topics: Vec<String>,
        handler_yaml: String,
        handler_path: String,
        now_ms: u64,
    ) -> Result<Self, String> {
        validate_task_name(task)?;
        let id = generation_id(now_ms);
        let index = index_name(alias, &id);
        validate_index_name(&index).map_err(|e| format!("alias `{alias}`: {e}"))?;
        Ok(Self {
            format: GENERATION_FORMAT,
            task: task.to_string(),
            alias: alias.to_string(),
            group: format!("{task}.{id}"),
            index,
            id,
            topics,
            offsets_mark: Vec::new(),
            handler_yaml,
            handler_path,
            state: GenerationState::Building,
            counters: GenerationCounters::default(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            loaded_at_ms: None,
            live_at_ms: None,
            retired_at_ms: None,
            resume_after: None,
        })
    }

    /// Move to state `to` at `now_ms`, recording when it happened. Only forward moves
    /// are allowed (see [`GenerationState::may_become`]); anything else leaves the
    /// generation unchanged and says why.
    pub fn set_state(&mut self, to: GenerationState, now_ms: u64) -> Result<(), String> {
        if !self.state.may_become(to) {
            return Err(format!(
                "generation {} of task {} cannot go from {} to {to}",
                self.id, self.task, self.state
            ));
        }
        match to {
            GenerationState::Building => {}
            GenerationState::CatchingUp => self.loaded_at_ms = Some(now_ms),
            GenerationState::Live => {
                self.loaded_at_ms.get_or_insert(now_ms);
                self.live_at_ms = Some(now_ms);
            }
            GenerationState::Retired => self.retired_at_ms = Some(now_ms),
        }
        self.state = to;
        self.updated_at_ms = now_ms;
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a generation always serializes")
    }

    /// Parse the stored JSON; refuses unknown fields and newer formats.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a generation: {e}"))?;
        if let Some(format) = value.get("format").and_then(|f| f.as_u64())
            && format > u64::from(GENERATION_FORMAT)
        {
            return Err(format!(
                "generation format {format} is newer than this build understands \
                 ({GENERATION_FORMAT}); upgrade"
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("not a generation: {e}"))
    }
}

/// Milliseconds since the epoch of `t` (0 before the epoch).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The generation id for a creation time: UTC `YYYYMMDDhhmmssSSS`, e.g.
/// `20261121083311123`. Fixed width (through year 9999), so ids sort by time.
pub fn generation_id(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The generation id for `t` (see [`generation_id`]).
pub fn generation_id_at(t: SystemTime) -> String {
    generation_id(millis(t))
}

/// The creation time (ms since the epoch) a generation id encodes; `None` when `id` is
/// not a valid id.
pub fn parse_generation_id(id: &str) -> Option<u64> {
    if id.len() != GENERATION_ID_LEN || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| id[r].parse::<u64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss, ms) = (n(8..10)?, n(10..12)?, n(12..14)?, n(14..17)?);
    if y < 1970 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// The physical index of a generation: `<alias lowercased>_<id>`.
pub fn index_name(alias: &str, id: &str) -> String {
    format!("{}_{id}", alias.to_lowercase())
}

/// A task name: 1 to [`MAX_TASK_LEN`] ASCII letters, digits, `.`, `_` or `-`, so it
/// can be part of Redis keys (`:`-separated) and consumer group names.
pub fn validate_task_name(task: &str) -> Result<(), String> {
    if task.is_empty() {
        return Err("the task name is empty".into());
    }
    if task.len() > MAX_TASK_LEN {
        return Err(format!(
            "task name `{task}` is longer than {MAX_TASK_LEN} characters"
        ));
    }
    if let Some(c) = task
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "task name `{task}` contains {c:?}: use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// Elasticsearch's rules for index names: lowercase, none of `\ / * ? " < > | , # :`
/// or space, not starting with `-`, `_` or `+`, not `.` or `..`, at most 255 bytes.
pub fn validate_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an index name cannot be empty".into());
    }
    if name.to_lowercase() != name {
        return Err(format!("index name `{name}` must be lowercase"));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!("index name `{name}` must not contain {c:?}"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!(
            "index name `{name}` must not start with `-`, `_` or `+`"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("index name `{name}` is reserved"));
    }
    if name.len() > MAX_INDEX_BYTES {
        return Err(format!(
            "index name `{name}` is longer than {MAX_INDEX_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a date from 1970 on (inverse of [`civil_from_days`]).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 9999-12-31T23:59:59.999Z: the last time with a 17-digit id.
    const MAX_MS: u64 = 253_402_300_799_999;

    fn sample(now_ms: u64) -> Generation {
        Generation::new(
            "orders",
            "Index_Orders",
            vec!["mee.shop".into()],
            "index_orders: []\n".into(),
            "conf/handlers/orders.yml".into(),
            now_ms,
        )
        .expect("valid")
    }

    #[test]
    fn ids_are_utc_timestamps_with_millis() {
        for (ms, id) in [
            (0, "19700101000000000"),
            (951_782_400_000, "20000229000000000"),
            (1_700_000_000_123, "20231114221320123"),
            (1_795_249_991_123, "20261121083311123"),
            (4_107_542_399_999, "21000228235959999"),
            (MAX_MS, "99991231235959999"),
        ] {
            assert_eq!(generation_id(ms), id, "{ms}");
            assert_eq!(parse_generation_id(id), Some(ms), "{id}");
        }
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_249_991_123);
        assert_eq!(generation_id_at(t), "20261121083311123");
        for bad in [
            "",
            "2026112108331112",
            "2026112108331112x",
            "20261321083311123",
            "20260230083311123",
            "20261121243311123",
            "19691231235959999",
        ] {
            assert_eq!(parse_generation_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn new_derives_index_and_group() {
        let g = sample(1_795_249_991_123);
        assert_eq!(g.id, "20261121083311123");
        assert_eq!(g.alias, "Index_Orders");
        assert_eq!(g.index, "index_orders_20261121083311123");
        assert_eq!(g.group, "orders.20261121083311123");
        assert_eq!(g.state, GenerationState::Building);
        assert_eq!(g.format, GENERATION_FORMAT);
        assert_eq!(
            (g.created_at_ms, g.updated_at_ms),
            (1_795_249_991_123, 1_795_249_991_123)
        );
        assert_eq!(g.counters, GenerationCounters::default());
    }

    #[test]
    fn bad_task_names_and_aliases_are_refused() {
        let new = |task: &str, alias: &str| {
            Generation::new(task, alias, vec![], String::new(), String::new(), 0)
        };
        assert!(new("orders-v2.eu_1", "orders").is_ok());
        for task in ["", "a:b", "a b", "é", &"x".repeat(MAX_TASK_LEN + 1)] {
            let err = new(task, "orders").expect_err(task);
            assert!(err.contains("task name"), "{err}");
        }
        for alias in [
            "_orders", "-o", "+o", "a b", "a,b", "a#b", "a:b", "a/b", "a*b", "a\"b",
        ] {
            let err = new("t", alias).expect_err(alias);
            assert!(err.contains(&format!("alias `{alias}`")), "{err}");
        }
        assert!(new("t", &"a".repeat(237)).is_ok());
        assert!(new("t", &"a".repeat(238)).is_err(), "index over 255 bytes");
    }

    #[test]
    fn index_name_rules() {
        assert!(validate_index_name("orders_20261121083311123").is_ok());
        assert!(validate_index_name(".hidden").is_ok());
        for bad in [
            "", ".", "..", "Orders", "_x", "-x", "+x", "a?b", "a<b", "a>b", "a|b", "a\\b",
        ] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_transitions_table() {
        use GenerationState::*;
        let all = [Building, CatchingUp, Live, Retired];
        let allowed = [
            (Building, CatchingUp),
            (Building, Live),
            (Building, Retired),
            (CatchingUp, Live),
            (CatchingUp, Retired),
            (Live, Retired),
        ];
        for from in all {
            for to in all {
                let mut g = sample(1000);
                g.state = from;
                let before = g.clone();
                let result = g.set_state(to, 2000);
                if allowed.contains(&(from, to)) {
                    assert_eq!(result, Ok(()), "{from} → {to}");
                    assert_eq!((g.state, g.updated_at_ms), (to, 2000));
                } else {
                    let err = result.expect_err("refused");
                    assert!(err.contains(&format!("from {from} to {to}")), "{err}");
                    assert_eq!(g, before, "a refused move changes nothing");
                }
            }
        }
    }

    #[test]
    fn transitions_record_their_times() {
        let mut g = sample(1000);
        g.set_state(GenerationState::CatchingUp, 2000)
            .expect("load done");
        g.set_state(GenerationState::Live, 3000).expect("caught up");
        g.set_state(GenerationState::Retired, 4000)
            .expect("replaced");
        assert_eq!(
            (
                g.loaded_at_ms,
                g.live_at_ms,
                g.retired_at_ms,
                g.updated_at_ms
            ),
            (Some(2000), Some(3000), Some(4000), 4000)
        );
        assert!(!g.state.is_active());

        let mut no_wait = sample(1000);
        no_wait
            .set_state(GenerationState::Live, 2500)
            .expect("--no-wait");
        assert_eq!(
            (no_wait.loaded_at_ms, no_wait.live_at_ms),
            (Some(2500), Some(2500))
        );
        assert!(no_wait.state.is_active());
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let mut g = sample(1_795_249_991_123);
        g.offsets_mark = vec![PartitionOffset {
            topic: "mee.shop".into(),
            partition: 2,
            offset: 42,
        }];
        g.counters.masters_read = 7;
        g.set_state(GenerationState::CatchingUp, 1_795_335_200_000)
            .expect("forward");
        let text = g.to_json();
        assert!(text.contains(r#""state":"catching_up""#), "{text}");
        assert!(
            !text.contains("live_at_ms"),
            "absent times are left out: {text}"
        );
        assert_eq!(Generation::from_json(&text), Ok(g.clone()));

        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["added_later"] = serde_json::json!(1);
        let err = Generation::from_json(&v.to_string()).expect_err("unknown field");
        assert!(err.contains("added_later"), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["format"] = serde_json::json!(GENERATION_FORMAT + 1);
        v["added_later"] = serde_json::json!(1);
        let err = Generation::from_json(&v.to_string()).expect_err("newer format");
        assert!(err.contains("newer"), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["offsets_mark"][0]["extra"] = serde_json::json!(0);
        assert!(Generation::from_json(&v.to_string()).is_err());
        assert!(Generation::from_json("{not json").is_err());
        for (s, name) in [
            (GenerationState::Building, "building"),
            (GenerationState::CatchingUp, "catching_up"),
            (GenerationState::Live, "live"),
            (GenerationState::Retired, "retired"),
        ] {
            assert_eq!(s.to_string(), name);
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{name}\"")
            );
        }
    }

    proptest! {
        #[test]
        fn ids_sort_by_time(a in 0..=MAX_MS, b in 0..=MAX_MS) {
            let (ia, ib) = (generation_id(a), generation_id(b));
            prop_assert_eq!(ia.len(), GENERATION_ID_LEN);
            prop_assert_eq!(ia.cmp(&ib), a.cmp(&b));
            prop_assert_eq!(parse_generation_id(&ia), Some(a));
        }

        #[test]
        fn index_names_are_valid_es_names(
            alias in "[A-Za-z0-9][A-Za-z0-9_.-]{0,60}",
            ms in 0..=MAX_MS,
        ) {
            let g = Generation::new("t", &alias, vec![], String::new(), String::new(), ms)
                .expect("a plain alias makes a valid index");
            prop_assert!(validate_index_name(&g.index).is_ok());
            prop_assert!(g.index.starts_with(&alias.to_lowercase()));
            prop_assert!(g.index.ends_with(&g.id));
            prop_assert!(!g.index.starts_with(['-', '_', '+']));
            prop_assert!(!g.index.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#']));
            prop_assert_eq!(g.index.to_lowercase(), g.index.clone());
        }

        #[test]
        fn any_alias_gives_a_valid_index_or_an_error(alias in "\\PC{0,40}") {
            if let Ok(g) = Generation::new("t", &alias, vec![], String::new(), String::new(), 0) {
                prop_assert!(validate_index_name(&g.index).is_ok(), "{}", g.index);
            }
        }
    }
}
