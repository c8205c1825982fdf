//! `/api/groups`: failure groups with their replay outcomes.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::clock::iso;
use crate::error::Result;
use crate::store::groups;
use crate::web::routes::{Routes, VIEWER};
use crate::web::AppState;

/// This resource's routes.
pub fn router() -> Routes {
    Routes::new().get("/api/groups", VIEWER, list_groups)
}

#[derive(Serialize)]
struct GroupJson {
    #[serde(flatten)]
    group: groups::FailureGroup,
    first_seen: String,
    last_seen: String,
    hourly: Vec<i64>,
}

async fn list_groups(
    State(state): State<AppState>,
    crate::web::auth::Caller(who): crate::web::auth::Caller,
) -> Result<Json<Vec<GroupJson>>> {
    let now = crate::clock::now_ms();
    let sight = state.disclosure.sight(who.as_ref().map(|w| w.role));
    let mut out = Vec::new();
    for mut g in groups::list(&state.pool, 500).await? {
        crate::web::masking::group(&sight, &mut g);
        out.push(GroupJson {
            hourly: groups::hourly(&state.pool, &g.fingerprint, now).await?,
            first_seen: iso(g.first_seen),
            last_seen: iso(g.last_seen),
            group: g,
        });
    }
    Ok(Json(out))
}
