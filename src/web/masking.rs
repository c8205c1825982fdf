//! The common fields a redacted header fills (`redact::Sight::masks`), masked on what the
//! store returns before a page or the API shows it. Every surface that shows a record's
//! error class, error message, stack trace, consumer group, origin timestamp or attempts, a
//! failure group, or the record a replay came back as goes through these, so that a field
//! is masked wherever the header that fills it is.

use crate::index::normalise::Field;
use crate::redact::Sight;
use crate::store::groups::FailureGroup;
use crate::store::items::ItemResult;
use crate::store::records::{RecordDetail, RecordSummary};

/// A record as listings show it.
pub fn summary(sight: &Sight<'_>, r: &mut RecordSummary) {
    r.error_class = sight.text(Field::ErrorClass, r.error_class.take());
    r.error_message = sight.text(Field::ErrorMessage, r.error_message.take());
    r.consumer_group = sight.text(Field::Group, r.consumer_group.take());
    r.origin_timestamp = sight.number(Field::Timestamp, r.origin_timestamp);
}

/// A record as its page and API answer show it.
pub fn detail(sight: &Sight<'_>, d: &mut RecordDetail) {
    summary(sight, &mut d.summary);
    d.full_error_message = sight.text(Field::ErrorMessage, d.full_error_message.take());
    d.stacktrace = sight.text(Field::Stacktrace, d.stacktrace.take());
    d.attempts = sight.number(Field::Attempts, d.attempts);
}

/// A replay's result, with the DLQ record it came back as.
pub fn item(sight: &Sight<'_>, i: &mut ItemResult) {
    let back = &mut i.failed_again;
    back.error_class = sight.text(Field::ErrorClass, back.error_class.take());
    back.error_message = sight.text(Field::ErrorMessage, back.error_message.take());
}

/// A failure group: its class, and its message masked and as sampled.
pub fn group(sight: &Sight<'_>, g: &mut FailureGroup) {
    g.error_class = sight.text(Field::ErrorClass, g.error_class.take());
    g.masked_message = sight.text(Field::ErrorMessage, g.masked_message.take());
    g.sample_message = sight.text(Field::ErrorMessage, g.sample_message.take());
}

/// Refuse a listing filter on a masked field: its answer would tell the value (filtering by
/// `error_class=...` confirms a guess).
pub fn refuse_filter(
    sight: &Sight<'_>,
    filter: &crate::filter::MessageFilter,
) -> crate::error::Result<()> {
    if filter.error_class.is_some() {
        if let Some(why) = sight.filter_refusal(Field::ErrorClass, "error_class") {
            return Err(crate::error::Error::Forbidden(why));
        }
    }
    Ok(())
}
