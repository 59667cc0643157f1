//! `--from`: where `listen` starts when nothing is saved (or to override what is).

use crate::gtid::GtidSet;
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
    /// After the given transactions, as a replica that has applied them would: the
    /// server finds where that is; `listen` goes on by file:offset from there.
    Gtid(GtidSet),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "now" => Ok(StartFrom::Now),
            "earliest" => Ok(StartFrom::Earliest),
            _ if GtidSet::looks_like(s) => s
                .parse::<GtidSet>()
                .map(StartFrom::Gtid)
                .map_err(|e| e.to_string()),
            _ => s
                .parse::<BinlogPosition>()
                .map(StartFrom::Position)
                .map_err(|e| {
                    format!(
                        "{e}; expected now, earliest, <file>:<offset> or a GTID \
                     (MariaDB 0-1-57, MySQL <server uuid>:1-57)"
                    )
                }),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::Now => f.write_str("now"),
            StartFrom::Earliest => f.write_str("earliest"),
            StartFrom::Position(p) => write!(f, "{p}"),
            StartFrom::Gtid(g) => write!(f, "GTID {g}"),
        }
    }
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
        assert_eq!(
            "0-1-42,1-1-7".parse::<StartFrom>(),
            Ok(StartFrom::Gtid("0-1-42,1-1-7".parse().expect("gtid")))
        );
        let mysql = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-42";
        let from = mysql.parse::<StartFrom>().expect("a MySQL GTID set");
        assert_eq!(
            from.to_string(),
            "GTID 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"
        );
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let err = "yesterday".parse::<StartFrom>().unwrap_err();
        assert!(err.contains("expected now, earliest"), "{err}");
        assert!(err.contains("GTID"), "{err}");
        let err = "0-1-42,0-2-9".parse::<StartFrom>().unwrap_err();
        assert!(err.contains("domain 0 twice"), "{err}");
        let err = "0-1".parse::<StartFrom>().unwrap_err();
        assert!(err.contains("not a MariaDB GTID"), "{err}");
        let err = "3e11fa47-71ca-11e1-9e33-c80aa9429562:0"
            .parse::<StartFrom>()
            .unwrap_err();
        assert!(err.contains("not a transaction interval"), "{err}");
    }
}
