//! The platform's OAuth token: configuration, the token request and its answer, the shared
//! record every worker reads, the single-fetcher schedule, and injection (upgrade and
//! `auth_refresh` frames).

pub mod config;
pub mod inject;
pub mod record;
pub mod refresh;
pub mod request;
pub mod response;

#[cfg(test)]
mod tests;
