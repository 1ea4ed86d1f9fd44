//! Switchboard's proxy-wasm glue: Envoy calls in here, every decision is made in
//! `switchboard-core`, and every hostcall goes through [`host`].

mod filter;
mod flow;
mod host;
mod metrics;

proxy_wasm::main! {{
    host::install_logger();
    proxy_wasm::set_root_context(|_context_id| Box::new(filter::Root::new()));
}}
