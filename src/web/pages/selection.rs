//! The selection of an action as forms carry it and as pages show it: shared by the replay
//! and purge pages, which take the same forms from the list, group and message pages.

use crate::actions::selection::{MessageRef, Selection};
use crate::error::{Error, Result};
use crate::web::extract::CsrfForm;
use crate::web::links::*;

/// Listed messages of a selection shown on the action and preview pages.
const SELECTION_SHOWN: usize = 20;

/// A message reference from a form value `topic/partition/offset[?generation=N]`.
pub(crate) fn parse_message_ref(value: &str) -> Result<MessageRef> {
    let bad = || {
        Error::BadRequest(format!(
            "'{value}' does not name a message; use topic/partition/offset."
        ))
    };
    let (coordinates, generation) = match value.split_once("?generation=") {
        Some((c, g)) => (
            c,
            Some(g.parse::<i64>().ok().filter(|g| *g >= 0).ok_or_else(bad)?),
        ),
        None => (value, None),
    };
    let mut parts = coordinates.rsplitn(3, '/');
    let offset = parts.next().and_then(|o| o.parse::<i64>().ok());
    let partition = parts.next().and_then(|p| p.parse::<i32>().ok());
    match (parts.next(), partition, offset) {
        (Some(topic), Some(partition), Some(offset)) if !topic.is_empty() => Ok(MessageRef {
            topic: topic.to_string(),
            partition,
            offset,
            generation,
        }),
        _ => Err(bad()),
    }
}

/// The fields every preview form may carry (the list page's bulk form carries them all,
/// whichever action its pressed button names).
const FORM_FIELDS: [&str; 6] = ["selection", "message", "filter", "rate", "reason", "erase"];

/// The selection a preview form names: `selection=messages` with `message` values (the
/// ticked rows, or one message from its page), or `selection=filter` with `filter`, the
/// list page's filter as a query string (one hidden field, so it never clashes with the
/// filter form's own inputs). The list page's form carries both; the button pressed says
/// which one counts.
pub(crate) fn selection_from_form(form: &CsrfForm) -> Result<Selection> {
    if let Some((unknown, _)) = form
        .0
        .iter()
        .find(|(k, _)| !FORM_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::BadRequest(format!(
            "The form has an unknown field '{unknown}'; reload the page and try again."
        )));
    }
    match form.get("selection") {
        Some("filter") => {
            let Some(query) = form.get("filter") else {
                return Err(Error::BadRequest(
                    "The form names no filter; reload the messages list and try again.".into(),
                ));
            };
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| {
                Error::BadRequest("The form's filter is not valid URL encoding.".into())
            })?;
            let fields = pairs
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Selection::filter_from_json(&fields)
        }
        Some("messages") | None => {
            let messages: Vec<MessageRef> = form
                .all("message")
                .map(parse_message_ref)
                .collect::<Result<_>>()?;
            if messages.is_empty() {
                return Err(Error::BadRequest(
                    "No message is ticked: tick the messages first, or use the button for all matching messages.".into(),
                ));
            }
            Ok(Selection::Messages(messages))
        }
        Some(other) => Err(Error::BadRequest(format!(
            "The form asks for a selection '{other}'; use messages or filter."
        ))),
    }
}

/// How a job's selection reads on a page.
pub(crate) struct SelectionView {
    /// The filter's fields, when a filter.
    pub filter: Option<Vec<(String, String)>>,
    /// The filter's /messages link.
    pub filter_link: String,
    /// Listed messages (the first few): label and link.
    pub messages: Vec<(String, String)>,
    /// Listed messages not shown.
    pub messages_more: usize,
}

pub(crate) fn selection_view(value: &serde_json::Value) -> SelectionView {
    let mut view = SelectionView {
        filter: None,
        filter_link: String::new(),
        messages: Vec::new(),
        messages_more: 0,
    };
    if let Some(filter) = value.get("filter").and_then(|f| f.as_object()) {
        let pairs: Vec<(String, String)> = filter
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let link_pairs: Vec<(&str, String)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        view.filter_link = messages_link(&link_pairs);
        view.filter = Some(pairs);
    } else if let Some(list) = value.get("messages").and_then(|m| m.as_array()) {
        let refs: Vec<MessageRef> = list
            .iter()
            .filter_map(|m| serde_json::from_value(m.clone()).ok())
            .collect();
        view.messages_more = refs.len().saturating_sub(SELECTION_SHOWN);
        view.messages = refs
            .iter()
            .take(SELECTION_SHOWN)
            .map(|m| {
                let path = format!("{}/{}/{}", path_segment(&m.topic), m.partition, m.offset);
                let link = match m.generation {
                    Some(g) => format!("/messages/{path}?generation={g}"),
                    None => format!("/messages/{path}"),
                };
                (format!("{}/{}/{}", m.topic, m.partition, m.offset), link)
            })
            .collect();
    }
    view
}

pub(crate) struct RefusalRow {
    pub label: String,
    pub link: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_refs_parse_from_form_values() {
        let m = parse_message_ref("orders.dlq/2/41?generation=1").unwrap();
        assert_eq!(
            (m.topic.as_str(), m.partition, m.offset, m.generation),
            ("orders.dlq", 2, 41, Some(1))
        );
        let m = parse_message_ref("a_b-c.d/0/7").unwrap();
        assert_eq!((m.topic.as_str(), m.generation), ("a_b-c.d", None));
        for bad in [
            "",
            "orders",
            "orders/1",
            "/1/2",
            "t/x/2",
            "t/1/y",
            "t/1/2?generation=-1",
            "t/1/2?generation=",
        ] {
            assert!(parse_message_ref(bad).is_err(), "{bad:?}");
        }
    }
}
