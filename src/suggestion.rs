//! Did-you-mean: the closest known name to a mistyped one.
//!
//! Used for manifest keys, targets and layer names. Separators are normalised first, so
//! `include_optimizer` finds `include-optimizer` and `Global_Average_Pooling2D` finds
//! `global_average_pooling2d`; otherwise the closest name within an edit distance of about a
//! third of its length wins.

pub fn closest<'a, I>(wrong: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let wanted = normalise(wrong);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let normalised = normalise(candidate);
        if normalised == wanted {
            return Some(candidate);
        }
        let distance = strsim::damerau_levenshtein(&wanted, &normalised);
        let budget = (wanted.chars().count().max(normalised.chars().count()) / 3).max(1);
        let prefix_match = wanted.len() >= 3 && normalised.starts_with(&wanted);
        if distance <= budget || prefix_match {
            let score = if prefix_match { distance.min(budget) } else { distance };
            if best.is_none_or(|(d, _)| score < d) {
                best = Some((score, candidate));
            }
        }
    }
    best.map(|(_, name)| name)
}

/// A help line: "did you mean `x`?", or `None`.
pub fn did_you_mean<'a, I>(wrong: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(wrong, candidates).map(|name| format!("did you mean `{name}`?"))
}

fn normalise(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn separators_and_case_do_not_count() {
        assert_eq!(closest("include_optimizer", ["include-optimizer", "trainable"]), Some("include-optimizer"));
        assert_eq!(closest("Global_Average_Pooling2D", ["global_average_pooling2d"]), Some("global_average_pooling2d"));
    }

    #[test]
    fn typos_within_a_third_of_the_length() {
        assert_eq!(closest("tranable", ["trainable", "dropout"]), Some("trainable"));
        assert_eq!(closest("dropuot", ["trainable", "dropout"]), Some("dropout"));
        assert_eq!(closest("x", ["trainable", "dropout"]), None);
        assert_eq!(closest("zzzzzz", ["trainable", "dropout"]), None);
    }

    #[test]
    fn the_closest_wins() {
        assert_eq!(closest("dense1", ["dense_2", "dense_1", "dense"]), Some("dense_1"));
    }
}
