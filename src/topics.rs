//! Which topics are DLQ topics: the `--dlq-topics` names and patterns, shared by the
//! indexer (what to read) and replay (what never to send to).

/// Topic names ending in .dlq, -dlq, _dlq, .dlt, -dlt or _dlt, in any case. Written without
/// a case-insensitive flag, which librdkafka's own regex engine (subscribe, used before the
/// indexer assigned partitions itself) did not have.
pub const DEFAULT_DLQ_PATTERN: &str = "^.*[._-]([dD][lL][qQ]|[dD][lL][tT])$";

/// How the indexer chooses topics: exact names plus regexes (`^...`), matched against the
/// cluster's topic list (see `index::consumer`).
#[derive(Debug, Clone)]
pub struct TopicSelection {
    /// Exact names and `^` patterns as given.
    pub subscriptions: Vec<String>,
    patterns: Vec<regex::Regex>,
    names: Vec<String>,
}

impl TopicSelection {
    /// Parse `--dlq-topics`; an empty list means the default pattern.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let items: Vec<String> = items
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let items = if items.is_empty() {
            vec![DEFAULT_DLQ_PATTERN.to_string()]
        } else {
            items
        };
        let mut patterns = Vec::new();
        let mut names = Vec::new();
        for item in &items {
            if item.starts_with('^') {
                let re = regex::Regex::new(item).map_err(|e| {
                    // The regex crate's message spans several lines with a caret diagram;
                    // its last line names the problem.
                    let text = e.to_string();
                    let reason = text
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ");
                    format!("--dlq-topics pattern '{item}' is not a valid regex ({reason}).")
                })?;
                patterns.push(re);
            } else if item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                names.push(item.clone());
            } else {
                return Err(format!("--dlq-topics entry '{item}' is not a valid topic name (letters, digits, '.', '_', '-'); start it with ^ for a regex"));
            }
        }
        Ok(Self {
            subscriptions: items,
            patterns,
            names,
        })
    }

    /// The exact names given (as opposed to patterns): topics the operator expects to exist.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a topic is one of the DLQ topics this dashboard indexes.
    pub fn matches(&self, topic: &str) -> bool {
        self.names.iter().any(|n| n == topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern_matches_dlq_suffixes_in_any_case() {
        let sel = TopicSelection::parse(&[]).unwrap();
        for t in ["orders.dlq", "orders-DLQ", "a_dlt", "payments.DLT", "x-Dlq"] {
            assert!(sel.matches(t), "{t} should match");
        }
        for t in ["orders", "orders.retry.1", "dlq.orders", "ordersdlq"] {
            assert!(!sel.matches(t), "{t} should not match");
        }
    }

    #[test]
    fn names_and_patterns_mix() {
        let sel = TopicSelection::parse(&["billing.dead".into(), "^audit\\..*".into()]).unwrap();
        assert!(sel.matches("billing.dead"));
        assert!(sel.matches("audit.x"));
        assert!(!sel.matches("orders.dlq"));
        assert_eq!(sel.subscriptions, vec!["billing.dead", "^audit\\..*"]);
    }

    #[test]
    fn bad_regex_and_bad_name_are_refused_with_a_sentence() {
        let err = TopicSelection::parse(&["^(".into()]).unwrap_err();
        assert!(err.contains("not a valid regex"), "{err}");
        let err = TopicSelection::parse(&["has space".into()]).unwrap_err();
        assert!(err.contains("not a valid topic name"), "{err}");
    }
}
