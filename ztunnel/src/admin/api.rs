//! The admin server: configuration dump, log level, drain.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::server::{Body, method_not_allowed, not_found, serve, text, with_type};
use crate::telemetry::LogHandle;

/// Produces the JSON of `/config_dump` (the proxy's current view: workloads, services, policies,
/// certificates...). Called once per request.
pub type ConfigDumpFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the admin server needs from the rest of ztunnel.
#[derive(Clone)]
pub struct AdminState {
    /// Source of `/config_dump`.
    pub config_dump: ConfigDumpFn,
    /// The running log filter, changed by `POST /logging`.
    pub log: LogHandle,
    /// Cancelled by `POST /quitquitquit` to start a graceful drain.
    pub drain: CancellationToken,
    /// The filter `POST /logging?reset` returns to (the one in force at startup).
    pub initial_log_level: String,
}

impl AdminState {
    /// Captures the current log filter as the one `?reset` restores.
    pub fn new(config_dump: ConfigDumpFn, log: LogHandle, drain: CancellationToken) -> Self {
        let initial_log_level = log.current().unwrap_or_else(|_| "info".to_owned());
        Self {
            config_dump,
            log,
            drain,
            initial_log_level,
        }
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("log", &self.log)
            .field("drain", &self.drain)
            .field("initial_log_level", &self.initial_log_level)
            .finish_non_exhaustive()
    }
}

/// Serves the admin API on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let state = Arc::new(state);
    serve("admin", listener, shutdown, move |req| {
        let state = state.clone();
        async move { route(&state, &req) }
    })
    .await;
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/config_dump" => match *req.method() {
            Method::GET => config_dump(state),
            _ => method_not_allowed("GET"),
        },
        "/logging" => match *req.method() {
            Method::GET => current_level(state),
            Method::POST => set_level(state, req.uri().query().unwrap_or("")),
            _ => method_not_allowed("GET, POST"),
        },
        "/quitquitquit" => match *req.method() {
            Method::POST => {
                tracing::info!("drain requested through /quitquitquit");
                state.drain.cancel();
                text(StatusCode::OK, "draining\n")
            }
            _ => method_not_allowed("POST"),
        },
        "/" => text(
            StatusCode::OK,
            "GET /config_dump\nGET /logging\nPOST /logging?level=<filter>|reset\nPOST /quitquitquit\n",
        ),
        other => not_found(other),
    }
}

fn config_dump(state: &AdminState) -> Response<Body> {
    let dump = (state.config_dump)();
    match serde_json::to_vec_pretty(&dump) {
        Ok(body) => with_type(StatusCode::OK, "application/json", body),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialise the config dump: {err}\n"),
        ),
    }
}

fn current_level(state: &AdminState) -> Response<Body> {
    match state.log.current() {
        Ok(level) => text(StatusCode::OK, format!("current log level is {level}\n")),
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
    }
}

/// `level=<directives>` sets the filter (`debug`, or `ztunnel=debug,hbone=info`); `reset` restores
/// the startup filter.
fn set_level(state: &AdminState, query: &str) -> Response<Body> {
    let mut wanted = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "level" => wanted = Some(value.into_owned()),
            "reset" => wanted = Some(state.initial_log_level.clone()),
            _ => {}
        }
    }
    let Some(wanted) = wanted else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing `level` (e.g. /logging?level=debug or ?level=ztunnel=debug,info) or `reset`\n",
        );
    };
    match state.log.set(&wanted) {
        Ok(()) => {
            tracing::info!(level = %wanted, "log level changed through /logging");
            current_level(state)
        }
        Err(err) => text(StatusCode::BAD_REQUEST, format!("{err}\n")),
    }
}
