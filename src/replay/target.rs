//! Replay target resolution: an explicit mapping, else a naming template, with refusals that
//! name the topic and how to fix it. Pure; the caller says which topics exist.

use crate::topics::TopicSelection;

/// The default template: the DLQ topic's base name plus `.retry.1`.
pub const DEFAULT_TEMPLATE: &str = "{base}.retry.1";

const PLACEHOLDERS: [&str; 3] = ["{base}", "{origin_topic}", "{consumer_group}"];

/// How replay targets are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRules {
    /// `--replay-target DLQ_TOPIC=RETRY_TOPIC`, first match wins.
    pub mappings: Vec<(String, String)>,
    /// `--replay-template`.
    pub template: String,
}

impl Default for TargetRules {
    fn default() -> Self {
        TargetRules {
            mappings: Vec::new(),
            template: DEFAULT_TEMPLATE.into(),
        }
    }
}

/// Where a record would be replayed to, or why it would not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The target topic and the rule that chose it.
    Target { topic: String, rule: String },
    /// A plain sentence saying why and how to fix it.
    Refused(String),
}

/// What resolution needs to know about a record.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySource<'a> {
    /// The DLQ topic the record is on.
    pub dlq_topic: &'a str,
    /// Its origin (live) topic, from the headers.
    pub origin_topic: Option<&'a str>,
    /// The consumer group that failed, from the headers.
    pub consumer_group: Option<&'a str>,
}

impl TargetRules {
    /// Validate `--replay-target` entries and the template; errors are sentences.
    pub fn parse(mappings: &[String], template: &str) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for m in mappings.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
            match m.split_once('=') {
                Some((dlq, retry)) if !dlq.trim().is_empty() && !retry.trim().is_empty() => {
                    parsed.push((dlq.trim().to_string(), retry.trim().to_string()))
                }
                _ => return Err(format!("--replay-target '{m}' must be DLQ_TOPIC=RETRY_TOPIC, e.g. orders.dlq=orders.retry.1")),
            }
        }
        let mut rest = template.to_string();
        for p in PLACEHOLDERS {
            rest = rest.replace(p, "");
        }
        if template.trim().is_empty() || rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "--replay-template '{template}' may use only {} as placeholders, e.g. {DEFAULT_TEMPLATE}",
                PLACEHOLDERS.join(", ")
            ));
        }
        Ok(TargetRules {
            mappings: parsed,
            template: template.to_string(),
        })
    }

    /// Resolve the target of one record. `exists` answers whether a topic exists on the
    /// cluster; `dlq` is the DLQ topic selection (a target must never be a DLQ topic).
    pub fn resolve(
        &self,
        source: ReplaySource<'_>,
        dlq: &TopicSelection,
        exists: impl Fn(&str) -> bool,
    ) -> Resolution {
        let dlq_topic = source.dlq_topic;
        let fix = format!("set --replay-target {dlq_topic}=<first retry topic>");
        let (topic, rule) = match self.mappings.iter().find(|(d, _)| d == dlq_topic) {
            Some((_, retry)) => (
                retry.clone(),
                format!("--replay-target {dlq_topic}={retry}"),
            ),
            None => {
                let mut topic = self.template.replace("{base}", base_name(dlq_topic));
                for (placeholder, value, header) in [
                    ("{origin_topic}", source.origin_topic, "origin topic"),
                    ("{consumer_group}", source.consumer_group, "consumer group"),
                ] {
                    if topic.contains(placeholder) {
                        match value {
                            Some(v) => topic = topic.replace(placeholder, v),
                            None => {
                                return Resolution::Refused(format!(
                                    "The record carries no {header} header, so the template {} cannot name a target; {fix}.",
                                    self.template
                                ))
                            }
                        }
                    }
                }
                (topic, format!("template {}", self.template))
            }
        };
        if Some(topic.as_str()) == source.origin_topic {
            return Resolution::Refused(format!(
                "{topic} is the live topic this record came from; replay goes to the first retry topic so live traffic is never starved: {fix}."
            ));
        }
        if topic == dlq_topic || dlq.matches(&topic) {
            return Resolution::Refused(format!(
                "{topic} is a DLQ topic, so replaying into it would only fail again: {fix}."
            ));
        }
        if !exists(&topic) {
            return Resolution::Refused(format!(
                "Topic {topic} does not exist on the cluster: create it, or {fix}."
            ));
        }
        Resolution::Target { topic, rule }
    }
}

/// A DLQ topic's name without its DLQ suffix (.dlq, -dlq, _dlq, .dlt, -dlt, _dlt, any case).
pub fn base_name(dlq_topic: &str) -> &str {
    let n = dlq_topic.len();
    if n > 4 {
        let (head, tail) = dlq_topic.split_at(n - 4);
        let lower = tail.to_ascii_lowercase();
        if [".dlq", "-dlq", "_dlq", ".dlt", "-dlt", "_dlt"].contains(&lower.as_str()) {
            return head;
        }
    }
    dlq_topic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source<'a>(dlq: &'a str, origin: Option<&'a str>) -> ReplaySource<'a> {
        ReplaySource {
            dlq_topic: dlq,
            origin_topic: origin,
            consumer_group: Some("svc"),
        }
    }

    fn dlq() -> TopicSelection {
        TopicSelection::parse(&[]).unwrap()
    }

    #[test]
    fn base_names_drop_any_dlq_suffix() {
        assert_eq!(base_name("orders.dlq"), "orders");
        assert_eq!(base_name("payments-DLT"), "payments");
        assert_eq!(base_name("raw-events_dlt"), "raw-events");
        assert_eq!(base_name("dead.letters"), "dead.letters");
        assert_eq!(base_name(".dlq"), ".dlq");
    }

    #[test]
    fn the_template_names_the_first_retry_topic() {
        let rules = TargetRules::default();
        let r = rules.resolve(source("orders.dlq", Some("orders")), &dlq(), |t| {
            t == "orders.retry.1"
        });
        assert_eq!(
            r,
            Resolution::Target {
                topic: "orders.retry.1".into(),
                rule: "template {base}.retry.1".into()
            }
        );
    }

    #[test]
    fn a_mapping_wins_over_the_template() {
        let rules =
            TargetRules::parse(&["orders.dlq=order-service.retry".into()], DEFAULT_TEMPLATE)
                .unwrap();
        let r = rules.resolve(source("orders.dlq", Some("orders")), &dlq(), |_| true);
        assert!(
            matches!(r, Resolution::Target { ref topic, .. } if topic == "order-service.retry")
        );
    }

    #[test]
    fn the_live_topic_is_refused_even_when_the_template_names_it() {
        let rules = TargetRules::parse(&[], "{origin_topic}").unwrap();
        let r = rules.resolve(source("orders.dlq", Some("orders")), &dlq(), |_| true);
        assert!(
            matches!(r, Resolution::Refused(ref why) if why.contains("orders is the live topic") && why.contains("--replay-target orders.dlq=")),
            "{r:?}"
        );
        let rules = TargetRules::parse(&["orders.dlq=orders".into()], DEFAULT_TEMPLATE).unwrap();
        assert!(matches!(
            rules.resolve(source("orders.dlq", Some("orders")), &dlq(), |_| true),
            Resolution::Refused(_)
        ));
    }

    #[test]
    fn dlq_topics_and_missing_topics_are_refused() {
        let rules = TargetRules::parse(&["a.dlq=b.dlq".into()], DEFAULT_TEMPLATE).unwrap();
        let r = rules.resolve(source("a.dlq", None), &dlq(), |_| true);
        assert!(
            matches!(r, Resolution::Refused(ref why) if why.contains("b.dlq is a DLQ topic")),
            "{r:?}"
        );
        let r = TargetRules::default().resolve(source("x.dlq", None), &dlq(), |_| false);
        assert!(
            matches!(r, Resolution::Refused(ref why) if why.contains("x.retry.1 does not exist")),
            "{r:?}"
        );
    }

    #[test]
    fn a_template_needing_a_missing_header_is_refused() {
        let rules = TargetRules::parse(&[], "{origin_topic}.retry").unwrap();
        let r = rules.resolve(source("x.dlq", None), &dlq(), |_| true);
        assert!(
            matches!(r, Resolution::Refused(ref why) if why.contains("no origin topic header")),
            "{r:?}"
        );
    }

    #[test]
    fn bad_rules_are_explained() {
        assert!(
            TargetRules::parse(&["nodelimiter".into()], DEFAULT_TEMPLATE)
                .unwrap_err()
                .contains("DLQ_TOPIC=RETRY_TOPIC")
        );
        assert!(TargetRules::parse(&[], "{service}.retry")
            .unwrap_err()
            .contains("placeholders"));
        assert!(TargetRules::parse(&[], "  ").is_err());
    }
}
