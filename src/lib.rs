//! weaveproxy: a Docker API proxy that joins the containers it starts to the weave network.

pub mod network;
pub mod router_api;
pub mod weave_cidr;
