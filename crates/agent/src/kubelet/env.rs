//! A container's environment as the kubelet computes it: the Service variables
//! (`enableServiceLinks`, and always the `kubernetes` Service's), `envFrom`, `env` with
//! `valueFrom` and `$(VAR)` expansion, over the image's own ENV.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use thiserror::Error;

/// Why an environment could not be made (the container then waits with
/// CreateContainerConfigError).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    /// A referenced ConfigMap is missing.
    #[error("configmap \"{0}\" not found")]
    ConfigMapMissing(String),
    /// A referenced Secret is missing.
    #[error("secret \"{0}\" not found")]
    SecretMissing(String),
    /// A referenced key is missing.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyMissing {
        /// ConfigMap or Secret.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
}

/// ConfigMaps and Secrets (decoded) the container refers to, by name.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// ConfigMap name → data.
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded data.
    pub secrets: HashMap<String, BTreeMap<String, String>>,
}

/// Names of the ConfigMaps and Secrets a container's env and envFrom refer to.
pub fn referenced(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for ef in c.env_from.iter().flatten() {
        if let Some(r) = &ef.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &ef.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn env_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// The Docker-links style variables for Services (kubelet's `FromServices`): headless
/// and IP-less Services are skipped.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{name}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(first).to_ascii_lowercase(),
                first.port
            ),
        ));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_ascii_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_ascii_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_ascii_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Expands `$(VAR)` references with the variables defined so far; `$$` is a literal
/// `$`; unknown references stay as written (Kubernetes' expansion rules).
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let b = input.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A downward API field of the pod (`metadata.name`, `status.podIP`,
/// `metadata.labels['app']`...).
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let bracket = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(String::from)
    };
    if let Some(k) = bracket("metadata.labels['") {
        return Some(meta.labels.as_ref()?.get(&k)?.clone());
    }
    if let Some(k) = bracket("metadata.annotations['") {
        return Some(meta.annotations.as_ref()?.get(&k)?.clone());
    }
    let join = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "metadata.labels" => join(meta.labels.as_ref()),
        "metadata.annotations" => join(meta.annotations.as_ref()),
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" => status?.host_ip.clone()?,
        "status.hostIPs" => status?
            .host_ips
            .as_ref()?
            .iter()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        "status.podIP" => status?.pod_ip.clone()?,
        "status.podIPs" => status?
            .pod_ips
            .as_ref()?
            .iter()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        _ => return None,
    })
}

/// containerd's default `PATH` (`oci.defaultUnixEnv`), for images that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's full environment, `KEY=value`, image ENV first and overridden.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    image_env: &[String],
    service_vars: &[(String, String)],
    sources: &Sources,
) -> Result<Vec<String>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut HashMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for (k, v) in service_vars {
        set(&mut vars, k.clone(), v.clone());
    }
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut vars, format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut vars, format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretMissing(r.name.clone())),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_value(pod, &f.field_path).unwrap_or_default()
            } else if let Some(r) = &vf.config_map_key_ref {
                match sources.config_maps.get(&r.name).map(|d| d.get(&r.key)) {
                    Some(Some(v)) => v.clone(),
                    _ if r.optional == Some(true) => continue,
                    None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
                    Some(None) => {
                        return Err(EnvError::KeyMissing {
                            kind: "ConfigMap",
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else if let Some(r) = &vf.secret_key_ref {
                match sources.secrets.get(&r.name).map(|d| d.get(&r.key)) {
                    Some(Some(v)) => v.clone(),
                    _ if r.optional == Some(true) => continue,
                    None => return Err(EnvError::SecretMissing(r.name.clone())),
                    Some(None) => {
                        return Err(EnvError::KeyMissing {
                            kind: "Secret",
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                            key: r.key.clone(),
                        })
                    }
                }
            } else {
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or_default(), &vars)
        };
        set(&mut vars, e.name.clone(), value);
    }
    let mut out: Vec<String> = Vec::new();
    let mut from_image: Vec<(String, String)> = image_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    // An image without PATH gets containerd's default one (its default spec's, which
    // the image's environment then overrides): runtimes such as youki find even an
    // absolute command through it, and so do the container's own exec calls.
    if !from_image.iter().any(|(k, _)| k == "PATH") {
        from_image.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    for (k, v) in from_image.iter_mut() {
        if let Some(ours) = vars.remove(k.as_str()) {
            *v = ours;
        }
        out.push(format!("{k}={v}"));
    }
    for k in order {
        if let Some(v) = vars.remove(&k) {
            out.push(format!("{k}={v}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, ObjectFieldSelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_links() {
        let got = service_env(&[
            svc("httpd-svc", "10.110.212.171", &[(None, 8080)]),
            svc("headless", "None", &[(None, 1)]),
        ]);
        let text: Vec<String> = got.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text,
            vec![
                "HTTPD_SVC_SERVICE_HOST=10.110.212.171",
                "HTTPD_SVC_SERVICE_PORT=8080",
                "HTTPD_SVC_PORT=tcp://10.110.212.171:8080",
                "HTTPD_SVC_PORT_8080_TCP=tcp://10.110.212.171:8080",
                "HTTPD_SVC_PORT_8080_TCP_PROTO=tcp",
                "HTTPD_SVC_PORT_8080_TCP_PORT=8080",
                "HTTPD_SVC_PORT_8080_TCP_ADDR=10.110.212.171",
            ]
        );
        let k = service_env(&[svc("kubernetes", "10.96.0.1", &[(Some("https"), 443)])]);
        assert!(k.contains(&("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into())));
    }

    #[test]
    fn expansion() {
        let vars: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }

    #[test]
    fn env_overrides_image_and_reads_fields() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "PATH".into(),
                    value: Some("/x".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hi $(POD)".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let got = container_env(
            &pod,
            &c,
            &["PATH=/bin".into(), "HOME=/root".into()],
            &[("S_SERVICE_HOST".into(), "1.2.3.4".into())],
            &Sources::default(),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                "PATH=/x",
                "HOME=/root",
                "S_SERVICE_HOST=1.2.3.4",
                "POD=p",
                "GREETING=hi p"
            ]
        );
    }

    #[test]
    fn an_image_without_path_gets_containerds_default() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
        }))
        .unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "env": [{"name": "A", "value": "1"}],
        }))
        .unwrap();
        let got =
            container_env(&pod, &c, &["HOME=/root".into()], &[], &Sources::default()).unwrap();
        assert_eq!(
            got,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/root".into(),
                "A=1".into()
            ]
        );
        // A container's own PATH still wins.
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "env": [{"name": "PATH", "value": "/mine"}],
        }))
        .unwrap();
        let got = container_env(&pod, &c, &[], &[], &Sources::default()).unwrap();
        assert_eq!(got, vec!["PATH=/mine".to_string()]);
    }
}
