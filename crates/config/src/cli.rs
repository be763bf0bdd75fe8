//! `ros config`: read and change the cloud-config from the shell.
//!
//! Reading commands (`get`, `export --full`) see the merged config of every
//! layer; changing commands (`set`, `merge`) change only the user's file,
//! /var/lib/rancher/conf/cloud-config.yml, written atomically. Every path is
//! under `--root` (default `/`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_norway::Value;

use crate::error::{Error, Result};
use crate::layers::{self, Root, Selection};
use crate::tree::Config;
use crate::validate::{self, Severity};

const AFTER_HELP: &str = "\
The config is merged from, later wins:
  /usr/share/ros/os-config.yml            the OS's defaults
  /usr/share/ros/oem/oem-config.yml       the OEM partition
  /var/lib/rancher/conf/cloud-config.d/*  saved at boot (user-data, network), by name
  /var/lib/rancher/conf/cloud-config.yml  what `set` and `merge` write
  the kernel command line                 rancher.a.b=c and cc.a.b=c
  the args after `--` on the boot line    saved in cloud-config.d/init.yml
Mappings merge key by key; lists and scalars are replaced.

Examples:
  ros config get rancher.network.dns.nameservers
  ros config set rancher.network.dns.nameservers '[8.8.8.8,1.1.1.1]'
  ros config set rancher.docker.tls true
  echo 'hostname: box' | ros config merge
  ros config export --full
  ros config validate -i user-data.yml";

/// Read and change the OxOS cloud-config.
#[derive(Debug, Parser)]
#[command(name = "ros config", bin_name = "ros config", after_help = AFTER_HELP)]
struct Cli {
    /// Directory that every system path is relative to
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/",
        env = "ROS_ROOT"
    )]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the merged value of a dotted key (nothing if it is not set)
    ///
    /// Scalars print as they are, lists and mappings as YAML.
    Get {
        /// Dotted key, such as rancher.network.dns.nameservers
        key: String,
    },
    /// Set a key in /var/lib/rancher/conf/cloud-config.yml
    ///
    /// VALUE is YAML: `true` and `3` are a boolean and a number, `'3'` a
    /// string, `[a,b]` a list, `{a: 1}` a mapping; anything else a string.
    Set {
        /// Dotted key, such as rancher.docker.tls
        key: String,
        /// The value, as YAML
        value: String,
    },
    /// Merge a YAML document into /var/lib/rancher/conf/cloud-config.yml
    Merge {
        /// Read the document from FILE instead of standard input
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Print the config as YAML
    ///
    /// Without --full: the files written for this machine (OEM, cloud-config.d,
    /// cloud-config.yml). With --full: every layer, the OS's defaults and the
    /// kernel command line too. SSH host keys, passwords and TLS keys are left
    /// out unless --private is given.
    Export {
        /// Write to FILE instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Include SSH host keys, passwords and TLS private keys
        #[arg(long)]
        private: bool,
        /// Include the OS's defaults and the kernel command line
        #[arg(long)]
        full: bool,
    },
    /// Check a cloud-config: syntax, unknown keys, types, unimplemented keys
    ///
    /// Exits 1 if there is an error; notes (keys accepted but without effect)
    /// do not fail.
    Validate {
        /// Read the document from FILE instead of standard input
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// List the images of the services of the merged config, one a line
    ///
    /// The services of rancher.services, rancher.bootstrap and
    /// rancher.cloud_init_services, sorted, each image once: what an
    /// offline machine needs preloaded.
    Images,
    /// Generate a config (not supported yet)
    Generate,
}

/// The images named by the services of `config`, sorted and unique.
fn service_images(config: &Config) -> std::collections::BTreeSet<String> {
    let mut images = std::collections::BTreeSet::new();
    for section in [
        "rancher.services",
        "rancher.bootstrap",
        "rancher.cloud_init_services",
    ] {
        let Ok(Some(Value::Mapping(services))) = config.get(section) else {
            continue;
        };
        for service in services.values() {
            if let Some(Value::String(image)) = service.get("image") {
                images.insert(image.clone());
            }
        }
    }
    images
}

/// Keys that `export` leaves out unless `--private`; `*` matches any one key.
const PRIVATE_KEYS: &[&str] = &[
    "rancher.ssh.keys",
    "rancher.password",
    "rancher.docker.ca_key",
    "rancher.docker.server_key",
    "rancher.system_docker.ca_key",
    "rancher.system_docker.server_key",
    "rancher.bootstrap_docker.ca_key",
    "rancher.bootstrap_docker.server_key",
    "rancher.registry_auths.*.password",
    "rancher.registry_auths.*.auth",
    "rancher.registry_auths.*.identitytoken",
];

/// The standard streams, replaceable in tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// `ros config ARGS...` with the process's streams; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    run(
        args,
        &mut Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    )
}

/// `ros config ARGS...` (`ARGS[0]` is the command's name); returns the exit
/// code: 0 done, 1 failed, 2 bad usage.
pub fn run(args: Vec<OsString>, io: &mut Io<'_>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(io.stderr, "{text}");
                return 2;
            }
            let _ = write!(io.stdout, "{text}");
            return 0;
        }
    };
    match execute(cli, io) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.stderr, "ros config: {e}");
            1
        }
    }
}

fn execute(cli: Cli, io: &mut Io<'_>) -> Result<()> {
    let root = Root::new(cli.root);
    match cli.command {
        Command::Get { key } => {
            let merged = merged_warning_about_broken(&root, Selection::ALL, io)?;
            if let Some(finding) = validate::check_key(&key) {
                let _ = writeln!(io.stderr, "ros config: {finding}");
            }
            if let Some(value) = merged.get(&key)? {
                let text = render(value)?;
                io.stdout
                    .write_all(text.as_bytes())
                    .map_err(Error::Stdout)?;
            }
            Ok(())
        }
        Command::Set { key, value } => {
            let value = parse_value(&value);
            change(&root, io, |user| user.set(&key, value))
        }
        Command::Merge { input } => {
            let (text, name) = read_input(input.as_deref(), io)?;
            let doc = Config::parse(&text, &name)?;
            change(&root, io, |user| {
                user.merge(&doc);
                Ok(())
            })
        }
        Command::Export {
            output,
            private,
            full,
        } => {
            let which = if full {
                Selection::ALL
            } else {
                Selection {
                    os_defaults: false,
                    cmdline: false,
                }
            };
            let mut config = merged_warning_about_broken(&root, which, io)?;
            if !private {
                for key in PRIVATE_KEYS {
                    let parts: Vec<&str> = key.split('.').collect();
                    remove_pattern(config.as_mapping_mut(), &parts);
                }
            }
            let text = config.to_yaml()?;
            match output {
                Some(path) => layers::write_atomic(&path, &text),
                None => io.stdout.write_all(text.as_bytes()).map_err(Error::Stdout),
            }
        }
        Command::Validate { input } => {
            let (text, name) = read_input(input.as_deref(), io)?;
            let findings = validate::validate_text(&text, &name);
            let mut errors = 0;
            for finding in &findings {
                if finding.severity == Severity::Error {
                    errors += 1;
                }
                writeln!(io.stdout, "{finding}").map_err(Error::Stdout)?;
            }
            if errors > 0 {
                return Err(Error::Invalid(name.display().to_string(), errors));
            }
            Ok(())
        }
        Command::Images => {
            let merged = merged_warning_about_broken(&root, Selection::ALL, io)?;
            for image in service_images(&merged) {
                writeln!(io.stdout, "{image}").map_err(Error::Stdout)?;
            }
            Ok(())
        }
        Command::Generate => Err(Error::NotSupported("ros config generate")),
    }
}

/// A value given on the command line: YAML if it parses, else the text as a
/// string (so `a: b: c` is not an error but the string it looks like).
fn parse_value(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::String(String::new());
    }
    match serde_norway::from_str::<Value>(text) {
        // A comment alone ("#x") parses as null; only a written null is one.
        Ok(Value::Null) if !matches!(trimmed, "~" | "null" | "Null" | "NULL") => {
            Value::String(text.to_owned())
        }
        Ok(v) => v,
        Err(_) => Value::String(text.to_owned()),
    }
}

/// A value as `get` prints it.
fn render(value: &Value) -> Result<String> {
    Ok(match value {
        Value::Null => String::new(),
        Value::Bool(b) => format!("{b}\n"),
        Value::Number(n) => format!("{n}\n"),
        Value::String(s) => format!("{s}\n"),
        other => serde_norway::to_string(other).map_err(|e| Error::Serialize(e.to_string()))?,
    })
}

/// The merged config of the `which` layers; each layer left out because it
/// is not a valid cloud-config is named on standard error.
fn merged_warning_about_broken(root: &Root, which: Selection, io: &mut Io<'_>) -> Result<Config> {
    let (layers, broken) = layers::read_layers_reporting(root, which)?;
    for error in &broken {
        let _ = writeln!(
            io.stderr,
            "ros config: warning: {error}; this file is left out (ros config validate -i FILE)"
        );
    }
    Ok(layers::merge_layers(&layers))
}

fn read_input(input: Option<&Path>, io: &mut Io<'_>) -> Result<(String, PathBuf)> {
    match input {
        Some(path) if path != Path::new("-") => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
            Ok((text, path.to_owned()))
        }
        _ => {
            let mut text = String::new();
            io.stdin.read_to_string(&mut text).map_err(Error::Stdin)?;
            Ok((text, PathBuf::from("<stdin>")))
        }
    }
}

/// Loads the user's file, changes it, warns about what the change means,
/// and writes it back atomically.
fn change(
    root: &Root,
    io: &mut Io<'_>,
    edit: impl FnOnce(&mut Config) -> Result<()>,
) -> Result<()> {
    let path = root.cloud_config();
    let mut user = match std::fs::metadata(&path) {
        Ok(_) => Config::load(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::new(),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let before = validate::validate(&user);
    edit(&mut user)?;
    // Tell about problems the change brought, not the ones already there.
    for finding in validate::validate(&user) {
        if !before.contains(&finding) {
            let _ = writeln!(io.stderr, "ros config: {}: {finding}", path.display());
        }
    }
    layers::write_atomic(&path, &user.to_yaml()?)
}

/// Removes the keys matched by a dotted pattern in which `*` matches every
/// key at its level. Walks the parts rather than building dotted keys, since
/// matched names may hold dots (registry host names).
fn remove_pattern(map: &mut serde_norway::Mapping, parts: &[&str]) {
    match parts {
        [] => {}
        [last] if *last == "*" => map.clear(),
        [last] => {
            map.shift_remove(*last);
        }
        [first, rest @ ..] => {
            for (k, v) in map.iter_mut() {
                if *first == "*" || k.as_str() == Some(*first) {
                    if let Value::Mapping(inner) = v {
                        remove_pattern(inner, rest);
                    }
                }
            }
        }
    }
}
