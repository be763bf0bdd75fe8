//! `version` and `info`.

use crate::client::{Engine, API_VERSION};
use crate::commands::out;
use crate::error::Result;
use crate::format::bytes_size;

/// What `system-docker -v` prints.
pub fn client_version_line() -> String {
    format!(
        "system-docker version {} (OxOS), API {}.{}",
        env!("CARGO_PKG_VERSION"),
        API_VERSION.major_version,
        API_VERSION.minor_version
    )
}

fn field(text: &mut String, indent: usize, name: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        let label = format!("{}{name}:", " ".repeat(indent));
        text.push_str(&format!("{label:<20}{v}\n"));
    }
}

/// `version`: the client's part, then the engine's (or the connection error).
pub async fn version(host: &str) -> Result<i32> {
    let mut text = String::from("Client:\n");
    field(&mut text, 1, "Version", Some(env!("CARGO_PKG_VERSION")));
    let api = format!(
        "{}.{}",
        API_VERSION.major_version, API_VERSION.minor_version
    );
    field(&mut text, 1, "API version", Some(&api));
    let os_arch = format!("{}/{}", std::env::consts::OS, go_arch());
    field(&mut text, 1, "OS/Arch", Some(&os_arch));
    text.push('\n');
    out(text.as_bytes())?;

    let engine = Engine::new(host)?;
    let v = engine.docker().version().await.map_err(|e| engine.err(e))?;
    let mut text = String::from("Server:\n Engine:\n");
    field(&mut text, 2, "Version", v.version.as_deref());
    let api = match (&v.api_version, &v.min_api_version) {
        (Some(a), Some(m)) => Some(format!("{a} (minimum version {m})")),
        (Some(a), None) => Some(a.clone()),
        _ => None,
    };
    field(&mut text, 2, "API version", api.as_deref());
    field(&mut text, 2, "Git commit", v.git_commit.as_deref());
    field(&mut text, 2, "Built", v.build_time.as_deref());
    let os_arch = match (&v.os, &v.arch) {
        (Some(o), Some(a)) => Some(format!("{o}/{a}")),
        _ => None,
    };
    field(&mut text, 2, "OS/Arch", os_arch.as_deref());
    field(&mut text, 2, "Kernel Version", v.kernel_version.as_deref());
    for c in v.components.iter().flatten() {
        if c.name != "Engine" {
            text.push_str(&format!(" {}:\n", c.name));
            field(&mut text, 2, "Version", Some(&c.version));
        }
    }
    out(text.as_bytes())?;
    Ok(0)
}

/// Docker's names for architectures (GOARCH).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// `info`: the engine's main facts, in docker's layout.
pub async fn info(engine: &Engine) -> Result<i32> {
    let i = engine.docker().info().await.map_err(|e| engine.err(e))?;
    let num = |n: Option<i64>| n.map(|n| n.to_string());
    let mut text = String::from("Server:\n");
    let mut line = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            text.push_str(&format!(" {name}: {v}\n"));
        }
    };
    line("Containers", num(i.containers));
    line(" Running", num(i.containers_running));
    line(" Paused", num(i.containers_paused));
    line(" Stopped", num(i.containers_stopped));
    line("Images", num(i.images));
    line("Server Version", i.server_version.clone());
    line("Storage Driver", i.driver.clone());
    line("Logging Driver", i.logging_driver.clone());
    line("Cgroup Driver", i.cgroup_driver.map(|d| d.to_string()));
    line("Cgroup Version", i.cgroup_version.map(|v| v.to_string()));
    line("Kernel Version", i.kernel_version.clone());
    line("Operating System", i.operating_system.clone());
    line("OSType", i.os_type.clone());
    line("Architecture", i.architecture.clone());
    line("CPUs", num(i.ncpu));
    line("Total Memory", i.mem_total.map(bytes_size));
    line("Name", i.name.clone());
    line("ID", i.id.clone());
    line("Docker Root Dir", i.docker_root_dir.clone());
    line("Debug Mode", i.debug.map(|d| d.to_string()));
    out(text.as_bytes())?;
    Ok(0)
}
