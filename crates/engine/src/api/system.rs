//! `/_ping`, `/version`, `/info`.

use super::{json_response, AppState, API_VERSION, MIN_API_VERSION};
use crate::record::Status;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use serde_json::json;

pub async fn ping() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("API-Version", API_VERSION)
        .header("OSType", "linux")
        .header("Docker-Experimental", "false")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Body::from("OK"))
        .unwrap_or_default()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn version() -> Response<Body> {
    let version = env!("CARGO_PKG_VERSION");
    json_response(
        StatusCode::OK,
        &json!({
            "Platform": {"Name": "OxOS system engine"},
            "Components": [{
                "Name": "Engine",
                "Version": version,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                    "Arch": "amd64",
                    "KernelVersion": kernel_version(),
                }
            }],
            "Version": version,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "n/a (Rust)",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": kernel_version(),
            "BuildTime": "",
        }),
    )
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub async fn info(State(engine): State<AppState>) -> Response<Body> {
    let all = engine.list();
    let running = all
        .iter()
        .filter(|c| c.snapshot().state.status == Status::Running)
        .count();
    let images = engine.images.list().map(|l| l.len()).unwrap_or(0);
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut insecure = vec!["127.0.0.0/8".to_string()];
    insecure.extend(engine.config.insecure_registries.iter().cloned());
    json_response(
        StatusCode::OK,
        &json!({
            "ID": "",
            "Containers": all.len(),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": all.len() - running,
            "Images": images,
            "Driver": "overlay",
            "DriverStatus": [["Backing Filesystem", "layers unpacked once, shared by images"]],
            "Plugins": {"Volume": ["local"], "Network": ["host", "none"], "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "OomKillDisable": false,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": crate::fsutil::now_rfc3339(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": kernel_version(),
            "OperatingSystem": "OxOS",
            "OSVersion": env!("CARGO_PKG_VERSION"),
            "OSType": "linux",
            "Architecture": "x86_64",
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": insecure,
                "IndexConfigs": {},
                "Mirrors": []
            },
            "NCPU": ncpu,
            "MemTotal": mem_total(),
            "DockerRootDir": engine.config.data_root,
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": {"ros": {"path": "ros shim"}},
            "DefaultRuntime": "ros",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": [],
            "Warnings": []
        }),
    )
}
