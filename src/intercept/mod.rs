//! The calls the proxy looks into: container create (wrap the command in weavewait) and start
//! or restart (attach to the weave network).

pub mod create;
pub mod start;

/// What the interceptors share.
pub struct Weave {}
