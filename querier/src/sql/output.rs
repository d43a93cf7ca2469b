//! SQL answers as JSON (the default), Arrow IPC stream, or a text table
//! (`strata sql`).
//!
//! JSON: `{"status":"success","data":{"columns":[{"name","type"}...],
//! "rows":[[...]...]}}`. Integers and finite floats are numbers (64-bit
//! integers exactly: JavaScript clients lose precision past 2^53, Arrow
//! does not), non-finite floats the strings `"NaN"`, `"+Inf"`, `"-Inf"` as
//! in Prometheus' API, maps objects, timestamps RFC 3339 strings, anything
//! else its Arrow display string.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use super::SqlOutput;

/// Media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn float(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("+Inf")
    } else {
        json!("-Inf")
    }
}

/// Row `i` of `array` as JSON.
fn value(array: &dyn Array, i: usize) -> Result<Value, ArrowError> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Boolean => json!(array.as_boolean().value(i)),
        DataType::Int8 => json!(array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => json!(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => json!(array.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => json!(array.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => json!(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json!(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => json!(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => json!(array.as_string::<i64>().value(i)),
        DataType::Utf8View => json!(array.as_string_view().value(i)),
        DataType::Map(..) => {
            let entries = array.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut obj = Map::new();
            for j in 0..entries.len() {
                let key = match value(keys.as_ref(), j)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(key, value(values.as_ref(), j)?);
            }
            Value::Object(obj)
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(i);
            Value::Array(
                (0..items.len())
                    .map(|j| value(items.as_ref(), j))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let opts = FormatOptions::default();
            json!(ArrayFormatter::try_new(array, &opts)?.value(i).to_string())
        }
    })
}

/// The JSON answer.
pub fn to_json(out: &SqlOutput) -> Result<Value, ArrowError> {
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut rows = Vec::with_capacity(out.rows());
    for b in &out.batches {
        for i in 0..b.num_rows() {
            let row: Vec<Value> = b
                .columns()
                .iter()
                .map(|c| value(c.as_ref(), i))
                .collect::<Result<_, _>>()?;
            rows.push(Value::Array(row));
        }
    }
    Ok(json!({"status": "success", "data": {"columns": columns, "rows": rows}}))
}

/// The Arrow IPC stream answer.
pub fn to_arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    w.into_inner()
}

/// A plain text table with a header line, columns aligned, nulls as `NULL`.
pub fn to_text(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, ArrowError> {
    let mut cells: Vec<Vec<String>> =
        vec![schema.fields().iter().map(|f| f.name().clone()).collect()];
    let opts = FormatOptions::default().with_null("NULL");
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            cells.push(fmts.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    let widths: Vec<usize> = (0..schema.fields().len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    Ok(text)
}
