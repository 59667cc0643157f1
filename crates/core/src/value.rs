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
    let mut sink = ValueSink(Value::Null);
    convert(kind, cell, decimal_as_number, &mut sink);
    sink.0
}

/// The same JSON as [`to_json`], appended to `out` as text (no intermediate value).
pub fn write_json(kind: ColumnKind, cell: &Cell, decimal_as_number: bool, out: &mut Vec<u8>) {
    convert(kind, cell, decimal_as_number, &mut ByteSink(out));
}

/// Receives one converted value. The one conversion ([`convert`]) feeds either a
/// [`Value`] or JSON text, so both forms always agree.
trait Sink {
    fn null(&mut self);
    fn i64(&mut self, v: i64);
    fn u64(&mut self, v: u64);
    fn f64(&mut self, v: f64);
    fn str(&mut self, v: &str);
    /// A string made of ASCII that needs no escaping (dates, times).
    fn plain(&mut self, args: std::fmt::Arguments<'_>);
    /// A number given as MySQL decimal text (`-12.50`).
    fn decimal(&mut self, text: &str);
    fn json(&mut self, v: &Value);
}

struct ValueSink(Value);

impl Sink for ValueSink {
    fn null(&mut self) {
        self.0 = Value::Null;
    }
    fn i64(&mut self, v: i64) {
        self.0 = Value::from(v);
    }
    fn u64(&mut self, v: u64) {
        self.0 = Value::from(v);
    }
    fn f64(&mut self, v: f64) {
        self.0 = Number::from_f64(v).map_or(Value::Null, Value::Number);
    }
    fn str(&mut self, v: &str) {
        self.0 = Value::String(v.to_string());
    }
    fn plain(&mut self, args: std::fmt::Arguments<'_>) {
        self.0 = Value::String(args.to_string());
    }
    fn decimal(&mut self, text: &str) {
        self.0 = decimal_number(text).unwrap_or_else(|| Value::String(text.to_string()));
    }
    fn json(&mut self, v: &Value) {
        self.0 = v.clone();
    }
}

struct ByteSink<'a>(&'a mut Vec<u8>);

impl Sink for ByteSink<'_> {
    fn null(&mut self) {
        self.0.extend_from_slice(b"null");
    }
    fn i64(&mut self, v: i64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    fn f64(&mut self, v: f64) {
        match Number::from_f64(v) {
            Some(n) => self.0.extend_from_slice(n.to_string().as_bytes()),
            None => self.null(),
        }
    }
    fn str(&mut self, v: &str) {
        write_str(v, self.0);
    }
    fn plain(&mut self, args: std::fmt::Arguments<'_>) {
        use std::io::Write;
        self.0.push(b'"');
        let _ = self.0.write_fmt(args);
        self.0.push(b'"');
    }
    fn decimal(&mut self, text: &str) {
        match decimal_number(text) {
            Some(v) => self.json(&v),
            None => self.str(text),
        }
    }
    fn json(&mut self, v: &Value) {
        let _ = serde_json::to_writer(&mut *self.0, v);
    }
}

fn convert(kind: ColumnKind, cell: &Cell, decimal_as_number: bool, out: &mut dyn Sink) {
    match cell {
        Cell::Null => out.null(),
        Cell::Int(i) => match kind {
            ColumnKind::Timestamp { .. } => out.null(),
            _ => out.i64(*i),
        },
        Cell::UInt(u) => out.u64(*u),
        Cell::Float(f) => out.f64(f.to_string().parse().unwrap_or(f64::NAN)),
        Cell::Double(d) => out.f64(*d),
        Cell::Json(v) => out.json(v),
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
                return out.null();
            }
            let (h, mi, s) = (hour, minute, second);
            match kind {
                ColumnKind::Date => out.plain(format_args!("{year:04}-{month:02}-{day:02}")),
                ColumnKind::Timestamp { fsp } => out.plain(format_args!(
                    "{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}{}Z",
                    Fraction(*micro, fsp)
                )),
                ColumnKind::DateTime { fsp } => out.plain(format_args!(
                    "{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}{}",
                    Fraction(*micro, fsp)
                )),
                _ => out.plain(format_args!(
                    "{year:04}-{month:02}-{day:02}T{h:02}:{mi:02}:{s:02}{}",
                    Fraction(*micro, 6)
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
            out.plain(format_args!(
                "{}{h:02}:{minutes:02}:{seconds:02}{}",
                if *negative { "-" } else { "" },
                Fraction(*micro, fsp)
            ))
        }
        Cell::Bytes(b) => bytes(kind, b, decimal_as_number, out),
    }
}

fn bytes(kind: ColumnKind, b: &[u8], decimal_as_number: bool, out: &mut dyn Sink) {
    match kind {
        ColumnKind::Binary => out.plain(format_args!(
            "{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )),
        ColumnKind::Bit => out.u64(b.iter().fold(0u64, |acc, byte| acc << 8 | u64::from(*byte))),
        ColumnKind::Json => match serde_json::from_slice::<Value>(b) {
            Ok(v) => out.json(&v),
            Err(_) => out.str(&text(b)),
        },
        ColumnKind::Decimal => {
            let t = text(b);
            if decimal_as_number {
                out.decimal(&t)
            } else {
                out.str(&t)
            }
        }
        // The text protocol delivers numbers and dates as text; parse them back.
        ColumnKind::Int | ColumnKind::Year => {
            let s = text(b);
            match s.parse::<i64>() {
                Ok(i) => out.i64(i),
                Err(_) => out.str(&s),
            }
        }
        ColumnKind::UInt => {
            let s = text(b);
            match s.parse::<u64>() {
                Ok(u) => out.u64(u),
                Err(_) => out.str(&s),
            }
        }
        ColumnKind::Float | ColumnKind::Double => {
            let s = text(b);
            match s.parse::<f64>() {
                Ok(f) => out.f64(f),
                Err(_) => out.str(&s),
            }
        }
        ColumnKind::Date
        | ColumnKind::DateTime { .. }
        | ColumnKind::Timestamp { .. }
        | ColumnKind::Time { .. } => {
            let s = text(b);
            if s.starts_with("0000-00-00") {
                return out.null();
            }
            match kind {
                ColumnKind::Date | ColumnKind::Time { .. } => out.str(&s),
                ColumnKind::Timestamp { .. } => out.str(&format!("{}Z", s.replacen(' ', "T", 1))),
                _ => out.str(&s.replacen(' ', "T", 1)),
            }
        }
        ColumnKind::Other => match std::str::from_utf8(b) {
            Ok(s) => out.str(s),
            Err(_) => out.plain(format_args!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )),
        },
        ColumnKind::Enum | ColumnKind::Set | ColumnKind::Text => out.str(&text(b)),
    }
}

/// `b` as text: borrowed when it is UTF-8 (the usual case, checked with the fast
/// validator), else with replacement characters as `String::from_utf8_lossy` gives.
fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// `v` as a JSON string. Most text needs no escaping and is copied as it is.
pub fn write_str(v: &str, out: &mut Vec<u8>) {
    if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(v.len() + 2);
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
}

/// `.fff` with the column's fractional digits; nothing for fsp 0.
struct Fraction(u32, u8);

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fsp = usize::from(self.1.min(6));
        if fsp == 0 {
            return Ok(());
        }
        let digits = self.0 / 10u32.pow(6 - fsp as u32);
        write!(f, ".{digits:0fsp$}")
    }
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
    t.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
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

impl Cell {
    /// A UTC date-time from seconds and microseconds since the Unix epoch (how the
    /// binlog stores TIMESTAMP). Epoch 0 is MySQL's zero timestamp: all zeros.
    pub fn from_unix(secs: i64, micro: u32) -> Cell {
        if secs == 0 && micro == 0 {
            return Cell::Date {
                year: 0,
                month: 0,
                day: 0,
                hour: 0,
                minute: 0,
                second: 0,
                micro: 0,
            };
        }
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Cell::Date {
            year: u16::try_from(year).unwrap_or(0),
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            micro,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    fn unix_times_become_utc_dates() {
        assert_eq!(
            Cell::from_unix(1_709_251_199, 654_321),
            date(2024, 2, 29, 23, 59, 59, 654_321)
        );
        assert_eq!(Cell::from_unix(86_400, 0), date(1970, 1, 2, 0, 0, 0, 0));
        assert_eq!(
            Cell::from_unix(2_147_483_647, 0),
            date(2038, 1, 19, 3, 14, 7, 0)
        );
        assert_eq!(
            to_json(
                ColumnKind::Timestamp { fsp: 0 },
                &Cell::from_unix(0, 0),
                false
            ),
            Value::Null
        );
    }

    #[test]
    fn text_and_value_forms_agree() {
        let cases = [
            (ColumnKind::Decimal, Cell::Bytes(b"12.50".to_vec()), true),
            (ColumnKind::Decimal, Cell::Bytes(b"-3.000".to_vec()), true),
            (ColumnKind::Decimal, Cell::Bytes(b"12.50".to_vec()), false),
            (
                ColumnKind::DateTime { fsp: 3 },
                date(2024, 1, 31, 13, 45, 0, 120_000),
                false,
            ),
            (
                ColumnKind::Text,
                Cell::Bytes("quote \" and ✓".as_bytes().to_vec()),
                false,
            ),
            (ColumnKind::Binary, Cell::Bytes(vec![0, 255]), false),
            (ColumnKind::Float, Cell::Float(0.1), false),
            (ColumnKind::UInt, Cell::UInt(u64::MAX), false),
            (
                ColumnKind::Json,
                Cell::Bytes(br#"{"a":[1,"x"]}"#.to_vec()),
                false,
            ),
            (ColumnKind::Date, date(0, 0, 0, 0, 0, 0, 0), false),
        ];
        for (kind, cell, dec) in cases {
            let mut text = Vec::new();
            write_json(kind, &cell, dec, &mut text);
            let parsed: Value = serde_json::from_slice(&text).expect("valid JSON");
            assert_eq!(parsed, to_json(kind, &cell, dec), "{kind:?} {cell:?}");
        }
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
