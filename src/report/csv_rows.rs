//! CSV of report rows. The `csv` crate cannot write flattened structs, so rows go through
//! JSON objects (which keep field order) and become one column per field.

use serde::Serialize;

/// Writes `rows` as CSV: a header of field names, then one line per row. Numbers keep their
/// JSON spelling (shortest round-trip form), strings are quoted when needed.
pub fn to_csv<T: Serialize>(rows: &[T]) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Option<Vec<String>> = None;
    for (i, row) in rows.iter().enumerate() {
        let value = serde_json::to_value(row).map_err(|e| format!("row {i}: {e}"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| format!("row {i} is not a record"))?;
        let keys: Vec<String> = obj.keys().cloned().collect();
        match &header {
            None => {
                w.write_record(&keys).map_err(|e| e.to_string())?;
                header = Some(keys);
            }
            Some(h) if *h != keys => return Err(format!("row {i} has different columns")),
            Some(_) => {}
        }
        let cells: Vec<String> = obj
            .values()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect();
        w.write_record(&cells).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        b: f64,
        c: String,
    }

    #[derive(Serialize)]
    struct Row {
        a: u32,
        #[serde(flatten)]
        inner: Inner,
    }

    #[test]
    fn flattened_fields_become_columns_in_order() {
        let rows = [Row {
            a: 1,
            inner: Inner {
                b: 0.5,
                c: "x, y".into(),
            },
        }];
        let text = String::from_utf8(to_csv(&rows).unwrap()).unwrap();
        assert_eq!(text, "a,b,c\n1,0.5,\"x, y\"\n");
    }
}
