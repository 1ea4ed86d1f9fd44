//! Switchboard's decisions, free of any proxy-wasm dependency: configuration, identity,
//! routing and the upgrade pipeline. Everything takes `now` as an argument.

pub mod backoff;
pub mod budget;
pub mod config;
pub mod config_error;
pub mod dedup;
pub mod duration;
pub mod events;
pub mod flow_config;
pub mod header_map;
pub mod identity;
pub mod observe;
pub mod origin;
pub mod profile;
pub mod resume;
pub mod routing;
pub mod secret;
pub mod session;
pub mod token;
pub mod upgrade;
pub mod ws;
