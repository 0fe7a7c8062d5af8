//! `POST [/vX.Y]/containers/create`: a container that is to join the weave network gets
//! weavewait in front of its command and weavewait's mount; anything else reaches the daemon
//! byte-identical.

use bytes::Bytes;
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
    let bytes = super::read_body(body, MAX_BODY, "create").await?;
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
    // The daemon decodes the first JSON value and ignores what follows it; so does the proxy.
    let first = serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Value>()
        .next();
    let Some(Ok(Value::Object(mut config))) = first else {
        return send(bytes, false).await;
    };
    if !well_typed(&config) {
        // The daemon refuses such a body; rewriting would hide that behind a success.
        return send(bytes, false).await;
    }
    canonical_keys(&mut config);
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
                let name = container_name(parts.uri.query()).unwrap_or_default();
                let image = config.get("Image").and_then(|v| v.as_str()).unwrap_or("");
                tracing::info!(container = %name, image, "not attaching the container: {reason}");
            }
            if committed_from_attached(weave, &config).await {
                // Its entrypoint is weavewait, which is not in the image: it gets weavewait,
                // told not to wait, so that it runs as it did, without the weave network.
                super::set_weavewait_binds(
                    host_config(&mut config),
                    &[weave.weavewait.bind(), super::NOOP_BIND.to_string()],
                );
                let rewritten = serde_json::to_vec(&config).map_err(|e| {
                    ApiError::internal(format!("weaveproxy: encoding the create request: {e}"))
                })?;
                return send(rewritten.into(), true).await;
            }
            return send(bytes, false).await;
        }
        Ok(Ok(tokens)) => tokens,
    };

    if let Some(target) = mount_in_the_way(&config, &weave.weavewait.bind()) {
        return Err(ApiError::bad_request(format!(
            "weaveproxy: the container mounts {target}, where weavewait goes (/w): mount it elsewhere, or set WEAVE_CIDR=none"
        )));
    }
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
    if let Some(domain) = weave.dns.domain().await {
        match weave.dns.address(&weave.docker).await {
            Ok(ip) => {
                let name = container_name(parts.uri.query());
                if let Some(warning) = set_dns(&mut config, name.as_deref(), ip, &domain) {
                    tracing::warn!("{warning}");
                }
            }
            Err(e) => tracing::warn!("not pointing the container at weaveDNS: {e}"),
        }
    }
    tracing::debug!(?tokens, "container will be attached");
    let rewritten = serde_json::to_vec(&config)
        .map_err(|e| ApiError::internal(format!("weaveproxy: encoding the create request: {e}")))?;
    send(rewritten.into(), true).await
}

/// `?name=` of the create request, without the leading `/` some clients add.
fn container_name(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty())
}

/// Docker's (and the kernel's) limit for a host name.
const MAX_HOSTNAME: usize = 64;

/// Points the container's resolver at weaveDNS (`dns`), unless the request has servers of its
/// own, and sets its search path and name so that names in `domain` resolve:
///
/// - no hostname but a container name: hostname = the name, domain name = `domain`, so that the
///   container is registered as NAME.DOMAIN (unless that is longer than a host name may be);
/// - search path, unless the request has one: `.` when the request names a host (glibc then
///   searches the domain of that host name: `-h pinger.weave.local` finds `pingme`), else
///   `domain` (a bare host name, or one derived from the container name, has no domain to
///   search; Docker puts the name's domain in `Domainname`, which the resolver ignores).
///
/// Returns a warning for the log when the name was too long to use.
pub fn set_dns(
    config: &mut serde_json::Map<String, Value>,
    name: Option<&str>,
    dns: std::net::Ipv4Addr,
    domain: &str,
) -> Option<String> {
    let nonempty = |v: Option<&Value>| match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    let hostname_given = nonempty(config.get("Hostname"));
    let domainname_given = nonempty(config.get("Domainname"));
    let mut warning = None;
    if !hostname_given
        && !domainname_given
        && let Some(name) = name
    {
        let d = domain.trim_end_matches('.');
        if name.len() + 1 + d.len() > MAX_HOSTNAME {
            warning = Some(format!(
                "container name {name:?} is too long to be a host name in {d} ({MAX_HOSTNAME} characters at most): not setting its hostname"
            ));
        } else {
            config.insert("Hostname".into(), json!(name));
            config.insert("Domainname".into(), json!(d));
        }
    }
    let hc = host_config(config);
    if !nonempty(hc.get("Dns")) {
        hc.insert("Dns".into(), json!([dns.to_string()]));
    }
    if !nonempty(hc.get("DnsSearch")) {
        let search = if hostname_given { "." } else { domain };
        hc.insert("DnsSearch".into(), json!([search]));
    }
    warning
}

/// `HostConfig`, made an object if it is absent or not one.
fn host_config(config: &mut serde_json::Map<String, Value>) -> &mut serde_json::Map<String, Value> {
    let hc = config.entry("HostConfig").or_insert_with(|| json!({}));
    if !hc.is_object() {
        *hc = json!({});
    }
    match hc {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// The request takes its entrypoint from an image committed from an attached container (its
/// entrypoint begins with weavewait, which only the proxy's mount provides).
async fn committed_from_attached(weave: &Weave, config: &serde_json::Map<String, Value>) -> bool {
    if !CommandParts::from_request(config).needs_image()
        || mount_in_the_way(config, &weave.weavewait.bind()).is_some()
    {
        return false;
    }
    let image = config.get("Image").and_then(Value::as_str).unwrap_or("");
    let Ok(docker) = weave.docker.get().await else {
        return false;
    };
    // An unknown image is the daemon's to answer.
    let Ok(inspect) = docker.inspect_image(image).await else {
        return false;
    };
    let entrypoint = inspect
        .config
        .and_then(|c| c.entrypoint)
        .unwrap_or_default();
    entrypoint.first().map(String::as_str) == Some(WEAVEWAIT)
}

/// The fields the proxy rewrites have the JSON types the daemon accepts (or are absent/null).
fn well_typed(config: &serde_json::Map<String, Value>) -> bool {
    let command = |v: Option<&Value>| {
        matches!(
            v,
            None | Some(Value::Null | Value::String(_) | Value::Array(_))
        )
    };
    let list = |v: Option<&Value>| matches!(v, None | Some(Value::Null | Value::Array(_)));
    let hc = config.get("HostConfig");
    command(config.get("Entrypoint"))
        && command(config.get("Cmd"))
        && list(config.get("Env"))
        && matches!(hc, None | Some(Value::Null | Value::Object(_)))
        && list(hc.and_then(|h| h.get("Binds")))
        && list(hc.and_then(|h| h.get("Dns")))
        && list(hc.and_then(|h| h.get("DnsSearch")))
}

/// The daemon decodes the body with Go's encoding/json, which matches field names without
/// regard to case (the last of several spellings wins): `{"env": [...]}` is the container's
/// Env. The fields the proxy reads or writes are renamed to their canonical spelling, so that
/// what it sees and what it sends are what the daemon would make of them.
fn canonical_keys(config: &mut serde_json::Map<String, Value>) {
    const TOP: &[&str] = &[
        "Image",
        "Env",
        "Entrypoint",
        "Cmd",
        "Hostname",
        "Domainname",
        "Volumes",
        "HostConfig",
    ];
    const HOST: &[&str] = &[
        "NetworkMode",
        "Binds",
        "Mounts",
        "Tmpfs",
        "Dns",
        "DnsSearch",
        "ExtraHosts",
    ];
    fn rename(map: &mut serde_json::Map<String, Value>, names: &[&str]) {
        for name in names {
            let spellings: Vec<String> = map
                .keys()
                .filter(|k| k.eq_ignore_ascii_case(name))
                .cloned()
                .collect();
            if spellings.iter().all(|k| k == name) {
                continue;
            }
            let mut last = None;
            for k in spellings {
                last = map.shift_remove(&k);
            }
            if let Some(v) = last {
                map.insert(name.to_string(), v);
            }
        }
    }
    rename(config, TOP);
    if let Some(Value::Object(hc)) = config.get_mut("HostConfig") {
        rename(hc, HOST);
    }
}

/// A mount of the request's own at or under `/w` (or at weavewait's no-wait marker): the
/// daemon would refuse it next to weavewait's ("Duplicate mount point"), or it would hide
/// weavewait, so it is an error the user can act on rather than a mount silently dropped.
fn mount_in_the_way(config: &serde_json::Map<String, Value>, ours: &str) -> Option<String> {
    let in_the_way = |target: &str| {
        let t = target.trim_end_matches('/');
        (t == "/w" || t.starts_with("/w/") || t == "/w-noop").then(|| t.to_string())
    };
    let hc = config.get("HostConfig");
    let binds = hc.and_then(|h| h.get("Binds")).and_then(Value::as_array);
    for b in binds.into_iter().flatten().filter_map(Value::as_str) {
        if b == ours {
            continue;
        }
        // SRC:DEST[:OPTS], or a bare DEST for an anonymous volume.
        let dest = b.split(':').nth(1).unwrap_or(b);
        if let Some(t) = in_the_way(dest) {
            return Some(t);
        }
    }
    let mounts = hc.and_then(|h| h.get("Mounts")).and_then(Value::as_array);
    for m in mounts.into_iter().flatten() {
        if let Some(t) = m.get("Target").and_then(Value::as_str).and_then(in_the_way) {
            return Some(t);
        }
    }
    // `Volumes` (anonymous volumes) and `HostConfig.Tmpfs` are maps keyed by the target.
    let keyed = [config.get("Volumes"), hc.and_then(|h| h.get("Tmpfs"))];
    keyed
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys())
        .find_map(|k| in_the_way(k))
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
        CommandParts {
            entrypoint: strings(config.get("Entrypoint")),
            cmd: strings(config.get("Cmd")),
        }
    }

    /// Docker takes nothing from the image when the request has an entrypoint.
    pub fn needs_image(&self) -> bool {
        self.entrypoint.as_ref().is_none_or(Vec::is_empty)
    }

    /// The command Docker would run, as (entrypoint, cmd), following the daemon's own merge:
    /// with no request entrypoint, an empty Cmd takes the image's, and an absent (not empty)
    /// entrypoint takes the image's. `--entrypoint ""` arrives as `[""]`: a given entrypoint
    /// (so the image's CMD is not taken either) that runs nothing of its own. `None` when there
    /// is nothing to run.
    pub fn effective(&self, image: Option<ImageCommand>) -> Option<(Vec<String>, Vec<String>)> {
        let (image_ep, image_cmd) = image.unwrap_or_default();
        let mut cmd = self.cmd.clone().unwrap_or_default();
        let entrypoint = match &self.entrypoint {
            Some(ep) if ep.as_slice() == [String::new()] => Vec::new(),
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
    super::set_weavewait_binds(host_config(config), &[bind.to_string()]);
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
        // `--entrypoint ""` alone: nothing to run, as Docker says ("No command specified").
        assert!(!parts(json!({"Entrypoint": [""]})).needs_image());
        assert_eq!(parts(json!({"Entrypoint": [""]})).effective(image()), None);
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
    fn field_names_match_without_case_like_go() {
        let mut c = obj(json!({
            "image": "i",
            "env": ["WEAVE_CIDR=10.2.1.1/24"],
            "Cmd": ["a"],
            "cmd": ["b"],
            "hostconfig": {"binds": ["/x:/y"], "Memory": 1},
            "Other": 1
        }));
        canonical_keys(&mut c);
        assert_eq!(c["Image"], json!("i"));
        assert_eq!(c["Env"], json!(["WEAVE_CIDR=10.2.1.1/24"]));
        assert_eq!(c["Cmd"], json!(["b"]), "the last spelling wins");
        assert!(!c.contains_key("cmd") && !c.contains_key("env"));
        assert_eq!(c["HostConfig"], json!({"Binds": ["/x:/y"], "Memory": 1}));
        assert_eq!(c["Other"], json!(1));
    }

    #[test]
    fn mounts_in_weavewaits_way() {
        let ours = "weaveproxy-weavewait:/w:ro";
        let way = |v: Value| mount_in_the_way(v.as_object().unwrap(), ours);
        assert_eq!(
            way(json!({"HostConfig": {"Binds": ["/tmp:/w"]}})),
            Some("/w".into())
        );
        assert_eq!(
            way(json!({"HostConfig": {"Binds": ["/tmp/x:/w/x:ro"]}})),
            Some("/w/x".into())
        );
        assert_eq!(
            way(json!({"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/w/"}]}})),
            Some("/w".into())
        );
        assert_eq!(way(json!({"Volumes": {"/w": {}}})), Some("/w".into()));
        assert_eq!(
            way(json!({"HostConfig": {"Tmpfs": {"/w-noop": ""}}})),
            Some("/w-noop".into())
        );
        assert_eq!(
            way(json!({"HostConfig": {"Binds": [ours, "/tmp:/data", "/wx"]}})),
            None
        );
        assert_eq!(way(json!({"HostConfig": {"Binds": "odd"}})), None);
        assert_eq!(way(json!({})), None);
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

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const DOMAIN: &str = "weave.local.";

    fn dns() -> std::net::Ipv4Addr {
        "172.17.0.1".parse().unwrap()
    }

    #[test]
    fn dns_with_a_hostname() {
        let mut c = obj(json!({"Hostname": "pinger.weave.local", "HostConfig": {"Memory": 1}}));
        assert_eq!(set_dns(&mut c, Some("named"), dns(), DOMAIN), None);
        assert_eq!(
            c["Hostname"],
            json!("pinger.weave.local"),
            "a given hostname wins"
        );
        assert!(c.get("Domainname").is_none());
        assert_eq!(c["HostConfig"]["Dns"], json!(["172.17.0.1"]));
        assert_eq!(c["HostConfig"]["DnsSearch"], json!(["."]));
        assert_eq!(c["HostConfig"]["Memory"], json!(1));
    }

    #[test]
    fn dns_from_the_container_name() {
        let mut c = obj(json!({"Hostname": "", "Domainname": ""}));
        assert_eq!(set_dns(&mut c, Some("seeone"), dns(), DOMAIN), None);
        assert_eq!(c["Hostname"], json!("seeone"));
        assert_eq!(c["Domainname"], json!("weave.local"));
        assert_eq!(c["HostConfig"]["DnsSearch"], json!(["weave.local."]));
        // 64 characters in all is still a host name; 65 is not.
        let fits = "a".repeat(64 - 1 - "weave.local".len());
        let mut c = obj(json!({}));
        assert_eq!(set_dns(&mut c, Some(&fits), dns(), DOMAIN), None);
        assert_eq!(c["Hostname"], json!(fits));
        let long = format!("{fits}b");
        let mut c = obj(json!({}));
        let w = set_dns(&mut c, Some(&long), dns(), DOMAIN).expect("a warning");
        assert!(w.contains("too long"), "{w}");
        assert!(c.get("Hostname").is_none() && c.get("Domainname").is_none());
        assert_eq!(c["HostConfig"]["Dns"], json!(["172.17.0.1"]));
        assert_eq!(c["HostConfig"]["DnsSearch"], json!(["weave.local."]));
    }

    #[test]
    fn dns_without_names() {
        let mut c = obj(json!({"HostConfig": null}));
        assert_eq!(set_dns(&mut c, None, dns(), DOMAIN), None);
        assert!(c.get("Hostname").is_none());
        assert_eq!(c["HostConfig"]["DnsSearch"], json!(["weave.local."]));
    }

    #[test]
    fn dns_settings_of_the_user_are_kept() {
        let mut c = obj(json!({"HostConfig": {"Dns": ["10.0.0.53"], "DnsSearch": ["corp"]}}));
        set_dns(&mut c, Some("x"), dns(), DOMAIN);
        assert_eq!(c["HostConfig"]["Dns"], json!(["10.0.0.53"]));
        assert_eq!(c["HostConfig"]["DnsSearch"], json!(["corp"]));
        // Empty lists and nulls are no settings.
        let mut c = obj(json!({"HostConfig": {"Dns": [], "DnsSearch": null}}));
        set_dns(&mut c, None, dns(), DOMAIN);
        assert_eq!(c["HostConfig"]["Dns"], json!(["172.17.0.1"]));
        // A domain name without a host name is the user's too.
        let mut c = obj(json!({"Domainname": "corp.example"}));
        set_dns(&mut c, Some("x"), dns(), DOMAIN);
        assert!(c.get("Hostname").is_none());
    }

    #[test]
    fn names_from_the_query() {
        assert_eq!(container_name(Some("name=a%2Db")).as_deref(), Some("a-b"));
        assert_eq!(
            container_name(Some("platform=x&name=/c")).as_deref(),
            Some("c")
        );
        assert_eq!(container_name(Some("name=")), None);
        assert_eq!(container_name(None), None);
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
