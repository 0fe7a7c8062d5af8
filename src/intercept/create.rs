//! `POST [/vX.Y]/containers/create`: a container that is to join the weave network gets
//! weavewait in front of its command and weavewait's mount; anything else reaches the daemon
//! byte-identical.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{WEAVEWAIT, Weave};
use crate::proxy::body::{self, ApiError, Body};
use crate::proxy::forward::{HijackSlot, forward};
use crate::proxy::lane::Lane;
use crate::proxy::upstream::Upstream;

/// Create bodies are small JSON documents; anything near this is not one.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub async fn handle(
    weave: &Weave,
    upstream: &Upstream,
    lane: &Lane,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the create request: {e}")))?
        .to_bytes();
    let no_hijack = HijackSlot::default();
    let send = |bytes: Bytes, rewritten: bool| {
        let mut parts = parts.clone();
        if rewritten {
            // A stale length would make hyper truncate or abort the body.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
        }
        forward(
            upstream,
            lane,
            Request::from_parts(parts, body::full(bytes)),
            &no_hijack,
        )
    };

    // Not JSON, or not an object: the daemon's own error is the right answer.
    let Ok(Value::Object(mut config)) = serde_json::from_slice::<Value>(&bytes) else {
        return send(bytes, false).await;
    };
    let env = strings(config.get("Env")).unwrap_or_default();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let mode = config
        .get("HostConfig")
        .and_then(|h| h.get("NetworkMode"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let tokens = match super::decide(weave.with_ipam, &env, mode) {
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
        Ok(Err(reason)) => {
            // Only worth a line when the user could have expected an attach.
            if weave_cidr_given(&env) || weave.with_ipam {
                tracing::info!("not attaching the container: {reason}");
            }
            return send(bytes, false).await;
        }
        Ok(Ok(tokens)) => tokens,
    };

    let request_cmd = CommandParts::from_request(&config);
    let image_cmd = if request_cmd.needs_image() {
        let image = config.get("Image").and_then(Value::as_str).unwrap_or("");
        let inspected = match weave.docker.get().await {
            Ok(docker) => docker.inspect_image(image).await,
            Err(e) => Err(e),
        };
        match inspected {
            Ok(inspect) => {
                let c = inspect.config.unwrap_or_default();
                Some((c.entrypoint, c.cmd))
            }
            // The daemon answers an unknown image itself, with the name the CLI needs to pull.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return send(bytes, false).await;
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("weaveproxy: inspecting image \"{image}\": {e}"),
                ));
            }
        }
    } else {
        None
    };
    let Some((entrypoint, cmd)) = request_cmd.effective(image_cmd) else {
        // Nothing to run: let the daemon say "No command specified" in its own words.
        return send(bytes, false).await;
    };
    wrap(&mut config, entrypoint, cmd, &weave.weavewait.bind());
    tracing::debug!(?tokens, "container will be attached");
    let rewritten = serde_json::to_vec(&config)
        .map_err(|e| ApiError::internal(format!("weaveproxy: encoding the create request: {e}")))?;
    send(rewritten.into(), true).await
}

fn weave_cidr_given(env: &[&str]) -> bool {
    crate::weave_cidr::from_env(env.iter().copied()).is_some()
}

/// A JSON string array (the API also accepts a lone string for Entrypoint and Cmd).
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect(),
        ),
        _ => None,
    }
}

/// An image's (Entrypoint, Cmd), each `None` when the image has none.
pub type ImageCommand = (Option<Vec<String>>, Option<Vec<String>>);

/// Entrypoint and Cmd as the request gives them: `None` when absent or null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandParts {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
}

impl CommandParts {
    pub fn from_request(config: &serde_json::Map<String, Value>) -> CommandParts {
        let mut entrypoint = strings(config.get("Entrypoint"));
        // `--entrypoint ""` arrives as [""]: the user cleared the image's entrypoint.
        if entrypoint.as_deref() == Some(&[String::new()]) {
            entrypoint = Some(Vec::new());
        }
        CommandParts {
            entrypoint,
            cmd: strings(config.get("Cmd")),
        }
    }

    /// Docker takes nothing from the image when the request has an entrypoint.
    pub fn needs_image(&self) -> bool {
        self.entrypoint.as_ref().is_none_or(Vec::is_empty)
    }

    /// The command Docker would run, as (entrypoint, cmd), following the daemon's own merge:
    /// with no request entrypoint, an empty Cmd takes the image's, and an absent (not empty)
    /// entrypoint takes the image's. `None` when there is nothing to run.
    pub fn effective(&self, image: Option<ImageCommand>) -> Option<(Vec<String>, Vec<String>)> {
        let (image_ep, image_cmd) = image.unwrap_or_default();
        let mut cmd = self.cmd.clone().unwrap_or_default();
        let entrypoint = match &self.entrypoint {
            Some(ep) if !ep.is_empty() => ep.clone(),
            given => {
                if cmd.is_empty() {
                    cmd = image_cmd.unwrap_or_default();
                }
                match given {
                    None => image_ep.unwrap_or_default(),
                    Some(_) => Vec::new(),
                }
            }
        };
        (!entrypoint.is_empty() || !cmd.is_empty()).then_some((entrypoint, cmd))
    }
}

/// Puts weavewait in front of the command and adds its mount; every other field is kept as the
/// client sent it.
pub fn wrap(
    config: &mut serde_json::Map<String, Value>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    bind: &str,
) {
    let mut ep = entrypoint;
    // A container committed from a proxied one already starts with weavewait.
    if ep.first().map(String::as_str) != Some(WEAVEWAIT) {
        ep.insert(0, WEAVEWAIT.to_string());
    }
    config.insert("Entrypoint".into(), json!(ep));
    config.insert(
        "Cmd".into(),
        if cmd.is_empty() {
            Value::Null
        } else {
            json!(cmd)
        },
    );
    let host_config = config.entry("HostConfig").or_insert_with(|| json!({}));
    if !host_config.is_object() {
        *host_config = json!({});
    }
    if let Value::Object(hc) = host_config {
        let binds = hc.entry("Binds").or_insert_with(|| json!([]));
        if !binds.is_array() {
            *binds = json!([]);
        }
        if let Value::Array(list) = binds {
            // Replace, never stack, a weavewait mount the request already has.
            list.retain(|b| {
                let target = b.as_str().and_then(|s| s.split(':').nth(1)).unwrap_or("");
                target != "/w" && target != WEAVEWAIT
            });
            list.push(json!(bind));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(v: Value) -> CommandParts {
        CommandParts::from_request(v.as_object().unwrap())
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_merge_rules() {
        let image = || Some((Some(s(&["grep"])), Some(s(&["^1$", "/f"]))));
        // Nothing given: the image's entrypoint and cmd.
        assert_eq!(
            parts(json!({})).effective(image()),
            Some((s(&["grep"]), s(&["^1$", "/f"])))
        );
        // Cmd given: the image's entrypoint with the request's cmd.
        assert_eq!(
            parts(json!({"Cmd": ["x"]})).effective(image()),
            Some((s(&["grep"]), s(&["x"])))
        );
        // Entrypoint given, no cmd: the image's CMD is dropped (W-01).
        assert_eq!(
            parts(json!({"Entrypoint": ["sh"]})).effective(image()),
            Some((s(&["sh"]), vec![]))
        );
        assert!(!parts(json!({"Entrypoint": ["sh"]})).needs_image());
        // Explicitly empty entrypoint: the image's entrypoint is not used, its cmd is.
        assert_eq!(
            parts(json!({"Entrypoint": []})).effective(image()),
            Some((vec![], s(&["^1$", "/f"])))
        );
        assert_eq!(
            parts(json!({"Entrypoint": [""], "Cmd": ["ls"]})).effective(image()),
            Some((vec![], s(&["ls"])))
        );
        // A lone string is accepted like the API does.
        assert_eq!(
            parts(json!({"Entrypoint": "sh", "Cmd": null})).effective(None),
            Some((s(&["sh"]), vec![]))
        );
        // Nothing anywhere.
        assert_eq!(
            parts(json!({"Cmd": []})).effective(Some((None, None))),
            None
        );
    }

    #[test]
    fn wrap_keeps_everything_else() {
        let mut v = json!({
            "Image": "x", "Memory": 9007199254740993u64, "Unknown": {"a": [1, 2]},
            "HostConfig": {"Binds": ["/a:/b", "/old:/w:ro"], "MemorySwap": -1}
        });
        wrap(
            v.as_object_mut().unwrap(),
            s(&["sh"]),
            s(&["-c", "x"]),
            "/ww:/w/w:ro",
        );
        assert_eq!(v["Entrypoint"], json!(["/w/w", "sh"]));
        assert_eq!(v["Cmd"], json!(["-c", "x"]));
        assert_eq!(v["Memory"], json!(9007199254740993u64));
        assert_eq!(v["Unknown"], json!({"a": [1, 2]}));
        assert_eq!(v["HostConfig"]["MemorySwap"], json!(-1));
        assert_eq!(v["HostConfig"]["Binds"], json!(["/a:/b", "/ww:/w/w:ro"]));
    }

    #[test]
    fn never_wrapped_twice_and_missing_objects_created() {
        let mut v = json!({"Image": "x", "HostConfig": null});
        wrap(
            v.as_object_mut().unwrap(),
            s(&["/w/w", "sh"]),
            vec![],
            "v:/w:ro",
        );
        assert_eq!(v["Entrypoint"], json!(["/w/w", "sh"]));
        assert_eq!(v["Cmd"], Value::Null);
        assert_eq!(v["HostConfig"]["Binds"], json!(["v:/w:ro"]));
    }
}
