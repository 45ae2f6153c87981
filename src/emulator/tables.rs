//! Canned tables (`SELECT * FROM name [LIMIT n]`): fixed rows in exactly the JSON a Trino
//! coordinator sends, for the types the emulator's own SQL cannot produce.
//!
//! - `all_types` has a column of every type the hybrid endpoint converts (and `json`, which it
//!   keeps as text), with ordinary values, edge values (`NaN`, infinities, negative decimals,
//!   offsets, empty collections) and a row of nulls. Values are what Trino 446 writes.
//! - `web.daily` (also `daily`): a week of page views, the remote half of the demo's hybrid
//!   query.

use serde_json::{json, Value};

use super::protocol::{CannedType, Column, SqlType};

macro_rules! canned {
    ($display:expr, $sig:expr) => {
        SqlType::Canned(&CannedType {
            display: $display,
            signature: $sig,
        })
    };
}

const fn simple(display: &'static str, signature: &'static str) -> CannedType {
    CannedType { display, signature }
}

static BOOLEAN: CannedType = simple("boolean", r#"{"rawType":"boolean","arguments":[]}"#);
static TINYINT: CannedType = simple("tinyint", r#"{"rawType":"tinyint","arguments":[]}"#);
static SMALLINT: CannedType = simple("smallint", r#"{"rawType":"smallint","arguments":[]}"#);
static INTEGER: CannedType = simple("integer", r#"{"rawType":"integer","arguments":[]}"#);
static BIGINT: CannedType = simple("bigint", r#"{"rawType":"bigint","arguments":[]}"#);
static REAL: CannedType = simple("real", r#"{"rawType":"real","arguments":[]}"#);
static DOUBLE: CannedType = simple("double", r#"{"rawType":"double","arguments":[]}"#);
static DATE: CannedType = simple("date", r#"{"rawType":"date","arguments":[]}"#);
static VARBINARY: CannedType = simple("varbinary", r#"{"rawType":"varbinary","arguments":[]}"#);
static JSON: CannedType = simple("json", r#"{"rawType":"json","arguments":[]}"#);

/// Types the SQL engine's results use (`emulator::engine`).
pub(crate) const TINYINT_TYPE: SqlType = SqlType::Canned(&TINYINT);
pub(crate) const SMALLINT_TYPE: SqlType = SqlType::Canned(&SMALLINT);
pub(crate) const REAL_TYPE: SqlType = SqlType::Canned(&REAL);
pub(crate) const DATE_TYPE: SqlType = SqlType::Canned(&DATE);

/// `(name, column type, values per row)`.
fn all_types() -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("c_boolean", SqlType::Canned(&BOOLEAN)),
        Column::new("c_tinyint", SqlType::Canned(&TINYINT)),
        Column::new("c_smallint", SqlType::Canned(&SMALLINT)),
        Column::new("c_integer", SqlType::Canned(&INTEGER)),
        Column::new("c_bigint", SqlType::Canned(&BIGINT)),
        Column::new("c_real", SqlType::Canned(&REAL)),
        Column::new("c_double", SqlType::Canned(&DOUBLE)),
        Column::new(
            "c_decimal",
            canned!(
                "decimal(12,3)",
                r#"{"rawType":"decimal","arguments":[{"kind":"LONG","value":12},{"kind":"LONG","value":3}]}"#
            ),
        ),
        Column::new(
            "c_varchar",
            canned!(
                "varchar(20)",
                r#"{"rawType":"varchar","arguments":[{"kind":"LONG","value":20}]}"#
            ),
        ),
        Column::new(
            "c_char",
            canned!(
                "char(5)",
                r#"{"rawType":"char","arguments":[{"kind":"LONG","value":5}]}"#
            ),
        ),
        Column::new("c_date", SqlType::Canned(&DATE)),
        Column::new(
            "c_time",
            canned!(
                "time(3)",
                r#"{"rawType":"time","arguments":[{"kind":"LONG","value":3}]}"#
            ),
        ),
        Column::new(
            "c_timestamp",
            canned!(
                "timestamp(3)",
                r#"{"rawType":"timestamp","arguments":[{"kind":"LONG","value":3}]}"#
            ),
        ),
        Column::new(
            "c_timestamp6",
            canned!(
                "timestamp(6)",
                r#"{"rawType":"timestamp","arguments":[{"kind":"LONG","value":6}]}"#
            ),
        ),
        Column::new(
            "c_timestamp_tz",
            canned!(
                "timestamp(3) with time zone",
                r#"{"rawType":"timestamp with time zone","arguments":[{"kind":"LONG","value":3}]}"#
            ),
        ),
        Column::new("c_varbinary", SqlType::Canned(&VARBINARY)),
        Column::new(
            "c_array",
            canned!(
                "array(bigint)",
                r#"{"rawType":"array","arguments":[{"kind":"TYPE","value":{"rawType":"bigint","arguments":[]}}]}"#
            ),
        ),
        Column::new(
            "c_map",
            canned!(
                "map(varchar, double)",
                r#"{"rawType":"map","arguments":[{"kind":"TYPE","value":{"rawType":"varchar","arguments":[{"kind":"LONG","value":2147483647}]}},{"kind":"TYPE","value":{"rawType":"double","arguments":[]}}]}"#
            ),
        ),
        Column::new(
            "c_row",
            canned!(
                "row(x bigint, y varchar)",
                r#"{"rawType":"row","arguments":[{"kind":"NAMED_TYPE","value":{"fieldName":{"name":"x"},"typeSignature":{"rawType":"bigint","arguments":[]}}},{"kind":"NAMED_TYPE","value":{"fieldName":{"name":"y"},"typeSignature":{"rawType":"varchar","arguments":[{"kind":"LONG","value":2147483647}]}}}]}"#
            ),
        ),
        Column::new("c_json", SqlType::Canned(&JSON)),
    ];
    let rows = vec![
        vec![
            json!(true),
            json!(-7),
            json!(1234),
            json!(-2_000_000),
            json!(9_007_199_254_740_993_i64),
            json!(1.5),
            json!(-2.25),
            json!("12345.678"),
            json!("héllo"),
            json!("ab   "),
            json!("2024-02-29"),
            json!("12:34:56.789"),
            json!("2024-02-29 23:59:59.123"),
            json!("2024-02-29 23:59:59.123456"),
            json!("2024-03-01 00:30:00.000 Europe/Berlin"),
            json!("AAEC/w=="),
            json!([1, null, 3]),
            json!({"a": 1.5, "b": null}),
            json!([7, "seven"]),
            json!("{\"k\":[1,2]}"),
        ],
        vec![
            json!(false),
            json!(127),
            json!(-32768),
            json!(2_147_483_647),
            json!(-9_223_372_036_854_775_808_i64),
            json!("NaN"),
            json!("Infinity"),
            json!("-0.001"),
            json!(""),
            json!("     "),
            json!("1969-12-31"),
            json!("00:00:00.000"),
            json!("1970-01-01 00:00:00.000"),
            json!("1970-01-01 00:00:00.000001"),
            json!("2024-01-01 05:30:00.000 +05:30"),
            json!(""),
            json!([]),
            json!({"inf": "-Infinity"}),
            json!([null, null]),
            json!("null"),
        ],
        vec![Value::Null; 20],
    ];
    (columns, rows)
}

/// What Trino sends a client that did not declare `PARAMETRIC_DATETIME`: `timestamp`, `time` (and
/// their `with time zone` forms) without a precision, in the display type and the signature, and
/// their values rounded (half up) to milliseconds.
fn without_parametric_datetime(
    (columns, rows): (Vec<Column>, Vec<Vec<Value>>),
) -> (Vec<Column>, Vec<Vec<Value>>) {
    static LEGACY: [CannedType; 4] = [
        simple("time", r#"{"rawType":"time","arguments":[]}"#),
        simple(
            "time with time zone",
            r#"{"rawType":"time with time zone","arguments":[]}"#,
        ),
        simple("timestamp", r#"{"rawType":"timestamp","arguments":[]}"#),
        simple(
            "timestamp with time zone",
            r#"{"rawType":"timestamp with time zone","arguments":[]}"#,
        ),
    ];
    let mut rounded = vec![false; columns.len()];
    let columns = columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let SqlType::Canned(t) = &c.ty else {
                return c;
            };
            let base = t.display.split('(').next().unwrap_or(t.display);
            let tz = t.display.ends_with("with time zone");
            let legacy = match (base, tz) {
                ("time", false) => &LEGACY[0],
                ("time", true) => &LEGACY[1],
                ("timestamp", false) => &LEGACY[2],
                ("timestamp", true) => &LEGACY[3],
                _ => return c,
            };
            rounded[i] = true;
            Column::new(&c.name, SqlType::Canned(legacy))
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&rounded)
                .map(|(v, &r)| match (r, v) {
                    (true, Value::String(s)) => Value::String(round_to_millis(&s)),
                    (_, v) => v,
                })
                .collect()
        })
        .collect();
    (columns, rows)
}

/// `[date ]HH:MM:SS[.fraction][ zone]` with its fraction rounded half up to three digits (a
/// carry moves the seconds, and on into the date; a time wraps at midnight).
fn round_to_millis(v: &str) -> String {
    use chrono::{Duration, NaiveDateTime, NaiveTime, Timelike};
    // A timestamp has one space (between date and time) before its zone; a time none.
    let spaces_before_zone = usize::from(v.as_bytes().get(4) == Some(&b'-'));
    let (body, zone) = match v.match_indices(' ').nth(spaces_before_zone) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    // Half up: half a millisecond added (chrono carries it into seconds, the date, or around
    // midnight), then the fraction cut to milliseconds.
    fn round<T: Timelike + std::ops::Add<Duration, Output = T> + Copy>(t: T) -> T {
        let t = t + Duration::nanoseconds(500_000);
        t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(t)
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(body, "%Y-%m-%d %H:%M:%S%.f") {
        return format!("{}{zone}", round(t).format("%Y-%m-%d %H:%M:%S%.3f"));
    }
    if let Ok(t) = NaiveTime::parse_from_str(body, "%H:%M:%S%.f") {
        return format!("{}{zone}", round(t).format("%H:%M:%S%.3f"));
    }
    v.to_string()
}

fn daily() -> (Vec<Column>, Vec<Vec<Value>>) {
    let columns = vec![
        Column::new("date", SqlType::Canned(&DATE)),
        Column::new("views", SqlType::Canned(&BIGINT)),
    ];
    let rows = (1..=7)
        .map(|d| vec![json!(format!("2024-01-0{d}")), json!(1000 * d + 7 * d * d)])
        .collect();
    (columns, rows)
}

/// The canned table `name` (catalog and schema parts are optional), or `None`.
pub(crate) fn lookup(
    name: &[String],
    parametric_datetime: bool,
) -> Option<(Vec<Column>, Vec<Vec<Value>>)> {
    let parts: Vec<&str> = name.iter().map(String::as_str).collect();
    match parts.as_slice() {
        [.., "all_types"] if parametric_datetime => Some(all_types()),
        [.., "all_types"] => Some(without_parametric_datetime(all_types())),
        [.., "web", "daily"] | ["daily"] => Some(daily()),
        _ => None,
    }
}

#[cfg(test)]
mod rounding_tests {
    #[test]
    fn values_round_half_up_to_milliseconds_with_carries() {
        for (v, want) in [
            ("2024-02-29 23:59:59.123456", "2024-02-29 23:59:59.123"),
            ("1970-01-01 00:00:00.000001", "1970-01-01 00:00:00.000"),
            ("2024-02-29 23:59:59.9995", "2024-03-01 00:00:00.000"),
            (
                "2024-03-01 00:30:00.000 Europe/Berlin",
                "2024-03-01 00:30:00.000 Europe/Berlin",
            ),
            (
                "2024-01-01 05:30:00.0006 +05:30",
                "2024-01-01 05:30:00.001 +05:30",
            ),
            ("2024-01-01 05:30:00", "2024-01-01 05:30:00.000"),
            ("12:34:56.789", "12:34:56.789"),
            ("23:59:59.9999", "00:00:00.000"),
            ("12:00:00.0004 +01:00", "12:00:00.000 +01:00"),
        ] {
            assert_eq!(super::round_to_millis(v), want, "{v}");
        }
    }

    #[test]
    fn without_the_capability_types_lose_their_precision() {
        let name = vec!["all_types".to_string()];
        let (cols, rows) = super::lookup(&name, false).unwrap();
        let (pcols, prows) = super::lookup(&name, true).unwrap();
        let i = pcols.iter().position(|c| c.name == "c_timestamp6").unwrap();
        assert_eq!(cols[i].ty.display(), "timestamp");
        assert_eq!(pcols[i].ty.display(), "timestamp(6)");
        assert_eq!(rows[0][i], "2024-02-29 23:59:59.123");
        assert_eq!(prows[0][i], "2024-02-29 23:59:59.123456");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_row_has_a_value_per_column() {
        for name in [["all_types"].as_slice(), ["web", "daily"].as_slice()] {
            let name: Vec<String> = name.iter().map(|s| s.to_string()).collect();
            let (cols, rows) = super::lookup(&name, true).unwrap();
            for r in rows {
                assert_eq!(r.len(), cols.len());
            }
            for c in cols {
                if let super::SqlType::Canned(t) = c.ty {
                    serde_json::from_str::<serde_json::Value>(t.signature).unwrap();
                }
            }
        }
    }
}
