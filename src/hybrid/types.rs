//! Trino result columns → Arrow, by `typeSignature`.
//!
//! Trino's client protocol sends values as JSON: numbers for integers, numbers or the strings
//! `NaN`/`Infinity`/`-Infinity` for floating point, strings for decimals, dates, times and
//! timestamps (zoned ones end in an IANA zone name or an offset), base64 for varbinary, JSON
//! arrays for `array` and `row`, JSON objects for `map`. Each page is converted column by column
//! into one Arrow record batch, so a registration costs its Arrow size plus one page of JSON.
//! Types Arrow has no faithful home for (`json`, `uuid`, `interval ...`, `time with time zone`,
//! ...) become strings.

use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, ListArray, MapArray, StringArray,
    StructArray, Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use serde_json::Value;

/// A Trino type, as far as the conversion needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum TrinoType {
    Boolean,
    TinyInt,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// `varchar`, `char(n)` (Trino pads the value itself).
    Varchar,
    Date,
    /// `time(p)`.
    Time(u32),
    /// `timestamp(p)`.
    Timestamp(u32),
    /// `timestamp(p) with time zone`, stored as UTC.
    TimestampTz(u32),
    Varbinary,
    Array(Box<TrinoType>),
    Map(Box<TrinoType>, Box<TrinoType>),
    Row(Vec<(String, TrinoType)>),
    /// Anything else, kept as its JSON text (strings as they are).
    Other(String),
}

/// Longest decimal Arrow's Decimal128 holds (Trino's maximum too).
const MAX_DECIMAL_PRECISION: i64 = 38;

impl TrinoType {
    /// Parse a `typeSignature` object (`{"rawType": "decimal", "arguments": [...]}`).
    pub fn from_signature(sig: &Value) -> TrinoType {
        let raw = sig
            .get("rawType")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        let args: &[Value] = sig
            .get("arguments")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let long = |i: usize| {
            args.get(i)
                .filter(|a| kind_is(a, "long"))
                .and_then(|a| a.get("value"))
                .and_then(Value::as_i64)
        };
        let ty = |i: usize| {
            args.get(i)
                .filter(|a| kind_is(a, "type"))
                .and_then(|a| a.get("value"))
                .map(TrinoType::from_signature)
        };
        // Timestamps and times without an explicit precision are Trino's defaults.
        let precision = |default: i64| long(0).unwrap_or(default).clamp(0, 12) as u32;
        match raw.as_str() {
            "boolean" => TrinoType::Boolean,
            "tinyint" => TrinoType::TinyInt,
            "smallint" => TrinoType::SmallInt,
            "integer" => TrinoType::Integer,
            "bigint" => TrinoType::BigInt,
            "real" => TrinoType::Real,
            "double" => TrinoType::Double,
            "decimal" => {
                let p = long(0).unwrap_or(MAX_DECIMAL_PRECISION);
                let s = long(1).unwrap_or(0);
                if (1..=MAX_DECIMAL_PRECISION).contains(&p) && (0..=p).contains(&s) {
                    TrinoType::Decimal {
                        precision: p as u8,
                        scale: s as i8,
                    }
                } else {
                    TrinoType::Other(raw)
                }
            }
            "varchar" | "char" => TrinoType::Varchar,
            "date" => TrinoType::Date,
            "time" => TrinoType::Time(precision(3)),
            "timestamp" => TrinoType::Timestamp(precision(3)),
            "timestamp with time zone" => TrinoType::TimestampTz(precision(3)),
            "varbinary" => TrinoType::Varbinary,
            "array" => match ty(0) {
                Some(t) => TrinoType::Array(Box::new(t)),
                None => TrinoType::Other(raw),
            },
            "map" => match (ty(0), ty(1)) {
                (Some(k), Some(v)) => TrinoType::Map(Box::new(k), Box::new(v)),
                _ => TrinoType::Other(raw),
            },
            "row" => {
                let mut fields = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    let v = a.get("value");
                    let (name, sig) = if kind_is(a, "named_type") {
                        let name = v
                            .and_then(|v| v.get("fieldName"))
                            .and_then(|f| f.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        (name, v.and_then(|v| v.get("typeSignature")))
                    } else {
                        (None, v)
                    };
                    let Some(sig) = sig else {
                        return TrinoType::Other(raw);
                    };
                    fields.push((
                        name.unwrap_or_else(|| format!("field{i}")),
                        TrinoType::from_signature(sig),
                    ));
                }
                if fields.is_empty() {
                    TrinoType::Other(raw)
                } else {
                    TrinoType::Row(fields)
                }
            }
            _ => TrinoType::Other(raw),
        }
    }

    /// The Arrow type a column of this Trino type becomes.
    pub fn arrow(&self) -> DataType {
        match self {
            TrinoType::Boolean => DataType::Boolean,
            TrinoType::TinyInt => DataType::Int8,
            TrinoType::SmallInt => DataType::Int16,
            TrinoType::Integer => DataType::Int32,
            TrinoType::BigInt => DataType::Int64,
            TrinoType::Real => DataType::Float32,
            TrinoType::Double => DataType::Float64,
            TrinoType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            TrinoType::Varchar | TrinoType::Other(_) => DataType::Utf8,
            TrinoType::Date => DataType::Date32,
            TrinoType::Time(p) => DataType::Time64(time_unit(*p).max(TimeUnit::Microsecond)),
            TrinoType::Timestamp(p) => DataType::Timestamp(time_unit(*p), None),
            TrinoType::TimestampTz(p) => DataType::Timestamp(time_unit(*p), Some("UTC".into())),
            TrinoType::Varbinary => DataType::Binary,
            TrinoType::Array(t) => DataType::List(Arc::new(Field::new("item", t.arrow(), true))),
            TrinoType::Map(k, v) => DataType::Map(Arc::new(map_entries(k, v)), false),
            TrinoType::Row(fields) => DataType::Struct(row_fields(fields)),
        }
    }
}

fn kind_is(arg: &Value, kind: &str) -> bool {
    arg.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.eq_ignore_ascii_case(kind))
}

/// Fractional-second digits → the coarsest Arrow unit that keeps them all (Trino goes to
/// picoseconds; Arrow stops at nanoseconds).
fn time_unit(precision: u32) -> TimeUnit {
    match precision {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

fn map_entries(k: &TrinoType, v: &TrinoType) -> Field {
    Field::new("entries", DataType::Struct(map_entry_fields(k, v)), false)
}

/// `key` and `value`, the fields of a map's entries.
fn map_entry_fields(k: &TrinoType, v: &TrinoType) -> Fields {
    Fields::from(vec![
        Field::new("key", k.arrow(), false),
        Field::new("value", v.arrow(), true),
    ])
}

fn row_fields(fields: &[(String, TrinoType)]) -> Fields {
    fields
        .iter()
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect()
}

/// One value that does not fit its column's type.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError(pub String);

type Result<T> = std::result::Result<T, ConvertError>;

fn bad(ty: &TrinoType, v: &Value) -> ConvertError {
    let mut text = v.to_string();
    if text.len() > 80 {
        let mut end = 80;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    ConvertError(format!("cannot read {text} as {ty:?}"))
}

/// Convert one column of JSON values (one page's worth) to an Arrow array of `ty.arrow()`.
pub fn to_array(ty: &TrinoType, values: &[&Value]) -> Result<ArrayRef> {
    // The column's values converted one by one (JSON null is SQL NULL).
    macro_rules! options {
        ($conv:expr) => {{
            let out: Result<Vec<_>> = values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    v => $conv(v).map(Some).ok_or_else(|| bad(ty, v)),
                })
                .collect();
            out?
        }};
    }
    macro_rules! prim {
        ($arr:ty, $conv:expr) => {{
            Arc::new(<$arr>::from(options!($conv))) as ArrayRef
        }};
    }
    let array = match ty {
        TrinoType::Boolean => prim!(BooleanArray, |v: &Value| v.as_bool()),
        TrinoType::TinyInt => prim!(Int8Array, |v: &Value| int(v)
            .and_then(|i| i8::try_from(i).ok())),
        TrinoType::SmallInt => prim!(Int16Array, |v: &Value| int(v)
            .and_then(|i| i16::try_from(i).ok())),
        TrinoType::Integer => prim!(Int32Array, |v: &Value| int(v)
            .and_then(|i| i32::try_from(i).ok())),
        TrinoType::BigInt => prim!(Int64Array, int),
        TrinoType::Real => prim!(Float32Array, |v: &Value| float(v).map(|f| f as f32)),
        TrinoType::Double => prim!(Float64Array, float),
        TrinoType::Decimal { precision, scale } => {
            let a = Decimal128Array::from(options!(|v: &Value| decimal(v, *scale)))
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| ConvertError(e.to_string()))?;
            a.validate_decimal_precision(*precision)
                .map_err(|e| ConvertError(e.to_string()))?;
            Arc::new(a)
        }
        TrinoType::Varchar => prim!(StringArray, |v: &Value| v.as_str().map(str::to_string)),
        TrinoType::Other(_) => prim!(StringArray, |v: &Value| Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        TrinoType::Date => prim!(Date32Array, |v: &Value| v.as_str().and_then(date)),
        TrinoType::Time(p) => match time_unit(*p).max(TimeUnit::Microsecond) {
            TimeUnit::Nanosecond => prim!(Time64NanosecondArray, |v: &Value| v
                .as_str()
                .and_then(time_nanos)),
            _ => prim!(Time64MicrosecondArray, |v: &Value| v
                .as_str()
                .and_then(time_nanos)
                .map(|n| n / 1_000)),
        },
        TrinoType::Timestamp(p) | TrinoType::TimestampTz(p) => {
            let zoned = matches!(ty, TrinoType::TimestampTz(_));
            let parse = |v: &Value| -> Option<DateTime<Utc>> {
                let s = v.as_str()?;
                if zoned {
                    zoned_timestamp(s)
                } else {
                    naive_timestamp(s).map(|t| t.and_utc())
                }
            };
            let unit = time_unit(*p);
            let a: ArrayRef = match unit {
                TimeUnit::Millisecond => {
                    prim!(TimestampMillisecondArray, |v: &Value| parse(v)
                        .map(|t| t.timestamp_millis()))
                }
                TimeUnit::Microsecond => {
                    prim!(TimestampMicrosecondArray, |v: &Value| parse(v)
                        .map(|t| t.timestamp_micros()))
                }
                _ => prim!(TimestampNanosecondArray, |v: &Value| parse(v)
                    .and_then(|t| t.timestamp_nanos_opt())),
            };
            if zoned {
                with_utc(a)
            } else {
                a
            }
        }
        TrinoType::Varbinary => {
            let out: Result<Vec<Option<Vec<u8>>>> = values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::String(s) => base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map(Some)
                        .map_err(|_| bad(ty, v)),
                    v => Err(bad(ty, v)),
                })
                .collect();
            let out = out?;
            Arc::new(BinaryArray::from_iter(out)) as ArrayRef
        }
        TrinoType::Array(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut valid = Vec::with_capacity(values.len());
            let mut children: Vec<&Value> = Vec::new();
            offsets.push(0i32);
            for v in values {
                match v {
                    Value::Null => valid.push(false),
                    Value::Array(items) => {
                        children.extend(items.iter());
                        valid.push(true);
                    }
                    v => return Err(bad(ty, v)),
                }
                offsets.push(offset(children.len())?);
            }
            let child = to_array(item, &children)?;
            Arc::new(
                ListArray::try_new(
                    Arc::new(Field::new("item", item.arrow(), true)),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    nulls(valid),
                )
                .map_err(|e| ConvertError(e.to_string()))?,
            )
        }
        TrinoType::Map(k, val) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut valid = Vec::with_capacity(values.len());
            let mut keys: Vec<Value> = Vec::new();
            let mut vals: Vec<&Value> = Vec::new();
            offsets.push(0i32);
            for v in values {
                match v {
                    Value::Null => valid.push(false),
                    Value::Object(m) => {
                        for (key, value) in m {
                            keys.push(Value::String(key.clone()));
                            vals.push(value);
                        }
                        valid.push(true);
                    }
                    v => return Err(bad(ty, v)),
                }
                offsets.push(offset(vals.len())?);
            }
            let key_refs: Vec<&Value> = keys.iter().collect();
            let entry_fields = map_entry_fields(k, val);
            let entries_field = map_entries(k, val);
            let entries = StructArray::try_new(
                entry_fields,
                vec![to_array(k, &key_refs)?, to_array(val, &vals)?],
                None,
            )
            .map_err(|e| ConvertError(e.to_string()))?;
            Arc::new(
                MapArray::try_new(
                    Arc::new(entries_field),
                    OffsetBuffer::new(offsets.into()),
                    entries,
                    nulls(valid),
                    false,
                )
                .map_err(|e| ConvertError(e.to_string()))?,
            )
        }
        TrinoType::Row(fields) => {
            let mut valid = Vec::with_capacity(values.len());
            let mut columns: Vec<Vec<&Value>> =
                vec![Vec::with_capacity(values.len()); fields.len()];
            for v in values {
                match v {
                    Value::Null => {
                        valid.push(false);
                        columns.iter_mut().for_each(|c| c.push(&Value::Null));
                    }
                    // Trino sends a row as a positional array.
                    Value::Array(items) if items.len() == fields.len() => {
                        valid.push(true);
                        for (c, item) in columns.iter_mut().zip(items) {
                            c.push(item);
                        }
                    }
                    // Some servers and proxies send an object keyed by field name.
                    Value::Object(m) => {
                        valid.push(true);
                        for (c, (name, _)) in columns.iter_mut().zip(fields) {
                            c.push(m.get(name).unwrap_or(&Value::Null));
                        }
                    }
                    v => return Err(bad(ty, v)),
                }
            }
            let arrays = fields
                .iter()
                .zip(&columns)
                .map(|((_, t), c)| to_array(t, c))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(
                StructArray::try_new(row_fields(fields), arrays, nulls(valid))
                    .map_err(|e| ConvertError(e.to_string()))?,
            )
        }
    };
    Ok(array)
}

fn offset(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| ConvertError("nested value too large".into()))
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    }
}

fn with_utc(a: ArrayRef) -> ArrayRef {
    macro_rules! tz {
        ($t:ty) => {
            if let Some(x) = a.as_any().downcast_ref::<$t>() {
                return Arc::new(x.clone().with_timezone("UTC"));
            }
        };
    }
    tz!(TimestampMillisecondArray);
    tz!(TimestampMicrosecondArray);
    tz!(TimestampNanosecondArray);
    a
}

/// Integers arrive as JSON numbers; map keys arrive as strings.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

/// `"-123.450"` at scale 3 → `-123450`. Exact: never goes through floating point.
fn decimal(v: &Value, scale: i8) -> Option<i128> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int_part, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    // More fractional digits than the scale holds would silently round: refuse instead.
    if frac.len() > scale && frac[scale..].bytes().any(|b| b != b'0') {
        return None;
    }
    let mut n: i128 = 0;
    for b in int_part.bytes() {
        n = n.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for i in 0..scale {
        let d = frac.as_bytes().get(i).map_or(0, |b| b - b'0');
        n = n.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    Some(if neg { -n } else { n })
}

fn date(s: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

fn time_nanos(s: &str) -> Option<i64> {
    let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok()?;
    let since = t - NaiveTime::MIN;
    since.num_nanoseconds()
}

fn naive_timestamp(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// `2024-03-01 00:30:00.000 Europe/Berlin`, `... UTC`, `... +05:30` → the instant in UTC.
fn zoned_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let (local, zone) = s.trim().rsplit_once(' ')?;
    let local = naive_timestamp(local)?;
    if zone.eq_ignore_ascii_case("UTC") || zone == "Z" {
        return Some(local.and_utc());
    }
    if zone.starts_with('+') || zone.starts_with('-') {
        let offset = chrono::FixedOffset::from_str(zone).ok()?;
        return offset
            .from_local_datetime(&local)
            .single()
            .map(|t| t.with_timezone(&Utc));
    }
    let tz = chrono_tz::Tz::from_str(zone).ok()?;
    // A wall-clock time that occurs twice (autumn DST change) is the earlier instant, like
    // Trino's own parsing; one that never occurs (spring gap) cannot come from Trino.
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(raw: &str, args: Value) -> Value {
        json!({"rawType": raw, "arguments": args})
    }

    #[test]
    fn signatures_map_to_arrow_types() {
        let dec = sig(
            "decimal",
            json!([{"kind":"LONG","value":12},{"kind":"LONG","value":3}]),
        );
        assert_eq!(
            TrinoType::from_signature(&dec).arrow(),
            DataType::Decimal128(12, 3)
        );
        let tstz = sig(
            "timestamp with time zone",
            json!([{"kind":"LONG","value":6}]),
        );
        assert_eq!(
            TrinoType::from_signature(&tstz).arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let row = sig(
            "row",
            json!([{"kind":"NAMED_TYPE","value":{"fieldName":{"name":"x"},"typeSignature":sig("bigint", json!([]))}}]),
        );
        assert_eq!(
            TrinoType::from_signature(&row),
            TrinoType::Row(vec![("x".into(), TrinoType::BigInt)])
        );
        assert_eq!(
            TrinoType::from_signature(&sig("uuid", json!([]))).arrow(),
            DataType::Utf8
        );
        // A decimal Arrow cannot hold is kept as text rather than rounded.
        let huge = sig(
            "decimal",
            json!([{"kind":"LONG","value":40},{"kind":"LONG","value":0}]),
        );
        assert_eq!(TrinoType::from_signature(&huge).arrow(), DataType::Utf8);
    }

    #[test]
    fn decimals_are_exact_and_refuse_rounding() {
        assert_eq!(decimal(&json!("-123.45"), 3), Some(-123450));
        assert_eq!(decimal(&json!("0.100"), 1), Some(1));
        assert_eq!(decimal(&json!("0.15"), 1), None);
        assert_eq!(decimal(&json!("12a"), 0), None);
        assert_eq!(decimal(&json!("."), 0), None);
        assert_eq!(decimal(&json!(42), 2), Some(4200));
    }

    #[test]
    fn zoned_timestamps_become_utc() {
        let t = zoned_timestamp("2024-03-01 00:30:00.000 Europe/Berlin").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-29T23:30:00+00:00");
        let t = zoned_timestamp("2024-01-01 05:30:00 +05:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert!(zoned_timestamp("2024-01-01 00:00:00 Mars/Olympus").is_none());
    }

    #[test]
    fn values_that_do_not_fit_are_errors_not_nulls() {
        let v = json!("x");
        assert!(to_array(&TrinoType::BigInt, &[&v]).is_err());
        let big = json!(300);
        assert!(to_array(&TrinoType::TinyInt, &[&big]).is_err());
        let nan = json!("NaN");
        let a = to_array(&TrinoType::Double, &[&nan, &Value::Null]).unwrap();
        assert_eq!(a.null_count(), 1);
    }

    #[test]
    fn decimals_and_maps_become_their_arrow_arrays() {
        let dec = TrinoType::Decimal {
            precision: 5,
            scale: 2,
        };
        let (x, y) = (json!("123.45"), json!("-0.5"));
        let a = to_array(&dec, &[&x, &Value::Null, &y]).unwrap();
        assert_eq!(a.data_type(), &DataType::Decimal128(5, 2));
        let d = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((d.value(0), d.is_null(1), d.value(2)), (12345, true, -50));
        // Fits the scale but not the precision.
        let big = json!("1234.5");
        assert!(to_array(&dec, &[&big]).is_err());

        let map = TrinoType::Map(Box::new(TrinoType::Varchar), Box::new(TrinoType::BigInt));
        let m = json!({"a": 1, "b": null});
        let a = to_array(&map, &[&m, &Value::Null]).unwrap();
        assert_eq!(a.data_type(), &map.arrow());
        let m = a.as_any().downcast_ref::<MapArray>().unwrap();
        assert_eq!((m.value_length(0), m.is_null(1)), (2, true));
    }
}
