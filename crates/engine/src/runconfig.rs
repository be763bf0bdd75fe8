//! From a container record and its image to the shim's [`RunConfig`].

use crate::engine::{Container, Engine};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::record::Record;
use bollard_stubs::models::ContainerConfig;
use runtime::protocol::{BindMount, DeviceMapping, Resources, Rootfs, RunConfig};
use std::path::Path;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The files in a container's `/etc` that the engine writes into the
/// container's directory at each start and binds over the image's, unless
/// the container mounts its own.
pub const PER_START_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// The process of a container, Docker's way: an entrypoint given at create
/// replaces the image's and drops the image's cmd; a cmd given at create
/// replaces the image's cmd.
pub fn command_of(
    config: &ContainerConfig,
    image: &image_store::ContainerConfig,
) -> Result<(String, Vec<String>)> {
    let entrypoint_given = config
        .entrypoint
        .as_ref()
        .is_some_and(|e| !(e.is_empty() || e.len() == 1 && e[0].is_empty()));
    let entrypoint: Vec<String> = if entrypoint_given {
        config.entrypoint.clone().unwrap_or_default()
    } else if config
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        // `--entrypoint ""` clears the image's entrypoint.
        Vec::new()
    } else {
        image.entrypoint.clone().unwrap_or_default()
    };
    let cmd: Vec<String> = match &config.cmd {
        Some(c) if !c.is_empty() => c.clone(),
        _ if entrypoint_given => Vec::new(),
        _ => image.cmd.clone().unwrap_or_default(),
    };
    let mut all = entrypoint;
    all.extend(cmd);
    if all.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    let path = all.remove(0);
    Ok((path, all))
}

/// Image env, then the container's (same key: the container's wins), PATH
/// and HOSTNAME when missing.
fn merged_env(image: &[String], container: &[String], hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    for kv in image.iter().chain(container.iter()) {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    env
}

/// Builds the run config and prepares the container directory for a start:
/// overlay dirs, volume dirs, /etc/hostname, /etc/hosts and /etc/resolv.conf,
/// no stale reports of an earlier run.
pub fn prepare(engine: &Engine, c: &Container, rec: &Record) -> Result<RunConfig> {
    let image = engine.images.get(&rec.image_id).map_err(|e| match e {
        image_store::Error::NotFound(_) => {
            Error::NotFound(format!("No such image: {} ({})", rec.image, rec.image_id))
        }
        e => e.into(),
    })?;
    let lower = engine.images.layer_paths(&image.id)?;
    let dir = &c.dir;
    let host = &rec.host_config;
    let cfg = &rec.config;
    let host_network = host.network_mode.as_deref() == Some("host");
    let host_uts = host.uts_mode.as_deref() == Some("host");
    let hostname = match cfg.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None if host_network || host_uts => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        None => rec.id[..12].to_string(),
    };

    cleanup_rootfs(dir);
    for sub in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
            Error::internal(format!("cannot create {}", dir.join(sub).display()), e)
        })?;
    }
    for f in [
        runtime::protocol::STARTED_FILE,
        runtime::protocol::EXIT_FILE,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }

    ensure_mount_sources(rec)?;
    let mut mounts: Vec<BindMount> = Vec::new();
    for m in &rec.mounts {
        mounts.push(BindMount {
            source: m.source.clone().into(),
            destination: m.destination.clone(),
            read_only: m.read_only,
            propagation: m.propagation.clone(),
        });
    }
    // The files Docker manages in /etc, unless the user mounts their own.
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let contents = [format!("{hostname}\n"), hosts, resolv];
    for (file, content) in PER_START_FILES.into_iter().zip(contents) {
        let dest = format!("/etc/{file}");
        if mounts.iter().any(|m| m.destination == dest) {
            continue;
        }
        let path = dir.join(file);
        fsutil::write_replace(&path, content.as_bytes())?;
        mounts.insert(
            0,
            BindMount {
                source: path,
                destination: dest,
                read_only: false,
                propagation: String::new(),
            },
        );
    }

    let devices = host
        .devices
        .iter()
        .flatten()
        .map(|d| DeviceMapping {
            path_on_host: d.path_on_host.clone().unwrap_or_default().into(),
            path_in_container: d
                .path_in_container
                .clone()
                .filter(|p| !p.is_empty())
                .or_else(|| d.path_on_host.clone())
                .unwrap_or_default(),
            permissions: d
                .cgroup_permissions
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rwm".into()),
        })
        .collect();

    let mut resources = Resources {
        memory: host.memory.filter(|m| *m > 0),
        memory_swap: host.memory_swap.filter(|m| *m != 0),
        cpu_shares: host.cpu_shares.filter(|s| *s > 0).map(|s| s as u64),
        cpu_quota: host.cpu_quota.filter(|q| *q > 0),
        cpu_period: host.cpu_period.filter(|p| *p > 0).map(|p| p as u64),
        cpuset_cpus: host.cpuset_cpus.clone().filter(|s| !s.is_empty()),
        pids_limit: host.pids_limit.filter(|p| *p > 0),
    };
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        let period = 100_000u64;
        resources.cpu_period = Some(period);
        resources.cpu_quota = Some((nano as u64 * period / 1_000_000_000) as i64);
    }
    let log_max_bytes = host
        .log_config
        .as_ref()
        .and_then(|l| l.config.as_ref())
        .and_then(|c| c.get("max-size"))
        .and_then(|s| fsutil::parse_size(s))
        .unwrap_or(0);
    let cgroup_parent = host
        .cgroup_parent
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| engine.config.cgroup_parent.clone());

    let run = RunConfig {
        id: rec.id.clone(),
        rootfs: Rootfs {
            lower,
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("rootfs"),
        },
        args: std::iter::once(rec.path.clone())
            .chain(rec.args.iter().cloned())
            .collect(),
        env: merged_env(
            &image.config.config.env,
            cfg.env.as_deref().unwrap_or_default(),
            &hostname,
        ),
        cwd: cfg
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or(image.config.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: cfg
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or(image.config.config.user.clone())
            .unwrap_or_default(),
        hostname: (!host_uts).then_some(hostname),
        privileged: host.privileged.unwrap_or(false),
        read_only_rootfs: host.readonly_rootfs.unwrap_or(false),
        host_network,
        host_pid: host.pid_mode.as_deref() == Some("host"),
        host_ipc: host.ipc_mode.as_deref() == Some("host"),
        host_uts,
        mounts,
        cap_add: host.cap_add.clone().unwrap_or_default(),
        cap_drop: host.cap_drop.clone().unwrap_or_default(),
        devices,
        resources,
        oom_score_adj: host.oom_score_adj.map(|o| o as i32),
        cgroup_path: format!("/{}/{}", cgroup_parent.trim_matches('/'), rec.id),
        log_path: c.log_path(),
        log_max_bytes,
    };
    let bytes = serde_json::to_vec_pretty(&run)
        .map_err(|e| Error::internal("cannot encode run.json", e))?;
    fsutil::write_replace(&dir.join(runtime::protocol::RUN_CONFIG_FILE), &bytes)?;
    Ok(run)
}

/// Creates the directory of each volume, and each missing bind source (as
/// a directory, as Docker does).
pub fn ensure_mount_sources(rec: &Record) -> Result<()> {
    for m in &rec.mounts {
        if m.kind == "volume" {
            std::fs::create_dir_all(&m.source)
                .map_err(|e| Error::internal(format!("cannot create volume {}", m.source), e))?;
        } else if !Path::new(&m.source).exists() {
            std::fs::create_dir_all(&m.source).map_err(|e| {
                Error::internal(format!("cannot create bind source {}", m.source), e)
            })?;
        }
    }
    Ok(())
}

/// Unmounts a root filesystem that a killed shim may have left mounted.
pub fn cleanup_rootfs(dir: &Path) {
    let rootfs = dir.join("rootfs");
    // Lazily: nothing can still be using it, the container is gone.
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> image_store::ContainerConfig {
        image_store::ContainerConfig {
            entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn command_follows_docker_rules() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        let none = ContainerConfig::default();
        assert_eq!(
            command_of(&none, &img).unwrap(),
            ("/entry".into(), vec!["default".into()])
        );
        let cmd = ContainerConfig {
            cmd: strings(&["mine"]),
            ..Default::default()
        };
        assert_eq!(
            command_of(&cmd, &img).unwrap(),
            ("/entry".into(), vec!["mine".into()])
        );
        let ep = ContainerConfig {
            entrypoint: strings(&["/other"]),
            ..Default::default()
        };
        assert_eq!(command_of(&ep, &img).unwrap(), ("/other".into(), vec![]));
        let cleared = ContainerConfig {
            entrypoint: strings(&[""]),
            cmd: strings(&["sh"]),
            ..Default::default()
        };
        assert_eq!(command_of(&cleared, &img).unwrap(), ("sh".into(), vec![]));
        let empty = image(None, None);
        assert!(command_of(&none, &empty).is_err());
    }

    #[test]
    fn container_env_overrides_image_env() {
        let env = merged_env(
            &["A=1".into(), "PATH=/bin".into()],
            &["A=2".into(), "B=3".into()],
            "h",
        );
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3", "HOSTNAME=h"]);
        let env = merged_env(&[], &[], "h");
        assert!(env[0].starts_with("PATH="));
    }
}
