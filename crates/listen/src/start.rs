//! `--from`: where `listen` starts when nothing is saved (or to override what is).

use mee_core::BinlogPosition;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The server's current end of the binlog: only changes from now on.
    Now,
    /// The oldest binlog file the server still has.
    Earliest,
    /// An explicit `file:offset` (the start of a transaction).
    Position(BinlogPosition),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "now" => Ok(StartFrom::Now),
            "earliest" => Ok(StartFrom::Earliest),
            _ if is_gtid(s) => Err(format!(
                "GTID start positions (`{s}`) are not supported yet; give a `file:offset` \
                 (SHOW BINLOG EVENTS / SHOW MASTER STATUS show them)"
            )),
            _ => s
                .parse::<BinlogPosition>()
                .map(StartFrom::Position)
                .map_err(|e| format!("{e}; expected now, earliest or <file>:<offset>")),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::Now => f.write_str("now"),
            StartFrom::Earliest => f.write_str("earliest"),
            StartFrom::Position(p) => write!(f, "{p}"),
        }
    }
}

/// `0-1-42` (MariaDB) or `uuid:1-42` (MySQL).
fn is_gtid(s: &str) -> bool {
    let mariadb = s.split('-').count() == 3 && s.split('-').all(|p| p.parse::<u64>().is_ok());
    let mysql = s.len() > 36 && s.as_bytes().get(36) == Some(&b':');
    mariadb || mysql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("now".parse(), Ok(StartFrom::Now));
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!(
            "mariadb-bin.000002:4".parse(),
            Ok(StartFrom::Position(BinlogPosition::new(
                "mariadb-bin.000002",
                4
            )))
        );
        assert!(
            "0-1-42"
                .parse::<StartFrom>()
                .unwrap_err()
                .contains("not supported yet")
        );
        assert!(
            "yesterday"
                .parse::<StartFrom>()
                .unwrap_err()
                .contains("expected now")
        );
    }
}
