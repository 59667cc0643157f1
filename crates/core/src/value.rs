//! Column values and their one conversion to JSON.
//!
//! Both paths that produce documents — rows read by the materializer and row images
//! decoded from binlog events — describe a value as a [`Cell`] plus the
//! [`ColumnKind`] of its column, and turn it into JSON with [`to_json`]. So the same
//! row gives the same JSON whichever way it arrived.
//!
//! | MySQL type | JSON |
//! | --- | --- |
//! | TINYINT … BIGINT (signed or unsigned, up to u64) | number |
//! | FLOAT, DOUBLE | number |
//! | DECIMAL | string keeping its scale (`"12.50"`); a number when the ES mapping of the field is numeric |
//! | DATE | `"2024-01-31"` |
//! | DATETIME(fsp) | `"2024-01-31T13:45:00"` (`.fff…` with the column's fractional digits) |
//! | TIMESTAMP(fsp) | `"2024-01-31T13:45:00Z"`, UTC |
//! | TIME(fsp) | `"-838:59:59"`, `"12:00:00.5"` |
//! | YEAR | number |
//! | BIT(n) | number (unsigned) |
//! | ENUM, SET | the string (`"a,b"` for a SET) |
//! | CHAR, VARCHAR, TEXT | string |
//! | BINARY, VARBINARY, BLOB | base64 string |
//! | JSON | the JSON value |
//! | NULL | null |
//! | zero dates (`0000-00-00`) | null |

use base64::Engine as _;
use serde_json::{Number, Value};

/// What kind of column a value came from; decides its JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Int,
    UInt,
    Float,
    Double,
    Decimal,
    Date,
    /// DATETIME with its fractional-second digits (0-6).
    DateTime {
        fsp: u8,
    },
    /// TIMESTAMP with its fractional-second digits; values are UTC.
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Year,
    Bit,
    Enum,
    Set,
    Text,
    Binary,
    Json,
    /// A type we do not convert specially (e.g. GEOMETRY): text if UTF-8, else base64.
    Other,
}

/// A value as the MySQL protocol or a binlog row image delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Strings, DECIMAL text, BLOBs, BIT bytes, JSON text.
    Bytes(Vec<u8>),
    Date {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micro: u32,
    },
    Time {
        negative: bool,
        days: u32,
        hours: u8,
        minutes: u8,
        seconds: u8,
        micro: u32,
    },
    /// An already-decoded JSON value (binlog JSONB).
    Json(Value),
}

/// The JSON for `cell` from a column of `kind`. `decimal_as_number` is set when the
/// Elasticsearch mapping of the target field is numeric.
pub fn to_json(kind: ColumnKind, cell: &Cell, decimal_as_number: bool) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(i) => match kind {
            ColumnKind::Timestamp { .. } => Value::Null,
            _ => Value::from(*i),
        },
        Cell::UInt(u) => Value::from(*u),
        Cell::Float(f) => float(f.to_string().parse().unwrap_or(f64::NAN)),
        Cell::Double(d) => float(*d),
        Cell::Json(v) => v.clone(),
        Cell::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micro,
        } => {
            if *year == 0 && *month == 0 && *day == 0 {
                return Value::Null;
            }
            let date = format!("{year:04}-{month:02}-{day:02}");
            match kind {
                ColumnKind::Date => Value::String(date),
                ColumnKind::Timestamp { fsp } => Value::String(format!(
                    "{date}T{hour:02}:{minute:02}:{second:02}{}Z",
                    fraction(*micro, fsp)
                )),
                ColumnKind::DateTime { fsp } => Value::String(format!(
                    "{date}T{hour:02}:{minute:02}:{second:02}{}",
                    fraction(*micro, fsp)
                )),
                _ => Value::String(format!(
                    "{date}T{hour:02}:{minute:02}:{second:02}{}",
                    fraction(*micro, 6)
                )),
            }
        }
        Cell::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micro,
        } => {
            let fsp = match kind {
                ColumnKind::Time { fsp } => fsp,
                _ => 6,
            };
            let h = u64::from(*days) * 24 + u64::from(*hours);
            Value::String(format!(
                "{}{h:02}:{minutes:02}:{seconds:02}{}",
                if *negative { "-" } else { "" },
                fraction(*micro, fsp)
            ))
        }
        Cell::Bytes(b) => bytes_to_json(kind, b, decimal_as_number),
    }
}

fn bytes_to_json(kind: ColumnKind, b: &[u8], decimal_as_number: bool) -> Value {
    match kind {
        ColumnKind::Binary => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        ColumnKind::Bit => {
            let n = b.iter().fold(0u64, |acc, byte| acc << 8 | u64::from(*byte));
            Value::from(n)
        }
        ColumnKind::Json => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
        ColumnKind::Decimal => {
            let text = String::from_utf8_lossy(b).into_owned();
            if decimal_as_number {
                decimal_number(&text).unwrap_or(Value::String(text))
            } else {
                Value::String(text)
            }
        }
        // Text protocol delivers numbers and dates as text; parse them back.
        ColumnKind::Int | ColumnKind::Year => {
            parse_text(b, |s| s.parse::<i64>().ok().map(Value::from))
        }
        ColumnKind::UInt => parse_text(b, |s| s.parse::<u64>().ok().map(Value::from)),
        ColumnKind::Float | ColumnKind::Double => {
            parse_text(b, |s| s.parse::<f64>().ok().map(float))
        }
        ColumnKind::Date
        | ColumnKind::DateTime { .. }
        | ColumnKind::Timestamp { .. }
        | ColumnKind::Time { .. } => temporal_text(kind, b),
        ColumnKind::Other => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        },
        ColumnKind::Enum | ColumnKind::Set | ColumnKind::Text => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
    }
}

fn parse_text(b: &[u8], f: impl Fn(&str) -> Option<Value>) -> Value {
    let s = String::from_utf8_lossy(b);
    f(&s).unwrap_or_else(|| Value::String(s.into_owned()))
}

/// `2024-01-31 13:45:00.5` (text protocol) in the same form as a binary Date cell.
fn temporal_text(kind: ColumnKind, b: &[u8]) -> Value {
    let s = String::from_utf8_lossy(b);
    if s.starts_with("0000-00-00") {
        return Value::Null;
    }
    match kind {
        ColumnKind::Date | ColumnKind::Time { .. } => Value::String(s.into_owned()),
        ColumnKind::Timestamp { .. } => Value::String(format!("{}Z", s.replacen(' ', "T", 1))),
        _ => Value::String(s.replacen(' ', "T", 1)),
    }
}

fn fraction(micro: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{micro:06}");
    format!(".{}", &digits[..usize::from(fsp.min(6))])
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A DECIMAL text as a JSON number: an integer when it has no fraction and fits,
/// else a float (the field is numeric in ES, so ES would store a float anyway).
fn decimal_number(text: &str) -> Option<Value> {
    let t = text.trim();
    let integral = t
        .split_once('.')
        .map_or(Some(t), |(i, f)| f.bytes().all(|c| c == b'0').then_some(i));
    if let Some(i) = integral {
        if let Ok(n) = i.parse::<i64>() {
            return Some(Value::from(n));
        }
        if let Ok(n) = i.parse::<u64>() {
            return Some(Value::from(n));
        }
    }
    t.parse::<f64>().ok().map(float)
}

/// A comparable key for matching a row's column to a parameter value: integers of
/// any signedness (and their canonical decimal text) compare equal, as MySQL's `=`
/// would have it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKey {
    Null,
    Int(i128),
    Bytes(Vec<u8>),
    Other(String),
}

impl Cell {
    pub fn match_key(&self) -> MatchKey {
        match self {
            Cell::Null => MatchKey::Null,
            Cell::Int(i) => MatchKey::Int(i128::from(*i)),
            Cell::UInt(u) => MatchKey::Int(i128::from(*u)),
            Cell::Bytes(b) => match std::str::from_utf8(b).ok().and_then(canonical_int) {
                Some(i) => MatchKey::Int(i),
                None => MatchKey::Bytes(b.clone()),
            },
            other => MatchKey::Other(format!("{other:?}")),
        }
    }

    /// Text for templates such as `document_id: "user_%id"`.
    pub fn to_text(&self) -> String {
        match to_json(ColumnKind::Other, self, false) {
            Value::String(s) => s,
            Value::Null => String::new(),
            v => v.to_string(),
        }
    }
}

fn canonical_int(s: &str) -> Option<i128> {
    let i: i128 = s.parse().ok()?;
    (i.to_string() == s).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn date(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Cell {
        Cell::Date {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            micro: us,
        }
    }

    #[test]
    fn integers_keep_their_full_range() {
        assert_eq!(
            to_json(ColumnKind::UInt, &Cell::UInt(u64::MAX), false),
            json!(u64::MAX)
        );
        assert_eq!(
            to_json(ColumnKind::Int, &Cell::Int(i64::MIN), false),
            json!(i64::MIN)
        );
        assert_eq!(
            to_json(
                ColumnKind::UInt,
                &Cell::Bytes(b"18446744073709551615".to_vec()),
                false
            ),
            json!(u64::MAX)
        );
    }

    #[test]
    fn decimals_keep_their_scale_unless_mapped_numeric() {
        let d = Cell::Bytes(b"12.50".to_vec());
        assert_eq!(to_json(ColumnKind::Decimal, &d, false), json!("12.50"));
        assert_eq!(to_json(ColumnKind::Decimal, &d, true), json!(12.5));
        assert_eq!(
            to_json(ColumnKind::Decimal, &Cell::Bytes(b"7.00".to_vec()), true),
            json!(7)
        );
    }

    #[test]
    fn temporal_values_are_iso_8601() {
        let v = date(2024, 1, 31, 13, 45, 0, 120_000);
        assert_eq!(
            to_json(ColumnKind::DateTime { fsp: 3 }, &v, false),
            json!("2024-01-31T13:45:00.120")
        );
        assert_eq!(
            to_json(ColumnKind::Timestamp { fsp: 0 }, &v, false),
            json!("2024-01-31T13:45:00Z")
        );
        assert_eq!(
            to_json(ColumnKind::Date, &date(2024, 1, 31, 0, 0, 0, 0), false),
            json!("2024-01-31")
        );
        assert_eq!(
            to_json(ColumnKind::Date, &date(0, 0, 0, 0, 0, 0, 0), false),
            Value::Null
        );
        let t = Cell::Time {
            negative: true,
            days: 34,
            hours: 22,
            minutes: 59,
            seconds: 59,
            micro: 0,
        };
        assert_eq!(
            to_json(ColumnKind::Time { fsp: 0 }, &t, false),
            json!("-838:59:59")
        );
    }

    #[test]
    fn bytes_follow_the_column_kind() {
        let b = Cell::Bytes(vec![0, 255, 1]);
        assert_eq!(to_json(ColumnKind::Binary, &b, false), json!("AP8B"));
        assert_eq!(
            to_json(ColumnKind::Bit, &Cell::Bytes(vec![1, 2]), false),
            json!(258)
        );
        assert_eq!(
            to_json(
                ColumnKind::Json,
                &Cell::Bytes(br#"{"a":[1,2]}"#.to_vec()),
                false
            ),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            to_json(ColumnKind::Set, &Cell::Bytes(b"a,b".to_vec()), false),
            json!("a,b")
        );
    }

    #[test]
    fn floats_print_as_written() {
        assert_eq!(
            to_json(ColumnKind::Float, &Cell::Float(0.1), false),
            json!(0.1)
        );
    }

    #[test]
    fn match_keys_unify_integer_forms() {
        assert_eq!(Cell::Int(5).match_key(), Cell::UInt(5).match_key());
        assert_eq!(
            Cell::Int(5).match_key(),
            Cell::Bytes(b"5".to_vec()).match_key()
        );
        assert_ne!(
            Cell::Int(5).match_key(),
            Cell::Bytes(b"05".to_vec()).match_key()
        );
    }
}
