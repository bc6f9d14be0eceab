//! Plain-text tables of trace statistics.

use super::expert::REUSE_DISTANCE_BUCKETS;
use super::TraceStats;
use std::fmt::Write;

pub fn table(s: &TraceStats) -> String {
    let mut out = String::new();
    let m = &s.summary;
    let _ = writeln!(
        out,
        "{} trace of {}: {} tokens, {} sequences ({} prefill, {} decode){}",
        match s.kind {
            crate::trace::TraceKind::Expert => "expert",
            crate::trace::TraceKind::Neuron => "neuron",
        },
        s.model,
        m.tokens,
        m.sequences,
        m.prefill_tokens,
        m.decode_tokens,
        if m.filled_cells > 0 {
            format!(", {} filled-in cells", m.filled_cells)
        } else {
            String::new()
        }
    );
    if let Some(e) = &s.expert {
        let caps: Vec<u32> = e.mean_lru_hit_rate.iter().map(|&(c, _)| c).collect();
        let _ = write!(
            out,
            "\n{:>5} {:>5} {:>9} {:>6} {:>8} {:>6}",
            "moe", "layer", "top share", "gini", "entropy", "reuse"
        );
        for c in &caps {
            let _ = write!(out, " {:>7}", format!("lru@{c}"));
        }
        let _ = writeln!(out, " {:>9}", "top1->l+1");
        for l in &e.layers {
            let _ = write!(
                out,
                "{:>5} {:>5} {:>9.3} {:>6.3} {:>8.3} {:>6.3}",
                l.moe_layer,
                l.layer,
                l.top_share,
                l.gini,
                l.normalized_entropy,
                l.consecutive_reuse
            );
            for &c in &caps {
                let _ = write!(out, " {:>7.3}", l.lru_hit_rate[c as usize - 1]);
            }
            match l.next_layer_top1_accuracy {
                Some(a) => {
                    let _ = writeln!(out, " {a:>9.3}");
                }
                None => {
                    let _ = writeln!(out, " {:>9}", "-");
                }
            }
        }
        let _ = write!(
            out,
            "{:>5} {:>5} {:>9.3} {:>6.3} {:>8.3} {:>6.3}",
            "mean",
            "",
            e.mean_top_share,
            e.mean_gini,
            e.mean_normalized_entropy,
            e.mean_consecutive_reuse
        );
        for &(_, r) in &e.mean_lru_hit_rate {
            let _ = write!(out, " {r:>7.3}");
        }
        let _ = writeln!(out);
        let total: u64 = e.reuse_distance.iter().sum();
        let _ = writeln!(
            out,
            "\nreuse distance (tokens since the same expert was last used at the layer):"
        );
        for (label, &count) in REUSE_DISTANCE_BUCKETS.iter().zip(&e.reuse_distance) {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let _ = writeln!(out, "  {label:>9}: {count:>10} ({:>5.1}%)", share * 100.0);
        }
        let _ = writeln!(
            out,
            "\nstatic cross-layer predictor (most frequent top-1 at l+d given top-1 at l):"
        );
        for &(d, a) in &e.static_top1_accuracy {
            let _ = writeln!(out, "  d={d}: top-1 accuracy {a:.3}");
        }
        if !e.recorded_predictions.is_empty() {
            let _ = writeln!(out, "\nrecorded predictions:");
            for p in &e.recorded_predictions {
                let _ = writeln!(
                    out,
                    "  d={}: top-1 accuracy {:.3}, recall {:.3} ({} predictions)",
                    p.distance, p.top1_accuracy, p.recall, p.predictions
                );
            }
        }
        let [h, l, k] = e.hobbit_split;
        let _ = writeln!(
            out,
            "\nHOBBIT split of all selections at T1=0.6, T2=0.9: {:.1}% high, {:.1}% low, {:.1}% skip",
            h * 100.0,
            l * 100.0,
            k * 100.0
        );
        if let Some([a, b, c]) = e.second_weight_split {
            let _ = writeln!(
                out,
                "second expert's gate weight: {:.1}% >= 0.4, {:.1}% in [0.1, 0.4), {:.1}% < 0.1",
                a * 100.0,
                b * 100.0,
                c * 100.0
            );
        }
    }
    if let Some(n) = &s.neuron {
        let _ = writeln!(
            out,
            "\n{:>5} {:>8} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7} {:>7}",
            "layer", "neurons", "active", "hot@80%", "hot%", "gini", "reuse", "recall", "precis."
        );
        for l in &n.layers {
            let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
            let _ = writeln!(
                out,
                "{:>5} {:>8} {:>7.3} {:>8} {:>7.3} {:>6.3} {:>6.3} {:>7} {:>7}",
                l.layer,
                l.neurons,
                l.mean_active_fraction,
                l.hot_set_80,
                l.hot_set_80_fraction,
                l.gini,
                l.consecutive_reuse,
                opt(l.predictor_recall),
                opt(l.predictor_precision)
            );
        }
        let _ = writeln!(
            out,
            "{:>5} {:>8} {:>7.3} {:>8} {:>7.3} {:>6.3} {:>6.3}",
            "mean",
            "",
            n.mean_active_fraction,
            "",
            n.mean_hot_set_80_fraction,
            n.mean_gini,
            n.mean_consecutive_reuse
        );
    }
    out
}
