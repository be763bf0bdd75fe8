//! Stage 2, in the new root: the system engine in PID 1, the `os` services,
//! reaping, shutdown.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::Root;
use nix::mount::MsFlags;
use tokio::signal::unix::{signal, SignalKind};

use crate::{reaper, Error};

/// The system engine's socket.
pub const SOCKET: &str = "/var/run/system-docker.sock";
/// The system engine's data.
pub const DATA_ROOT: &str = "/var/lib/system-docker";
/// The system images of the system image, unpacked in the store layout and
/// read-only: the engine runs them in place, so boot extracts nothing.
pub const SYSTEM_STORE: &str = "/usr/share/ros/store";
/// The CA bundle PID 1 writes when the system has none (see tls-roots).
pub const CA_BUNDLE: &str = "/run/oxos/ca-certificates.crt";
/// The binary the engine re-executes as the per-container shim.
pub const ROS: &str = "/usr/bin/ros";

/// How a shutdown ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Restart the machine.
    Reboot,
    /// Turn it off.
    PowerOff,
    /// Stop it without turning it off.
    Halt,
}

/// The directories of a running system, and /var/run as a link to /run.
fn prepare_root() {
    for dir in [
        "/etc",
        "/tmp",
        "/home",
        "/opt",
        "/mnt",
        "/media",
        "/var/log",
        "/var/lib/rancher/conf/cloud-config.d",
        "/var/lib/rancher/cache",
        "/var/lib/rancher/preload/system-docker",
        "/var/lib/rancher/preload/docker",
        "/var/lib/rancher/engine",
        "/var/lib/docker",
        "/etc/docker",
        "/run/udev",
        DATA_ROOT,
    ] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!("cannot create {dir}: {e}");
        }
    }
    // Files the services bind-mount from the host: they must exist.
    for (file, content) in [
        (
            "/etc/hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        ),
        ("/etc/resolv.conf", ""),
    ] {
        if !Path::new(file).exists() {
            if let Err(e) = std::fs::write(file, content) {
                tracing::warn!("cannot create {file}: {e}");
            }
        }
    }
    if Path::new(MODPROBE).exists() {
        if let Err(e) = std::fs::write("/proc/sys/kernel/modprobe", MODPROBE) {
            tracing::warn!("cannot make {MODPROBE} the kernel's module loader: {e}");
        }
    }
    let var_run = Path::new("/var/run");
    if std::fs::symlink_metadata(var_run).is_err() {
        if let Err(e) = std::os::unix::fs::symlink("../run", var_run) {
            tracing::warn!("cannot link /var/run to /run: {e}");
        }
    }
    if let Err(e) = nix::mount::mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    ) {
        tracing::warn!("cannot mount /tmp: {e}");
    }
}

/// Saves the args after `--` as cloud-config.d/init.yml, where every
/// config load of this boot finds them (the first one chooses the
/// datasources).
fn save_after_dashes(after_dashes: &[String]) {
    let line = format!("-- {}", after_dashes.join(" "));
    if let Err(e) = config::layers::save_init_yml(
        &Root::default(),
        &config::cmdline::parse(&line).after_dashes,
    ) {
        tracing::error!("cannot save the args after --: {e}");
    }
}

/// Sets the hostname from the merged config, and returns that config (None
/// when it cannot be read, which is logged).
fn apply_early_config() -> Option<config::Config> {
    let root = Root::default();
    match config::load(&root) {
        Ok(merged) => {
            if let Ok(Some(serde_norway::Value::String(name))) = merged.get("hostname") {
                match nix::unistd::sethostname(name) {
                    Ok(()) => tracing::info!("hostname: {name}"),
                    Err(e) => tracing::error!("cannot set the hostname {name}: {e}"),
                }
                // The services share /etc/hosts: the name resolves locally
                // (sudo and others look it up).
                let hosts = format!(
                    "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                );
                if let Err(e) = std::fs::write("/etc/hosts", hosts) {
                    tracing::warn!("cannot write /etc/hosts: {e}");
                }
            }
            Some(merged)
        }
        Err(e) => {
            tracing::error!("config: {e}");
            None
        }
    }
}

/// Modules the running system needs whatever the config says: overlayfs
/// for the engine, FAT and ISO 9660 for config drives.
/// The power button and evdev let acpid see a power-off request.
const BASE_MODULES: &[&str] = &[
    "overlay",
    "vfat",
    // FAT's default code page and character sets (Debian's kernel mounts
    // FAT with iocharset=ascii unless told otherwise): config drives and
    // user `mounts` of FAT disks.
    "nls_cp437",
    "nls_iso8859_1",
    "nls_ascii",
    "isofs",
    "button",
    "evdev",
];

/// The helper the kernel runs to load a module on demand (a netfilter
/// expression, `rtnl-link-bridge`, ...): ros's `modprobe` personality, a
/// symlink in the system image.
const MODPROBE: &str = "/usr/sbin/modprobe";

/// The module index of the running kernel in the system image; None (and
/// logged) when it cannot be read.
fn module_index() -> Option<crate::kmod::ModuleIndex> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    match crate::kmod::ModuleIndex::load(&Path::new("/usr/lib/modules").join(release)) {
        Ok(index) => Some(index),
        Err(e) => {
            tracing::error!("modules: {e}");
            None
        }
    }
}

/// Loads the base modules, the drivers of the devices present, and
/// `rancher.modules` of `merged`.
fn load_modules(index: &crate::kmod::ModuleIndex, merged: Option<&config::Config>) {
    coldplug(index);
    let base: Vec<String> = BASE_MODULES.iter().map(|m| m.to_string()).collect();
    load_listed(index, &base);
    if let Some(merged) = merged {
        load_user_modules(index, merged);
    }
}

/// Loads each entry ("name param=value ...", as in /etc/modules); those
/// already loaded are skipped by the loader.
fn load_listed(index: &crate::kmod::ModuleIndex, entries: &[String]) {
    for entry in entries {
        let (name, params) = entry.split_once(' ').unwrap_or((entry.as_str(), ""));
        match crate::kmod::load(index, name, params) {
            Ok(()) => tracing::debug!("module {name} loaded"),
            Err(e) => tracing::warn!("modules: {e}"),
        }
    }
}

/// Loads the drivers of the devices present at boot (network cards, disks
/// the initrd did not need, the power button), as udev's coldplug would:
/// each device's `modalias` resolved through modules.alias. Devices that no
/// module drives are skipped quietly.
fn coldplug(index: &crate::kmod::ModuleIndex) {
    let aliases = crate::kmod::device_aliases(Path::new("/sys"));
    let modules = crate::kmod::drivers_for(index, &aliases);
    let errors = crate::kmod::load_parallel(index, &modules, crate::kmod::load_threads());
    for (module, e) in &errors {
        tracing::debug!("coldplug {module}: {e}");
    }
    tracing::info!(
        "devices: {} found, {} driver module(s) loaded",
        aliases.len(),
        modules.len() - errors.len()
    );
}

/// Loads `rancher.modules` of the merged config.
fn load_user_modules(index: &crate::kmod::ModuleIndex, merged: &config::Config) {
    if let Ok(Some(serde_norway::Value::Sequence(list))) = merged.get("rancher.modules") {
        let entries: Vec<String> = list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        load_listed(index, &entries);
    }
}

/// Links /dev/disk/by-label/LABEL to each labelled block device, as udev
/// would: the datasources find config drives there.
fn link_labels() {
    let dir = Path::new("/dev/disk/by-label");
    let _ = std::fs::create_dir_all(dir);
    for device in crate::probe::block_devices(Path::new("/sys"), Path::new("/dev")) {
        let Some(found) = crate::probe::probe(&device) else {
            continue;
        };
        if found.label.is_empty() || found.label.contains('/') {
            continue;
        }
        let link = dir.join(&found.label);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&device, &link) {
            tracing::warn!("cannot link {}: {e}", link.display());
        }
    }
}

/// Fetches user-data from the datasources that need no network (the
/// command line, files, config drives) and saves it for the config layers.
async fn cloud_init_save_local(merged: Option<&config::Config>) {
    let entries = merged.map(datasource::cli::configured).unwrap_or_default();
    let list = datasource::parse_sources(&entries);
    for problem in &list.problems {
        tracing::warn!("datasources: {problem}");
    }
    let local: Vec<_> = list.sources.into_iter().filter(|s| s.is_local()).collect();
    if local.is_empty() {
        return;
    }
    let mut options = datasource::FetchOptions::new(Duration::from_secs(5))
        .with_cmdline(std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    options.scan_labels = false;
    match datasource::fetch(&local, &options).await {
        Ok(Some(fetched)) => match datasource::save(Path::new("/"), &fetched) {
            Ok(()) => {
                tracing::info!("user-data from {} saved", fetched.source);
                // The first answer wins: cloud-init-execute then leaves
                // the network datasources alone.
                let source = fetched.source.to_string();
                if let Err(e) = datasource::mark_saved_at_boot(Path::new("/"), &source) {
                    tracing::warn!("cannot note that {source} answered: {e}");
                }
            }
            Err(e) => tracing::error!("cannot save user-data from {}: {e}", fetched.source),
        },
        Ok(None) => tracing::info!("no local datasource answered"),
        Err(e) => tracing::warn!("datasources: {e}"),
    }
}

/// Stage 2. Never returns but by rebooting or powering off.
pub fn run(after_dashes: &[String]) -> Result<Infallible, Error> {
    let started = Instant::now();
    tracing::info!(
        "OxOS {} stage 2 (PID 1 is {ROS})",
        env!("CARGO_PKG_VERSION")
    );
    // Before anything else writes to the state: a full disk gets its
    // reserve back here.
    crate::reserve::at_boot();
    prepare_root();
    // PID 1 has no /etc/ssl/certs: its HTTPS clients (image pulls) trust
    // Mozilla's roots from a bundle in /run. One thread still, so the
    // environment may change.
    match tls_roots::export_bundle(Path::new(CA_BUNDLE)) {
        Ok(true) => tracing::info!("CA certificates: Mozilla's roots in {CA_BUNDLE}"),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot write {CA_BUNDLE}: {e}; HTTPS pulls will fail"),
    }
    // The config as the state holds it before this boot's user-data, with
    // this boot's command line; read once for the modules and the
    // datasources.
    save_after_dashes(after_dashes);
    let early = match config::load(&Root::default()) {
        Ok(merged) => Some(merged),
        Err(e) => {
            tracing::error!("config: {e}");
            None
        }
    };
    let modules = module_index();
    if let Some(index) = &modules {
        load_modules(index, early.as_ref());
    }
    link_labels();
    engine::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "start the async runtime".into(),
            source,
        })?;
    rt.block_on(cloud_init_save_local(early.as_ref()));
    let merged = apply_early_config();
    // This boot's user-data may name more modules (rancher.modules).
    if let (Some(index), Some(merged)) = (&modules, &merged) {
        load_user_modules(index, merged);
    }
    let how = rt.block_on(serve(started));
    shutdown(how)
}

async fn serve(started: Instant) -> Shutdown {
    // Reap orphans from the start, whatever else fails.
    tokio::spawn(async {
        let Ok(mut sigchld) = signal(SignalKind::child()) else {
            tracing::error!("cannot watch SIGCHLD: orphans will not be reaped");
            return;
        };
        loop {
            reaper::reap_orphans();
            sigchld.recv().await;
        }
    });

    let engine = start_engine().await;
    let mut failed = Vec::new();
    if let Some(engine) = &engine {
        preload_images(engine).await;
        failed = bring_up_services(started).await;
        // The boot's allocations (configuration, plans, image metadata) are
        // over: what they freed goes back to the kernel.
        heap_trim::release_free_heap();
    }
    // Failed services are tried again until they are up, or until the
    // machine shuts down.
    let retries = async {
        retry_failed_services(failed).await;
        std::future::pending::<Shutdown>().await
    };
    let how = tokio::select! {
        how = wait_for_shutdown() => how,
        how = retries => how,
    };
    tracing::info!("shutting down ({how:?}): stopping the system services");
    if let Some(engine) = engine {
        engine.stop_all(10).await;
    }
    how
}

/// Opens the engine and serves its API from PID 1. An engine that cannot
/// start is logged; PID 1 goes on (reaping, shutdown).
async fn start_engine() -> Option<Arc<engine::Engine>> {
    let mut config = engine::Config::new(DATA_ROOT);
    config.shim_exe = ROS.into();
    config.read_only_image_stores = vec![SYSTEM_STORE.into()];
    let engine = match engine::Engine::open(config) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!("system engine: cannot open {DATA_ROOT}: {e}");
            return None;
        }
    };
    let listener = match engine::server::bind(Path::new(SOCKET)) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("system engine: cannot listen on {SOCKET}: {e}");
            return None;
        }
    };
    let served = engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine::server::serve(served, listener, std::future::pending::<()>()).await
        {
            tracing::error!("system engine: the API stopped: {e}");
        }
    });
    tracing::info!("system engine serving on unix://{SOCKET}");
    Some(engine)
}

/// Image archives loaded into the system engine at boot: the system
/// image's own, then the user's preload directory.
pub const PRELOAD_DIRS: &[&str] = &[
    "/usr/share/ros/images",
    "/var/lib/rancher/preload/system-docker",
];

/// Loads every image archive of [`PRELOAD_DIRS`] into the engine, once per
/// archive version: a stamp (name, size, mtime) under the data root records
/// what was loaded, so an unchanged archive is not read again at the next
/// boot. A broken archive is logged and skipped.
async fn preload_images(engine: &Arc<engine::Engine>) {
    let stamps = Path::new(DATA_ROOT).join("preloaded");
    let _ = std::fs::create_dir_all(&stamps);
    for dir in PRELOAD_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            if !meta.is_file()
                || file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let stamp = stamps.join(format!(
                "{}.{}.{}",
                file.file_name().unwrap_or_default().to_string_lossy(),
                meta.size(),
                meta.mtime()
            ));
            if stamp.exists() {
                continue;
            }
            let store = engine.images.clone();
            let path = file.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let reader = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                store
                    .load(std::io::BufReader::new(reader), &mut |_| {})
                    .map_err(|e| e.to_string())
            })
            .await;
            match loaded {
                Ok(Ok(images)) => {
                    let tags: Vec<String> = images.iter().flat_map(|i| i.tags.clone()).collect();
                    tracing::info!("preloaded {}: {}", file.display(), tags.join(", "));
                    let _ = std::fs::write(&stamp, tags.join("\n"));
                }
                Ok(Err(e)) => tracing::error!("cannot preload {}: {e}", file.display()),
                Err(e) => tracing::error!("cannot preload {}: {e}", file.display()),
            }
        }
    }
    engine::memory::release();
}

/// Brings up the `os` project of the merged config. Services that fail
/// (an image that is not there yet, a command the engine refuses, User
/// Docker not answering yet) are tried again in the background, see
/// [`retry_failed_services`]; the others do not wait for them.
async fn bring_up_services(started: Instant) -> Vec<String> {
    let root = Root::default();
    let loaded = match compose::cli::load_project(&root).await {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("services: {warning}");
            }
            for error in &loaded.errors {
                tracing::error!("services: {error}");
            }
            loaded
        }
        Err(e) => {
            tracing::error!("services: {e}");
            return Vec::new();
        }
    };
    let project = loaded.project;
    let progress = |line: &str| tracing::info!("{line}");
    let ctx = services_context(loaded.env, loaded.files, &progress);
    let mut reload = compose::cli::reloader(
        root,
        |w| tracing::warn!("services: {w}"),
        |e| tracing::error!("services: {e}"),
    );
    match compose::up::up(&ctx, &project, &[], Some(&mut reload)).await {
        Ok(steps) => {
            let failed = failed_services(&steps);
            if failed.is_empty() {
                tracing::info!(
                    "OxOS is up: {} services in {:.1} s",
                    steps.len(),
                    started.elapsed().as_secs_f64()
                );
            } else {
                tracing::warn!(
                    "OxOS is up with failed services: {} (see ros service logs); \
                     they are tried again in the background",
                    failed.join(", ")
                );
            }
            failed
        }
        Err(e) => {
            tracing::error!("services: {e}");
            Vec::new()
        }
    }
}

/// How the `os` project is brought up by PID 1: both engines at their
/// sockets, the `write_files` entries for the services' containers (put
/// into each before it starts), progress to the log.
fn services_context<'a>(
    env: compose::container::Environment,
    files: compose::files::ServiceFiles,
    progress: &'a (dyn Fn(&str) + Sync),
) -> compose::up::Context<'a> {
    compose::up::Context {
        project: "os".into(),
        engines: compose::up::Engines {
            system: SOCKET.into(),
            user: "/var/run/docker.sock".into(),
        },
        env,
        files,
        progress,
    }
}

/// The services whose step failed.
fn failed_services(steps: &[compose::up::Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| matches!(s.outcome, compose::up::Outcome::Failed(_)))
        .map(|s| s.service.clone())
        .collect()
}

/// The first wait before a failed service is tried again; each failure
/// doubles it, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between two tries of a failed service.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The wait after `previous`: doubled, at most [`RETRY_MAX`].
fn next_retry(previous: Duration) -> Duration {
    (previous * 2).min(RETRY_MAX)
}

/// Tries the `failed` services again, with a back-off, until each is up or
/// no longer in the config. The config is read again before each try, so
/// a fixed service definition (or an image loaded by hand, or User Docker
/// coming up) is what makes the next try work. A service that keeps
/// failing is tried every [`RETRY_MAX`] and logged each time; a failure
/// never stops the others or the OS.
async fn retry_failed_services(mut failed: Vec<String>) {
    let mut wait = RETRY_FIRST;
    while !failed.is_empty() {
        tracing::info!(
            "services: trying {} again in {} s",
            failed.join(", "),
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
        wait = next_retry(wait);
        let loaded = match compose::cli::load_project(&Root::default()).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("services: {e}");
                continue;
            }
        };
        failed.retain(|name| {
            let known = loaded.project.get(name).is_some();
            if !known {
                tracing::info!("services: {name} is no longer in the config");
            }
            known
        });
        if failed.is_empty() {
            break;
        }
        // The write_files errors were logged at boot; a retry uses what
        // can be used of the config as it is now.
        let progress = |line: &str| tracing::info!("{line}");
        let ctx = services_context(loaded.env, loaded.files, &progress);
        match compose::up::up(&ctx, &loaded.project, &failed, None).await {
            Ok(steps) => {
                let still = failed_services(&steps);
                for name in failed.iter().filter(|n| !still.contains(n)) {
                    tracing::info!("services: {name} is up after a retry");
                }
                failed = still;
            }
            Err(e) => tracing::error!("services: {e}"),
        }
    }
}

/// Waits for the signal that asks for a shutdown: SIGINT (ctrl-alt-del)
/// and SIGTERM reboot, SIGUSR1 halts, SIGUSR2 powers off.
async fn wait_for_shutdown() -> Shutdown {
    // ctrl-alt-del sends SIGINT to PID 1 instead of rebooting at once.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let signals = [
        (SignalKind::interrupt(), Shutdown::Reboot),
        (SignalKind::terminate(), Shutdown::Reboot),
        (SignalKind::user_defined1(), Shutdown::Halt),
        (SignalKind::user_defined2(), Shutdown::PowerOff),
    ];
    let mut streams = Vec::new();
    for (kind, how) in signals {
        match signal(kind) {
            Ok(s) => streams.push((s, how)),
            Err(e) => tracing::error!("cannot watch {kind:?}: {e}"),
        }
    }
    if streams.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = streams.into_iter().map(|(mut s, how)| {
        Box::pin(async move {
            s.recv().await;
            how
        })
    });
    futures_util::future::select_all(waits).await.0
}

/// Syncs, makes the root read-only, and reboots, halts or powers off.
fn shutdown(how: Shutdown) -> ! {
    nix::unistd::sync();
    // Give processes that did not stop a last chance to be reaped.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
    reaper::reap_all_blocking();
    nix::unistd::sync();
    match nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        Ok(()) => tracing::info!("state file system is clean (remounted read-only)"),
        Err(e) => tracing::error!("cannot remount / read-only: {e}"),
    }
    let mode = match how {
        Shutdown::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        Shutdown::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        Shutdown::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
    };
    tracing::info!("{how:?} now");
    let err = nix::sys::reboot::reboot(mode);
    crate::halt_here(&format!("reboot(2) failed: {err:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_services_are_tried_again_ever_later_up_to_five_minutes() {
        let mut wait = RETRY_FIRST;
        let mut waits = vec![wait.as_secs()];
        for _ in 0..8 {
            wait = next_retry(wait);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn only_failed_steps_are_tried_again() {
        use compose::up::{Outcome, Step};
        let step = |service: &str, outcome| Step {
            service: service.into(),
            outcome,
        };
        let steps = [
            step("network", Outcome::Running),
            step("late", Outcome::Failed("no such image".into())),
            step("volumes", Outcome::Created),
            step("user", Outcome::Failed("User Docker is not up".into())),
        ];
        assert_eq!(failed_services(&steps), ["late", "user"]);
    }
}
