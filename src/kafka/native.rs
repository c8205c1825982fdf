//! Every C call the crate makes outside the store: librdkafka's header and mock cluster APIs,
//! and glibc's `malloc_trim`, each behind a safe function or type with its SAFETY reasoning.
//!
//! With `store/raw.rs` (SQLite's C API) this is one of the two modules allowed `unsafe`; the
//! crate denies `unsafe_code` everywhere else (lib.rs). Callers hold no raw pointers: the
//! header reader lends each header to a closure for as long as the message lives, and
//! [`MockCluster`] owns both its cluster handle and the client it runs on.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};

use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka_sys as rdsys;

/// Hand each of a message's headers to `f`, in order: the name decoded lossily (a name that
/// is not UTF-8 gets U+FFFD, it does not panic) and the value, None for a null header.
///
/// rdkafka's `BorrowedHeaders::try_get` calls `CStr::to_str().unwrap()` on the header name
/// and so panics on a record whose header name is not UTF-8 (rust-rdkafka, message.rs); a
/// DLQ is exactly where such records end up, so the C API is read directly here. A header
/// librdkafka cannot return, or one without a name, is skipped.
pub fn for_each_header(m: &BorrowedMessage<'_>, mut f: impl FnMut(Cow<'_, str>, Option<&[u8]>)) {
    let mut hdrs: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the message pointer is valid while `m` is borrowed; the headers it yields are
    // owned by the message and only read here.
    let err = unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return;
    }
    // SAFETY: hdrs is non-null and owned by the live message.
    let count = unsafe { rdsys::rd_kafka_header_cnt(hdrs) };
    for idx in 0..count {
        let mut name: *const c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: idx < count; the out-pointers point at locals.
        let err =
            unsafe { rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka returns a NUL-terminated name and `size` bytes at `value`, both
        // alive as long as the message, which `m` borrows for this whole call; `f` cannot
        // keep either past its own call (its arguments' lifetimes are its own).
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        let value =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast(), size) });
        f(name, value);
    }
}

/// The low and high watermarks librdkafka last saw for a partition in fetch responses
/// (`rd_kafka_get_watermark_offsets`, no request), or None when it has none yet.
///
/// rdkafka wraps only the ListOffsets query (`fetch_watermarks`); some brokers (tansu) answer
/// that with a high watermark below the fetch responses' own, and a reader that stops at
/// the end of a partition needs the fetched one.
pub fn cached_watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is live for the borrow; the topic is NUL-terminated and read
    // during the call only; the out-pointers point at locals.
    let err = unsafe {
        rdsys::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

/// A librdkafka mock cluster (`rd_kafka_mock_cluster_t`) and the client whose threads it
/// runs on. Dropping it destroys the cluster, then the client.
pub struct MockCluster {
    ptr: *mut rdsys::rd_kafka_mock_cluster_t,
    // The mock cluster runs on this client's threads: it must outlive `ptr`. Fields drop
    // after `Drop::drop` has destroyed the cluster.
    _client: Client<DefaultClientContext>,
}

// SAFETY: every rd_kafka_mock_* call hands its work to the mock cluster's own thread through
// a queue and is documented as thread safe; the pointer itself is never dereferenced here,
// and the client is Send and Sync on its own.
unsafe impl Send for MockCluster {}
// SAFETY: as above; no method takes `&mut self` or touches shared Rust state.
unsafe impl Sync for MockCluster {}

impl MockCluster {
    /// Start `brokers` mock brokers on `client`'s threads (`rd_kafka_mock_cluster_new`), or
    /// None when librdkafka could not (e.g. no loopback listener).
    pub fn new(client: Client<DefaultClientContext>, brokers: i32) -> Option<Self> {
        // SAFETY: the client handle is valid for the duration of the call, and the client is
        // moved into the cluster value, which destroys the cluster before dropping it.
        let ptr = unsafe { rdsys::rd_kafka_mock_cluster_new(client.native_ptr(), brokers) };
        (!ptr.is_null()).then_some(MockCluster {
            ptr,
            _client: client,
        })
    }

    /// The bootstrap servers, `127.0.0.1:PORT,...` (`rd_kafka_mock_cluster_bootstraps`).
    pub fn bootstraps(&self) -> String {
        // SAFETY: ptr is a live cluster; the returned string is owned by it and copied at once.
        let s = unsafe { rdsys::rd_kafka_mock_cluster_bootstraps(self.ptr) };
        if s.is_null() {
            return String::new();
        }
        // SAFETY: non-null, NUL-terminated, alive as long as the cluster.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }

    /// Add a broker with this id (`rd_kafka_mock_broker_add`).
    pub fn broker_add(&self, broker_id: i32) -> RDKafkaRespErr {
        // SAFETY: ptr is a live cluster.
        unsafe { rdsys::rd_kafka_mock_broker_add(self.ptr, broker_id) }
    }

    /// Take a broker down (`rd_kafka_mock_broker_set_down`).
    pub fn broker_set_down(&self, broker_id: i32) -> RDKafkaRespErr {
        // SAFETY: ptr is a live cluster.
        unsafe { rdsys::rd_kafka_mock_broker_set_down(self.ptr, broker_id) }
    }

    /// Bring a broker back up (`rd_kafka_mock_broker_set_up`).
    pub fn broker_set_up(&self, broker_id: i32) -> RDKafkaRespErr {
        // SAFETY: ptr is a live cluster.
        unsafe { rdsys::rd_kafka_mock_broker_set_up(self.ptr, broker_id) }
    }

    /// Create a topic (`rd_kafka_mock_topic_create`).
    pub fn topic_create(&self, topic: &CStr, partitions: i32, replication: i32) -> RDKafkaRespErr {
        // SAFETY: live cluster pointer and NUL-terminated name for the duration of the call.
        unsafe {
            rdsys::rd_kafka_mock_topic_create(self.ptr, topic.as_ptr(), partitions, replication)
        }
    }

    /// Answer metadata requests for `topic` with `error` (`rd_kafka_mock_topic_set_error`).
    pub fn topic_set_error(&self, topic: &CStr, error: RDKafkaRespErr) {
        // SAFETY: live cluster pointer and NUL-terminated name, read during the call only.
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.ptr, topic.as_ptr(), error) };
    }

    /// The group coordinator's initial rebalance delay
    /// (`rd_kafka_mock_group_initial_rebalance_delay_ms`).
    pub fn group_initial_rebalance_delay_ms(&self, ms: i32) {
        // SAFETY: ptr is a live cluster.
        unsafe { rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(self.ptr, ms) };
    }

    /// Forget errors pushed for one API (`rd_kafka_mock_clear_request_errors`).
    pub fn clear_request_errors(&self, api_key: i16) {
        // SAFETY: ptr is a live cluster.
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.ptr, api_key) };
    }

    /// Fail the next `errors.len()` requests of one API with these errors
    /// (`rd_kafka_mock_push_request_errors_array`).
    pub fn push_request_errors(&self, api_key: i16, errors: &[RDKafkaRespErr]) {
        // SAFETY: live cluster pointer; the array is read during the call only.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.ptr,
                api_key,
                errors.len(),
                errors.as_ptr(),
            )
        };
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: the pointer is live and destroyed exactly once, before the client it runs
        // on (fields drop after this).
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.ptr) };
    }
}

/// glibc's `malloc_trim(0)`: give the operating system back the heap memory freed in every
/// arena. Not librdkafka, but the crate's one other C call; it lives here so that `unsafe`
/// stays in two modules (no maintained crate offers it as a safe function).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn glibc_malloc_trim() {
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists;
    // glibc documents it MT-Safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
