//! Keeps the deployment examples honest: the Kubernetes manifests in `examples/kubernetes/` (and
//! `fleet/`), the `proxy.yaml` embedded in their ConfigMaps and the `Dockerfile` must agree with each
//! other, so a change to one (a port, a path, a secret key) that is not carried to the others fails here.
//!
//! What is checked, for every Deployment that runs the proxy:
//! - it is a native sidecar (an init container with `restartPolicy: Always`);
//! - the config file (`--config` argument, else `ZOHO_PROXY_CONFIG`, else the image's default) is a
//!   mounted ConfigMap key, and its `proxy.yaml` parses;
//! - startup and readiness probes hit `/readyz`, the liveness probe `/healthz`, all on the port of
//!   `admin.listen`, which must not be a loopback address (kubelet probes connect to the pod IP);
//! - the proxy listener stays on loopback unless `allow_remote_clients: true`;
//! - every `zoho.*_file` path lies in a mounted Secret/ConfigMap volume, under an item whose key exists;
//! - secrets are never inline in the ConfigMap, and every `${VAR}` it uses is set in the container's
//!   environment, from Secret keys that exist;
//! - a file token store sits on a writable volume; a `redis://` store names a Service of the bundle;
//!   a `redis+sentinel://` store (`fleet-sentinel/`, Redis from the Bitnami chart, which is not part
//!   of the bundle) names a master and the chart's sentinels on 26379, its password files come from
//!   the chart's Secret, and a NetworkPolicy lets the proxy's pods reach 6379 and 26379;
//! - hardening (non-root, read-only root filesystem, no privilege escalation, all capabilities dropped,
//!   a memory limit) and a termination grace period longer than `shutdown.grace + shutdown.delay`.
//!
//! Each check is also run against deliberately broken copies of the manifests (`MUTATIONS`), so a
//! checker that stopped checking fails too. This file must not start processes or touch the network;
//! it reads the files only and does not use the proxy's own config parser (the examples document the
//! contract independently of it).

use serde_yaml::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The container name and image fragment that identify the proxy in a pod spec.
const PROXY: &str = "zoho-auth-proxy";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_path(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of every file, in file order (multi-document YAML).
fn load_docs(rel_files: &[String]) -> Vec<Value> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for rel in rel_files {
        let text = read(rel);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("parsing {rel}: {e}"));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

/// The `*.yaml` files directly in `dir` (relative to the repository), sorted.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(repo_path(dir))
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    files
}

/// The sets of manifests applied together: the single-pod example, and the fleet (which reuses the
/// top-level Secret).
fn bundles() -> Vec<(&'static str, Vec<Value>)> {
    let single = yaml_files("examples/kubernetes");
    let mut fleet = yaml_files("examples/kubernetes/fleet");
    fleet.push("examples/kubernetes/secret.yaml".to_owned());
    let mut sentinel = yaml_files("examples/kubernetes/fleet-sentinel");
    sentinel.push("examples/kubernetes/secret.yaml".to_owned());
    vec![
        ("examples/kubernetes", load_docs(&single)),
        ("examples/kubernetes/fleet", load_docs(&fleet)),
        ("examples/kubernetes/fleet-sentinel", load_docs(&sentinel)),
    ]
}

/// Facts read from the Dockerfile that the manifests rely on.
#[derive(Debug)]
struct Image {
    config_env: String,
    exposed: Vec<u16>,
    volumes: Vec<String>,
    user: Option<i64>,
}

fn dockerfile() -> Image {
    let text = read("Dockerfile");
    let mut image = Image {
        config_env: String::new(),
        exposed: Vec::new(),
        volumes: Vec::new(),
        user: None,
    };
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            if let Some(value) = rest.trim().strip_prefix("ZOHO_PROXY_CONFIG=") {
                image.config_env = value.trim_matches('"').to_owned();
            }
        } else if let Some(rest) = line.strip_prefix("EXPOSE ") {
            image.exposed.extend(
                rest.split_whitespace()
                    .filter_map(|p| p.split('/').next()?.parse::<u16>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("VOLUME ") {
            let list: Vec<String> = serde_json::from_str(rest)
                .unwrap_or_else(|e| panic!("Dockerfile VOLUME must be a JSON array: {e}"));
            image.volumes.extend(list);
        } else if let Some(rest) = line.strip_prefix("USER ") {
            image.user = rest.split(':').next().and_then(|uid| uid.parse().ok());
        }
    }
    image
}

// ------------------------------------------------------------------------------------------------
// Small readers over serde_yaml values.

fn str_at(v: &Value) -> Option<&str> {
    v.as_str()
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("<unnamed>")
}

fn find_doc<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

/// `host:port`, `[v6]:port`; `None` for Unix sockets or garbage.
fn split_listen(addr: &str) -> Option<(String, u16)> {
    if addr.starts_with("unix:") {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// `20s`, `500ms`, `1m`, `0s` (the subset the examples use).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// The `${VAR}` names used in a text.
fn env_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                refs.push(after[..end].to_owned());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    refs
}

// ------------------------------------------------------------------------------------------------
// The checker.

/// Where a file path inside the container comes from: a key of a ConfigMap or Secret.
struct MountedKey<'a> {
    kind: &'static str,
    resource: String,
    key: String,
    mount: &'a Value,
    volume: &'a Value,
}

/// The volume mount that holds `path` in `container`, resolved to a ConfigMap/Secret key when the
/// volume is one of those (for other volumes `kind` is the volume type and `key` is the relative path).
fn resolve_mount<'a>(
    pod: &'a Value,
    container: &'a Value,
    path: &str,
) -> Result<MountedKey<'a>, String> {
    let mount = seq(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let mp = m["mountPath"].as_str().unwrap_or("").trim_end_matches('/');
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
        .ok_or_else(|| format!("no volumeMount contains {path}"))?;
    let mount_path = mount["mountPath"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/');
    let rel = match mount["subPath"].as_str() {
        Some(sub) if path == mount_path => sub.to_owned(),
        _ => path
            .strip_prefix(mount_path)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned(),
    };
    let volume_name = mount["name"].as_str().unwrap_or("");
    let volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(volume_name))
        .ok_or_else(|| format!("volumeMount {volume_name} has no volume of that name"))?;
    let (kind, source, resource) = if !volume["configMap"].is_null() {
        let cm = &volume["configMap"];
        ("ConfigMap", cm, cm["name"].as_str().unwrap_or(""))
    } else if !volume["secret"].is_null() {
        let s = &volume["secret"];
        ("Secret", s, s["secretName"].as_str().unwrap_or(""))
    } else if !volume["emptyDir"].is_null() {
        ("emptyDir", &Value::Null, "")
    } else if !volume["persistentVolumeClaim"].is_null() {
        ("persistentVolumeClaim", &Value::Null, "")
    } else {
        ("other", &Value::Null, "")
    };
    let key = if source.is_null() || seq(&source["items"]).is_empty() {
        rel.clone()
    } else {
        seq(&source["items"])
            .iter()
            .find(|item| item["path"].as_str() == Some(rel.as_str()))
            .and_then(|item| item["key"].as_str())
            .ok_or_else(|| {
                format!(
                    "{path}: volume {volume_name} ({kind} {resource}) has no item with path {rel}"
                )
            })?
            .to_owned()
    };
    Ok(MountedKey {
        kind,
        resource: resource.to_owned(),
        key,
        mount,
        volume,
    })
}

/// The string value of `key` in a ConfigMap (`data`) or Secret (`data` or `stringData`).
fn resource_key<'a>(docs: &'a [Value], kind: &str, name: &str, key: &str) -> Option<&'a Value> {
    let doc = find_doc(docs, kind, name)?;
    ["data", "stringData"]
        .iter()
        .map(|field| &doc[*field][key])
        .find(|v| !v.is_null())
}

/// The port number a probe's `port` (number or container port name) stands for.
fn probe_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = port.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// Where the container reads its config from: `--config` wins over `ZOHO_PROXY_CONFIG`, which
/// wins over the image's default.
fn config_path(container: &Value, image: &Image, problems: &mut Vec<String>, at: &str) -> String {
    let args: Vec<&str> = seq(&container["command"])
        .iter()
        .chain(seq(&container["args"]))
        .filter_map(str_at)
        .collect();
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(v) = arg.strip_prefix("--config=") {
            Some(v.to_owned())
        } else if *arg == "--config" {
            args.get(i + 1).map(|v| (*v).to_owned())
        } else {
            None
        }
    });
    let from_env = seq(&container["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some("ZOHO_PROXY_CONFIG"))
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned);
    if let (Some(a), Some(e)) = (&from_args, &from_env) {
        if a != e {
            problems.push(format!(
                "{at}: --config {a} and ZOHO_PROXY_CONFIG={e} disagree"
            ));
        }
    }
    from_args
        .or(from_env)
        .unwrap_or_else(|| image.config_env.clone())
}

fn check_probes(container: &Value, admin_port: u16, problems: &mut Vec<String>, at: &str) {
    for (probe, want) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            problems.push(format!("{at}: {probe} must be an httpGet probe on {want}"));
            continue;
        }
        let path = get["path"].as_str().unwrap_or("");
        if path != want {
            problems.push(format!("{at}: {probe} path is {path:?}, expected {want}"));
        }
        match probe_port(container, &get["port"]) {
            Some(p) if p == admin_port => {}
            other => problems.push(format!(
                "{at}: {probe} port {other:?} does not equal admin.listen port {admin_port}"
            )),
        }
        if let Some(scheme) = get["scheme"].as_str() {
            if scheme != "HTTP" {
                problems.push(format!(
                    "{at}: {probe} scheme {scheme}, the admin port is plain HTTP"
                ));
            }
        }
    }
}

fn check_hardening(
    pod: &Value,
    container: &Value,
    image: &Image,
    problems: &mut Vec<String>,
    at: &str,
) {
    let sc = &container["securityContext"];
    let pod_sc = &pod["securityContext"];
    let non_root = sc["runAsNonRoot"]
        .as_bool()
        .or(pod_sc["runAsNonRoot"].as_bool());
    if non_root != Some(true) {
        problems.push(format!("{at}: runAsNonRoot must be true"));
    }
    if sc["readOnlyRootFilesystem"].as_bool() != Some(true) {
        problems.push(format!("{at}: readOnlyRootFilesystem must be true"));
    }
    if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
        problems.push(format!("{at}: allowPrivilegeEscalation must be false"));
    }
    if !seq(&sc["capabilities"]["drop"])
        .iter()
        .any(|c| c.as_str() == Some("ALL"))
    {
        problems.push(format!("{at}: capabilities.drop must contain ALL"));
    }
    if container["resources"]["limits"]["memory"].is_null() {
        problems.push(format!("{at}: resources.limits.memory is missing"));
    }
    let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
    if let (Some(uid), Some(image_uid)) = (uid, image.user) {
        if uid != image_uid {
            problems.push(format!(
                "{at}: runAsUser {uid} differs from the image's USER {image_uid}"
            ));
        }
    }
}

/// Checks one proxy container of one Deployment against its embedded proxy.yaml.
fn check_proxy_container(
    docs: &[Value],
    deployment: &Value,
    container: &Value,
    image: &Image,
    problems: &mut Vec<String>,
) {
    let at = format!("Deployment {} container {}", name_of(deployment), PROXY);
    let at = at.as_str();
    let pod = &deployment["spec"]["template"]["spec"];

    // Config file → ConfigMap key → proxy.yaml.
    let path = config_path(container, image, problems, at);
    let config_text = match resolve_mount(pod, container, &path) {
        Ok(m) if m.kind == "ConfigMap" => {
            match resource_key(docs, "ConfigMap", &m.resource, &m.key).and_then(Value::as_str) {
                Some(text) => text.to_owned(),
                None => {
                    problems.push(format!(
                        "{at}: config {path} maps to ConfigMap {} key {}, which does not exist",
                        m.resource, m.key
                    ));
                    return;
                }
            }
        }
        Ok(m) => {
            problems.push(format!(
                "{at}: config {path} is on a {} volume, expected a ConfigMap",
                m.kind
            ));
            return;
        }
        Err(e) => {
            problems.push(format!("{at}: config file: {e}"));
            return;
        }
    };
    let config: Value = match serde_yaml::from_str(&config_text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{at}: embedded proxy.yaml does not parse: {e}"));
            return;
        }
    };

    // Listeners and probes.
    let listen = config["listen"].as_str().unwrap_or("");
    if let Some((host, _)) = split_listen(listen) {
        if !is_loopback(&host) && config["allow_remote_clients"].as_bool() != Some(true) {
            problems.push(format!(
                "{at}: listen {listen} is not loopback and allow_remote_clients is not true"
            ));
        }
    } else if !listen.starts_with("unix:") {
        problems.push(format!(
            "{at}: listen {listen:?} is neither host:port nor unix:PATH"
        ));
    }
    let admin = config["admin"]["listen"].as_str().unwrap_or("");
    match split_listen(admin) {
        Some((host, port)) => {
            if is_loopback(&host) {
                problems.push(format!(
                    "{at}: admin.listen {admin} is loopback; kubelet probes connect to the pod IP"
                ));
            }
            check_probes(container, port, problems, at);
        }
        None => problems.push(format!("{at}: admin.listen {admin:?} must be host:port")),
    }

    // Credentials: files from mounted keys, never inline.
    let zoho = &config["zoho"];
    for inline in ["client_secret", "refresh_token"] {
        if let Some(v) = zoho[inline].as_str() {
            if env_refs(v).is_empty() {
                problems.push(format!(
                    "{at}: zoho.{inline} is written inline in the ConfigMap"
                ));
            }
        }
    }
    for file_key in ["client_secret_file", "refresh_token_file"] {
        if zoho[file_key].is_null() && zoho[file_key.trim_end_matches("_file")].is_null() {
            problems.push(format!(
                "{at}: zoho.{file_key} (or its inline form) is missing"
            ));
        }
    }
    if let Some(map) = zoho.as_mapping() {
        for (key, value) in map {
            let (Some(key), Some(file)) = (key.as_str(), value.as_str()) else {
                continue;
            };
            if !key.ends_with("_file") {
                continue;
            }
            match resolve_mount(pod, container, file) {
                Ok(m) if m.kind == "Secret" || m.kind == "ConfigMap" => {
                    if resource_key(docs, m.kind, &m.resource, &m.key).is_none() {
                        problems.push(format!(
                            "{at}: zoho.{key} {file} maps to {} {} key {}, which does not exist",
                            m.kind, m.resource, m.key
                        ));
                    }
                }
                Ok(m) => problems.push(format!(
                    "{at}: zoho.{key} {file} is on a {} volume, expected a Secret",
                    m.kind
                )),
                Err(e) => problems.push(format!("{at}: zoho.{key}: {e}")),
            }
        }
    }

    // Environment interpolation.
    let env = seq(&container["env"]);
    for var in env_refs(&config_text) {
        let Some(entry) = env
            .iter()
            .find(|e| e["name"].as_str() == Some(var.as_str()))
        else {
            problems.push(format!(
                "{at}: proxy.yaml uses ${{{var}}}, which the container env does not set"
            ));
            continue;
        };
        for (field, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
            let r = &entry["valueFrom"][field];
            if r.is_null() {
                continue;
            }
            let (name, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            if resource_key(docs, kind, name, key).is_none() {
                problems.push(format!(
                    "{at}: env {var} refers to {kind} {name} key {key}, which does not exist"
                ));
            }
        }
    }

    // Token store.
    let store = config["token"]["store"].as_str().unwrap_or("");
    if let Some(rest) = store
        .strip_prefix("redis://")
        .or_else(|| store.strip_prefix("rediss://"))
    {
        let authority = rest.split('/').next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u64>().unwrap_or(0)),
            None => (hostport, 6379),
        };
        let service_name = host.split('.').next().unwrap_or("");
        match find_doc(docs, "Service", service_name) {
            Some(svc)
                if seq(&svc["spec"]["ports"])
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(port)) => {}
            Some(_) => problems.push(format!(
                "{at}: token.store {store}: Service {service_name} has no port {port}"
            )),
            None => problems.push(format!(
                "{at}: token.store {store}: no Service {service_name} in this bundle"
            )),
        }
    } else if let Some(rest) = store
        .strip_prefix("redis+sentinel://")
        .or_else(|| store.strip_prefix("rediss+sentinel://"))
    {
        check_sentinel_store(docs, deployment, &config, rest, problems, at);
    } else if store.starts_with('/') {
        let dir = store.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        match resolve_mount(pod, container, store) {
            Ok(m)
                if (m.kind == "emptyDir" || m.kind == "persistentVolumeClaim")
                    && m.mount["readOnly"].as_bool() != Some(true) =>
            {
                if m.kind == "emptyDir" && m.volume["emptyDir"]["medium"].as_str() != Some("Memory")
                {
                    problems.push(format!("{at}: token store emptyDir should be medium: Memory (tokens stay off node disks)"));
                }
            }
            Ok(m) => problems.push(format!(
                "{at}: token.store {store} is on a read-only or {} volume; it needs a writable one",
                m.kind
            )),
            Err(e) => problems.push(format!(
                "{at}: token.store directory {dir} is not writable (read-only root filesystem): {e}"
            )),
        }
        if !image.volumes.iter().any(|v| v.trim_end_matches('/') == dir) {
            problems.push(format!(
                "{at}: token.store directory {dir} is not a VOLUME of the Dockerfile ({:?})",
                image.volumes
            ));
        }
    } else {
        problems.push(format!(
            "{at}: token.store {store:?} is neither a path nor a redis:// or redis+sentinel:// URL"
        ));
    }

    // Shutdown must fit in the pod's grace period.
    let grace = parse_duration(config["shutdown"]["grace"].as_str().unwrap_or("0s"));
    let delay = parse_duration(config["shutdown"]["delay"].as_str().unwrap_or("0s"));
    let pod_grace =
        Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
    match (grace, delay) {
        (Some(g), Some(d)) if g + d < pod_grace => {}
        (Some(g), Some(d)) => problems.push(format!(
            "{at}: shutdown.grace {g:?} + delay {d:?} does not fit in terminationGracePeriodSeconds {pod_grace:?}"
        )),
        _ => problems.push(format!("{at}: shutdown.grace/delay do not parse")),
    }

    // The image exposes what the config listens on.
    for addr in [listen, admin] {
        if let Some((_, port)) = split_listen(addr) {
            if !image.exposed.contains(&port) {
                problems.push(format!(
                    "{at}: port {port} ({addr}) is not EXPOSEd by the Dockerfile"
                ));
            }
        }
    }

    check_hardening(pod, container, image, problems, at);
}

/// The Bitnami chart's Redis release a host name belongs to: `R` (its Service) or
/// `R-node-N.R-headless[.namespace…]` (one pod's sentinel).
fn bitnami_release(host: &str) -> Option<String> {
    let mut labels = host.split('.');
    let first = labels.next()?;
    match labels.next() {
        None => Some(first.to_owned()),
        Some(headless) => {
            let release = headless.strip_suffix("-headless")?;
            let (r, n) = first.rsplit_once("-node-")?;
            (r == release && n.parse::<u32>().is_ok()).then(|| release.to_owned())
        }
    }
}

/// `redis+sentinel://HOST:PORT[,…]/MASTER[/DB]` against a Bitnami-chart Redis (not in the bundle):
/// a master name, the chart's sentinel names on 26379, password files from the chart's Secret,
/// and a NetworkPolicy admitting the proxy's pods to 6379 and 26379 of the release's pods.
fn check_sentinel_store(
    docs: &[Value],
    deployment: &Value,
    config: &Value,
    rest: &str,
    problems: &mut Vec<String>,
    at: &str,
) {
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if path.split('/').next().unwrap_or("").is_empty() {
        problems.push(format!("{at}: token.store {rest}: names no master"));
    }
    let mut releases = Vec::new();
    for hostport in hosts.split(',') {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u64>().unwrap_or(0)),
            None => (hostport, 26379),
        };
        if port != 26379 {
            problems.push(format!(
                "{at}: token.store sentinel {host} port {port}: the chart's sentinels listen on 26379"
            ));
        }
        match bitnami_release(host) {
            Some(r) => releases.push(r),
            None => problems.push(format!(
                "{at}: token.store sentinel {host} is neither the chart's Service nor RELEASE-node-N.RELEASE-headless"
            )),
        }
    }
    releases.dedup();
    let [release] = releases.as_slice() else {
        problems.push(format!(
            "{at}: token.store sentinels belong to {releases:?}, expected one Helm release"
        ));
        return;
    };
    let pod = &deployment["spec"]["template"]["spec"];
    let container = seq(&pod["initContainers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(PROXY));
    for key in ["redis_password_file", "sentinel_password_file"] {
        let Some(file) = config["token"][key].as_str() else {
            continue;
        };
        match container.map(|c| resolve_mount(pod, c, file)) {
            Some(Ok(m)) if m.kind == "Secret" && m.resource == *release => {}
            Some(Ok(m)) => problems.push(format!(
                "{at}: token.{key} {file} maps to {} {}, expected the chart's Secret {release}",
                m.kind, m.resource
            )),
            Some(Err(e)) => problems.push(format!("{at}: token.{key}: {e}")),
            None => {}
        }
    }
    let labels = &pod_labels(deployment);
    let admitted = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("NetworkPolicy"))
        .filter(|d| {
            d["spec"]["podSelector"]["matchLabels"]
                .as_mapping()
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .flat_map(|d| seq(&d["spec"]["egress"]).to_vec())
        .filter(|rule| {
            seq(&rule["to"]).iter().any(|to| {
                to["podSelector"]["matchLabels"]["app.kubernetes.io/instance"].as_str()
                    == Some(release.as_str())
            })
        })
        .flat_map(|rule| seq(&rule["ports"]).to_vec())
        .filter_map(|p| p["port"].as_u64())
        .collect::<Vec<_>>();
    for port in [6379, 26379] {
        if !admitted.contains(&port) {
            problems.push(format!(
                "{at}: no NetworkPolicy lets the proxy's pods reach port {port} of Redis release {release}"
            ));
        }
    }
}

/// The labels of a Deployment's pods.
fn pod_labels(deployment: &Value) -> serde_yaml::Mapping {
    deployment["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .cloned()
        .unwrap_or_default()
}

/// Every inconsistency in one bundle of manifests; empty when all is well.
fn check_bundle(docs: &[Value], image: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let mut proxies = 0;
    for deployment in docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Deployment"))
    {
        let pod = &deployment["spec"]["template"]["spec"];
        let is_proxy = |c: &&Value| {
            c["name"].as_str() == Some(PROXY)
                || c["image"].as_str().is_some_and(|i| i.contains(PROXY))
        };
        for c in seq(&pod["containers"]).iter().filter(is_proxy) {
            problems.push(format!(
                "Deployment {}: {} is a regular container; make it a native sidecar (initContainers, restartPolicy: Always)",
                name_of(deployment),
                c["name"].as_str().unwrap_or("?")
            ));
        }
        for c in seq(&pod["initContainers"]).iter().filter(is_proxy) {
            proxies += 1;
            if c["restartPolicy"].as_str() != Some("Always") {
                problems.push(format!(
                    "Deployment {}: init container {PROXY} needs restartPolicy: Always to be a native sidecar",
                    name_of(deployment)
                ));
            }
            check_proxy_container(docs, deployment, c, image, &mut problems);
        }
    }
    if proxies == 0 {
        problems.push("no Deployment runs zoho-auth-proxy".to_owned());
    }
    problems
}

// ------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn examples_are_consistent() {
    let image = dockerfile();
    for (bundle, docs) in bundles() {
        let problems = check_bundle(&docs, &image);
        assert!(
            problems.is_empty(),
            "{bundle}: manifests, embedded proxy.yaml and Dockerfile must agree:\n  {}",
            problems.join("\n  ")
        );
    }
}

#[test]
fn dockerfile_config_env_is_where_the_examples_mount_it() {
    let image = dockerfile();
    assert_eq!(
        image.config_env, "/etc/zoho-auth-proxy/proxy.yaml",
        "Dockerfile ENV ZOHO_PROXY_CONFIG is the documented config location"
    );
    assert!(
        image.exposed.contains(&8080) && image.exposed.contains(&9901),
        "Dockerfile exposes 8080 and 9901"
    );
}

#[test]
fn example_secret_holds_only_obvious_placeholders() {
    let docs = load_docs(&["examples/kubernetes/secret.yaml".to_owned()]);
    let secret = find_doc(&docs, "Secret", "zoho-auth-proxy-credentials")
        .expect("secret.yaml defines Secret zoho-auth-proxy-credentials");
    assert!(
        secret["data"].is_null(),
        "secret.yaml uses stringData only, so its values stay reviewable"
    );
    let values = secret["stringData"]
        .as_mapping()
        .expect("secret.yaml has stringData");
    for key in ["client_id", "client_secret", "refresh_token"] {
        let value = values
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("secret.yaml has key {key}"));
        assert!(
            value.contains("REPLACE_ME"),
            "secret.yaml {key} is an obvious placeholder, got {value:?}"
        );
    }
}

/// Edits the embedded proxy.yaml of every ConfigMap in the bundle.
fn edit_config(docs: &mut [Value], edit: fn(&str) -> String) {
    for doc in docs
        .iter_mut()
        .filter(|d| d["kind"].as_str() == Some("ConfigMap"))
    {
        if let Some(text) = doc["data"]["proxy.yaml"].as_str() {
            let edited = edit(text);
            assert_ne!(edited, text, "mutation must change the embedded proxy.yaml");
            doc["data"]["proxy.yaml"] = Value::String(edited);
        }
    }
}

fn proxy_mut(docs: &mut [Value]) -> &mut Value {
    docs.iter_mut()
        .find(|d| {
            d["kind"].as_str() == Some("Deployment")
                && !seq(&d["spec"]["template"]["spec"]["initContainers"]).is_empty()
        })
        .map(|d| &mut d["spec"]["template"]["spec"]["initContainers"][0])
        .expect("bundle has a Deployment with the proxy sidecar")
}

fn pod_mut(docs: &mut [Value]) -> &mut Value {
    docs.iter_mut()
        .find(|d| {
            d["kind"].as_str() == Some("Deployment")
                && !seq(&d["spec"]["template"]["spec"]["initContainers"]).is_empty()
        })
        .map(|d| &mut d["spec"]["template"]["spec"])
        .expect("bundle has a Deployment with the proxy sidecar")
}

fn secret_mut(docs: &mut [Value]) -> &mut Value {
    docs.iter_mut()
        .find(|d| d["kind"].as_str() == Some("Secret"))
        .map(|d| &mut d["stringData"])
        .expect("bundle has the Secret")
}

fn remove_key(map: &mut Value, key: &str) {
    let removed = map.as_mapping_mut().and_then(|m| m.remove(key));
    assert!(removed.is_some(), "mutation removes existing key {key}");
}

type Mutation = (&'static str, fn(&mut Vec<Value>), &'static str);

/// Each drift, and a fragment of the problem it must produce. Applied to both bundles.
#[rustfmt::skip]
const MUTATIONS: &[Mutation] = &[
    ("readiness probe on another port", |d| proxy_mut(d)["readinessProbe"]["httpGet"]["port"] = Value::from(9902), "readinessProbe port"),
    ("startup probe path", |d| proxy_mut(d)["startupProbe"]["httpGet"]["path"] = Value::from("/healthz"), "startupProbe path"),
    ("readiness probe path", |d| proxy_mut(d)["readinessProbe"]["httpGet"]["path"] = Value::from("/ready"), "readinessProbe path"),
    ("liveness probe path", |d| proxy_mut(d)["livenessProbe"]["httpGet"]["path"] = Value::from("/readyz"), "livenessProbe path"),
    ("liveness probe removed", |d| remove_key(proxy_mut(d), "livenessProbe"), "livenessProbe must be"),
    ("named admin port renumbered", |d| proxy_mut(d)["ports"][0]["containerPort"] = Value::from(9000), "does not equal admin.listen port"),
    ("admin listen port changed", |d| edit_config(d, |t| t.replace("listen: 0.0.0.0:9901", "listen: 0.0.0.0:9911")), "does not equal admin.listen port 9911"),
    ("admin listen on loopback", |d| edit_config(d, |t| t.replace("listen: 0.0.0.0:9901", "listen: 127.0.0.1:9901")), "admin.listen 127.0.0.1:9901 is loopback"),
    ("proxy listen on all addresses", |d| edit_config(d, |t| t.replace("listen: 127.0.0.1:8080", "listen: 0.0.0.0:8080")), "allow_remote_clients"),
    ("secret key renamed", |d| { let s = secret_mut(d); let v = s["refresh_token"].clone(); remove_key(s, "refresh_token"); s["refresh-token"] = v; }, "key refresh_token, which does not exist"),
    ("client_secret_file path drifted", |d| edit_config(d, |t| t.replace("/run/secrets/zoho/client_secret", "/run/secrets/zoho/secret")), "no item with path secret"),
    ("secret mounted elsewhere", |d| proxy_mut(d)["volumeMounts"][1]["mountPath"] = Value::from("/var/run/secrets/zoho"), "no volumeMount contains /run/secrets/zoho"),
    ("secret item key renamed", |d| pod_mut(d)["volumes"][1]["secret"]["items"][0]["key"] = Value::from("clientSecret"), "key clientSecret, which does not exist"),
    ("secret written inline", |d| edit_config(d, |t| t.replace("client_secret_file: /run/secrets/zoho/client_secret", "client_secret: hunter2")), "written inline"),
    ("--config points elsewhere", |d| proxy_mut(d)["args"] = serde_yaml::from_str("[--config, /etc/proxy.yaml]").expect("literal YAML"), "config file: no volumeMount contains /etc/proxy.yaml"),
    ("config mount moved", |d| proxy_mut(d)["volumeMounts"][0]["mountPath"] = Value::from("/config"), "config file: no volumeMount"),
    ("ZOHO_PROXY_CONFIG disagrees with --config", |d| { proxy_mut(d)["env"].as_sequence_mut().expect("env is a list").push(serde_yaml::from_str("{name: ZOHO_PROXY_CONFIG, value: /etc/other.yaml}").expect("literal YAML")) }, "disagree"),
    ("configmap key renamed", |d| pod_mut(d)["volumes"][0]["configMap"]["items"][0]["key"] = Value::from("config.yaml"), "key config.yaml, which does not exist"),
    ("env var for ${ZOHO_CLIENT_ID} removed", |d| proxy_mut(d)["env"] = Value::Sequence(Vec::new()), "${ZOHO_CLIENT_ID}"),
    ("env secretKeyRef to a missing key", |d| proxy_mut(d)["env"][0]["valueFrom"]["secretKeyRef"]["key"] = Value::from("clientid"), "key clientid, which does not exist"),
    ("not a native sidecar", |d| remove_key(proxy_mut(d), "restartPolicy"), "restartPolicy: Always"),
    ("root filesystem writable", |d| proxy_mut(d)["securityContext"]["readOnlyRootFilesystem"] = Value::from(false), "readOnlyRootFilesystem"),
    ("capabilities kept", |d| remove_key(&mut proxy_mut(d)["securityContext"], "capabilities"), "capabilities.drop"),
    ("grace period too short", |d| pod_mut(d)["terminationGracePeriodSeconds"] = Value::from(20), "terminationGracePeriodSeconds"),
    ("memory limit dropped", |d| remove_key(&mut proxy_mut(d)["resources"], "limits"), "limits.memory"),
];

/// Mutations that only apply to one kind of bundle (file store vs Redis store).
#[rustfmt::skip]
const FILE_STORE_MUTATIONS: &[Mutation] = &[
    ("token store volume not mounted", |d| { let mounts = proxy_mut(d)["volumeMounts"].as_sequence_mut().expect("mounts"); mounts.retain(|m| m["name"].as_str() != Some("token-store")); }, "token.store directory /var/lib/zoho-auth-proxy is not writable"),
    ("token store path moved off the volume", |d| edit_config(d, |t| t.replace("store: /var/lib/zoho-auth-proxy/token.json", "store: /tmp/token.json")), "token.store directory /tmp"),
];
#[rustfmt::skip]
const REDIS_STORE_MUTATIONS: &[Mutation] = &[
    ("redis host renamed", |d| edit_config(d, |t| t.replace("redis://redis:6379/0", "redis://token-store:6379/0")), "no Service token-store"),
    ("redis port changed", |d| edit_config(d, |t| t.replace("redis://redis:6379/0", "redis://redis:6380/0")), "has no port 6380"),
];

#[rustfmt::skip]
const SENTINEL_STORE_MUTATIONS: &[Mutation] = &[
    ("sentinel port changed", |d| edit_config(d, |t| t.replace("redis-node-1.redis-headless:26379", "redis-node-1.redis-headless:6379")), "port 6379: the chart's sentinels listen on 26379"),
    ("master name dropped", |d| edit_config(d, |t| t.replace(":26379/mymaster/0", ":26379/")), "names no master"),
    ("sentinel of another release", |d| edit_config(d, |t| t.replace("redis-node-2.redis-headless", "cache-node-2.cache-headless")), "expected one Helm release"),
    ("password from another Secret", |d| pod_mut(d)["volumes"][2]["secret"]["secretName"] = Value::from("redis-auth"), "expected the chart's Secret redis"),
    ("sentinel port not admitted", |d| { let np = d.iter_mut().find(|x| x["kind"].as_str() == Some("NetworkPolicy")).expect("NetworkPolicy"); np["spec"]["egress"][0]["ports"].as_sequence_mut().expect("ports").retain(|p| p["port"].as_u64() != Some(26379)); }, "reach port 26379"),
];

#[test]
fn every_drift_is_caught() {
    let image = dockerfile();
    for (bundle, docs) in bundles() {
        let extra = if bundle.ends_with("fleet") {
            REDIS_STORE_MUTATIONS
        } else if bundle.ends_with("fleet-sentinel") {
            SENTINEL_STORE_MUTATIONS
        } else {
            FILE_STORE_MUTATIONS
        };
        for (what, mutate, expected) in MUTATIONS.iter().chain(extra) {
            let mut broken = docs.clone();
            mutate(&mut broken);
            let problems = check_bundle(&broken, &image);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{bundle}: mutation '{what}' must be reported with a problem containing {expected:?}; got {problems:#?}"
            );
        }
    }
}

/// A drift of the Dockerfile, and a fragment of the problem it must produce.
type ImageMutation = (&'static str, fn(&mut Image), &'static str);

#[test]
fn docker_drift_is_caught() {
    let (bundle, docs) = bundles().remove(0);
    let cases: [ImageMutation; 3] = [
        (
            "port not exposed",
            |i| i.exposed.retain(|p| *p != 9901),
            "not EXPOSEd",
        ),
        (
            "state volume moved",
            |i| i.volumes = vec!["/data".to_owned()],
            "not a VOLUME",
        ),
        (
            "image user changed",
            |i| i.user = Some(1000),
            "differs from the image's USER",
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut image = dockerfile();
        mutate(&mut image);
        let problems = check_bundle(&docs, &image);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{bundle}: Dockerfile drift '{what}' must be reported ({expected:?}); got {problems:#?}"
        );
    }
}

#[test]
fn helpers_parse_what_the_examples_use() {
    const LISTEN: &[(&str, Option<(&str, u16)>)] = &[
        ("127.0.0.1:8080", Some(("127.0.0.1", 8080))),
        ("0.0.0.0:9901", Some(("0.0.0.0", 9901))),
        ("[::1]:8080", Some(("::1", 8080))),
        ("unix:/run/zoho-auth-proxy/proxy.sock", None),
        ("no-port", None),
    ];
    for (input, want) in LISTEN {
        let got = split_listen(input);
        assert_eq!(
            got.as_ref().map(|(h, p)| (h.as_str(), *p)),
            *want,
            "split_listen({input:?})"
        );
    }
    const DURATIONS: &[(&str, Option<u64>)] = &[
        ("20s", Some(20_000)),
        ("0s", Some(0)),
        ("500ms", Some(500)),
        ("1m", Some(60_000)),
        ("20", None),
        ("s", None),
    ];
    for (input, want) in DURATIONS {
        assert_eq!(
            parse_duration(input).map(|d| d.as_millis() as u64),
            *want,
            "parse_duration({input:?})"
        );
    }
    assert_eq!(
        env_refs("a ${X} b ${Y_2}c ${"),
        vec!["X", "Y_2"],
        "env_refs finds every ${{VAR}}"
    );
    assert!(
        is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"),
        "loopback hosts"
    );
    assert!(
        !is_loopback("0.0.0.0") && !is_loopback("::"),
        "wildcard hosts are not loopback"
    );
}
