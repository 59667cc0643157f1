//! Binlog positions and the Elasticsearch external version derived from them.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A position in the source's binary log: the file and the byte offset of an event,
/// plus the GTID of its transaction when the server reported one.
///
/// Prints as `mariadb-bin.000003:1234` (with ` gtid=0-1-55` when known) and parses
/// back from `file:offset`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// Why a position cannot be parsed or turned into a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("binlog position `{0}` is not of the form <file>:<offset>")]
    Syntax(String),
    #[error("binlog file name `{0}` does not end in a numeric sequence (e.g. mysql-bin.000042)")]
    FileNumber(String),
    #[error(
        "binlog position {file}:{offset} is beyond what a version can encode (file number < 2^31, offset < 2^32)"
    )]
    TooLarge { file: String, offset: u64 },
}

impl BinlogPosition {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        Self {
            file: file.into(),
            offset,
            gtid: None,
        }
    }

    /// The numeric suffix of the file name: `mysql-bin.000042` → 42.
    pub fn file_number(&self) -> Result<u64, PositionError> {
        let digits = self
            .file
            .rsplit_once('.')
            .map(|(_, n)| n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| PositionError::FileNumber(self.file.clone()))?;
        digits
            .parse()
            .map_err(|_| PositionError::FileNumber(self.file.clone()))
    }

    /// The Elasticsearch external version for a write caused by the event at this
    /// position: `file_number << 32 | offset`. Monotonic in binlog order, always > 0
    /// for a real event (offsets start at 4), and below 2^63 as ES requires.
    pub fn version(&self) -> Result<u64, PositionError> {
        let n = self.file_number()?;
        if n >= 1 << 31 || self.offset >= 1 << 32 {
            return Err(PositionError::TooLarge {
                file: self.file.clone(),
                offset: self.offset,
            });
        }
        Ok(n << 32 | self.offset)
    }

    /// Binlog order: by file sequence number, then offset. `None` when a file name has
    /// no sequence number. File base names are not compared: a server has one.
    pub fn binlog_cmp(&self, other: &Self) -> Option<Ordering> {
        let a = self.file_number().ok()?;
        let b = other.file_number().ok()?;
        Some(a.cmp(&b).then(self.offset.cmp(&other.offset)))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if let Some(gtid) = &self.gtid {
            write!(f, " gtid={gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for BinlogPosition {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, offset) = s
            .trim()
            .rsplit_once(':')
            .filter(|(f, _)| !f.is_empty())
            .ok_or_else(|| PositionError::Syntax(s.to_string()))?;
        let offset = offset
            .parse()
            .map_err(|_| PositionError::Syntax(s.to_string()))?;
        Ok(Self::new(file, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_and_parses() {
        let mut p = BinlogPosition::new("mariadb-bin.000003", 1234);
        assert_eq!(p.to_string(), "mariadb-bin.000003:1234");
        assert_eq!(
            "mariadb-bin.000003:1234".parse::<BinlogPosition>(),
            Ok(p.clone())
        );
        p.gtid = Some("0-1-55".into());
        assert_eq!(p.to_string(), "mariadb-bin.000003:1234 gtid=0-1-55");
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            "nocolon".parse::<BinlogPosition>(),
            Err(PositionError::Syntax(_))
        ));
        assert!(matches!(
            ":12".parse::<BinlogPosition>(),
            Err(PositionError::Syntax(_))
        ));
        assert!(matches!(
            "f.1:x".parse::<BinlogPosition>(),
            Err(PositionError::Syntax(_))
        ));
        assert!(matches!(
            BinlogPosition::new("binlog", 4).version(),
            Err(PositionError::FileNumber(_))
        ));
        assert!(matches!(
            BinlogPosition::new("b.000001", 1 << 32).version(),
            Err(PositionError::TooLarge { .. })
        ));
    }

    #[test]
    fn version_encodes_file_and_offset() {
        assert_eq!(
            BinlogPosition::new("mysql-bin.000001", 4).version(),
            Ok((1 << 32) | 4)
        );
    }

    proptest! {
        /// Versions order exactly as positions do, so a later event always wins in ES.
        #[test]
        fn version_order_is_binlog_order(
            fa in 0u64..(1 << 31), oa in 0u64..(1 << 32),
            fb in 0u64..(1 << 31), ob in 0u64..(1 << 32),
        ) {
            let a = BinlogPosition::new(format!("mysql-bin.{fa:06}"), oa);
            let b = BinlogPosition::new(format!("mysql-bin.{fb:06}"), ob);
            let by_version = a.version().unwrap().cmp(&b.version().unwrap());
            prop_assert_eq!(Some(by_version), a.binlog_cmp(&b));
        }

        #[test]
        fn display_parse_round_trip(f in 0u64..1_000_000, o in any::<u64>()) {
            let p = BinlogPosition::new(format!("mysql-bin.{f:06}"), o);
            prop_assert_eq!(p.to_string().parse::<BinlogPosition>(), Ok(p));
        }
    }
}
