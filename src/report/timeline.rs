//! Chrome / Perfetto trace-event JSON of op timings: open it in `chrome://tracing` or
//! <https://ui.perfetto.dev> to see which resource did what, when.

use crate::backend::ResourceInfo;
use crate::replay::TimelineEntry;
use serde_json::{json, Value};

/// One "complete" event per op, one track per resource (ops without a resource — joins,
/// evictions, pool allocations — share a track named "instant").
pub fn chrome_trace(entries: &[TimelineEntry], resources: &[ResourceInfo]) -> Value {
    let mut events = Vec::with_capacity(entries.len() + resources.len() + 1);
    let instant_tid = resources.len();
    for (i, r) in resources.iter().enumerate() {
        events.push(json!({"ph": "M", "pid": 1, "tid": i, "name": "thread_name",
                           "args": {"name": r.name}}));
    }
    events.push(
        json!({"ph": "M", "pid": 1, "tid": instant_tid, "name": "thread_name",
                       "args": {"name": "instant"}}),
    );
    for e in entries {
        let tid = e.timing.resource.map_or(instant_tid, |r| r as usize);
        events.push(json!({
            "ph": "X",
            "pid": 1,
            "tid": tid,
            "name": e.label,
            "cat": e.kind,
            // Trace-event times are microseconds; keep nanosecond precision as a fraction.
            "ts": e.timing.start.0 as f64 / 1e3,
            "dur": (e.timing.end.0 - e.timing.start.0) as f64 / 1e3,
            "args": {"op": e.timing.id},
        }));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ns"})
}
