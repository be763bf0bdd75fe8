//! The config as a YAML value tree, addressed by dotted keys.
//!
//! The tree is the source of truth: keys OxOS does not know (yet) are kept as
//! they are and written back unchanged, so a cloud-config written for a newer
//! RancherOS or BurmillaOS release survives `ros config set` and `merge`.
//! Typed views ([`crate::model`]) are read from the tree when needed.

use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};

/// A cloud-config document (or the merge of several), as a YAML mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    root: Mapping,
}

/// The YAML kind of a value, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

/// Splits a dotted key ("rancher.network.dns") into its parts.
pub fn split_key(key: &str) -> Result<Vec<&str>> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            key: key.to_owned(),
            reason: "the key is empty".to_owned(),
        });
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::InvalidKey {
            key: key.to_owned(),
            reason: "a part between dots is empty".to_owned(),
        });
    }
    Ok(parts)
}

impl Config {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a YAML document. `file` names it in errors. An empty document
    /// (or one that holds only comments, such as `#cloud-config`) is an empty
    /// config.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let value: Value = serde_norway::from_str(text).map_err(|e| match e.location() {
            Some(loc) => Error::Syntax {
                file: file.to_owned(),
                line: loc.line(),
                column: loc.column(),
                message: strip_position(&e.to_string()),
            },
            None => Error::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            },
        })?;
        Self::from_value(value, file)
    }

    /// Wraps a parsed value; it must be a mapping (or null, an empty config).
    pub fn from_value(value: Value, file: &Path) -> Result<Self> {
        match value {
            Value::Null => Ok(Self::new()),
            Value::Mapping(root) => Ok(Self { root }),
            other => Err(Error::TopLevelNotMapping {
                file: file.to_owned(),
                kind: kind(&other),
            }),
        }
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The whole tree.
    pub fn as_mapping(&self) -> &Mapping {
        &self.root
    }

    /// The whole tree, to change in ways dotted keys cannot express.
    pub fn as_mapping_mut(&mut self) -> &mut Mapping {
        &mut self.root
    }

    /// The whole tree as a value.
    pub fn to_value(&self) -> Value {
        Value::Mapping(self.root.clone())
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// The value at a dotted key, if any.
    pub fn get(&self, key: &str) -> Result<Option<&Value>> {
        let parts = split_key(key)?;
        let mut map = &self.root;
        let (last, parents) = parts
            .split_last()
            .expect("split_key returns at least one part");
        for part in parents {
            match map.get(*part) {
                Some(Value::Mapping(m)) => map = m,
                _ => return Ok(None),
            }
        }
        Ok(map.get(*last))
    }

    /// Sets the value at a dotted key, creating the mappings on the way.
    /// A value on the way that is not a mapping is an error (it is not
    /// replaced silently); a null on the way becomes a mapping.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let parts = split_key(key)?;
        let (last, parents) = parts
            .split_last()
            .expect("split_key returns at least one part");
        let mut map = &mut self.root;
        for (i, part) in parents.iter().enumerate() {
            let slot = map
                .entry(Value::String((*part).to_owned()))
                .or_insert(Value::Null);
            if slot.is_null() {
                *slot = Value::Mapping(Mapping::new());
            }
            map = match slot {
                Value::Mapping(m) => m,
                other => {
                    return Err(Error::NotAMapping {
                        key: key.to_owned(),
                        parent: parts[..=i].join("."),
                        kind: kind(other),
                    })
                }
            };
        }
        map.insert(Value::String((*last).to_owned()), value);
        Ok(())
    }

    /// Removes the value at a dotted key and returns it.
    pub fn remove(&mut self, key: &str) -> Result<Option<Value>> {
        let parts = split_key(key)?;
        let (last, parents) = parts
            .split_last()
            .expect("split_key returns at least one part");
        let mut map = &mut self.root;
        for part in parents {
            match map.get_mut(*part) {
                Some(Value::Mapping(m)) => map = m,
                _ => return Ok(None),
            }
        }
        Ok(map.shift_remove(*last))
    }

    /// Merges `later` over `self`: mappings merge key by key, all the way
    /// down; lists, scalars and nulls in `later` replace what was there.
    pub fn merge(&mut self, later: &Config) {
        merge_mappings(&mut self.root, &later.root);
    }

    /// A typed view of the tree, such as [`crate::model::CloudConfig`].
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        // Through text rather than `from_value`: the text deserializer names
        // the path of a wrong value ("rancher.ssh.port: invalid type ...").
        // An empty key (`services_include:`) is null in YAML and means "not
        // set", as it does for RancherOS: nulls in mappings are dropped so
        // that serde gives the field its default instead of an error.
        let mut pruned = self.root.clone();
        prune_nulls(&mut pruned);
        let text = if pruned.is_empty() {
            "{}".to_owned()
        } else {
            serde_norway::to_string(&pruned).map_err(|e| Error::Serialize(e.to_string()))?
        };
        let text = text.as_str();
        serde_norway::from_str(text).map_err(|e| Error::Typed(strip_position(&e.to_string())))
    }

    /// The config as YAML text.
    pub fn to_yaml(&self) -> Result<String> {
        if self.root.is_empty() {
            return Ok(String::new());
        }
        serde_norway::to_string(&self.root).map_err(|e| Error::Serialize(e.to_string()))
    }
}

fn prune_nulls(map: &mut Mapping) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Mapping(m) = v {
            prune_nulls(m);
        }
    }
}

fn merge_mappings(base: &mut Mapping, later: &Mapping) {
    for (k, v) in later {
        match (base.get_mut(k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(l)) => merge_mappings(b, l),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// serde_norway appends " at line L column C" to its messages; the position
/// is given separately, so it is cut here.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("test.yml")).unwrap()
    }

    #[test]
    fn get_and_set_by_dotted_key() {
        let mut c = cfg("rancher:\n  network:\n    dns:\n      nameservers: [8.8.8.8]\n");
        assert_eq!(
            c.get("rancher.network.dns.nameservers").unwrap(),
            Some(&Value::Sequence(vec![Value::String("8.8.8.8".into())]))
        );
        assert_eq!(c.get("rancher.network.missing").unwrap(), None);
        assert_eq!(c.get("rancher.network.dns.nameservers.x").unwrap(), None);
        c.set("rancher.console", Value::String("debian".into()))
            .unwrap();
        c.set("hostname", Value::String("box".into())).unwrap();
        assert_eq!(
            c.to_yaml().unwrap(),
            "rancher:\n  network:\n    dns:\n      nameservers:\n      - 8.8.8.8\n  console: debian\nhostname: box\n"
        );
    }

    #[test]
    fn set_refuses_to_go_through_a_scalar() {
        let mut c = cfg("rancher:\n  console: default\n");
        let err = c
            .set("rancher.console.name", Value::Bool(true))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot set rancher.console.name: rancher.console is a string, not a mapping"
        );
    }

    #[test]
    fn bad_keys_are_errors() {
        let c = Config::new();
        assert!(c.get("").is_err());
        assert!(c.get("rancher..x").is_err());
        assert!(c.get(".x").is_err());
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let text =
            "future_key:\n  nested: [1, 2]\nrancher:\n  not_known_yet: 3\n  console: default\n";
        let mut c = cfg(text);
        c.set("rancher.console", Value::String("debian".into()))
            .unwrap();
        let again = cfg(&c.to_yaml().unwrap());
        assert_eq!(
            again.get("future_key.nested").unwrap(),
            cfg("x: [1, 2]").get("x").unwrap()
        );
        assert_eq!(
            again.get("rancher.not_known_yet").unwrap(),
            Some(&Value::Number(3.into()))
        );
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_lists() {
        let mut a = cfg("rancher:\n  dns: [a, b]\n  keep: 1\n  over: 1\n");
        a.merge(&cfg("rancher:\n  dns: [c]\n  over: 2\n  new: 3\n"));
        assert_eq!(
            a,
            cfg("rancher:\n  dns: [c]\n  keep: 1\n  over: 2\n  new: 3\n")
        );
    }

    #[test]
    fn empty_document_is_empty_config_and_scalar_document_is_error() {
        assert!(cfg("#cloud-config\n").is_empty());
        let err = Config::parse("just a string", Path::new("x.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.yml: the top level of a cloud-config must be a mapping, found a string"
        );
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = Config::parse("a: 1\nb: [1, 2\n", Path::new("/x/c.yml")).unwrap_err();
        match &err {
            Error::Syntax { line, .. } => assert_eq!(*line, 3),
            other => panic!("not a syntax error: {other}"),
        }
        assert!(err.to_string().starts_with("/x/c.yml:3:"), "{err}");
    }
}
