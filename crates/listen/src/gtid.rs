//! GTIDs given to `--from`: MariaDB's `domain-server-seq` list and MySQL's GTID sets.
//!
//! Both mean "the transactions this replica has applied": `listen` starts after them.

use mee_mysql::mysql_async::{GnoInterval, Sid};
use std::fmt;
use std::str::FromStr;

/// A validated GTID position, printed back in the server's own notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidSet {
    /// MariaDB: at most one `domain-server-seq` per replication domain.
    MariaDb(Vec<MariaDbGtid>),
    /// MySQL: `uuid:interval[:interval]...` per source server (an executed GTID set).
    MySql(Vec<MySqlSid>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaDbGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MySqlSid {
    pub uuid: [u8; 16],
    /// Inclusive `(first, last)` transaction numbers.
    pub intervals: Vec<(u64, u64)>,
}

/// Why a `--from` value is not a usable GTID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("`{0}` is not a MariaDB GTID (domain-server-sequence, e.g. 0-1-57)")]
    MariaDbSyntax(String),
    #[error("GTID list names domain {0} twice: give one GTID per domain")]
    DuplicateDomain(u32),
    #[error(
        "`{0}` is not a MySQL GTID set (uuid:interval[:interval], e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57)"
    )]
    MySqlSyntax(String),
    #[error("`{0}` is not a server UUID (8-4-4-4-12 hexadecimal digits)")]
    Uuid(String),
    #[error(
        "`{0}` is not a transaction interval (n or first-last, from 1 to 2^63-1, first <= last)"
    )]
    Interval(String),
    #[error("GTID set names server {0} twice: join its intervals (uuid:1-5:7-9)")]
    DuplicateUuid(String),
    #[error("the GTID is empty")]
    Empty,
}

/// MySQL's largest transaction number (GNO).
const GNO_MAX: u64 = (1 << 63) - 1;

impl GtidSet {
    /// Whether `s` is meant as a GTID rather than a binlog `file:offset`: MariaDB GTIDs
    /// are digits, dashes and commas; MySQL sets start with a UUID. Binlog file names
    /// have a dot and no UUID.
    pub fn looks_like(s: &str) -> bool {
        let s = s.trim();
        let mariadb = !s.is_empty()
            && s.contains('-')
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b',' | b' '));
        let mysql = s
            .split_once(':')
            .is_some_and(|(uuid, _)| parse_uuid(uuid.trim()).is_some());
        mariadb || mysql
    }

    /// The MySQL form as mysql_async's GTID set for `COM_BINLOG_DUMP_GTID`.
    pub fn sids(&self) -> Vec<Sid<'static>> {
        let GtidSet::MySql(sids) = self else {
            return Vec::new();
        };
        sids.iter()
            .map(|s| {
                Sid::new(s.uuid).with_intervals(
                    s.intervals
                        .iter()
                        // GnoInterval is half-open: [first, last + 1).
                        .map(|&(first, last)| GnoInterval::new(first, last + 1))
                        .collect(),
                )
            })
            .collect()
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.iter().all(|p| p.is_empty()) {
            return Err(GtidError::Empty);
        }
        if parts.iter().any(|p| p.contains(':')) {
            parse_mysql(&parts).map(GtidSet::MySql)
        } else {
            parse_mariadb(&parts).map(GtidSet::MariaDb)
        }
    }
}

fn parse_mariadb(parts: &[&str]) -> Result<Vec<MariaDbGtid>, GtidError> {
    let mut out: Vec<MariaDbGtid> = Vec::new();
    for part in parts {
        let bad = || GtidError::MariaDbSyntax(part.to_string());
        let fields: Vec<&str> = part.split('-').collect();
        let [domain, server, seq] = fields.as_slice() else {
            return Err(bad());
        };
        let gtid = MariaDbGtid {
            domain: number(domain).ok_or_else(bad)?,
            server: number(server).ok_or_else(bad)?,
            seq: number(seq).ok_or_else(bad)?,
        };
        if out.iter().any(|g| g.domain == gtid.domain) {
            return Err(GtidError::DuplicateDomain(gtid.domain));
        }
        out.push(gtid);
    }
    Ok(out)
}

fn parse_mysql(parts: &[&str]) -> Result<Vec<MySqlSid>, GtidError> {
    let mut out: Vec<MySqlSid> = Vec::new();
    for part in parts {
        let (uuid, intervals) = part
            .split_once(':')
            .ok_or_else(|| GtidError::MySqlSyntax(part.to_string()))?;
        let uuid_bytes = parse_uuid(uuid).ok_or_else(|| GtidError::Uuid(uuid.to_string()))?;
        if out.iter().any(|s| s.uuid == uuid_bytes) {
            return Err(GtidError::DuplicateUuid(uuid.to_string()));
        }
        let intervals = intervals
            .split(':')
            .map(parse_interval)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(MySqlSid {
            uuid: uuid_bytes,
            intervals,
        });
    }
    Ok(out)
}

/// `n` or `first-last`, 1 ≤ first ≤ last ≤ 2^63-1. (Tagged GTIDs of MySQL 8.4,
/// `uuid:tag:1-5`, are not accepted: the tag is not a number.)
fn parse_interval(s: &str) -> Result<(u64, u64), GtidError> {
    let bad = || GtidError::Interval(s.to_string());
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (number(a), number(b)),
        None => (number(s), number(s)),
    };
    let (first, last) = (first.ok_or_else(bad)?, last.ok_or_else(bad)?);
    if first == 0 || first > last || last > GNO_MAX {
        return Err(bad());
    }
    Ok((first, last))
}

/// A plain decimal number (no sign, no spaces).
fn number<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `3e11fa47-71ca-11e1-9e33-c80aa9429562` (any case) → 16 bytes.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = match self {
            GtidSet::MariaDb(list) => list
                .iter()
                .map(|g| format!("{}-{}-{}", g.domain, g.server, g.seq))
                .collect(),
            GtidSet::MySql(sids) => sids.iter().map(MySqlSid::to_string).collect(),
        };
        f.write_str(&parts.join(","))
    }
}

impl fmt::Display for MySqlSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )?;
        for &(first, last) in &self.intervals {
            if first == last {
                write!(f, ":{first}")?;
            } else {
                write!(f, ":{first}-{last}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn parse(s: &str) -> Result<GtidSet, GtidError> {
        s.parse()
    }

    #[test]
    fn mariadb_gtids_and_lists() {
        assert_eq!(
            parse("0-1-57"),
            Ok(GtidSet::MariaDb(vec![MariaDbGtid {
                domain: 0,
                server: 1,
                seq: 57
            }]))
        );
        let list = parse(" 0-1-57, 2-10-18446744073709551615 ").expect("a list");
        assert_eq!(list.to_string(), "0-1-57,2-10-18446744073709551615");
        assert!(list.sids().is_empty());
    }

    #[test]
    fn bad_mariadb_gtids() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "0-1-x",
            "-1-2",
            "0--2",
            "0-1-+5",
            "4294967296-1-1",
        ] {
            assert_eq!(
                parse(bad),
                Err(GtidError::MariaDbSyntax(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(parse("0-1-5,0-2-9"), Err(GtidError::DuplicateDomain(0)));
        assert_eq!(
            parse("0-1-5,"),
            Err(GtidError::MariaDbSyntax(String::new()))
        );
        assert_eq!(parse(""), Err(GtidError::Empty));
        assert_eq!(parse(" , "), Err(GtidError::Empty));
    }

    #[test]
    fn mysql_gtid_sets() {
        let upper = format!("{}:1-57:60", UUID.to_uppercase());
        let set = parse(&upper).expect("a set");
        assert_eq!(set.to_string(), format!("{UUID}:1-57:60"));
        let GtidSet::MySql(sids) = &set else {
            panic!("{set:?}")
        };
        assert_eq!(sids[0].intervals, [(1, 57), (60, 60)]);
        assert_eq!(sids[0].uuid[0], 0x3e);
        assert_eq!(sids[0].uuid[15], 0x62);
        let two = format!("{UUID}:5, 00000000-0000-0000-0000-000000000001:1-2");
        assert_eq!(parse(&two).expect("two servers").sids().len(), 2);
    }

    #[test]
    fn mysql_sets_become_half_open_intervals() {
        let set = parse(&format!("{UUID}:1-57:60")).expect("a set");
        let sids = set.sids();
        let intervals: Vec<(u64, u64)> = sids[0]
            .intervals()
            .iter()
            .map(|i| (i.start(), i.end()))
            .collect();
        assert_eq!(intervals, [(1, 58), (60, 61)]);
        // Printed as MySQL prints it, by mysql_common itself.
        assert_eq!(sids[0].to_string(), format!("{UUID}:1-57:60"));
    }

    #[test]
    fn bad_mysql_sets() {
        assert_eq!(
            parse("3e11fa47-71ca-11e1-9e33:5"),
            Err(GtidError::Uuid("3e11fa47-71ca-11e1-9e33".into()))
        );
        assert_eq!(
            parse("3e11fa47-71ca-11e1-9e33-c80aa942956g:5"),
            Err(GtidError::Uuid(
                "3e11fa47-71ca-11e1-9e33-c80aa942956g".into()
            ))
        );
        for interval in [
            "0",
            "5-3",
            "x",
            "1-",
            "-4",
            "",
            "9223372036854775808",
            "tag",
        ] {
            assert_eq!(
                parse(&format!("{UUID}:{interval}")),
                Err(GtidError::Interval(interval.into())),
                "{interval}"
            );
        }
        assert_eq!(
            parse(&format!("{UUID}:1,{UUID}:3")),
            Err(GtidError::DuplicateUuid(UUID.into()))
        );
        assert_eq!(
            parse(&format!("{UUID}:1,0-1-5")),
            Err(GtidError::MySqlSyntax("0-1-5".into()))
        );
    }

    #[test]
    fn gtids_are_told_from_file_positions() {
        for gtid in ["0-1-57", "0-1-57,1-2-3", &format!("{UUID}:1-5")] {
            assert!(GtidSet::looks_like(gtid), "{gtid}");
        }
        for other in [
            "mariadb-bin.000002:4",
            "binlog.000001:120",
            "now",
            "yesterday",
            "42",
        ] {
            assert!(!GtidSet::looks_like(other), "{other}");
        }
    }
}
