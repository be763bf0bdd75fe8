//! dockerd's environment: the proxy keys of `rancher.network` and the
//! entries of `rancher.docker.environment`.

use std::collections::BTreeMap;

use config::model::{EngineConfig, NetworkConfig};
use config::Value;

use crate::error::{Error, Result};
use crate::flags::bad;

/// The service name that `SERVICE/NAME` keys of `rancher.environment` must
/// carry to apply to User Docker.
pub const SERVICE: &str = "docker";

/// The variables added to dockerd's environment, in order; a name given
/// twice keeps its last value, at its last place.
///
/// First the proxies (`HTTP_PROXY` and `http_proxy` from
/// `rancher.network.http_proxy`, and the same for `https_proxy` and
/// `no_proxy`: dockerd reads them when pulling), then `exported` (the
/// options file's `export` lines), then `rancher.docker.environment`: `NAME=value` as it is, `NAME` and `PREFIX*`
/// looked up in `rancher.environment` ([`lookup`]).
pub fn environment(
    docker: &EngineConfig,
    network: &NetworkConfig,
    exported: &[(String, String)],
    vars: &BTreeMap<String, Value>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (upper, value) in [
        ("HTTP_PROXY", &network.http_proxy),
        ("HTTPS_PROXY", &network.https_proxy),
        ("NO_PROXY", &network.no_proxy),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            add(&mut out, upper.to_string(), value.to_string());
            add(&mut out, upper.to_ascii_lowercase(), value.to_string());
        }
    }
    for (name, value) in exported {
        add(&mut out, name.clone(), value.clone());
    }
    for entry in &docker.environment {
        if entry.is_empty() {
            continue;
        }
        match entry.split_once('=') {
            Some(("", _)) => {
                return Err(Error::BadValue {
                    key: "rancher.docker.environment".into(),
                    expected: "NAME=value, NAME or PREFIX*",
                    found: format!("{entry:?}"),
                })
            }
            Some((name, value)) => add(&mut out, name.to_string(), value.to_string()),
            None => {
                let found = lookup(vars, SERVICE, entry)?;
                if found.is_empty() {
                    tracing::debug!("{entry} is not in rancher.environment: left out");
                }
                for (name, value) in found {
                    add(&mut out, name, value);
                }
            }
        }
    }
    Ok(out)
}

fn add(out: &mut Vec<(String, String)>, name: String, value: String) {
    out.retain(|(n, _)| *n != name);
    out.push((name, value));
}

/// The variables that `name` resolves to for `service` in
/// `rancher.environment` (`vars`), as the compose crate's
/// `Environment::lookup` does for every other service: `SERVICE/NAME` wins
/// over `NAME`; a name ending in `*` takes every variable with that prefix;
/// a name that is not found gives nothing.
///
/// Written here rather than taken from the compose crate: that crate brings
/// the engine client (bollard, tokio, reqwest) into a command that needs
/// none of it. Unlike it, a value that is a list or a mapping is an error
/// naming the key, rather than skipped.
pub fn lookup(
    vars: &BTreeMap<String, Value>,
    service: &str,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let scoped = format!("{service}/");
    for key in [format!("{scoped}{name}"), name.to_string()] {
        let mut found = Vec::new();
        if let Some(prefix) = key.strip_suffix('*') {
            // An unscoped glob does not reach into other services' keys.
            let wanted =
                |k: &str| k.starts_with(prefix) && (k.starts_with(&scoped) || !k.contains('/'));
            for (k, v) in vars.iter().filter(|(k, _)| wanted(k)) {
                if let Some(text) = text(k, v)? {
                    let short = k.rsplit('/').next().unwrap_or(k);
                    found.push((short.to_string(), text));
                }
            }
        } else if let Some(v) = vars.get(&key) {
            if let Some(text) = text(&key, v)? {
                found.push((name.to_string(), text));
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Ok(Vec::new())
}

/// A variable's value as text; `None` for null.
fn text(key: &str, value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(bad(
            &format!("rancher.environment.{key}"),
            "a string",
            other,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(yaml: &str) -> BTreeMap<String, Value> {
        serde_norway::from_str(yaml).unwrap()
    }

    fn pairs(list: &[(String, String)]) -> Vec<String> {
        list.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn proxies_come_in_both_cases() {
        let network = NetworkConfig {
            http_proxy: Some("http://proxy:3128".into()),
            https_proxy: Some("".into()),
            no_proxy: Some("localhost,127.0.0.1".into()),
            ..Default::default()
        };
        let env = environment(&EngineConfig::default(), &network, &[], &BTreeMap::new()).unwrap();
        assert_eq!(
            pairs(&env),
            [
                "HTTP_PROXY=http://proxy:3128",
                "http_proxy=http://proxy:3128",
                "NO_PROXY=localhost,127.0.0.1",
                "no_proxy=localhost,127.0.0.1",
            ]
        );
    }

    #[test]
    fn entries_are_kept_or_looked_up_with_globs_and_service_keys() {
        let vars = vars(
            "
HTTP_PROXY: http://all:3128
HTTPS_PROXY: http://all:3129
console/HTTP_EXTRA: not-for-docker
FLAG: true
EMPTY: ~
",
        );
        let docker = EngineConfig {
            environment: vec![
                "HTTP*".into(),
                "FLAG".into(),
                "MISSING".into(),
                "EMPTY".into(),
                "SET=a=b".into(),
                String::new(),
            ],
            ..Default::default()
        };
        let network = NetworkConfig {
            http_proxy: Some("http://net:3128".into()),
            ..Default::default()
        };
        let env = environment(&docker, &network, &[], &vars).unwrap();
        assert_eq!(
            pairs(&env),
            [
                "http_proxy=http://net:3128",
                // rancher.docker.environment wins over rancher.network.
                "HTTPS_PROXY=http://all:3129",
                "HTTP_PROXY=http://all:3128",
                "FLAG=true",
                "SET=a=b",
            ]
        );
    }

    #[test]
    fn service_keys_win_over_plain_ones() {
        let vars = vars(
            "
HTTPS_PROXY: http://all:3129
HTTP_PROXY: http://all:3128
docker/HTTPS_PROXY: http://docker:3129
console/HTTP_EXTRA: for-the-console
",
        );
        let one = |service, name| pairs(&lookup(&vars, service, name).unwrap());
        assert_eq!(
            one("docker", "HTTPS_PROXY"),
            ["HTTPS_PROXY=http://docker:3129"]
        );
        assert_eq!(one("ntp", "HTTPS_PROXY"), ["HTTPS_PROXY=http://all:3129"]);
        // A glob that matches service keys takes only those, as compose does.
        assert_eq!(one("docker", "HTTP*"), ["HTTPS_PROXY=http://docker:3129"]);
        // Another service's keys are not reached by a plain glob.
        assert_eq!(
            one("ntp", "HTTP*"),
            ["HTTPS_PROXY=http://all:3129", "HTTP_PROXY=http://all:3128"]
        );
        assert_eq!(one("console", "HTTP_E*"), ["HTTP_EXTRA=for-the-console"]);
    }

    #[test]
    fn a_variable_that_is_not_a_scalar_is_an_error_naming_it() {
        let vars = vars("LIST: [a, b]");
        let docker = EngineConfig {
            environment: vec!["LIST".into()],
            ..Default::default()
        };
        let err = environment(&docker, &NetworkConfig::default(), &[], &vars)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "rancher.environment.LIST: expected a string, found a list"
        );
        let docker = EngineConfig {
            environment: vec!["=x".into()],
            ..Default::default()
        };
        let err = environment(&docker, &NetworkConfig::default(), &[], &vars)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rancher.docker.environment: expected NAME=value"));
    }
}
