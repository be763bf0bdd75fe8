//! `rancher.environment`: the variables that services ask for by name.
//!
//! A service lists a variable without a value (`environment: [HTTP_PROXY]`)
//! to take it from `rancher.environment`; a name ending in `*` takes every
//! variable with that prefix (`HTTP*`). A key `SERVICE/NAME` applies to that
//! service only and wins over `NAME`; when the service's own keys match, the
//! plain ones are not looked at. A glob without a service never reaches
//! another service's keys. A name that is not found gives nothing. This is
//! RancherOS's `ConfigEnvironment.Lookup`, with the last rule added (there,
//! `*` alone also took `other/NAME` keys).
//!
//! The one rule for every caller: the system services started by compose
//! and User Docker's own environment (`rancher.docker.environment`).

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::tree::kind;

/// The variables of `rancher.environment` as text. A string, number or
/// boolean is its text; a null is no variable; a list or a mapping is left
/// out, and named in the second value ("rancher.environment.X: expected a
/// string, found a list; left out").
pub fn variables(vars: &BTreeMap<String, Value>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut text = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in vars {
        match value {
            Value::Null => {}
            Value::String(s) => {
                text.insert(name.clone(), s.clone());
            }
            Value::Bool(b) => {
                text.insert(name.clone(), b.to_string());
            }
            Value::Number(n) => {
                text.insert(name.clone(), n.to_string());
            }
            other => problems.push(format!(
                "rancher.environment.{name}: expected a string, found a {}; left out",
                kind(other)
            )),
        }
    }
    (text, problems)
}

/// The variables that `name` (a bare `NAME` or `PREFIX*` entry of a
/// service's environment) resolves to for `service`: pairs of the name the
/// service sees (without the `SERVICE/` part) and the value.
pub fn lookup<'a>(
    vars: &'a BTreeMap<String, String>,
    service: &str,
    name: &str,
) -> Vec<(&'a str, &'a str)> {
    let scoped = format!("{service}/");
    for key in [format!("{scoped}{name}"), name.to_string()] {
        let found: Vec<(&str, &str)> = match key.strip_suffix('*') {
            Some(prefix) => vars
                .iter()
                .filter(|(k, _)| {
                    k.starts_with(prefix) && (k.starts_with(&scoped) || !k.contains('/'))
                })
                .map(|(k, v)| (k.rsplit('/').next().unwrap_or(k), v.as_str()))
                .collect(),
            None => vars
                .get_key_value(&key)
                .map(|(k, v)| (k.rsplit('/').next().unwrap_or(k), v.as_str()))
                .into_iter()
                .collect(),
        };
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(yaml: &str) -> BTreeMap<String, String> {
        let values: BTreeMap<String, Value> = serde_norway::from_str(yaml).unwrap();
        let (text, problems) = variables(&values);
        assert!(problems.is_empty(), "{problems:?}");
        text
    }

    fn one(vars: &BTreeMap<String, String>, service: &str, name: &str) -> Vec<String> {
        lookup(vars, service, name)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn service_keys_win_over_plain_ones_and_globs_stay_in_their_service() {
        let vars = vars(
            "
HTTPS_PROXY: http://all:3129
HTTP_PROXY: http://all:3128
docker/HTTPS_PROXY: http://docker:3129
console/HTTP_EXTRA: for-the-console
",
        );
        assert_eq!(
            one(&vars, "docker", "HTTPS_PROXY"),
            ["HTTPS_PROXY=http://docker:3129"]
        );
        assert_eq!(
            one(&vars, "ntp", "HTTPS_PROXY"),
            ["HTTPS_PROXY=http://all:3129"]
        );
        // A glob that matches the service's own keys takes only those.
        assert_eq!(
            one(&vars, "docker", "HTTP*"),
            ["HTTPS_PROXY=http://docker:3129"]
        );
        // Another service's keys are not reached by a plain glob, not even `*`.
        assert_eq!(
            one(&vars, "ntp", "HTTP*"),
            ["HTTPS_PROXY=http://all:3129", "HTTP_PROXY=http://all:3128"]
        );
        assert_eq!(
            one(&vars, "ntp", "*"),
            ["HTTPS_PROXY=http://all:3129", "HTTP_PROXY=http://all:3128"]
        );
        assert_eq!(
            one(&vars, "console", "HTTP_E*"),
            ["HTTP_EXTRA=for-the-console"]
        );
        assert!(one(&vars, "ntp", "MISSING").is_empty());
    }

    #[test]
    fn scalars_are_text_null_is_nothing_and_lists_are_left_out_by_name() {
        let values: BTreeMap<String, Value> =
            serde_norway::from_str("FLAG: true\nN: 3\nEMPTY: ~\nLIST: [a, b]\nS: x\n").unwrap();
        let (text, problems) = variables(&values);
        assert_eq!(
            text.into_iter().collect::<Vec<_>>(),
            [
                ("FLAG".to_string(), "true".to_string()),
                ("N".to_string(), "3".to_string()),
                ("S".to_string(), "x".to_string()),
            ]
        );
        assert_eq!(
            problems,
            ["rancher.environment.LIST: expected a string, found a list; left out"]
        );
    }
}
