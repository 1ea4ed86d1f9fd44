//! The proxy-wasm contexts: a root context per worker VM that owns the validated configuration,
//! and an HTTP context per stream that carries out the core's verdicts.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use switchboard_core::config::Config;
use switchboard_core::upgrade::{
    self, check_answered_subprotocol, upstream_result, RejectReason, SubprotocolAnswer,
    SubprotocolPlan, Verdict, VerdictCache,
};

use crate::host::{self, MapKind};
use crate::metrics::{Family, Metrics, SESSIONS_ACTIVE, UPGRADE_FILTER_TIME_US};

/// What every stream of this VM shares.
struct Shared {
    config: Config,
    metrics: RefCell<Metrics>,
}

pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Root {
    pub fn new() -> Self {
        Root { shared: None }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        host::refresh_log_level();
        let bytes = match host::plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(err) => {
                log::error!("configure: the plugin configuration cannot be read: {err}");
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                log::info!("configure: {}", config.summary());
                self.shared = Some(Rc::new(Shared {
                    config,
                    metrics: RefCell::new(Metrics::default()),
                }));
                true
            }
            Err(errors) => {
                let first = errors
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "configuration: invalid".to_string());
                let more = errors.len().saturating_sub(1);
                if more == 0 {
                    log::error!("invalid configuration: {first}");
                } else {
                    log::error!(
                        "invalid configuration: {first} (and {more} more; run sbctl check-config)"
                    );
                }
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream {
            context_id,
            shared,
            upgrade_requested: false,
            upgraded: false,
            subprotocols: SubprotocolPlan::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The verified-token cache in Envoy shared data (one map per process, all workers).
struct SharedDataCache;

impl VerdictCache for SharedDataCache {
    fn load(&mut self, key: &str) -> Option<Vec<u8>> {
        host::shared_get(key).ok().flatten().map(|(value, _)| value)
    }
    fn store(&mut self, key: &str, value: &[u8]) {
        // A lost write only costs a later signature check.
        let _ = host::shared_set(key, value, 0);
    }
}

struct Stream {
    context_id: u32,
    shared: Rc<Shared>,
    upgrade_requested: bool,
    upgraded: bool,
    subprotocols: SubprotocolPlan,
}

impl Stream {
    fn count(&self, family: Family, label: &'static str) {
        self.shared.metrics.borrow_mut().count(family, label);
    }

    /// Sends a local reply; if even that fails the stream is left paused and Envoy times it out,
    /// which still never forwards the request.
    fn reply(&self, status: u16, headers: &[(&str, &str)], body: &str, details: &str) -> Action {
        if let Err(err) = host::send_local_reply(status, headers, body, details) {
            log::error!("{}: cannot send {status}: {err}", self.context_id);
        }
        Action::Pause
    }

    fn fail_closed(&self, what: &str, err: host::HostError) -> Action {
        log::error!("{}: {what}: {err}; refusing the request", self.context_id);
        self.count(Family::Upgrades, "internal_error");
        self.reply(500, &[], "gateway error\n", "switchboard_internal_error")
    }

    fn handle_request_headers(&mut self) -> Action {
        let headers = match host::header_pairs(MapKind::RequestHeaders) {
            Ok(headers) => headers,
            Err(err) => return self.fail_closed("reading request headers", err),
        };
        let request = upgrade::RequestHead { headers: &headers };
        let config = &self.shared.config;
        let verdict = upgrade::decide(config, &request, host::now_secs(), &mut SharedDataCache);
        let forward = match verdict {
            Verdict::Reject(rejection) => {
                let upgrade = request.is_websocket_upgrade();
                let family = if upgrade {
                    Family::Upgrades
                } else {
                    Family::Requests
                };
                self.count(family, rejection.reason.label());
                if let RejectReason::Auth(err) = &rejection.reason {
                    self.count(Family::AuthFailures, err.reason());
                    log::debug!("{}: rejected: auth {}", self.context_id, err.reason());
                } else {
                    log::debug!(
                        "{}: rejected: {}",
                        self.context_id,
                        rejection.reason.label()
                    );
                }
                let mut reply_headers: Vec<(&str, &str)> = vec![("cache-control", "no-store")];
                if let Some(challenge) = rejection.www_authenticate {
                    reply_headers.push(("www-authenticate", challenge));
                }
                return self.reply(
                    rejection.status,
                    &reply_headers,
                    rejection.body,
                    rejection.reason.label(),
                );
            }
            Verdict::Forward(forward) => forward,
        };

        for name in &forward.remove_headers {
            if let Err(err) = host::remove_header(MapKind::RequestHeaders, name) {
                return self.fail_closed("removing a client-supplied header", err);
            }
        }
        for (name, value) in &forward.set_headers {
            if let Err(err) = host::set_header(MapKind::RequestHeaders, name, value) {
                return self.fail_closed("setting a gateway header", err);
            }
        }
        if let Some(path) = &forward.path {
            if let Err(err) = host::set_header(MapKind::RequestHeaders, ":path", path) {
                return self.fail_closed("rewriting the path", err);
            }
        }
        if let Some(path) = forward.auth {
            self.count(
                Family::AuthPath,
                match path {
                    upgrade::AuthPath::Cached => "cached",
                    upgrade::AuthPath::Verified => "verified",
                },
            );
        }
        if forward.upgrade {
            self.upgrade_requested = true;
            self.subprotocols = forward.subprotocols;
            if let Some(identity) = &forward.identity {
                log::debug!(
                    "{}: upgrade admitted for routing key {}",
                    self.context_id,
                    identity.routing_key
                );
            }
        } else {
            self.count(Family::Requests, "forwarded");
        }
        Action::Continue
    }

    fn handle_response_headers(&mut self) -> Action {
        let status = host::header(MapKind::ResponseHeaders, ":status")
            .ok()
            .flatten();
        let status_text = status.as_deref().and_then(|s| std::str::from_utf8(s).ok());
        let upgrade_header = host::header(MapKind::ResponseHeaders, "upgrade")
            .ok()
            .flatten();
        if !upgrade::is_websocket_accept(status_text, upgrade_header.as_deref()) {
            let label = status_text
                .and_then(|s| s.parse::<u16>().ok())
                .map_or("upstream_other", upstream_result);
            self.count(Family::Upgrades, label);
            return Action::Continue;
        }
        let answered = host::header(MapKind::ResponseHeaders, "sec-websocket-protocol")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok());
        match check_answered_subprotocol(&self.subprotocols, answered.as_deref()) {
            SubprotocolAnswer::Keep => {}
            SubprotocolAnswer::Strip => {
                if let Err(err) =
                    host::remove_header(MapKind::ResponseHeaders, "sec-websocket-protocol")
                {
                    log::error!(
                        "{}: cannot strip the answered subprotocol: {err}",
                        self.context_id
                    );
                    self.count(Family::Upgrades, "upstream_protocol");
                    return self.reply(502, &[], "bad gateway\n", "switchboard_subprotocol");
                }
            }
            SubprotocolAnswer::Reject => {
                log::debug!(
                    "{}: platform answered a subprotocol the client never offered",
                    self.context_id
                );
                self.count(Family::Upgrades, "upstream_protocol");
                return self.reply(502, &[], "bad gateway\n", "switchboard_subprotocol");
            }
        }
        self.upgraded = true;
        self.count(Family::Upgrades, "accepted");
        self.shared
            .metrics
            .borrow_mut()
            .gauge_add(SESSIONS_ACTIVE, 1);
        Action::Continue
    }
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        if self.upgraded {
            self.upgraded = false;
            self.shared
                .metrics
                .borrow_mut()
                .gauge_add(SESSIONS_ACTIVE, -1);
        }
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let started = host::now_nanos();
        let action = self.handle_request_headers();
        if self.upgrade_requested {
            let elapsed_us = host::now_nanos().saturating_sub(started) / 1_000;
            self.shared
                .metrics
                .borrow_mut()
                .histogram(UPGRADE_FILTER_TIME_US, elapsed_us);
        }
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.upgrade_requested {
            return Action::Continue;
        }
        self.handle_response_headers()
    }
}
