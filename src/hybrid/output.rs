//! The final result as JSON rows, CSV or an Arrow IPC stream.
//!
//! JSON keeps numbers as numbers and everything whose text matters exactly (decimals, dates,
//! timestamps) as strings, like Trino's own protocol: non-finite floats are `"NaN"`,
//! `"Infinity"`, `"-Infinity"`, binary is base64, lists are arrays, structs and maps objects.

use base64::Engine as _;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{json, Map, Value};

/// `[{"name", "type"}]` of the result.
pub fn columns(schema: &SchemaRef) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect(),
    )
}

/// Every row as a JSON array, in column order.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for b in batches {
        let cols = b
            .columns()
            .iter()
            .map(values)
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            out.push(Value::Array(cols.iter().map(|c| c[r].clone()).collect()));
        }
    }
    Ok(out)
}

/// RFC 4180 CSV with a header line; nested values as their JSON text.
pub fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, String> {
    let mut s = String::new();
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    s.push_str(&header.join(","));
    s.push_str("\r\n");
    for row in rows(batches)? {
        let Value::Array(cells) = row else { continue };
        let line: Vec<String> = cells
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::String(t) => csv_field(t),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                nested => csv_field(&nested.to_string()),
            })
            .collect();
        s.push_str(&line.join(","));
        s.push_str("\r\n");
    }
    Ok(s)
}

fn csv_field(t: &str) -> String {
    if t.contains([',', '"', '\n', '\r']) || t.starts_with(' ') || t.ends_with(' ') {
        format!("\"{}\"", t.replace('"', "\"\""))
    } else {
        t.to_string()
    }
}

/// An Arrow IPC stream (`application/vnd.apache.arrow.stream`).
pub fn arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut w = StreamWriter::try_new(Vec::new(), schema).map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

fn float_value(f: f64) -> Value {
    if f.is_nan() {
        json!("NaN")
    } else if f == f64::INFINITY {
        json!("Infinity")
    } else if f == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(f)
    }
}

/// One column as JSON values.
fn values(a: &ArrayRef) -> Result<Vec<Value>, String> {
    let n = a.len();
    let casted = |to: &DataType| cast(a, to).map_err(|e| e.to_string());
    let mut out: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let b = a.as_any().downcast_ref::<BooleanArray>().expect("boolean");
            (0..n).map(|i| json!(b.value(i))).collect()
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let c = casted(&DataType::Int64)?;
            let c = c.as_any().downcast_ref::<Int64Array>().expect("int64");
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let c = casted(&DataType::UInt64)?;
            let c = c.as_any().downcast_ref::<UInt64Array>().expect("uint64");
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let c = casted(&DataType::Float64)?;
            let c = c.as_any().downcast_ref::<Float64Array>().expect("float64");
            (0..n).map(|i| float_value(c.value(i))).collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let c = casted(&DataType::Utf8)?;
            let c = c.as_any().downcast_ref::<StringArray>().expect("utf8");
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let c = casted(&DataType::LargeBinary)?;
            let c = c.as_binary::<i64>();
            let b64 = base64::engine::general_purpose::STANDARD;
            (0..n).map(|i| json!(b64.encode(c.value(i)))).collect()
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let target = match a.data_type() {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    DataType::LargeList(f.clone())
                }
                _ => unreachable!(),
            };
            let c = casted(&target)?;
            let l = c.as_list::<i64>();
            let child = values(l.values())?;
            let offs = l.value_offsets();
            (0..n)
                .map(|i| {
                    let (s, e) = (offs[i] as usize, offs[i + 1] as usize);
                    Value::Array(child[s..e].to_vec())
                })
                .collect()
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let cols = s
                .columns()
                .iter()
                .map(values)
                .collect::<Result<Vec<_>, _>>()?;
            (0..n)
                .map(|i| {
                    let mut m = Map::new();
                    for (f, c) in fields.iter().zip(&cols) {
                        m.insert(f.name().clone(), c[i].clone());
                    }
                    Value::Object(m)
                })
                .collect()
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let keys = values(m.keys())?;
            let vals = values(m.values())?;
            let offs = m.value_offsets();
            (0..n)
                .map(|i| {
                    let mut o = Map::new();
                    for j in offs[i] as usize..offs[i + 1] as usize {
                        let k = match &keys[j] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        o.insert(k, vals[j].clone());
                    }
                    Value::Object(o)
                })
                .collect()
        }
        // Decimals, dates, times, timestamps, intervals, durations: Arrow's own text, which is
        // exact (no detour through floating point).
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(a.as_ref(), &opts).map_err(|e| e.to_string())?;
            (0..n).map(|i| json!(f.value(i).to_string())).collect()
        }
    };
    if a.null_count() > 0 {
        for (i, v) in out.iter_mut().enumerate() {
            if a.is_null(i) {
                *v = Value::Null;
            }
        }
    }
    Ok(out)
}
