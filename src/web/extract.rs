//! What handlers take from a request beyond the state: who is asking, a form that passed
//! the CSRF check, a JSON body that says it is JSON, and the record a path names.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::store::records::{self, RecordDetail, RecordId};
use crate::web::csrf::{check_origin, same, FIELD, STALE};
use crate::web::error::PageError;
use crate::web::AppState;

/// Who is asking, as the operations core takes it: the name the audit log records (the
/// authenticated name and how it signed in, `alice (password)`, `ci (token)`, or with
/// authentication off `anonymous` and the client's address), the auth mode, and the DLQ
/// topics the role may act on (`--role-topics`).
pub struct Actor(pub crate::actions::Actor);

impl FromRequestParts<AppState> for Actor {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        // `web::auth::identify` leaves an identity on every request that reaches a route
        // needing a role; its absence means the route was declared public by mistake.
        let who = parts
            .extensions
            .get::<Identity>()
            .ok_or_else(|| Error::Unauthorized("Sign in first.".into()))?;
        Ok(Actor(crate::actions::Actor {
            name: who.actor(),
            mode: Some(who.mode.as_str().to_string()),
            // With authentication off nobody has a role of their own to limit.
            scope: if who.mode == crate::auth::Mode::Off {
                Default::default()
            } else {
                state.role_topics.scope(who.role.as_str())
            },
        }))
    }
}

/// A JSON POST must say it is JSON: a browser cannot send that content type across sites
/// without a CORS preflight, which this server never grants, so it also guards against
/// cross-site requests.
pub fn require_json(headers: &HeaderMap) -> Result<()> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "Send this request with Content-Type: application/json (it came with '{ctype}')."
        )))
    }
}

/// Parse `{partition}` and `{offset}` path segments with a sentence on failure.
pub fn coordinates(partition: &str, offset: &str) -> Result<(i32, i64)> {
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "Partition '{partition}' is not a partition number."
            ))
        })?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| Error::BadRequest(format!("Offset '{offset}' is not an offset.")))?;
    Ok((partition, offset))
}

/// The record a URL names: path coordinates plus an optional `?generation=N`.
pub fn record_id(
    topic: &str,
    partition: &str,
    offset: &str,
    query: Option<&str>,
) -> Result<RecordId> {
    let (partition, offset) = coordinates(partition, offset)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Error::BadRequest("The query string is not valid URL encoding.".into()))?;
    let mut generation = None;
    for (k, v) in params {
        if k != "generation" {
            return Err(Error::BadRequest(format!(
                "Unknown parameter '{k}'; a message address takes only 'generation'."
            )));
        }
        generation = Some(v.parse::<i64>().ok().filter(|g| *g >= 0).ok_or_else(|| {
            Error::BadRequest(format!(
                "Parameter 'generation' is '{v}'; use a whole number from 0."
            ))
        })?);
    }
    Ok(RecordId {
        topic: topic.to_string(),
        partition,
        offset,
        generation,
    })
}

/// Fetch one record or a 404 naming it.
pub async fn find_record(state: &AppState, id: &RecordId) -> Result<RecordDetail> {
    records::get(&state.pool, id)
        .await?
        .ok_or_else(|| not_indexed(id))
}

pub fn not_indexed(id: &RecordId) -> Error {
    let generation = id
        .generation
        .map(|g| format!(" (generation {g})"))
        .unwrap_or_default();
    Error::NotFound(format!(
        "No indexed message at {} partition {} offset {}{generation}.",
        id.topic, id.partition, id.offset
    ))
}

/// A URL-encoded form that passed the CSRF checks: its fields in order, without the token.
pub struct CsrfForm(pub Vec<(String, String)>);

impl CsrfForm {
    /// Every value of a field, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for CsrfForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        // The token to expect is the session's (with auth off, the process's); a bearer
        // token has none to check, since a browser never sends one on its own.
        let expected = match req.extensions().get::<Identity>() {
            Some(who) => who.csrf.clone(),
            None => return Err(Error::Forbidden(STALE.into()).into()),
        };
        check_origin(req.headers(), authority.as_deref())?;
        let ctype = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let essence = ctype.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(Error::UnsupportedMediaType(format!(
                "This address takes the dashboard's own forms (application/x-www-form-urlencoded, it came with '{ctype}'); scripts use the JSON API under /api."
            ))
            .into());
        }
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            Error::BadRequest("The form could not be read (it may be too large).".into())
        })?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| Error::BadRequest("The form is not valid URL encoding.".into()))?;
        let mut tokens = fields.iter().filter(|(k, _)| k == FIELD);
        let valid = match (expected, tokens.next(), tokens.next()) {
            (None, _, None) => true,
            (Some(expected), Some((_, t)), None) => same(t.as_bytes(), expected.as_bytes()),
            _ => false,
        };
        if !valid {
            return Err(Error::Forbidden(STALE.into()).into());
        }
        Ok(CsrfForm(
            fields.into_iter().filter(|(k, _)| k != FIELD).collect(),
        ))
    }
}

/// The fields of a JSON POST body: it says it is JSON, is a JSON object, and names only
/// `known` fields; an empty body counts as an empty object when `empty_allowed`.
pub fn json_fields(
    headers: &HeaderMap,
    body: &Bytes,
    known: &[&str],
    empty_allowed: bool,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    require_json(headers)?;
    if empty_allowed && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let request: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("The request body is not valid JSON ({e}).")))?;
    let serde_json::Value::Object(fields) = request else {
        return Err(Error::BadRequest(
            "The request body must be a JSON object such as {\"filter\": {\"topic\": \"orders.dlq\"}}.".into(),
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::BadRequest(format!(
            "Unknown field '{unknown}'; known ones are {}.",
            known.join(", ")
        )));
    }
    Ok(fields)
}

/// A boolean field of a JSON body, false when absent.
pub fn json_flag(fields: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<bool> {
    match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::BadRequest(format!(
            "Field '{name}' must be true or false."
        ))),
    }
}
