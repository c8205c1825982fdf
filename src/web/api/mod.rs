//! The JSON API, one module per resource. Errors answer as JSON with the same sentences
//! the pages show.

use crate::web::routes::Routes;

mod audit;
mod cluster;
pub(crate) mod demo;
mod groups;
mod health;
mod messages;
mod purges;
mod replays;
mod topics;

/// Every API route.
pub fn router() -> Routes {
    Routes::new()
        .merge(topics::router())
        .merge(messages::router())
        .merge(groups::router())
        .merge(cluster::router())
        .merge(health::router())
        .merge(replays::router())
        .merge(purges::router())
        .merge(audit::router())
        .merge(demo::router())
}
