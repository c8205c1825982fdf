//! Routes declared together with who may use them. Every resource module adds its routes
//! through [`Routes`], which builds the axum router and, from the same calls, the access
//! table that `web::auth::authorize` enforces and the tests walk. A route cannot exist
//! without a rule, so none can be forgotten.

use std::collections::HashMap;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::auth::role::Role;
use crate::web::AppState;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (health, static files, the sign-in page).
    Public,
    /// Someone signed in with at least this role.
    Role(Role),
}

/// Pages and read API.
pub const VIEWER: Access = Access::Role(Role::Viewer);
/// Replay, purge, undo.
pub const OPERATOR: Access = Access::Role(Role::Operator);
/// Erase, reclaim, users and tokens.
pub const ADMIN: Access = Access::Role(Role::Admin);

/// One route and its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// GET or POST.
    pub method: Method,
    /// The path as declared, e.g. `/replays/{id}`.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
}

impl Rule {
    /// Whether the route answers in JSON (401 and 403 as JSON) rather than as a page
    /// (a redirect to the sign-in page).
    pub fn is_api(&self) -> bool {
        is_api(self.path)
    }
}

/// Whether a path belongs to the JSON API or to machine endpoints.
pub fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics" || path == "/readyz"
}

/// A router under construction together with its access rules. The actions (POST routes
/// that need operator or admin: replay, purge, undo, erase, reclaim, job control) are
/// kept in a router of their own, which the request timeout does not cover: their answer
/// is their result, and a large purge or its preview takes longer than any timeout that
/// fits a page (the work itself runs in tasks that a dropped request does not stop).
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    actions: Router<AppState>,
    rules: Vec<Rule>,
}

/// The parts [`Routes::into_parts`] hands back.
pub struct Parts {
    /// Every route but the actions.
    pub timed: Router<AppState>,
    /// The action POSTs, exempt from the request timeout.
    pub actions: Router<AppState>,
    /// Every route's rule.
    pub table: AccessTable,
}

impl Rule {
    /// Whether this is an action POST, exempt from the request timeout (see [`Routes`]).
    pub fn is_action(&self) -> bool {
        self.method == Method::POST && matches!(self.access, Access::Role(r) if r != Role::Viewer)
    }
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A GET route (HEAD is answered by the same handler, under the same rule).
    pub fn get<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, access, get(handler))
    }

    /// A POST route.
    pub fn post<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, access, post(handler))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        route: MethodRouter<AppState>,
    ) -> Self {
        let rule = Rule {
            method,
            path,
            access,
        };
        if rule.is_action() {
            self.actions = self.actions.route(path, route);
        } else {
            self.router = self.router.route(path, route);
        }
        self.rules.push(rule);
        self
    }

    /// Both sets of routes.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.actions = self.actions.merge(other.actions);
        self.rules.extend(other.rules);
        self
    }

    /// Apply `f` to the routers (a layer on these routes only), keeping the rules.
    pub fn map(mut self, f: impl Fn(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self.actions = f(self.actions);
        self
    }

    /// The routers and their rules.
    pub fn into_parts(self) -> Parts {
        let table = AccessTable {
            by_route: self.rules.iter().fold(HashMap::new(), |mut m, r| {
                m.entry(r.method.clone())
                    .or_insert_with(HashMap::new)
                    .insert(r.path, r.access);
                m
            }),
            rules: self.rules,
        };
        Parts {
            timed: self.router,
            actions: self.actions,
            table,
        }
    }
}

/// Every route's rule, looked up by method and declared path.
#[derive(Debug, Clone, Default)]
pub struct AccessTable {
    rules: Vec<Rule>,
    by_route: HashMap<Method, HashMap<&'static str, Access>>,
}

impl AccessTable {
    /// The rule of a request that matched `path` (HEAD counts as GET).
    pub fn access(&self, method: &Method, path: &str) -> Option<Access> {
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        self.by_route.get(&method)?.get(path).copied()
    }

    /// Every rule, in the order the routes were declared.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}
