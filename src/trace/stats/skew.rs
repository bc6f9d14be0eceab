//! Skew measures of a popularity vector (counts per expert or per neuron).

/// Gini coefficient of non-negative counts: 0 when all are equal, approaching 1 when one item
/// takes everything. Sorts a copy; O(n log n).
pub fn gini(counts: &[u64]) -> f64 {
    let n = counts.len();
    let total: u64 = counts.iter().sum();
    if n == 0 || total == 0 {
        return 0.0;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &c)| (2.0 * i as f64 - n as f64 + 1.0) * c as f64)
        .sum();
    weighted / (n as f64 * total as f64)
}

/// Shannon entropy of the counts divided by its maximum, ln(n): 1 for uniform use.
pub fn normalized_entropy(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if counts.len() < 2 || total == 0 {
        return 1.0;
    }
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    h / (counts.len() as f64).ln()
}

/// Share of all counts taken by the most-used item.
pub fn top_share(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    *counts.iter().max().unwrap_or(&0) as f64 / total as f64
}

/// Fewest items whose counts add up to at least `fraction` of the total (the hot set).
pub fn hot_set_size(counts: &[u64], fraction: f64) -> usize {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let goal = fraction * total as f64;
    let mut sum = 0u64;
    for (i, &c) in sorted.iter().enumerate() {
        sum += c;
        if sum as f64 >= goal {
            return i + 1;
        }
    }
    sorted.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_values() {
        assert_eq!(gini(&[5, 5, 5, 5]), 0.0);
        // One of four items takes everything: (n-1)/n = 0.75.
        assert!((gini(&[0, 0, 0, 8]) - 0.75).abs() < 1e-12);
        // [1,2,3,4]: sum_i (2i-n+1) x_i = -3*1 -1*2 +1*3 +3*4 = 10; 10 / (4*10) = 0.25.
        assert!((gini(&[4, 1, 3, 2]) - 0.25).abs() < 1e-12);
        assert!((normalized_entropy(&[3, 3, 3]) - 1.0).abs() < 1e-12);
        assert_eq!(normalized_entropy(&[0, 9]), 0.0);
        assert_eq!(top_share(&[1, 3]), 0.75);
        assert_eq!(hot_set_size(&[10, 50, 30, 10], 0.8), 2);
        assert_eq!(hot_set_size(&[10, 50, 30, 10], 0.81), 3);
    }
}
