//! weaveproxy: a Docker API proxy that joins the containers it starts to the weave network.

pub mod attach;
pub mod config;
pub mod dns;
pub mod dns_api;
pub mod events;
pub mod httpd;
pub mod intercept;
pub mod logging;
pub mod network;
pub mod proxy;
pub mod router_api;
pub mod tls;
pub mod weave_cidr;
