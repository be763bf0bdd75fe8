//! dockerd's environment: the proxy keys of `rancher.network` and the
//! entries of `rancher.docker.environment`.

use std::collections::BTreeMap;

use config::model::{EngineConfig, NetworkConfig};

use crate::error::{Error, Result};

/// The service name that `SERVICE/NAME` keys of `rancher.environment` must
/// carry to apply to User Docker.
pub const SERVICE: &str = "docker";

/// The variables added to dockerd's environment, in order; a name given
/// twice keeps its last value, at its last place.
///
/// First the proxies (`HTTP_PROXY` and `http_proxy` from
/// `rancher.network.http_proxy`, and the same for `https_proxy` and
/// `no_proxy`: dockerd reads them when pulling), then `exported` (the
/// options file's `export` lines), then `rancher.docker.environment`:
/// `NAME=value` as it is, `NAME` and `PREFIX*` looked up in
/// `rancher.environment` (`vars`, as `config::environment::variables` gives
/// it) by `config::environment::lookup`, the rule of every other service.
pub fn environment(
    docker: &EngineConfig,
    network: &NetworkConfig,
    exported: &[(String, String)],
    vars: &BTreeMap<String, String>,
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
                let found = config::environment::lookup(vars, SERVICE, entry);
                if found.is_empty() {
                    tracing::debug!("{entry} is not in rancher.environment: left out");
                }
                for (name, value) in found {
                    add(&mut out, name.to_string(), value.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(yaml: &str) -> BTreeMap<String, String> {
        let values: BTreeMap<String, config::Value> = serde_norway::from_str(yaml).unwrap();
        config::environment::variables(&values).0
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
    fn a_service_key_for_docker_wins_and_another_services_does_not_reach_it() {
        let vars = vars(
            "
HTTPS_PROXY: http://all:3129
docker/HTTPS_PROXY: http://docker:3129
console/HTTP_EXTRA: for-the-console
",
        );
        let docker = EngineConfig {
            environment: vec!["HTTPS_PROXY".into(), "*".into()],
            ..Default::default()
        };
        let env = environment(&docker, &NetworkConfig::default(), &[], &vars).unwrap();
        assert_eq!(pairs(&env), ["HTTPS_PROXY=http://docker:3129"]);
    }

    #[test]
    fn an_entry_without_a_name_is_an_error() {
        let docker = EngineConfig {
            environment: vec!["=x".into()],
            ..Default::default()
        };
        let err = environment(&docker, &NetworkConfig::default(), &[], &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("rancher.docker.environment: expected NAME=value"));
    }
}
