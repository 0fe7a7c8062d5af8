use crate::proxy::body::{ApiError, Body};
use crate::proxy::upstream::Upstream;
use hyper::{Request, Response};

use super::Weave;

pub async fn handle(
    _w: &Weave,
    upstream: &Upstream,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    crate::proxy::forward::forward(upstream, req, &Default::default()).await
}
