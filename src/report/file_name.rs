//! Labels (policy labels, budgets, workloads) as parts of file names.

/// A label as a file-name part: lower-case letters, digits and single dashes.
pub fn file_name_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_file_names() {
        assert_eq!(
            file_name_part("hobbit (no prefetch) @ 10% cached"),
            "hobbit-no-prefetch-10-cached"
        );
    }
}
