//! Replay through the pages: the forms a browser sends (with and without their CSRF token),
//! the preview, the job page and its controls, a message's history and the audit log, all
//! through the real router with the mock cluster as the target.

use axum::http::StatusCode;
use serde_json::Value;

use crate::harness::in_process::{escaped, read_topic, Kafka, TestDashboard, DEADLINE};
use crate::poll::wait_for;

const SAME_SITE: Option<&str> = Some("http://dashboard.test");

/// A form's fields.
type Fields<'a> = &'a [(&'a str, &'a str)];

fn failure(class: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("dlq-origin-topic".into(), b"orders".to_vec()),
        ("dlq-error-class".into(), class.as_bytes().to_vec()),
        ("dlq-error-message".into(), b"it broke".to_vec()),
    ]
}

/// `count` failures of `class` on orders.dlq partition 0; returns their offsets.
async fn send(kafka: &Kafka, class: &str, count: usize) -> Vec<i64> {
    let records: Vec<_> = (0..count)
        .map(|i| {
            (
                Some(0),
                format!("{class}-{i}").into_bytes(),
                format!(r#"{{"n":{i}}}"#).into_bytes(),
                failure(class),
            )
        })
        .collect();
    kafka
        .send_many("orders.dlq", &records)
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

/// Text the templates escaped, back as it was.
fn unescape(s: &str) -> String {
    s.replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
}

/// The value of the first `<input ... name="NAME" value="...">` after `from` in the page.
fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

/// The CSRF token the page's forms carry.
fn token(html: &str) -> String {
    let t = input_value(html, "csrf").expect("the page has a form with a csrf field");
    assert_eq!(t.len(), 64, "{t}");
    t
}

fn location(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// Send a form that must redirect (303); returns where to.
async fn post_redirect(d: &TestDashboard, uri: &str, fields: &[(&str, &str)]) -> String {
    let (status, headers, body) = d.post_form(uri, fields, SAME_SITE).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{uri}: {body}");
    location(&headers)
}

/// Preview a selection through the preview form; returns the preview id and its page.
async fn preview(d: &TestDashboard, fields: &[(&str, &str)]) -> (String, String) {
    let to = post_redirect(d, "/replays/preview", fields).await;
    let id = to
        .strip_prefix("/replays/")
        .and_then(|r| r.strip_suffix("/preview"))
        .unwrap_or_else(|| panic!("redirect to a preview page, not {to}"))
        .to_string();
    let (status, html) = d.get_html(&to).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    (id, html)
}

/// Preview everything a filter (a query string) matches, as the "Replay all N matching" and
/// "Replay group…" forms do.
async fn preview_filter(d: &TestDashboard, csrf: &str, filter: &str) -> (String, String) {
    preview(
        d,
        &[("csrf", csrf), ("selection", "filter"), ("filter", filter)],
    )
    .await
}

/// Confirm a preview through its form; returns the job page's address.
async fn confirm(d: &TestDashboard, id: &str, csrf: &str, rate: &str) -> String {
    let to = post_redirect(
        d,
        &format!("/replays/{id}/start"),
        &[("csrf", csrf), ("rate", rate)],
    )
    .await;
    assert_eq!(to, format!("/replays/{id}"));
    to
}

/// Wait until the job page says the job is final; returns the page.
async fn final_page(d: &TestDashboard, id: &str) -> String {
    wait_for(
        &format!("job page of {id} to show a final status"),
        DEADLINE,
        || async {
            let (_, html) = d.get_html(&format!("/replays/{id}")).await;
            html.contains(r#"data-final="true""#).then_some(html)
        },
    )
    .await
}

async fn job_json(d: &TestDashboard, id: &str) -> Value {
    let (status, job) = d.get_json(&format!("/api/replays/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

/// The control forms the job page shows (those not `hidden`), by action.
fn visible_controls(html: &str, id: &str) -> Vec<&'static str> {
    ["pause", "resume", "cancel"]
        .into_iter()
        .filter(|c| {
            let marker = format!(r#"action="/replays/{id}/{c}""#);
            let at = html
                .find(&marker)
                .expect("every control form is on the page");
            let tag_end = html[at..].find('>').unwrap() + at;
            !html[at..tag_end].contains("hidden")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_replayed_through_the_forms_and_its_history_and_the_audit_show_it() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    send(&kafka, "Timeout", 3).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(3).await;

    // The message page offers Replay, with its target, as a POST form with a token.
    let (status, page) = d.get_html("/messages/orders.dlq/0/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"<form class="inline" method="post" action="/replays/preview">"#));
    assert!(
        page.contains("<code>orders.retry.1</code>"),
        "the target is shown"
    );
    assert_eq!(
        input_value(&page, "message").as_deref(),
        Some("orders.dlq/0/1?generation=0")
    );
    assert!(page.contains("This message was never replayed."));
    assert!(
        page.contains(r#"<a href="/replays" >Replays</a>"#),
        "nav: Replays"
    );
    assert!(
        page.contains(r#"<a href="/audit" >Audit</a>"#),
        "nav: Audit"
    );
    let csrf = token(&page);
    let form = [
        ("csrf", csrf.as_str()),
        ("selection", "messages"),
        ("message", "orders.dlq/0/1?generation=0"),
    ];

    // Without the token, with a wrong one, twice, or from another site: refused, and
    // nothing is frozen.
    let refused_forms: [(Fields, Option<&str>); 4] = [
        (&form[1..], SAME_SITE),
        (
            &[
                ("csrf", &"0".repeat(64)),
                ("selection", "messages"),
                ("message", "orders.dlq/0/1"),
            ],
            SAME_SITE,
        ),
        (
            &[
                ("csrf", csrf.as_str()),
                ("csrf", csrf.as_str()),
                ("message", "orders.dlq/0/1"),
            ],
            SAME_SITE,
        ),
        (&form, Some("https://evil.example")),
    ];
    for (fields, origin) in refused_forms {
        let (status, _, body) = d.post_form("/replays/preview", fields, origin).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{fields:?} {origin:?}: {body}"
        );
        let sentence = if origin == SAME_SITE {
            "reload the page and try again"
        } else {
            "sent from another site (https://evil.example)"
        };
        assert!(body.contains(sentence), "{body}");
        assert!(body.contains("403"), "an error page: {body}");
    }
    let previews: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM replay_jobs")
        .fetch_one(&d.d().state.pool)
        .await
        .unwrap();
    assert_eq!(previews, 0, "a refused form froze nothing");

    // With the token (and no Origin, as some browsers send): the preview.
    let (status, headers, body) = d.post_form("/replays/preview", &form, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (id, html) = {
        let to = location(&headers);
        let id = to
            .strip_prefix("/replays/")
            .and_then(|r| r.strip_suffix("/preview"))
            .unwrap()
            .to_string();
        (id.clone(), d.get_html(&to).await.1)
    };
    assert!(html.contains("Nothing has been sent yet"));
    assert!(
        html.contains(r#"<td class="mono">orders.retry.1</td><td class="num">1</td>"#),
        "count per target: {html}"
    );
    assert!(html.contains(&format!(r#"action="/replays/{id}/start""#)));
    assert_eq!(input_value(&html, "rate").as_deref(), Some("500"));
    assert!(html.contains(r#"href="/messages/orders.dlq/0/1?generation=0""#));
    // A preview is not a job: nothing listed, the message untouched.
    assert_eq!(d.get_json("/api/replays").await.1, serde_json::json!([]));
    assert_eq!(
        d.get_json("/api/messages/orders.dlq/0/1").await.1["status"],
        "new"
    );

    // Confirming needs the token too.
    let (status, _, _) = d
        .post_form(&format!("/replays/{id}/start"), &[("rate", "0")], SAME_SITE)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        d.get(&format!("/api/replays/{id}")).await.0,
        StatusCode::NOT_FOUND,
        "still a preview"
    );
    let job_page = confirm(&d, &id, &csrf, "0").await;
    // A second press of the button shows the same job; it does not start another.
    assert_eq!(confirm(&d, &id, &csrf, "0").await, job_page);

    let (status, html) = d.get_html(&job_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<progress max=\"1\""), "{html}");
    assert!(html.contains(&format!(r#"data-job="{id}""#)));
    let html = final_page(&d, &id).await;
    assert!(
        html.contains(r#"<span class="badge st-completed" data-field="status">completed</span>"#),
        "{html}"
    );
    assert!(html.contains(r#"data-field="sent">1</dd>"#), "{html}");
    assert!(html.contains(r#"data-field="remaining">0</dd>"#), "{html}");
    assert!(html.contains(r#"<progress max="1" value="1""#));
    let got = read_topic(&kafka.bootstrap(), "orders.retry.1", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("dlq-source").as_deref(),
        Some("orders.dlq/0/1")
    );
    assert!(
        html.contains(&format!("orders.retry.1/0/{}", got[0].offset)),
        "the result names where it went: {html}"
    );
    assert!(html.contains(r#"<a href="/messages/orders.dlq/0/1">orders.dlq/0/1</a>"#));
    assert_eq!(visible_controls(&html, &id), Vec::<&str>::new());

    // The message's history lists the replay; the jobs list and the audit log too.
    let (_, page) = d.get_html("/messages/orders.dlq/0/1").await;
    let history = &page[page.find(r#"<section id="history">"#).unwrap()..];
    assert!(history.contains(&format!(r#"<a href="/replays/{id}">{id}</a>"#)));
    assert!(history.contains(r#"<span class="badge st-sent">sent</span>"#));
    assert!(history.contains(&format!("orders.retry.1/0/{}", got[0].offset)));
    assert!(history.contains("anonymous"), "who");
    let (_, other) = d.get_html("/messages/orders.dlq/0/2").await;
    assert!(other.contains("This message was never replayed."));
    let (_, jobs) = d.get_html("/replays").await;
    assert!(jobs.contains(&format!(r#"<a href="/replays/{id}">{id}</a>"#)));
    assert!(
        jobs.contains(r#"<span class="badge st-completed" data-field="status">completed</span>"#)
    );
    let (status, audit) = d.get_html("/audit").await;
    assert_eq!(status, StatusCode::OK);
    let start = audit.find("replay.start").expect("the start is audited");
    let finish = audit.find("replay.finish").expect("the finish is audited");
    assert!(finish < start, "newest first");
    assert!(audit.contains(&format!(r#"<a href="/replays/{id}">{id}</a>"#)));
    assert!(audit.contains("Replay of 1 message to orders.retry.1"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_matching_replays_exactly_the_filter_and_replay_selected_the_ticked() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    let timeouts = send(&kafka, "Timeout", 6).await;
    let other = send(&kafka, "Validation", 4).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(10).await;

    let (_, list) = d.get_html("/messages?error_class=Timeout").await;
    let csrf = token(&list);
    assert!(list.contains(r#"<form id="bulk" method="post" action="/replays/preview">"#));
    assert!(list.contains("Replay all 6 matching"));
    let filter = input_value(&list, "filter").unwrap();
    assert_eq!(filter, "error_class=Timeout");
    for o in &timeouts {
        assert!(list.contains(&format!(
            r#"name="message" value="orders.dlq/0/{o}?generation=0""#
        )));
    }
    // The bulk form also carries ticked rows; "Replay all" ignores them (a Validation
    // message ticked on another page of the list, say).
    let ticked = format!("orders.dlq/0/{}?generation=0", other[0]);
    let (id, html) = preview(
        &d,
        &[
            ("csrf", &csrf),
            ("filter", &filter),
            ("message", &ticked),
            ("selection", "filter"),
        ],
    )
    .await;
    assert!(
        html.contains(r#"<span class="num">6</span> messages will be sent"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/messages?error_class=Timeout""#));

    // Matching failures that arrive after the preview are not part of it.
    send(&kafka, "Timeout", 2).await;
    d.wait_indexed(12).await;
    confirm(&d, &id, &csrf, "0").await;
    let html = final_page(&d, &id).await;
    assert!(html.contains(r#"data-field="sent">6</dd>"#), "{html}");
    let (_, results) = d.get_json(&format!("/api/replays/{id}/results")).await;
    let mut sent: Vec<i64> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "sent");
            r["offset"].as_i64().unwrap()
        })
        .collect();
    sent.sort();
    assert_eq!(sent, timeouts, "exactly the previewed Timeout messages");
    for o in &other {
        let (_, m) = d.get_json(&format!("/api/messages/orders.dlq/0/{o}")).await;
        assert_eq!(m["status"], "new", "Validation {o} was not replayed");
    }

    // "Replay selected": only the ticked rows.
    let (_, list) = d.get_html("/messages?error_class=Validation").await;
    let all = input_value(&list, "filter").unwrap();
    let first = format!("orders.dlq/0/{}?generation=0", other[0]);
    let second = format!("orders.dlq/0/{}?generation=0", other[2]);
    let (id, html) = preview(
        &d,
        &[
            ("csrf", &csrf),
            ("filter", &all),
            ("message", &first),
            ("message", &second),
            ("selection", "messages"),
        ],
    )
    .await;
    assert!(
        html.contains(r#"<span class="num">2</span> messages will be sent"#),
        "{html}"
    );
    let o = other[0];
    assert!(html.contains(&format!(
        r#"<a class="mono" href="/messages/orders.dlq/0/{o}?generation=0">orders.dlq/0/{o}</a>"#
    )));
    confirm(&d, &id, &csrf, "").await;
    final_page(&d, &id).await;
    let job = job_json(&d, &id).await;
    assert_eq!(
        (job["sent"].as_i64(), job["rate"].as_i64()),
        (Some(2), Some(500))
    );
    let expected = [
        (other[0], "replayed"),
        (other[1], "new"),
        (other[2], "replayed"),
        (other[3], "new"),
    ];
    for (o, status) in expected {
        let (_, m) = d.get_json(&format!("/api/messages/orders.dlq/0/{o}")).await;
        assert_eq!(m["status"], status, "offset {o}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_buttons_pause_resume_and_cancel() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    send(&kafka, "Timeout", 40).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(40).await;
    let (_, list) = d.get_html("/messages").await;
    let csrf = token(&list);
    let (id, _) = preview(
        &d,
        &[("csrf", &csrf), ("selection", "filter"), ("filter", "")],
    )
    .await;
    // 40 messages at 4/s take 10 s: long enough to press every button.
    let page = confirm(&d, &id, &csrf, "4").await;
    let (_, html) = d.get_html(&page).await;
    assert_eq!(visible_controls(&html, &id), ["pause", "cancel"]);
    assert!(
        html.contains(r#"data-active-jobs>1</span>"#),
        "nav counts the job"
    );

    // A control form without its token changes nothing.
    let (status, _, _) = d
        .post_form(&format!("/replays/{id}/pause"), &[], SAME_SITE)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_ne!(job_json(&d, &id).await["status"], "paused");

    let to = post_redirect(&d, &format!("/replays/{id}/pause"), &[("csrf", &csrf)]).await;
    assert_eq!(to, page);
    assert_eq!(job_json(&d, &id).await["status"], "paused");
    let (_, html) = d.get_html(&page).await;
    assert!(html.contains(r#"data-field="status">paused</span>"#));
    assert_eq!(visible_controls(&html, &id), ["resume", "cancel"]);

    post_redirect(&d, &format!("/replays/{id}/resume"), &[("csrf", &csrf)]).await;
    let status = job_json(&d, &id).await["status"].clone();
    assert!(status == "queued" || status == "running", "{status}");

    post_redirect(&d, &format!("/replays/{id}/cancel"), &[("csrf", &csrf)]).await;
    // The status is final at once; the runner then gives back what it had not sent.
    wait_for(
        "the unsent messages to count as cancelled",
        DEADLINE,
        || async {
            let job = job_json(&d, &id).await;
            (job["remaining"] == 0).then_some(())
        },
    )
    .await;
    let html = final_page(&d, &id).await;
    assert!(html.contains(r#"data-field="status">cancelled</span>"#));
    assert_eq!(visible_controls(&html, &id), Vec::<&str>::new());
    let job = job_json(&d, &id).await;
    assert!(job["cancelled"].as_i64().unwrap() > 0, "{job}");
    assert!(
        !html.contains("data-active-jobs"),
        "nothing active any more"
    );

    // A button that no longer applies: a sentence, not a change.
    let (status, _, body) = d
        .post_form(
            &format!("/replays/{id}/pause"),
            &[("csrf", &csrf)],
            SAME_SITE,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains(&format!(
        "Replay job {id} is cancelled, so it cannot be paused."
    )));

    let (_, audit) = d.get_html("/audit").await;
    let at = |action: &str| {
        audit
            .find(action)
            .unwrap_or_else(|| panic!("{action} in the audit page"))
    };
    assert!(at("replay.cancel") < at("replay.resume"));
    assert!(at("replay.resume") < at("replay.pause"));
    assert!(at("replay.pause") < at("replay.start"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_selection_filter_or_a_header_renders_inert() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    let evil = "<script>alert('x')</script>";
    kafka
        .send(
            "orders.dlq",
            Some(0),
            Some(b"k"),
            Some(format!("payload {evil}").as_bytes()),
            &[("dlq-origin-topic", Some(b"orders"))],
        )
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(1).await;
    d.wait_searchable().await;
    let (_, list) = d.get_html("/messages").await;
    let csrf = token(&list);
    let filter = serde_urlencoded::to_string([("q", evil)]).unwrap();
    let (id, html) = preview_filter(&d, &csrf, &filter).await;
    assert!(
        html.contains(r#"<span class="num">1</span> message will be sent"#),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains(&escaped(evil)), "shown as text: {html}");
    confirm(&d, &id, &csrf, "0").await;
    for page in [format!("/replays/{id}"), "/replays".into(), "/audit".into()] {
        let (status, html) = d.get_html(&page).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!html.contains("<script>alert"), "{page}: {html}");
    }
    let (_, html) = d.get_html(&format!("/replays/{id}")).await;
    assert!(html.contains(&escaped(evil)), "{html}");

    // An Origin with markup is named in the refusal, as text.
    let origin = "http://x<img src=y onerror=alert(1)>";
    let (status, _, body) = d
        .post_form(
            "/replays/preview",
            &[("csrf", &csrf), ("message", "orders.dlq/0/0")],
            Some(origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("<img"), "{body}");
    assert!(body.contains(&escaped(origin)), "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forms_get_a_sentence_and_an_all_refused_preview_offers_no_confirm() {
    // ghost.dlq has no ghost.retry.1 on the cluster: its messages are refused.
    let kafka = Kafka::start(&[
        ("orders", 1),
        ("orders.retry.1", 1),
        ("orders.dlq", 1),
        ("ghost.dlq", 1),
    ]);
    send(&kafka, "Timeout", 1).await;
    kafka
        .send("ghost.dlq", Some(0), Some(b"g"), Some(b"{}"), &[])
        .await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(2).await;
    let (_, list) = d.get_html("/messages").await;
    let csrf = token(&list);

    let cases: [(Fields, StatusCode, &str); 6] = [
        (
            &[("selection", "messages"), ("filter", "")],
            StatusCode::BAD_REQUEST,
            "No message is ticked",
        ),
        (
            &[("message", "orders.dlq/0/99")],
            StatusCode::NOT_FOUND,
            "not in the index (orders.dlq/0/99)",
        ),
        (
            &[("message", "orders.dlq/zero/1")],
            StatusCode::BAD_REQUEST,
            "does not name a message",
        ),
        (
            &[("selection", "filter"), ("filter", "topic=nothing.dlq")],
            StatusCode::BAD_REQUEST,
            "no indexed message matches it",
        ),
        (
            &[("selection", "filter"), ("filter", "limit=5")],
            StatusCode::BAD_REQUEST,
            "is about paging",
        ),
        (
            &[("message", "orders.dlq/0/0"), ("rate", "-1")],
            StatusCode::BAD_REQUEST,
            "is not a rate",
        ),
    ];
    for (fields, code, sentence) in cases {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        let (status, _, body) = d.post_form("/replays/preview", &fields, SAME_SITE).await;
        assert_eq!(status, code, "{fields:?}: {body}");
        assert!(body.contains(&escaped(sentence)), "{fields:?}: {body}");
    }
    let (status, _, body) = d
        .post_form(
            "/replays/nosuchjob/start",
            &[("csrf", &csrf), ("rate", "5")],
            SAME_SITE,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("preview the selection again"), "{body}");
    let (status, html) = d.get_html("/replays/nosuchjob").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no replay job nosuchjob."));
    assert_eq!(
        d.get_html("/replays/nosuchjob/preview").await.0,
        StatusCode::NOT_FOUND
    );

    // A JSON body to a page address is not a form.
    let (status, _) = d
        .post("/replays/preview", Some("application/json"), "{}")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Everything refused: the page says why and offers nothing to confirm.
    let (id, html) = preview(
        &d,
        &[
            ("csrf", &csrf),
            ("selection", "filter"),
            ("filter", "topic=ghost.dlq"),
        ],
    )
    .await;
    assert!(html.contains("Nothing to replay"), "{html}");
    assert!(
        html.contains("ghost.retry.1"),
        "the reason names the missing topic: {html}"
    );
    assert!(!html.contains("/start\""), "no confirm form: {html}");
    let (status, _, body) = d
        .post_form(
            &format!("/replays/{id}/start"),
            &[("csrf", &csrf), ("rate", "")],
            SAME_SITE,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("nothing to replay"), "{body}");

    // A bad rate at confirmation leaves the preview as it was.
    let (id, _) = preview(&d, &[("csrf", &csrf), ("message", "orders.dlq/0/0")]).await;
    let (status, _, body) = d
        .post_form(
            &format!("/replays/{id}/start"),
            &[("csrf", &csrf), ("rate", "fast")],
            SAME_SITE,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("Rate &#39;fast&#39; is not a rate"), "{body}");
    assert_eq!(
        d.get_html(&format!("/replays/{id}/preview")).await.0,
        StatusCode::OK,
        "still a preview"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_group_on_the_groups_page_previews_exactly_that_failure_group() {
    let kafka = Kafka::start(&[("orders", 1), ("orders.retry.1", 1), ("orders.dlq", 1)]);
    let timeouts = send(&kafka, "Timeout", 5).await;
    send(&kafka, "Validation", 3).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(8).await;

    let fingerprint = d.group_with_class("Timeout").await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, page) = d.get_html("/groups").await;
    assert!(page.contains("Replay group…"));
    assert!(page.contains("never replayed"));
    let csrf = token(&page);
    let filter = format!("group={fingerprint}");
    assert!(
        page.contains(&format!(r#"name="filter" value="{filter}""#)),
        "each row's form names its group"
    );
    let (id, html) = preview_filter(&d, &csrf, &filter).await;
    assert!(
        html.contains(r#"<span class="num">5</span> messages will be sent"#),
        "{html}"
    );
    confirm(&d, &id, &csrf, "0").await;
    final_page(&d, &id).await;
    let (_, results) = d.get_json(&format!("/api/replays/{id}/results")).await;
    let mut sent: Vec<i64> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, timeouts, "exactly the group's messages");
    let (_, page) = d.get_html("/groups").await;
    assert!(
        page.contains("replayed 5 · consumed 0 · failed again 0"),
        "{page}"
    );
}
