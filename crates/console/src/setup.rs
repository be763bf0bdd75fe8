//! The setup of the console, as one function over a root directory: what
//! `ros console-init` does before it starts sshd and the gettys.

use std::path::Path;

use config::Root;

use crate::accounts;
use crate::error::Result;
use crate::fsutil;
use crate::getty;
use crate::settings::Settings;
use crate::ssh::{self, HostKeyGen};
use crate::supervise::Program;

/// Where the `ros` binary is (bind-mounted read-only by the service).
pub const ROS: &str = "/usr/bin/ros";
/// Where the docker service puts the User Docker engine's client.
pub const DOCKER_CLI: &str = "/var/lib/rancher/engine/docker";

/// The command links: (link, target).
pub const LINKS: [(&str, &str); 7] = [
    ("/usr/local/bin/ros", ROS),
    ("/usr/local/bin/system-docker", ROS),
    ("/usr/local/bin/docker", DOCKER_CLI),
    ("/usr/local/sbin/reboot", ROS),
    ("/usr/local/sbin/poweroff", ROS),
    ("/usr/local/sbin/halt", ROS),
    ("/usr/local/sbin/shutdown", ROS),
];

/// The user's start scripts, run once per console start in this order
/// when they exist and are executable (as in RancherOS).
pub const START_SCRIPTS: [&str; 2] = ["/opt/rancher/bin/start.sh", "/etc/rc.local"];

/// What to run once the setup is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Kept running: sshd and the gettys.
    pub programs: Vec<Program>,
    /// Run once, one after the other, beside the programs.
    pub scripts: Vec<Program>,
    /// Run once, one after the other, beside the programs and the scripts,
    /// at the lowest priority: the host keys made after sshd has started.
    pub background: Vec<Program>,
}

/// Sets the console up under `root` from `settings`, logging a line per
/// step, and returns the programs to run. Running it again with the same
/// settings changes no file.
pub fn setup(root: &Root, settings: &Settings, keygen: &dyn HostKeyGen) -> Result<Plan> {
    tracing::info!(
        "config read (console {}, hostname {}, {} authorized key(s), ssh port {})",
        settings.console,
        settings.hostname.as_deref().unwrap_or("unset"),
        settings.authorized_keys.len(),
        settings.ssh_port
    );

    // The hostname is set by init and the network service; /etc/hostname
    // is the engine's bind mount (shared UTS namespace), never written here.

    let user = accounts::ensure_user(root, settings.password.as_deref())?;
    tracing::info!(
        "user {} ready (uid {}, shell {}, home {}{}, password {}, groups {} and {}, sudo without password)",
        accounts::USER,
        accounts::UID,
        user.shell,
        accounts::HOME,
        if user.home_created { " made" } else { " kept" },
        if user.password_set { "set from rancher.password" } else { "locked" },
        user.docker_group,
        user.admin_group,
    );

    let added = ssh::authorize_keys(root, &settings.authorized_keys)?;
    tracing::info!(
        "ssh keys for {}: {added} added to {}/.ssh/authorized_keys",
        accounts::USER,
        accounts::HOME
    );

    let mut keys = ssh::host_keys(root, settings, keygen)?;
    let ros_is_there = is_executable(&root.join(ROS));
    if !keys.later.is_empty() && !ros_is_there {
        // Without ros in the container nothing could make them later.
        keys.generated += ssh::finish_host_keys(root, keygen)?;
        keys.later.clear();
    }
    tracing::info!(
        "ssh host keys ready ({} from rancher.ssh.keys, {} reused, {} generated; kept in {}){}",
        keys.from_config,
        keys.reused,
        keys.generated,
        ssh::PERSISTED_KEYS,
        if keys.later.is_empty() {
            String::new()
        } else {
            format!(
                "; the {} {} made in the background and served from sshd's next start",
                keys.later.join(" and "),
                if keys.later.len() == 1 {
                    "key is"
                } else {
                    "keys are"
                }
            )
        }
    );
    let background: Vec<Program> = (!keys.later.is_empty())
        .then(|| Program {
            name: "ros console-init --finish-host-keys".to_string(),
            argv: vec![
                ROS.to_string(),
                "console-init".to_string(),
                "--finish-host-keys".to_string(),
            ],
            stdio_null: false,
        })
        .into_iter()
        .collect();
    ssh::configure_sshd(root, settings)?;
    if ssh::main_config_includes_drop_ins(root)? == Some(false) {
        tracing::warn!(
            "/etc/ssh/sshd_config does not include sshd_config.d: {} has no effect",
            ssh::DROP_IN
        );
    }

    for (link, target) in LINKS {
        fsutil::symlink(Path::new(target), &root.join(link))?;
    }
    tracing::info!("commands linked: ros, system-docker, docker, reboot, poweroff, halt, shutdown");

    let mut programs = Vec::new();
    if settings.ssh_daemon {
        programs.push(Program {
            name: "sshd".into(),
            argv: vec!["/usr/sbin/sshd".into(), "-D".into(), "-e".into()],
            stdio_null: true,
        });
        match &settings.ssh_listen_address {
            Some(addr) => tracing::info!("sshd on {addr}, port {}", settings.ssh_port),
            None => tracing::info!("sshd on port {}", settings.ssh_port),
        }
    } else {
        tracing::info!("sshd not started (rancher.ssh.daemon is false)");
    }

    let ttys = getty::ttys(root, settings);
    let tools = getty::tools(root)?;
    if let Some(login) = &tools.login {
        getty::write_autologin(root, login)?;
    }
    let mut started = Vec::new();
    for tty in &ttys {
        match getty::program(&tools, tty) {
            Some(p) => {
                programs.push(p);
                started.push(if tty.autologin {
                    format!("{} (autologin)", tty.name)
                } else {
                    tty.name.clone()
                });
            }
            None => tracing::warn!(
                "no getty on {}: the image has {}",
                tty.name,
                if tools.getty == getty::Getty::None {
                    "no getty (agetty or busybox)"
                } else {
                    "no login program (install the login package)"
                }
            ),
        }
    }
    if !started.is_empty() {
        tracing::info!("getty on {}", started.join(", "));
    } else if ttys.is_empty() {
        tracing::info!("no getty: no tty1 or serial console found");
    }
    for tty in &settings.autologin {
        if !ttys.iter().any(|t| &t.name == tty) {
            tracing::warn!("rancher.autologin names {tty}, which has no getty here");
        }
    }
    // The cloud-config's write_files and runcmd for the console come first
    // (`ros cloud-init-execute --console`), then the user's start scripts.
    let cloud_init = ros_is_there.then(|| Program {
        name: "cloud-init-execute".to_string(),
        argv: vec![
            ROS.to_string(),
            "cloud-init-execute".to_string(),
            "--console".to_string(),
        ],
        stdio_null: false,
    });
    let scripts: Vec<Program> = cloud_init
        .into_iter()
        .chain(
            START_SCRIPTS
                .iter()
                .filter(|path| is_executable(&root.join(path)))
                .map(|path| Program {
                    name: path.to_string(),
                    argv: vec![path.to_string()],
                    stdio_null: false,
                }),
        )
        .collect();
    for script in &scripts {
        tracing::info!("will run {}", script.name);
    }
    Ok(Plan {
        programs,
        scripts,
        background,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
