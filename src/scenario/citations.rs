//! The citation rule, checked on the JSON itself: every number sits inside a
//! `{"value": ..., "source": "..."}` object whose source says something.
//!
//! The typed schema already refuses a bare number where a [`crate::sourced::Sourced`] is
//! expected and a `Sourced` without `source`; this walk adds what types cannot see (an empty or
//! placeholder source) and keeps the rule true for any field a later schema change adds.

use crate::sourced::Sourced;
use serde_json::Value;

/// A number or citation that breaks the rule, with the JSON path of the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CitationProblem {
    pub field: String,
    pub message: String,
}

/// Every problem in `root`, in document order.
pub fn citation_problems(root: &Value) -> Vec<CitationProblem> {
    let mut problems = Vec::new();
    walk(root, "", false, &mut problems);
    problems
}

fn is_sourced(map: &serde_json::Map<String, Value>) -> bool {
    map.contains_key("value") && map.contains_key("source")
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn walk(v: &Value, path: &str, cited: bool, problems: &mut Vec<CitationProblem>) {
    match v {
        Value::Number(n) if !cited => problems.push(CitationProblem {
            field: path.to_string(),
            message: format!(
                "the number {n} has no citation; write it as {{\"value\": {n}, \"source\": \"where it comes from\"}}"
            ),
        }),
        Value::Object(map) if is_sourced(map) => {
            match &map["source"] {
                Value::String(s) => {
                    if Sourced::new((), s.as_str()).check_source(path).is_err() {
                        problems.push(CitationProblem {
                            field: path.to_string(),
                            message: format!(
                                "the source {s:?} is empty or a placeholder; cite where the value comes from"
                            ),
                        });
                    }
                }
                _ => problems.push(CitationProblem {
                    field: child_path(path, "source"),
                    message: "a source must be a string saying where the value comes from".into(),
                }),
            }
            walk(&map["value"], &child_path(path, "value"), true, problems);
        }
        Value::Object(map) => {
            for (k, child) in map {
                walk(child, &child_path(path, k), cited, problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), cited, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cited_numbers_pass_and_nested_numbers_inherit_the_citation() {
        let v = json!({
            "a": {"value": 3, "source": "Table 1"},
            "curve": {"value": [{"request_bytes": 4096, "bytes_per_s": 1e9}], "source": "Fig. 3"},
            "name": "x",
            "flag": true
        });
        assert!(citation_problems(&v).is_empty());
    }

    #[test]
    fn bare_number_is_reported_with_its_path() {
        let v = json!({"memory": {"capacity_bytes": 17}});
        let p = citation_problems(&v);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "memory.capacity_bytes");
        assert!(p[0].message.contains("no citation"), "{}", p[0].message);
    }

    #[test]
    fn empty_and_placeholder_sources_are_reported() {
        let v = json!({"cpu": [{"cores": {"value": 4, "source": "  "}},
                               {"cores": {"value": 4, "source": "TODO"}}]});
        let p = citation_problems(&v);
        let fields: Vec<&str> = p.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["cpu[0].cores", "cpu[1].cores"]);
    }

    #[test]
    fn non_string_source_is_reported() {
        let v = json!({"x": {"value": 1, "source": 5}});
        let p = citation_problems(&v);
        assert_eq!(p[0].field, "x.source");
    }
}
