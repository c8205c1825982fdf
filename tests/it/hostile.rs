//! Records a DLQ really receives: no key, no value, binary, invalid UTF-8, garbage headers,
//! a 10 MiB value, and markup. All are indexed and every page renders them safely.

use crate::harness::in_process::{escaped, Kafka, TestDashboard};

/// Key, value and headers of one record.
type Hostile<'a> = (
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Vec<(&'a str, Option<&'a [u8]>)>,
);

const TOPIC: &str = "hostile.dlq";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_indexed_and_render_safely() {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    let d = TestDashboard::start(&kafka).await;
    let xss = b"<script>alert('xss')</script><img src=x onerror=alert(1)>";
    let big: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let bad_utf8: &[u8] = &[0x66, 0x6f, 0xff, 0xfe, 0x6f];
    let records: Vec<Hostile> = vec![
        (None, None, vec![]),
        (
            Some(&[0, 159, 146, 150]),
            Some(&[0xde, 0xad, 0xbe, 0xef, 0x00]),
            vec![],
        ),
        (
            Some(b"utf8"),
            Some(bad_utf8),
            vec![("dlq-error-message", Some(bad_utf8))],
        ),
        (
            Some(b"garbage-headers"),
            Some(b"{}"),
            vec![
                ("kafka_dlt-original-partition", Some(&[1, 2, 3])),
                ("kafka_dlt-original-offset", Some(b"")),
                ("empty", None),
                ("", Some(b"nameless")),
                ("dlq-error-class", Some(b"<b>Bold</b>Error")),
            ],
        ),
        (Some(b"big"), Some(&big), vec![]),
        (
            Some(b"<i>key</i>"),
            Some(xss),
            vec![("dlq-error-message", Some(xss)), ("x-<script>", Some(xss))],
        ),
    ];
    let mut coords = Vec::new();
    for (key, value, headers) in &records {
        coords.push(kafka.send(TOPIC, Some(0), *key, *value, headers).await);
    }
    d.wait_indexed(records.len() as i64).await;

    for (p, o) in &coords {
        let (status, html) = d.get_html(&format!("/messages/{TOPIC}/{p}/{o}")).await;
        assert_eq!(status, 200, "page of offset {o}");
        assert!(
            !html.contains("<script>alert"),
            "offset {o}: payload markup must be escaped"
        );
        assert!(
            !html.contains("<img src=x"),
            "offset {o}: payload markup must be escaped"
        );
        assert!(
            !html.contains("<b>Bold"),
            "offset {o}: header markup must be escaped"
        );
    }
    let (_, list) = d.get_html(&format!("/messages?topic={TOPIC}")).await;
    assert!(!list.contains("<script>alert") && !list.contains("<i>key</i>"));
    assert!(
        list.contains(&escaped("<i>key</i>")),
        "the key is shown, escaped"
    );

    // The XSS record's page shows the payload as text.
    let (_, html) = d
        .get_html(&format!("/messages/{TOPIC}/0/{}", coords[5].1))
        .await;
    assert!(
        html.contains(&escaped("<script>alert('xss')</script>")),
        "the payload is shown as text"
    );

    // No key, no value.
    let (_, v) = d
        .get_json(&format!("/api/messages/{TOPIC}/0/{}", coords[0].1))
        .await;
    assert!(v["key"].is_null() && v["value"].is_null() && v["value_base64"].is_null());

    // Binary key and value: base64 in the API, hex on the page.
    let (_, v) = d
        .get_json(&format!("/api/messages/{TOPIC}/0/{}", coords[1].1))
        .await;
    assert!(v["value"].is_null());
    assert_eq!(v["value_base64"], "3q2+7wA=");
    assert_eq!(v["key_base64"], "AJ+Slg==");
    let (_, html) = d
        .get_html(&format!("/messages/{TOPIC}/0/{}", coords[1].1))
        .await;
    assert!(
        html.contains("de ad be ef 00"),
        "binary payload as a hex dump"
    );

    // Invalid UTF-8 error text is readable and reported.
    let (_, v) = d
        .get_json(&format!("/api/messages/{TOPIC}/0/{}", coords[2].1))
        .await;
    assert_eq!(v["error"]["message"], "fo\u{fffd}\u{fffd}o");
    assert!(!v["problems"].as_array().unwrap().is_empty());

    // Malformed convention headers: indexed with what could be read, problems listed.
    let (_, v) = d
        .get_json(&format!("/api/messages/{TOPIC}/0/{}", coords[3].1))
        .await;
    assert!(v["origin"]["partition"].is_null());
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("kafka_dlt-original-partition"),
        "{problems}"
    );
    assert_eq!(
        v["headers"].as_array().unwrap().len(),
        5,
        "every header kept, in order"
    );
    assert!(v["headers"][2]["value"].is_null() && v["headers"][2]["value_base64"].is_null());
    let (_, html) = d
        .get_html(&format!("/messages/{TOPIC}/0/{}", coords[3].1))
        .await;
    assert!(html.contains("Some headers could not be read"));

    // 10 MiB: kept whole, previewed cut.
    let (status, ctype, raw) = d
        .get(&format!("/api/messages/{TOPIC}/0/{}/raw", coords[4].1))
        .await;
    assert_eq!(
        (status.as_u16(), ctype.as_str()),
        (200, "application/octet-stream")
    );
    assert_eq!(raw, big, "raw download returns every byte");
    let (_, html) = d
        .get_html(&format!("/messages/{TOPIC}/0/{}", coords[4].1))
        .await;
    assert!(
        html.len() < 1024 * 1024,
        "the page previews, it does not inline 10 MiB"
    );
    assert!(html.contains("Download it whole"));

    // Pages still carry the strict CSP that keeps any missed markup inert.
    let app = dlq_dashboard::web::router(d.d().state.clone());
    use tower::ServiceExt;
    let response = app
        .oneshot(
            axum::http::Request::get("/messages")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_does_not_stop_the_indexer() {
    // rdkafka's own header accessor panics on such a name; the indexer reads the C API.
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    let d = TestDashboard::start(&kafka).await;
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    // Build headers through the C API, which accepts any bytes as a name.
    unsafe {
        use rdkafka_sys as rd;
        let hdrs = rd::rd_kafka_headers_new(1);
        let name: &[u8] = &[0x62, 0xff, 0x61, 0x64];
        let value = b"v";
        rd::rd_kafka_header_add(
            hdrs,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast(),
            1,
        );
        let topic = std::ffi::CString::new(TOPIC).unwrap();
        let payload = b"after-bad-header";
        let vus = [
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: payload.as_ptr() as *mut _,
                        size: payload.len(),
                    },
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { headers: hdrs },
            },
        ];
        let err = rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len());
        assert!(err.is_null(), "produce accepted");
    }
    use rdkafka::producer::Producer;
    producer.flush(std::time::Duration::from_secs(10)).unwrap();
    kafka
        .send(TOPIC, Some(0), Some(b"next"), Some(b"ok"), &[])
        .await;
    d.wait_indexed(2).await;
    let (_, v) = d.get_json(&format!("/api/messages/{TOPIC}/0/0")).await;
    assert_eq!(v["headers"][0]["name"], "b\u{fffd}ad");
    assert_eq!(v["value"], "after-bad-header");
    d.stop().await;
}
