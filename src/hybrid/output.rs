//! The final result as JSON rows, CSV or an Arrow IPC stream.
//!
//! JSON keeps numbers as numbers and everything whose text matters exactly (decimals, dates,
//! timestamps) as strings, like Trino's own protocol: non-finite floats are `"NaN"`,
//! `"Infinity"`, `"-Infinity"`, binary is base64, lists are arrays, structs and maps objects.

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt64Type};
use datafusion::arrow::error::ArrowError;
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

/// Why the result could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Arrow could not cast, format or encode a column.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A column is not the array its data type promises.
    #[error("a {data_type} column is not stored as {expected}")]
    Layout {
        data_type: DataType,
        expected: &'static str,
    },
}

/// The array `a` as `T`, or why not.
fn layout<'a, T>(
    a: &'a ArrayRef,
    expected: &'static str,
    as_t: Option<&'a T>,
) -> Result<&'a T, OutputError> {
    as_t.ok_or_else(|| OutputError::Layout {
        data_type: a.data_type().clone(),
        expected,
    })
}

/// Every row as a JSON array, in column order.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>, OutputError> {
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
pub fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, OutputError> {
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
pub fn arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, OutputError> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    for b in batches {
        w.write(b)?;
    }
    Ok(w.into_inner()?)
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
fn values(a: &ArrayRef) -> Result<Vec<Value>, OutputError> {
    let n = a.len();
    let casted = |to: &DataType| cast(a, to);
    let mut out: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let b = layout(a, "booleans", a.as_boolean_opt())?;
            (0..n).map(|i| json!(b.value(i))).collect()
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let c = casted(&DataType::Int64)?;
            let c = layout(&c, "int64", c.as_primitive_opt::<Int64Type>())?;
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let c = casted(&DataType::UInt64)?;
            let c = layout(&c, "uint64", c.as_primitive_opt::<UInt64Type>())?;
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let c = casted(&DataType::Float64)?;
            let c = layout(&c, "float64", c.as_primitive_opt::<Float64Type>())?;
            (0..n).map(|i| float_value(c.value(i))).collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let c = casted(&DataType::Utf8)?;
            let c = layout(&c, "utf8", c.as_string_opt::<i32>())?;
            (0..n).map(|i| json!(c.value(i))).collect()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let c = casted(&DataType::LargeBinary)?;
            let c = layout(&c, "large binary", c.as_binary_opt::<i64>())?;
            let b64 = base64::engine::general_purpose::STANDARD;
            (0..n).map(|i| json!(b64.encode(c.value(i)))).collect()
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let c = casted(&DataType::LargeList(f.clone()))?;
            let l = layout(&c, "a large list", c.as_list_opt::<i64>())?;
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
            let s = layout(a, "a struct", a.as_struct_opt())?;
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
            let m = layout(a, "a map", a.as_map_opt())?;
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
            let f = ArrayFormatter::try_new(a.as_ref(), &opts)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Float32Array, Int32Array, ListArray, StringArray, UInt8Array,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};

    use super::*;

    #[test]
    fn columns_become_json_values() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(Int32Array::from(vec![-3, 4])),
            Arc::new(UInt8Array::from(vec![7, 8])),
            Arc::new(Float32Array::from(vec![f32::NAN, 1.5])),
            Arc::new(StringArray::from(vec![Some("a,b"), None])),
            Arc::new(BinaryArray::from_vec(vec![b"hi", b""])),
            Arc::new(list),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let rows = rows(std::slice::from_ref(&batch)).unwrap();
        assert_eq!(
            rows,
            vec![
                json!([true, -3, 7, "NaN", "a,b", "aGk=", [1, null]]),
                json!([null, 4, 8, 1.5, null, "", null]),
            ]
        );
        let text = csv(&schema, &[batch]).unwrap();
        assert_eq!(
            text,
            "c0,c1,c2,c3,c4,c5,c6\r\ntrue,-3,7,NaN,\"a,b\",aGk=,\"[1,null]\"\r\n,4,8,1.5,,,\r\n"
        );
    }
}
