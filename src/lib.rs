//! weaveproxy: a Docker API proxy that joins the containers it starts to the weave network.

pub mod weave_cidr;
