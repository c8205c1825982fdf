//! The web edge's limits: the request body limit and the request timeout are tower-http's
//! layers (`RequestBodyLimitLayer`, `TimeoutLayer`, applied in `web::router`); the
//! concurrency limit per client address is [`per_client`], since neither tower nor
//! tower-http keys a limit by address: one tokio semaphore per address, taken without
//! waiting, so that one client's flood is answered 429 and never queues behind itself or
//! starves the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::auth::proxy::ProxyRules;
use crate::error::Error;

/// The limits, from `--max-request-body`, `--request-timeout` and
/// `--max-requests-per-client`.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// The largest request body, bytes.
    pub max_body: usize,
    /// How long a request other than an action POST may take.
    pub timeout: Duration,
    /// Requests served at once per client address.
    pub per_client: u32,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            max_body: 4 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            per_client: 32,
        }
    }
}

/// The requests in flight per client address.
#[derive(Debug)]
pub struct PerClient {
    max: u32,
    /// Behind a trusted proxy, the client is the address the proxy names.
    proxy: Option<ProxyRules>,
    in_flight: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

impl PerClient {
    /// At most `max` requests at once per address; requests through a trusted proxy count
    /// for the address in its `X-Forwarded-For`.
    pub fn new(max: u32, proxy: Option<ProxyRules>) -> Self {
        PerClient {
            max: max.max(1),
            proxy,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.max as usize)))
            .clone()
    }

    /// Forget an address none of whose requests is in flight, so the map holds only
    /// clients being served.
    fn release(&self, ip: IpAddr) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&ip).is_some_and(|s| {
            Arc::strong_count(s) == 1 && s.available_permits() == self.max as usize
        }) {
            map.remove(&ip);
        }
    }
}

/// Serve a request only while its address has fewer than the limit in flight; else 429
/// with a sentence. Requests without a peer address (tests through `oneshot`) pass.
pub async fn per_client(
    State(limit): State<Arc<PerClient>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(peer) = super::auth::client_ip(request.extensions()) else {
        return next.run(request).await;
    };
    let ip = match &limit.proxy {
        Some(proxy) => proxy.client(peer, request.headers()),
        None => peer,
    };
    let semaphore = limit.semaphore(ip);
    let Ok(permit) = semaphore.clone().try_acquire_owned() else {
        drop(semaphore);
        let mut response = Error::TooMany(format!(
            "{} requests from your address are already being served; wait for one to finish and try again.",
            limit.max
        ))
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    drop(permit);
    drop(semaphore);
    limit.release(ip);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_forgotten_once_nothing_of_it_is_in_flight() {
        let limit = PerClient::new(2, None);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let s = limit.semaphore(ip);
        let a = s.clone().try_acquire_owned().unwrap();
        let _b = s.clone().try_acquire_owned().unwrap();
        assert!(s.clone().try_acquire_owned().is_err(), "the third waits");
        let other = limit.semaphore("10.0.0.2".parse().unwrap());
        assert!(other.try_acquire_owned().is_ok(), "others are not limited");
        drop(a);
        drop(s);
        limit.release(ip);
        assert!(
            limit.in_flight.lock().unwrap().contains_key(&ip),
            "one in flight"
        );
    }
}
