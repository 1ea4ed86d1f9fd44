//! Agent identity: which keys may sign an agent's JWT ([`keys`]), how a token is verified into a
//! [`jwt::VerifiedIdentity`] ([`jwt`]), and how a verdict is shared between Envoy workers so each
//! token pays for its signature check once ([`cache`]).

pub mod cache;
pub mod jwt;
pub mod keys;

#[cfg(test)]
pub(crate) mod fixtures;

pub use crate::config_error::FieldError;
