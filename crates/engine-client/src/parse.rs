//! Flag values to Docker API structures.
//!
//! Each parser accepts what the docker CLI accepts for the same flag and
//! produces what the docker CLI would send, so that the engine sees the same
//! requests from both clients. Errors are [`Error::Usage`] with Docker-like
//! wording; `run` and `create` exit 125 on them.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigLogConfig, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::cli::ContainerArgs;
use crate::error::{Error, Result};

/// A `-v` value, sorted into where the API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `SRC:DST[:OPTS]`: goes to `HostConfig.Binds` as the normalized string.
    Bind(String),
    /// `DST` alone: an anonymous volume, goes to `Config.Volumes`.
    Anonymous(String),
}

const VOLUME_MODES: &[&str] = &[
    "ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate", "nocopy",
];

/// Parses `-v SRC:DST[:OPTS]` or `-v DST`. OPTS is a comma-separated list of
/// ro|rw, a propagation mode, z|Z and nocopy, each at most once per kind.
pub fn parse_volume(spec: &str) -> Result<VolumeSpec> {
    let invalid =
        |why: &str| Error::Usage(format!("invalid volume specification: '{spec}': {why}"));
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [dst] => {
            check_container_path(dst).map_err(|w| invalid(&w))?;
            Ok(VolumeSpec::Anonymous((*dst).to_string()))
        }
        [src, dst] | [src, dst, _] => {
            if src.is_empty() {
                return Err(invalid("empty source"));
            }
            if !src.starts_with('/') && !is_volume_name(src) {
                return Err(invalid(
                    "the source must be an absolute host path or a volume name",
                ));
            }
            check_container_path(dst).map_err(|w| invalid(&w))?;
            if let [_, _, opts] = parts.as_slice() {
                check_volume_modes(opts).map_err(|w| invalid(&w))?;
            }
            Ok(VolumeSpec::Bind(spec.to_string()))
        }
        _ => Err(invalid("too many colons")),
    }
}

fn check_container_path(dst: &str) -> std::result::Result<(), String> {
    if dst.is_empty() {
        return Err("empty destination".into());
    }
    if !dst.starts_with('/') {
        return Err(format!("the destination {dst:?} is not an absolute path"));
    }
    if dst == "/" {
        return Err("the destination cannot be /".into());
    }
    Ok(())
}

fn is_volume_name(name: &str) -> bool {
    // Docker's rule for volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn check_volume_modes(opts: &str) -> std::result::Result<(), String> {
    let (mut rw, mut propagation, mut label, mut copy) = (0, 0, 0, 0);
    for mode in opts.split(',') {
        if !VOLUME_MODES.contains(&mode) {
            return Err(format!(
                "unknown mode {mode:?} (expected ro, rw, z, Z, nocopy or a propagation mode)"
            ));
        }
        match mode {
            "ro" | "rw" => rw += 1,
            "z" | "Z" => label += 1,
            "nocopy" => copy += 1,
            _ => propagation += 1,
        }
    }
    if rw > 1 || propagation > 1 || label > 1 || copy > 1 {
        return Err(format!("conflicting modes {opts:?}"));
    }
    Ok(())
}

/// Parses `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(policy: &str) -> Result<RestartPolicy> {
    let (name, count) = match policy.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (policy, None),
    };
    let kind = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => {
            return Err(Error::Usage(format!(
                "invalid restart policy '{policy}': expected no, always, on-failure[:max-retries] or unless-stopped"
            )))
        }
    };
    let maximum_retry_count = match count {
        None => None,
        Some(_) if kind != RestartPolicyNameEnum::ON_FAILURE => {
            return Err(Error::Usage(format!(
                "invalid restart policy '{policy}': maximum retry count cannot be used with restart policy '{name}'"
            )))
        }
        Some(n) => Some(n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::Usage(format!(
                "invalid restart policy '{policy}': maximum retry count must be a non-negative integer"
            ))
        })?),
    };
    Ok(RestartPolicy {
        name: Some(kind),
        maximum_retry_count,
    })
}

/// Parses a memory size like Docker's `RAMInBytes`: a number with an optional
/// binary suffix b, k, m, g, t or p (any case, optionally followed by "b" or "ib").
pub fn parse_memory(value: &str) -> Result<i64> {
    let invalid = || Error::Usage(format!("invalid size: '{value}'"));
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, suffix) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let suffix = suffix.trim_start().to_ascii_lowercase();
    let unit = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(&suffix);
    let multiplier: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(invalid()),
    };
    // "ib" needs a unit letter before it: "5ib" is not a size.
    if unit.is_empty() && suffix.ends_with("ib") {
        return Err(invalid());
    }
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as i64)
}

/// Parses `--cpus 1.5` into NanoCPUs.
pub fn parse_cpus(value: &str) -> Result<i64> {
    let cpus: f64 = value
        .trim()
        .parse()
        .map_err(|_| Error::Usage(format!("invalid value '{value}' for --cpus: not a number")))?;
    if !cpus.is_finite() || cpus < 0.0 {
        return Err(Error::Usage(format!(
            "invalid value '{value}' for --cpus: must be a positive number"
        )));
    }
    let nanos = (cpus * 1e9).round();
    if nanos >= i64::MAX as f64 {
        return Err(Error::Usage(format!(
            "invalid value '{value}' for --cpus: too large"
        )));
    }
    Ok(nanos as i64)
}

/// Normalizes one `-e` value: `KEY=VALUE` stays; `KEY` takes the value it has
/// in our environment, or stays `KEY` (which unsets it in the container) when
/// it has none, as docker does.
pub fn parse_env(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let key = value.split('=').next().unwrap_or_default();
    if key.is_empty() {
        return Err(Error::Usage(format!(
            "invalid environment variable: '{value}'"
        )));
    }
    if value.contains('=') {
        return Ok(value.to_string());
    }
    Ok(match lookup(value) {
        Some(v) => format!("{value}={v}"),
        None => value.to_string(),
    })
}

/// Parses the text of an `--env-file`: one `KEY=VALUE` a line, blank lines and
/// `#` comments skipped, leading spaces of the key dropped; a bare `KEY` takes
/// its value from our environment and is dropped when unset (docker's rules).
/// `name` is the file's name, for messages.
pub fn parse_env_file(
    name: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err(Error::Usage(format!(
                "{name}:{}: no variable name before '='",
                i + 1
            )));
        }
        if key.contains(char::is_whitespace) {
            return Err(Error::Usage(format!(
                "{name}:{}: variable '{key}' contains whitespaces",
                i + 1
            )));
        }
        match value {
            Some(v) => vars.push(format!("{key}={v}")),
            None => {
                if let Some(v) = lookup(key) {
                    vars.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(vars)
}

/// Parses `KEY=VALUE` (labels, log options); a bare `KEY` maps to "" when
/// `allow_bare` is set (labels), and is an error otherwise (log options).
pub fn parse_key_value(flag: &str, value: &str, allow_bare: bool) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        None if allow_bare && !value.is_empty() => Ok((value.to_string(), String::new())),
        _ => Err(Error::Usage(format!(
            "invalid {flag} '{value}': expected KEY=VALUE"
        ))),
    }
}

/// Parses `--device HOST[:CONTAINER][:PERMISSIONS]`.
pub fn parse_device(value: &str) -> Result<DeviceMapping> {
    let invalid = |why: &str| Error::Usage(format!("invalid device '{value}': {why}"));
    let is_perms = |s: &str| {
        !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c)) && {
            let mut seen = s.chars().collect::<Vec<_>>();
            seen.sort_unstable();
            seen.dedup();
            seen.len() == s.len()
        }
    };
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, p] if is_perms(p) => (*host, *host, *p),
        [host, container] => (*host, *container, "rwm"),
        [host, container, p] => {
            if !is_perms(p) {
                return Err(invalid("permissions must be a combination of r, w and m"));
            }
            (*host, *container, *p)
        }
        _ => return Err(invalid("too many colons")),
    };
    if !host.starts_with('/') {
        return Err(invalid("the host path must be absolute"));
    }
    if !container.starts_with('/') {
        return Err(invalid("the container path must be absolute"));
    }
    Ok(DeviceMapping {
        path_on_host: Some(host.to_string()),
        path_in_container: Some(container.to_string()),
        cgroup_permissions: Some(perms.to_string()),
    })
}

/// Checks `--volumes-from CONTAINER[:ro|rw]`.
pub fn parse_volumes_from(value: &str) -> Result<String> {
    match value.split_once(':') {
        None if !value.is_empty() => Ok(value.to_string()),
        Some((name, "ro" | "rw")) if !name.is_empty() => Ok(value.to_string()),
        _ => Err(Error::Usage(format!(
            "invalid --volumes-from '{value}': expected CONTAINER[:ro|rw]"
        ))),
    }
}

/// Checks a namespace mode for --pid, --ipc and --uts: `host`, `container:NAME`
/// (and for --ipc also `private`, `shareable`, `none`); "" means the default.
fn check_namespace_mode(flag: &str, value: &str) -> Result<()> {
    let ok = matches!(value, "" | "host")
        || value
            .strip_prefix("container:")
            .is_some_and(|n| !n.is_empty())
        || (flag == "--ipc" && matches!(value, "private" | "shareable" | "none"));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid {flag} mode '{value}': expected host or container:NAME"
        )))
    }
}

/// Checks `--net`: host, none, default/bridge (the engine's default) or container:NAME.
fn check_network_mode(value: &str) -> Result<()> {
    let ok = matches!(value, "host" | "none" | "default" | "bridge")
        || value
            .strip_prefix("container:")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid --net '{value}': expected host, none or container:NAME"
        )))
    }
}

/// The container name and the create request for `create`/`run` flags.
/// `read_file` reads env files; `lookup` reads our environment (both passed in
/// so that tests need neither).
pub fn create_body(
    args: &ContainerArgs,
    read_file: &dyn Fn(&str) -> Result<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ContainerCreateBody> {
    if args.tty {
        return Err(Error::NotSupported("allocating a TTY (-t)".to_string()));
    }
    if !matches!(args.pull.as_str(), "missing" | "always" | "never") {
        return Err(Error::Usage(format!(
            "invalid --pull '{}': expected missing, always or never",
            args.pull
        )));
    }

    // Docker's order: env files first, then -e, so -e wins.
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(parse_env_file(file, &read_file(file)?, lookup)?);
    }
    for e in &args.env {
        env.push(parse_env(e, lookup)?);
    }

    let mut labels = HashMap::new();
    for l in &args.label {
        let (k, v) = parse_key_value("label", l, true)?;
        labels.insert(k, v);
    }

    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for v in &args.volume {
        match parse_volume(v)? {
            VolumeSpec::Bind(b) => binds.push(b),
            VolumeSpec::Anonymous(d) => volumes.push(d),
        }
    }
    let volumes_from = args
        .volumes_from
        .iter()
        .map(|v| parse_volumes_from(v))
        .collect::<Result<Vec<_>>>()?;
    let devices = args
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;

    if let Some(net) = &args.net {
        check_network_mode(net)?;
    }
    for (flag, value) in [
        ("--pid", &args.pid),
        ("--ipc", &args.ipc),
        ("--uts", &args.uts),
    ] {
        if let Some(v) = value {
            check_namespace_mode(flag, v)?;
        }
    }
    if let Some(adj) = args.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::Usage(format!(
                "invalid --oom-score-adj {adj}: must be between -1000 and 1000"
            )));
        }
    }
    if let Some(h) = &args.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(Error::Usage(format!(
                "invalid hostname '{h}': must be 1 to 64 characters"
            )));
        }
    }

    let mut log_opts = HashMap::new();
    for o in &args.log_opt {
        let (k, v) = parse_key_value("log-opt", o, false)?;
        log_opts.insert(k, v);
    }
    let log_config =
        (args.log_driver.is_some() || !log_opts.is_empty()).then(|| HostConfigLogConfig {
            typ: Some(args.log_driver.clone().unwrap_or_default()),
            config: Some(log_opts),
        });

    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        volumes_from: (!volumes_from.is_empty()).then_some(volumes_from),
        network_mode: args.net.clone(),
        pid_mode: args.pid.clone(),
        ipc_mode: args.ipc.clone(),
        uts_mode: args.uts.clone(),
        privileged: args.privileged.then_some(true),
        readonly_rootfs: args.read_only.then_some(true),
        cap_add: (!args.cap_add.is_empty()).then(|| args.cap_add.clone()),
        cap_drop: (!args.cap_drop.is_empty()).then(|| args.cap_drop.clone()),
        devices: (!devices.is_empty()).then_some(devices),
        memory: args.memory.as_deref().map(parse_memory).transpose()?,
        nano_cpus: args.cpus.as_deref().map(parse_cpus).transpose()?,
        cpu_shares: args.cpu_shares,
        pids_limit: args.pids_limit,
        oom_score_adj: args.oom_score_adj,
        restart_policy: args.restart.as_deref().map(parse_restart).transpose()?,
        log_config,
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(args.image().to_string()),
        cmd: (!args.command().is_empty()).then(|| args.command().to_vec()),
        // docker sends --entrypoint as one word; "" resets the image's entrypoint.
        entrypoint: args.entrypoint.clone().map(|e| vec![e]),
        env: (!env.is_empty()).then_some(env),
        labels: (!labels.is_empty()).then_some(labels),
        volumes: (!volumes.is_empty()).then_some(volumes),
        hostname: args.hostname.clone(),
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
        open_stdin: args.interactive.then_some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// A Dockerfile instruction given to `import -c`, checked before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `CMD ["a","b"]` (exec form) or `CMD a b` (shell form: `/bin/sh -c "a b"`).
    Cmd(Vec<String>),
    /// `ENTRYPOINT`, forms as for CMD.
    Entrypoint(Vec<String>),
    /// `ENV K=V [K2=V2...]` or `ENV K V`.
    Env(Vec<(String, String)>),
    /// `WORKDIR /dir`.
    Workdir(String),
    /// Any other instruction the engine accepts (USER, LABEL, EXPOSE, VOLUME,
    /// STOPSIGNAL, ONBUILD), passed on as written.
    Other(String, String),
}

/// Parses one `-c` value. The engine receives the original text (as from the
/// docker CLI); parsing here catches mistakes before a tarball is uploaded.
pub fn parse_change(text: &str) -> Result<Change> {
    let invalid = |why: &str| Error::Usage(format!("invalid change '{text}': {why}"));
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    let instruction = word.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(invalid(&format!("{instruction} needs an argument")));
    }
    let command_form = |rest: &str| -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str::<Vec<String>>(rest)
                .map_err(|e| invalid(&format!("not a JSON array of strings: {e}")))
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
        }
    };
    match instruction.as_str() {
        "CMD" => Ok(Change::Cmd(command_form(rest)?)),
        "ENTRYPOINT" => Ok(Change::Entrypoint(command_form(rest)?)),
        "WORKDIR" => Ok(Change::Workdir(rest.to_string())),
        "ENV" => parse_env_change(rest).map(Change::Env).map_err(|w| invalid(&w)),
        "USER" | "LABEL" | "EXPOSE" | "VOLUME" | "STOPSIGNAL" | "ONBUILD" => {
            Ok(Change::Other(instruction, rest.to_string()))
        }
        _ => Err(invalid(&format!(
            "{instruction} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR"
        ))),
    }
}

/// `ENV` arguments: `K V...` (legacy form, one variable), or `K=V` pairs where
/// values may be "double" or 'single' quoted and `\` escapes the next character.
fn parse_env_change(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let value = rest[first.len()..].trim();
        return Ok(vec![(first.to_string(), value.to_string())]);
    }
    let mut vars = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => word.push(c),
                (_, '\\') => match chars.next() {
                    Some(n) => word.push(n),
                    None => return Err("trailing backslash".into()),
                },
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => vars.push((k.to_string(), v.to_string())),
            _ => return Err(format!("'{word}' is not KEY=VALUE")),
        }
    }
    Ok(vars)
}

/// Splits `REPO[:TAG]` into the repository and the tag (`latest` when there is
/// none). A colon before the last `/` is a registry port, not a tag. A digest
/// reference (`repo@sha256:...`) is returned whole with no tag.
pub fn split_reference(reference: &str) -> (String, Option<String>) {
    if reference.contains('@') {
        return (reference.to_string(), None);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (
                reference[..at].to_string(),
                Some(reference[at + 1..].to_string()),
            )
        }
        None => (reference.to_string(), Some("latest".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn run_args(argv: &[&str]) -> ContainerArgs {
        let mut full = vec!["system-docker", "run"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).expect("flags parse").command {
            Some(Command::Run(r)) => r.container,
            other => panic!("not a run command: {other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn no_files(name: &str) -> Result<String> {
        Err(Error::Usage(format!("unexpected read of {name}")))
    }

    fn body(argv: &[&str]) -> Result<ContainerCreateBody> {
        create_body(&run_args(argv), &no_files, &no_env)
    }

    #[test]
    fn volumes_go_to_binds_or_volumes() {
        let b = body(&[
            "-v",
            "/srv:/srv:ro",
            "-v",
            "/mnt:/mnt:rshared",
            "-v",
            "/data",
            "-v",
            "named:/x:rw,z",
            "busybox",
        ])
        .unwrap();
        let hc = b.host_config.unwrap();
        assert_eq!(
            hc.binds.unwrap(),
            vec!["/srv:/srv:ro", "/mnt:/mnt:rshared", "named:/x:rw,z"]
        );
        assert_eq!(b.volumes.unwrap(), vec!["/data"]);
    }

    #[test]
    fn bad_volumes_are_refused() {
        for bad in [
            "./relative:/x",
            "/a:b",
            "/a:/b:bogus",
            "/a:/b:ro,rw",
            "/a:/b:ro:extra",
            ":/b",
            "/a:/",
            "data",
        ] {
            let err = parse_volume(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid volume specification: '{bad}'")),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            parse_volume("/a:/b:rslave").unwrap(),
            VolumeSpec::Bind("/a:/b:rslave".into())
        );
    }

    #[test]
    fn restart_policies() {
        let p = parse_restart("on-failure:3").unwrap();
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(p.maximum_retry_count, Some(3));
        assert_eq!(
            parse_restart("always").unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert_eq!(
            parse_restart("unless-stopped").unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            parse_restart("no").unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(
            parse_restart("on-failure").unwrap().maximum_retry_count,
            None
        );
        assert!(parse_restart("always:3")
            .unwrap_err()
            .to_string()
            .contains("maximum retry count cannot be used with restart policy 'always'"));
        assert!(parse_restart("on-failure:x").is_err());
        assert!(parse_restart("on-failure:-1").is_err());
        assert!(parse_restart("sometimes").is_err());

        let b = body(&["--restart", "on-failure:2", "busybox"]).unwrap();
        let rp = b.host_config.unwrap().restart_policy.unwrap();
        assert_eq!(rp.maximum_retry_count, Some(2));
        // and it is sent the way Docker spells it
        let json = serde_json::to_value(&rp).unwrap();
        assert_eq!(json["Name"], "on-failure");
        assert_eq!(json["MaximumRetryCount"], 2);
    }

    #[test]
    fn memory_suffixes() {
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("64M").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_memory("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("10b").unwrap(), 10);
        for bad in ["", "m", "12x", "1.2.3m", "-5m", "5ib", "1e3"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} accepted");
        }
        let b = body(&[
            "-m",
            "256m",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "busybox",
        ])
        .unwrap();
        let hc = b.host_config.unwrap();
        assert_eq!(hc.memory, Some(256 << 20));
        assert_eq!(hc.nano_cpus, Some(1_500_000_000));
        assert_eq!(hc.cpu_shares, Some(512));
        assert!(body(&["--memory", "lots", "busybox"])
            .unwrap_err()
            .to_string()
            .contains("invalid size: 'lots'"));
    }

    #[test]
    fn env_files_and_env_flags() {
        let file = "\u{feff}# comment\n\nA=1\n  B=two words\nFROM_HOST\nUNSET_ONE\nEMPTY=\n";
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "h".to_string());
        assert_eq!(
            parse_env_file("vars.env", file, &lookup).unwrap(),
            vec!["A=1", "B=two words", "FROM_HOST=h", "EMPTY="]
        );
        let err = parse_env_file("vars.env", "A=1\nBAD KEY=x\n", &no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vars.env:2: variable 'BAD KEY' contains whitespaces"
        );

        // files first, then -e; -e KEY copies our value when we have one
        let read = |name: &str| {
            assert_eq!(name, "/etc/x.env");
            Ok("A=from-file\n".to_string())
        };
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let b = create_body(
            &run_args(&[
                "--env-file",
                "/etc/x.env",
                "-e",
                "A=flag",
                "-e",
                "HOME",
                "-e",
                "NOPE",
                "busybox",
            ]),
            &read,
            &lookup,
        )
        .unwrap();
        assert_eq!(
            b.env.unwrap(),
            vec!["A=from-file", "A=flag", "HOME=/root", "NOPE"]
        );
        assert!(parse_env("=x", &no_env).is_err());
    }

    #[test]
    fn everything_else_lands_in_the_right_field() {
        let b = body(&[
            "--name",
            "web",
            "-l",
            "a=b",
            "-l",
            "flag",
            "--net",
            "host",
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "--privileged",
            "--read-only",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "ALL",
            "--device",
            "/dev/fuse",
            "--device",
            "/dev/sda:/dev/xvda:r",
            "-h",
            "box",
            "--pids-limit",
            "-1",
            "--oom-score-adj",
            "-500",
            "--entrypoint",
            "/bin/sh",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "--log-opt",
            "max-size=10m",
            "--volumes-from",
            "data:ro",
            "busybox",
            "-c",
            "echo hi",
        ])
        .unwrap();
        assert_eq!(b.image.as_deref(), Some("busybox"));
        assert_eq!(b.cmd.unwrap(), vec!["-c", "echo hi"]);
        assert_eq!(b.entrypoint.unwrap(), vec!["/bin/sh"]);
        assert_eq!(b.hostname.as_deref(), Some("box"));
        assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        let labels = b.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["flag"], "");
        let hc = b.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
        assert_eq!(hc.ipc_mode.as_deref(), Some("host"));
        assert_eq!(hc.uts_mode.as_deref(), Some("host"));
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.cap_add.unwrap(), vec!["NET_ADMIN"]);
        assert_eq!(hc.cap_drop.unwrap(), vec!["ALL"]);
        let devices = hc.devices.unwrap();
        assert_eq!(devices[0].path_in_container.as_deref(), Some("/dev/fuse"));
        assert_eq!(devices[0].cgroup_permissions.as_deref(), Some("rwm"));
        assert_eq!(devices[1].path_in_container.as_deref(), Some("/dev/xvda"));
        assert_eq!(devices[1].cgroup_permissions.as_deref(), Some("r"));
        assert_eq!(hc.pids_limit, Some(-1));
        assert_eq!(hc.oom_score_adj, Some(-500));
        assert_eq!(hc.volumes_from.unwrap(), vec!["data:ro"]);
        assert_eq!(hc.log_config.unwrap().config.unwrap()["max-size"], "10m");
    }

    #[test]
    fn bad_container_flags_are_refused() {
        for argv in [
            &["--net", "bridge0", "busybox"][..],
            &["--pid", "private", "busybox"],
            &["--device", "dev/sda", "busybox"],
            &["--device", "/dev/sda:/dev/sdb:rwx", "busybox"],
            &["--oom-score-adj", "2000", "busybox"],
            &["--log-opt", "max-size", "busybox"],
            &["--volumes-from", "data:rx", "busybox"],
            &["--cpus=-1", "busybox"],
            &["--pull", "sometimes", "busybox"],
        ] {
            assert!(
                matches!(body(argv), Err(Error::Usage(_))),
                "{argv:?} accepted"
            );
        }
        assert!(matches!(
            body(&["-t", "busybox"]),
            Err(Error::NotSupported(_))
        ));
    }

    #[test]
    fn import_changes() {
        assert_eq!(
            parse_change(r#"CMD ["/bin/sh", "-c", "echo hi"]"#).unwrap(),
            Change::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            parse_change("cmd echo hi").unwrap(),
            Change::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            parse_change(r#"ENTRYPOINT ["/init"]"#).unwrap(),
            Change::Entrypoint(vec!["/init".into()])
        );
        assert_eq!(
            parse_change(r#"ENV A=1 B="two words" C=x\ y"#).unwrap(),
            Change::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x y".into()),
            ])
        );
        assert_eq!(
            parse_change("ENV PATH /usr/bin:/bin").unwrap(),
            Change::Env(vec![("PATH".into(), "/usr/bin:/bin".into())])
        );
        assert_eq!(
            parse_change("WORKDIR /srv").unwrap(),
            Change::Workdir("/srv".into())
        );
        assert_eq!(
            parse_change("user nobody").unwrap(),
            Change::Other("USER".into(), "nobody".into())
        );
        for bad in [
            "RUN apt-get update",
            "CMD",
            r#"CMD ["unterminated"#,
            "ENV A=\"x",
            "ENV =1",
            "FROM busybox",
        ] {
            assert!(parse_change(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references() {
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox".into(), Some("1.36".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/foo"),
            ("127.0.0.1:5000/foo".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/foo:v2"),
            ("127.0.0.1:5000/foo".into(), Some("v2".into()))
        );
        assert_eq!(
            split_reference("foo@sha256:abc"),
            ("foo@sha256:abc".into(), None)
        );
    }
}
