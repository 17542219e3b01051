//! # ablate-suggest: "did you mean" hints
//!
//! The grid checker (unknown keys, axis names) and the plugin SDK (parameter and plugin names)
//! both answer a misspelt name with the closest known one. Both use this crate, which has no
//! dependencies, so the SDK that plugins link stays small.

/// Levenshtein distance over characters (insertions, deletions and substitutions cost 1).
///
/// ```
/// assert_eq!(ablate_suggest::edit_distance("tempreature", "temperature"), 2);
/// ```
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name nearest to `given` if it is at most `limit` edits away; of equally near
/// names, the first in byte order.
///
/// ```
/// use ablate_suggest::closest;
/// assert_eq!(closest("epoch", ["epochs", "lr"], 2), Some("epochs"));
/// assert_eq!(closest("weibull", ["gaussian", "laplace"], 2), None);
/// ```
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>, limit: usize) -> Option<&'a str> {
    known.into_iter().map(|k| (edit_distance(given, k), k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("lr", "lr"), 0);
        assert_eq!(edit_distance("lrr", "lr"), 1);
        assert_eq!(edit_distance("lr", "lrr"), 1);
        assert_eq!(edit_distance("scael", "scale"), 2);
        assert_eq!(edit_distance("tempreature", "temperature"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        // Characters, not bytes: one substitution of a two-byte letter.
        assert_eq!(edit_distance("θ", "σ"), 1);
    }

    #[test]
    fn closest_respects_the_limit_and_breaks_ties_by_name() {
        assert_eq!(closest("epoch", ["epochs", "lr"], 2), Some("epochs"));
        assert_eq!(closest("gausian", ["gaussian", "laplace"], 2), Some("gaussian"));
        assert_eq!(closest("weibull", ["gaussian", "laplace"], 2), None);
        assert_eq!(closest("lx", ["lr"], 0), None);
        assert_eq!(closest("lx", ["lr"], 1), Some("lr"));
        // "ab" is one edit from both: the first in byte order wins, whatever the input order.
        assert_eq!(closest("ab", ["b", "a"], 1), Some("a"));
        assert_eq!(closest("ab", ["a", "b"], 1), Some("a"));
        assert_eq!(closest("x", std::iter::empty(), 5), None);
    }
}
