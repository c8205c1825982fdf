//! Browsing the index: filters, keyset paging both ways, search, groups, overview, errors.

use std::collections::HashSet;
use std::sync::Arc;

use crate::harness::in_process::{escaped, serve_args, Kafka, TestDashboard};

async fn seed(kafka: &Kafka) {
    for i in 0..120 {
        let (topic, class, msg) = if i % 3 == 0 {
            (
                "billing.dlq",
                "TimeoutError",
                format!("Database Connection Timeout after {} ms", 1000 + i),
            )
        } else {
            (
                "orders.dlq",
                "ValidationError",
                format!("field amount must be positive, got -{i}"),
            )
        };
        let key = format!("key-{i}");
        let value = if i == 77 {
            "{\"note\":\"zebracorn payload\"}".to_string()
        } else {
            format!("{{\"n\":{i}}}")
        };
        let origin = if i % 2 == 0 { "orders" } else { "billing" };
        kafka
            .send(
                topic,
                None,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[
                    ("dlq-error-class", Some(class.as_bytes())),
                    ("dlq-error-message", Some(msg.as_bytes())),
                    ("dlq-origin-topic", Some(origin.as_bytes())),
                ],
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_paging_search_and_groups() {
    let kafka = Kafka::start(&[("billing.dlq", 2), ("orders.dlq", 3), ("orders", 3)]);
    seed(&kafka).await;
    let d = TestDashboard::start(&kafka).await;
    d.wait_indexed(120).await;
    d.wait_searchable().await;

    // Keyset paging: every record exactly once, newest first, then back again.
    let mut seen = HashSet::new();
    let mut uri = "/api/messages?limit=50".to_string();
    let mut pages = 0;
    let mut last_ts = String::from("9999");
    loop {
        let (status, v) = d.get_json(&uri).await;
        assert_eq!(status, 200);
        for m in v["messages"].as_array().unwrap() {
            let ts = m["timestamp"].as_str().unwrap().to_string();
            assert!(ts <= last_ts, "newest first");
            last_ts = ts;
            assert!(
                seen.insert(m["key"].as_str().unwrap().to_string()),
                "no record on two pages"
            );
        }
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/messages?limit=50&cursor={c}"),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (120, 3));

    // The page's Older then Newer links come back to the same rows.
    let (_, first) = d.get_html("/messages?limit=20").await;
    let older = link_after(&first, "rel=\"next\"").expect("an Older link");
    let (_, second) = d.get_html(&older).await;
    let newer = link_after(&second, "rel=\"prev\"").expect("a Newer link");
    let (_, back) = d.get_html(&newer).await;
    assert_eq!(rows_of(&back), rows_of(&first));
    assert_ne!(rows_of(&second), rows_of(&first));

    // Filters, alone and combined.
    let count = |uri: String| {
        let d = &d;
        async move {
            let (status, v) = d.get_json(&uri).await;
            assert_eq!(status, 200, "{uri}: {v}");
            v["messages"].as_array().unwrap().len()
        }
    };
    assert_eq!(
        count("/api/messages?limit=1000&topic=billing.dlq".into()).await,
        40
    );
    assert_eq!(
        count("/api/messages?limit=1000&error_class=ValidationError".into()).await,
        80
    );
    assert_eq!(
        count("/api/messages?limit=1000&origin_topic=orders&topic=billing.dlq".into()).await,
        20
    );
    assert_eq!(count("/api/messages?key=key-42".into()).await, 1);
    assert_eq!(
        count("/api/messages?limit=1000&status=new".into()).await,
        120
    );
    assert_eq!(count("/api/messages?status=purged".into()).await, 0);
    assert_eq!(
        count("/api/messages?limit=1000&from=2000-01-01&to=2999-01-01".into()).await,
        120
    );
    assert_eq!(count("/api/messages?to=2000-01-01".into()).await, 0);
    // Free-text search over payload, key and error text.
    assert_eq!(count("/api/messages?q=zebracorn".into()).await, 1);
    let (_, v) = d.get_json("/api/messages?q=zebracorn").await;
    assert_eq!(v["search_pending"], 0, "search is complete once caught up");
    let (_, v) = d.get_json("/api/messages").await;
    assert!(v.get("search_pending").is_none(), "only said of a search");
    assert_eq!(count("/api/messages?q=key-42".into()).await, 1);
    assert_eq!(count("/api/messages?limit=1000&q=timeout".into()).await, 40);
    assert_eq!(
        count("/api/messages?limit=1000&q=connection+timeout&topic=orders.dlq".into()).await,
        0
    );
    assert_eq!(count("/api/messages?q=zebra*".into()).await, 1);
    let (_, html) = d.get_html("/messages?q=zebracorn").await;
    assert!(html.contains("key-77") && html.contains("<strong class=\"num\">1</strong> matching"));

    // Bad parameters: 400 with a sentence naming the parameter.
    for (uri, param) in [
        ("/api/messages?status=nope", "status"),
        ("/api/messages?limit=100000", "limit"),
        ("/api/messages?from=yesterday", "from"),
        ("/api/messages?cursor=garbage", "cursor"),
        ("/api/messages?colour=blue", "colour"),
    ] {
        let (status, v) = d.get_json(uri).await;
        assert_eq!(status, 400, "{uri}");
        assert!(
            v["error"].as_str().unwrap().contains(&format!("'{param}'")),
            "{uri}: {v}"
        );
    }
    let (status, html) = d.get_html("/messages?status=nope").await;
    assert_eq!(status, 400);
    assert!(html.contains(&escaped("Parameter 'status'")), "{html}");
    let (status, v) = d.get_json("/api/messages/orders.dlq/0/999999").await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("No indexed message"));
    let (status, v) = d.get_json("/api/messages/orders.dlq/x/1").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("Partition 'x'"));
    let (status, html) = d.get_html("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(html.contains("There is no page at this address"));

    // Failure groups: numbers are masked, so the 40 timeouts form one group per origin topic.
    let (_, groups) = d.get_json("/api/groups").await;
    let groups = groups.as_array().unwrap();
    let timeouts: Vec<_> = groups
        .iter()
        .filter(|g| g["error_class"] == "TimeoutError")
        .collect();
    assert_eq!(timeouts.len(), 2, "orders and billing origins");
    let timeout = timeouts[0];
    assert_eq!(timeout["count"], 20);
    assert_eq!(
        timeout["masked_message"],
        "Database Connection Timeout after <n> ms"
    );
    assert_eq!(
        timeout["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>(),
        20
    );
    let validation: i64 = groups
        .iter()
        .filter(|g| g["error_class"] == "ValidationError")
        .map(|g| g["count"].as_i64().unwrap())
        .sum();
    assert_eq!(validation, 80);
    let fp = timeout["fingerprint"].as_str().unwrap();
    assert_eq!(
        count(format!("/api/messages?limit=1000&group={fp}")).await,
        20
    );
    let (_, html) = d.get_html("/groups").await;
    assert!(html.contains(&escaped("Database Connection Timeout after <n> ms")));

    // Overview and topics API.
    let (_, topics) = d.get_json("/api/topics").await;
    let names: Vec<&str> = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["billing.dlq", "orders.dlq"],
        "the live topic 'orders' is not a DLQ topic"
    );
    assert_eq!(topics[0]["messages"], 40);
    assert_eq!(topics[0]["by_status"]["new"], 40);
    assert_eq!(topics[1]["partitions"], 3);
    let (_, html) = d.get_html("/").await;
    assert!(
        html.contains("billing.dlq")
            && html.contains("TimeoutError")
            && html.contains("<svg class=\"spark\"")
    );
    assert!(html.contains("connected"));

    // Metrics.
    let (status, _, body) = d.get("/metrics").await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("dlq_dashboard_messages{topic=\"billing.dlq\",status=\"new\"} 40"),
        "{text}"
    );
    assert!(text.contains(
        "dlq_dashboard_http_requests_total{route=\"/api/messages\",method=\"GET\",status=\"200\"}"
    ));
    assert!(text.contains("dlq_dashboard_index_size_bytes"));
    assert!(text.contains("dlq_dashboard_http_request_duration_seconds_bucket"));
    d.stop().await;
}

fn link_after(html: &str, marker: &str) -> Option<String> {
    let tag_end = html.find(marker)?;
    let tag_start = html[..tag_end].rfind("<a href=\"")? + "<a href=\"".len();
    let href = &html[tag_start..];
    Some(href[..href.find('"')?].replace("&#38;", "&"))
}

fn rows_of(html: &str) -> Vec<String> {
    html.match_indices("class=\"mono nowrap\"><a href=\"")
        .map(|(i, _)| html[i..i + 80].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_cluster_shows_what_the_dashboard_looks_for() {
    let kafka = Kafka::start(&[("orders", 1)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut args = serve_args(&kafka.bootstrap(), &dir.path().join("i.db"));
    args.dlq_topics = vec!["^.*\\.dead$".into()];
    let d = TestDashboard::start_with(args, dir).await;
    let (status, html) = d.get_html("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("No DLQ topics yet"));
    assert!(
        html.contains("^.*\\.dead$"),
        "names the pattern it looks for"
    );
    let (_, html) = d.get_html("/messages").await;
    assert!(html.contains("The index is empty so far"));
    let (_, v) = d.get_json("/api/topics").await;
    assert_eq!(v, serde_json::json!([]));
    d.stop().await;
}

/// A response's status, one header and body, straight from the router.
async fn get_with_header(
    d: &TestDashboard,
    uri: &str,
    name: &str,
) -> (u16, Option<String>, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = dlq_dashboard::web::router(d.d().state.clone())
        .oneshot(
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value = response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, value, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_linked_by_content_hash_and_kept_for_a_year() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let d = TestDashboard::start(&kafka).await;
    let (_, html) = d.get_html("/").await;
    let css = html
        .split("href=\"")
        .map(|s| s.split('"').next().unwrap())
        .find(|h| h.ends_with("/app.css"))
        .expect("the page links its stylesheet")
        .to_string();
    let hash = css
        .trim_start_matches("/static/")
        .trim_end_matches("/app.css");
    assert_eq!(hash.len(), 16, "{css}");
    let (status, cache, body) = get_with_header(&d, &css, "cache-control").await;
    assert_eq!(status, 200);
    assert_eq!(
        cache.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert!(body.contains('{'), "the stylesheet itself");
    // Without the hash, or with the hash of another version, the file is revalidated.
    for uri in ["/static/app.css", "/static/0000000000000000/app.css"] {
        let (status, cache, again) = get_with_header(&d, uri, "cache-control").await;
        assert_eq!((status, cache.as_deref()), (200, Some("no-cache")), "{uri}");
        assert_eq!(again, body);
    }
    let (status, _, _) = get_with_header(&d, &format!("/static/{hash}/nope.css"), "x").await;
    assert_eq!(status, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_has_the_real_frame() {
    let kafka = Kafka::start(&[("orders.dlq", 1)]);
    let d = TestDashboard::start(&kafka).await;
    // A malformed offset: the page answers 400 in the frame every page has.
    let (status, html) = d.get_html("/messages/orders.dlq/0/not-a-number").await;
    assert_eq!(status, 400);
    assert!(html.contains("That request cannot be shown"), "{html}");
    assert!(html.contains("class=\"topbar\""), "{html}");
    assert!(html.contains("/app.css"), "the stylesheet is linked");
    // The stand-in frame it had before showed no connection status at all.
    assert!(
        html.contains("data-status"),
        "the connection status: {html}"
    );
    d.stop().await;
}
