//! The engine: containers and their lifecycle over the image store and the shim.

use crate::error::{Error, Result};
use crate::record::{MountRecord, Record, Status};
use crate::{fsutil, runconfig, supervise};
use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use image_store::ImageStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Everything the engine keeps: images, containers, volumes.
    pub data_root: PathBuf,
    /// The binary re-executed as `BIN shim run DIR` for each container.
    pub shim_exe: PathBuf,
    /// Registries reached over plain http (host[:port] or CIDR); 127.0.0.0/8
    /// is always in the list, as in Docker.
    pub insecure_registries: Vec<String>,
    /// Parent of every container's cgroup.
    pub cgroup_parent: String,
    /// Image store directories that are only read (such as the store the
    /// system image carries at `/usr/share/ros/store`): their images are
    /// listed and run like the others but cannot be removed. A missing one
    /// is skipped with a warning.
    pub read_only_image_stores: Vec<PathBuf>,
}

/// The default parent of every container's cgroup (`system-docker`, as in
/// RancherOS), under the cgroup2 root.
pub const DEFAULT_CGROUP_PARENT: &str = "system-docker";

impl Config {
    pub fn new(data_root: impl Into<PathBuf>) -> Self {
        Config {
            data_root: data_root.into(),
            shim_exe: PathBuf::from("/proc/self/exe"),
            insecure_registries: Vec::new(),
            cgroup_parent: DEFAULT_CGROUP_PARENT.into(),
            read_only_image_stores: Vec::new(),
        }
    }
}

/// One container: its record on disk and the means to wait for its changes.
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    record: Mutex<Record>,
    /// Bumped on every change of state; waiters subscribe.
    changes: watch::Sender<u64>,
    /// Serialises lifecycle operations (start, stop, remove) on this container.
    pub(crate) op: tokio::sync::Mutex<()>,
    /// Current restart back-off.
    pub(crate) backoff: Mutex<Duration>,
    /// Set once the container is removed.
    removed: std::sync::atomic::AtomicBool,
    /// Clients attached to its output (`docker run` without -d); an
    /// auto-remove waits for them so that they see everything.
    pub(crate) attached: std::sync::atomic::AtomicUsize,
}

impl Container {
    fn new(dir: PathBuf, record: Record) -> Arc<Self> {
        let (changes, _) = watch::channel(0);
        Arc::new(Container {
            id: record.id.clone(),
            dir,
            record: Mutex::new(record),
            changes,
            op: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(supervise::INITIAL_BACKOFF),
            removed: false.into(),
            attached: 0.into(),
        })
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the record, writes it to disk and wakes the waiters.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        self.change(true, f)
    }

    /// Changes the record in memory only; the next [`Container::update`]
    /// writes it. For steps of a start that a crash would redo anyway.
    pub(crate) fn update_in_memory<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        self.change(false, f)
    }

    fn change<T>(&self, persist: bool, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut rec);
        if persist && !self.is_removed() {
            if let Err(e) = save_record(&self.dir, &rec) {
                tracing::error!(container = %self.id, "cannot save container record: {e}");
            }
        }
        drop(rec);
        self.changes.send_modify(|n| *n += 1);
        out
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(runtime::protocol::LOG_FILE)
    }
}

fn save_record(dir: &Path, rec: &Record) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
    fsutil::write_atomic(&dir.join("container.json"), &bytes)
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// The system container engine.
pub struct Engine {
    pub config: Config,
    pub images: Arc<ImageStore>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    pub(crate) execs: crate::exec::ExecTable,
}

impl Engine {
    /// Opens the data root, loads every container record and takes the running
    /// containers back under supervision (their shims kept them running while
    /// no daemon was there).
    pub fn open(config: Config) -> Result<Arc<Self>> {
        for sub in ["containers", "volumes", "image"] {
            std::fs::create_dir_all(config.data_root.join(sub)).map_err(|e| {
                Error::internal(
                    format!("cannot create {}", config.data_root.join(sub).display()),
                    e,
                )
            })?;
        }
        let images = ImageStore::open_with_read_only(
            &config.data_root.join("image"),
            &config.read_only_image_stores,
        )?;
        let engine = Arc::new(Engine {
            config,
            images: Arc::new(images),
            containers: Mutex::new(HashMap::new()),
            execs: Default::default(),
        });
        engine.load_containers()?;
        Ok(engine)
    }

    fn containers_dir(&self) -> PathBuf {
        self.config.data_root.join("containers")
    }

    fn load_containers(self: &Arc<Self>) -> Result<()> {
        let dir = self.containers_dir();
        let mut loaded = Vec::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| Error::internal(format!("cannot read {}", dir.display()), e))?
        {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let file = path.join("container.json");
            let rec: Record = match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(rec) => rec,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", file.display());
                    continue;
                }
            };
            let c = Container::new(path, rec);
            loaded.push(c.clone());
            self.lock_containers().insert(c.id.clone(), c);
        }
        for c in loaded {
            supervise::recover(self, c);
        }
        Ok(())
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All containers, newest first.
    pub fn list(&self) -> Vec<Arc<Container>> {
        let mut all: Vec<_> = self.lock_containers().values().cloned().collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.snapshot().created));
        all
    }

    /// Finds a container by full id, name (with or without "/") or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Arc<Container>> {
        find_container(&self.lock_containers(), name_or_id)
    }

    /// `docker create`.
    pub fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<String> {
        check_supported(&body)?;
        let image_name = body
            .image
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::InvalidArgument("no image was given".into()))?;
        let image = self.images.get(&image_name).map_err(|e| match e {
            image_store::Error::NotFound(_) => {
                Error::NotFound(format!("No such image: {image_name}"))
            }
            e => e.into(),
        })?;
        let host_config = body.host_config.clone().unwrap_or_default();
        let config = container_config_of(&body);

        let (path, args) = runconfig::command_of(&config, &image.config.config)?;
        let id = random_id();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.trim_start_matches('/');
                if !valid_name(n) {
                    return Err(Error::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => self.generate_name(),
        };
        let dir = self.containers_dir().join(&id);

        // Reserve the name and create the directory under the lock, so that two
        // creates with one name cannot both succeed.
        let container = {
            let mut map = self.lock_containers();
            if let Some(other) = map.values().find(|c| c.snapshot().name == name) {
                return Err(Error::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". \
                     You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            let mounts =
                self.resolve_mounts(&map, &id, &config, &host_config, &image.config.config)?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::internal(format!("cannot create {}", dir.display()), e))?;
            let rec = Record {
                id: id.clone(),
                name,
                created: fsutil::now_rfc3339(),
                image: image_name,
                image_id: image.id.clone(),
                path,
                args,
                config,
                host_config,
                mounts,
                state: Default::default(),
            };
            if let Err(e) = save_record(&dir, &rec) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::internal("cannot save container record", e));
            }
            let c = Container::new(dir, rec);
            map.insert(id.clone(), c.clone());
            c
        };
        tracing::info!(container = %container.id, "created");
        Ok(id)
    }

    fn generate_name(&self) -> String {
        use rand::seq::IndexedRandom;
        const LEFT: &[&str] = &[
            "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nifty",
            "proud", "quiet", "sharp", "steady", "tender", "vivid", "wise", "zealous",
        ];
        const RIGHT: &[&str] = &[
            "turing",
            "hopper",
            "lovelace",
            "ritchie",
            "thompson",
            "torvalds",
            "knuth",
            "dijkstra",
            "liskov",
            "hamilton",
            "perlman",
            "kernighan",
            "lamport",
            "wirth",
            "backus",
            "mccarthy",
        ];
        let mut rng = rand::rng();
        loop {
            let name = format!(
                "{}_{}",
                LEFT.choose(&mut rng).unwrap_or(&"oxos"),
                RIGHT.choose(&mut rng).unwrap_or(&"container")
            );
            let taken = self
                .lock_containers()
                .values()
                .any(|c| c.snapshot().name == name);
            if !taken {
                return name;
            }
            let suffixed = format!("{name}_{}", rand::random::<u16>());
            if !self
                .lock_containers()
                .values()
                .any(|c| c.snapshot().name == suffixed)
            {
                return suffixed;
            }
        }
    }

    /// Binds, anonymous volumes (from the image and from `-v /path`) and
    /// volumes_from, resolved into mount records.
    fn resolve_mounts(
        &self,
        map: &HashMap<String, Arc<Container>>,
        id: &str,
        config: &ContainerConfig,
        host: &HostConfig,
        image: &image_store::ContainerConfig,
    ) -> Result<Vec<MountRecord>> {
        let mut mounts: Vec<MountRecord> = Vec::new();
        let add = |m: MountRecord, mounts: &mut Vec<MountRecord>| {
            mounts.retain(|x| x.destination != m.destination);
            mounts.push(m);
        };
        for from in host.volumes_from.iter().flatten() {
            let (name, mode) = match from.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                _ => (from.as_str(), None),
            };
            let other = find_container(map, name)?;
            for m in other.snapshot().mounts {
                let mut m = m;
                if let Some(mode) = mode {
                    m.read_only = mode == "ro";
                }
                add(m, &mut mounts);
            }
        }
        let mut anonymous: Vec<String> = image.volumes.iter().cloned().collect();
        for bind in host.binds.iter().flatten() {
            let parts: Vec<&str> = bind.split(':').collect();
            let (source, destination, opts) = match parts.as_slice() {
                [dst] => {
                    anonymous.push(dst.to_string());
                    continue;
                }
                [src, dst] => (*src, *dst, ""),
                [src, dst, opts] => (*src, *dst, *opts),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid volume specification: '{bind}'"
                    )))
                }
            };
            if !source.starts_with('/') {
                return Err(Error::NotSupported(format!(
                    "named volume '{source}' (use a host path: -v /host/path:{destination})"
                )));
            }
            if !destination.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "invalid mount config: mount path must be absolute: '{destination}'"
                )));
            }
            let mut rec = MountRecord {
                kind: "bind".into(),
                source: source.into(),
                destination: destination.into(),
                ..Default::default()
            };
            for opt in opts.split(',').filter(|o| !o.is_empty()) {
                match opt {
                    "ro" => rec.read_only = true,
                    "rw" => rec.read_only = false,
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                        rec.propagation = opt.into()
                    }
                    "z" | "Z" | "nocopy" => {}
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "invalid mode '{other}' in volume specification '{bind}'"
                        )))
                    }
                }
            }
            add(rec, &mut mounts);
        }
        for m in host.mounts.iter().flatten() {
            use bollard_stubs::models::MountType;
            if !matches!(m.typ, Some(MountType::BIND)) {
                return Err(Error::NotSupported(format!(
                    "mount type {:?} (only bind mounts)",
                    m.typ.map(|t| t.to_string()).unwrap_or_default()
                )));
            }
            let propagation = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation)
                .map(|p| p.to_string())
                .unwrap_or_default();
            add(
                MountRecord {
                    kind: "bind".into(),
                    source: m.source.clone().unwrap_or_default(),
                    destination: m.target.clone().unwrap_or_default(),
                    read_only: m.read_only.unwrap_or(false),
                    propagation,
                    ..Default::default()
                },
                &mut mounts,
            );
        }
        anonymous.extend(config.volumes.iter().flatten().cloned());
        for dst in anonymous {
            if mounts.iter().any(|m| m.destination == dst) {
                continue;
            }
            let name = format!(
                "{}-{}",
                &id[..12],
                hex::encode(&sha2_of(dst.as_bytes())[..6])
            );
            let source = self
                .config
                .data_root
                .join("volumes")
                .join(&name)
                .join("_data");
            add(
                MountRecord {
                    kind: "volume".into(),
                    name,
                    source: source.to_string_lossy().into_owned(),
                    destination: dst,
                    ..Default::default()
                },
                &mut mounts,
            );
        }
        Ok(mounts)
    }

    /// `docker start`.
    pub async fn start(self: &Arc<Self>, name_or_id: &str) -> Result<()> {
        let c = self.get(name_or_id)?;
        let _op = c.op.lock().await;
        if c.snapshot().state.status == Status::Running {
            return Err(Error::NotModified("container already started".into()));
        }
        c.update_in_memory(|r| {
            r.state.manually_stopped = false;
            r.state.restart_count = 0;
        });
        *c.backoff.lock().unwrap_or_else(|e| e.into_inner()) = supervise::INITIAL_BACKOFF;
        supervise::start_locked(self, &c).await
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout`.
    pub async fn stop(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.get(name_or_id)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout, signal).await
    }

    pub(crate) async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let rec = c.snapshot();
        c.update(|r| r.state.manually_stopped = true);
        if rec.state.status == Status::Restarting {
            // Waiting in back-off: cancelling the restart is the whole stop.
            c.update(|r| r.state.status = Status::Exited);
            return Ok(());
        }
        if rec.state.status != Status::Running {
            return Err(Error::NotModified("container already stopped".into()));
        }
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10).max(0) as u64;
        let sig = signal
            .map(str::to_string)
            .or(rec.config.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = parse_signal(&sig)?;
        if timeout > 0 {
            send_signal(rec.state.pid, sig);
            if wait_not_running(c, Duration::from_secs(timeout)).await {
                return Ok(());
            }
            tracing::info!(container = %c.id, "did not stop within {timeout}s, killing it");
        }
        send_signal(c.snapshot().state.pid, libc::SIGKILL);
        if wait_not_running(c, Duration::from_secs(30)).await {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "container {} did not exit after SIGKILL",
                c.id
            )))
        }
    }

    /// `docker kill`.
    pub async fn kill(&self, name_or_id: &str, signal: Option<&str>) -> Result<()> {
        let c = self.get(name_or_id)?;
        let rec = c.snapshot();
        if rec.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let sig = parse_signal(signal.unwrap_or("SIGKILL"))?;
        let stop_sig = parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))
            .unwrap_or(libc::SIGTERM);
        if sig == libc::SIGKILL || sig == stop_sig {
            // As in Docker, killing with SIGKILL or the stop signal is a stop by the user.
            c.update(|r| r.state.manually_stopped = true);
        }
        if !send_signal(rec.state.pid, sig) {
            // It exited between the check and the signal.
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        Ok(())
    }

    /// `docker restart`.
    pub async fn restart(self: &Arc<Self>, name_or_id: &str, timeout: Option<i64>) -> Result<()> {
        let c = self.get(name_or_id)?;
        let _op = c.op.lock().await;
        match self.stop_locked(&c, timeout, None).await {
            Ok(()) | Err(Error::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        c.update(|r| {
            r.state.manually_stopped = false;
            r.state.restart_count = 0;
        });
        supervise::start_locked(self, &c).await
    }

    /// `docker rm`.
    pub async fn remove(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let c = self.get(name_or_id)?;
        let _op = c.op.lock().await;
        self.remove_locked(&c, force, volumes).await
    }

    pub(crate) async fn remove_locked(
        &self,
        c: &Arc<Container>,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let rec = c.snapshot();
        if rec.is_running() {
            if !force {
                return Err(Error::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    rec.id
                )));
            }
            match self.stop_locked(c, Some(0), Some("SIGKILL")).await {
                Ok(()) | Err(Error::NotModified(_)) => {}
                Err(e) => return Err(e),
            }
        }
        c.update(|r| r.state.status = Status::Removing);
        c.removed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.lock_containers().remove(&c.id);
        runconfig::cleanup_rootfs(&c.dir);
        if let Err(e) = std::fs::remove_dir_all(&c.dir) {
            tracing::warn!(container = %c.id, "cannot remove {}: {e}", c.dir.display());
        }
        if volumes {
            for m in rec
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" && m.name.starts_with(&rec.id[..12]))
            {
                let dir = self.config.data_root.join("volumes").join(&m.name);
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        c.changes.send_modify(|n| *n += 1);
        tracing::info!(container = %c.id, "removed");
        Ok(())
    }

    /// `docker wait`: the exit code once the condition holds.
    pub async fn wait(&self, name_or_id: &str, condition: WaitCondition) -> Result<i64> {
        let c = self.get(name_or_id)?;
        let mut rx = c.subscribe();
        let start_count = {
            let rec = c.snapshot();
            exits_seen(&rec)
        };
        loop {
            let rec = c.snapshot();
            let done = match condition {
                WaitCondition::NotRunning => !rec.is_running() || c.is_removed(),
                WaitCondition::NextExit => {
                    exits_seen(&rec) != start_count && !rec.is_running() || c.is_removed()
                }
                WaitCondition::Removed => c.is_removed(),
            };
            if done {
                return Ok(rec.state.exit_code);
            }
            if rx.changed().await.is_err() {
                return Ok(c.snapshot().state.exit_code);
            }
        }
    }

    /// Whether some container (running or not) uses this image id.
    pub fn image_in_use(&self, image_id: &str) -> bool {
        self.lock_containers()
            .values()
            .any(|c| c.snapshot().image_id == image_id)
    }

    /// Gets every container under supervision stopped and recorded, for a
    /// clean shutdown of the OS. Containers keep their restart policies for
    /// the next boot.
    pub async fn stop_all(self: &Arc<Self>, timeout: i64) {
        let all = self.list();
        let mut tasks = Vec::new();
        for c in all {
            let engine = self.clone();
            tasks.push(tokio::spawn(async move {
                let _op = c.op.lock().await;
                let _ = engine.stop_locked(&c, Some(timeout), None).await;
                c.update(|r| r.state.manually_stopped = false);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Finds a container by full id, name (with or without "/") or unique id prefix.
fn find_container(
    map: &HashMap<String, Arc<Container>>,
    name_or_id: &str,
) -> Result<Arc<Container>> {
    let key = name_or_id.trim_start_matches('/');
    if let Some(c) = map.get(key) {
        return Ok(c.clone());
    }
    if let Some(c) = map.values().find(|c| c.snapshot().name == key) {
        return Ok(c.clone());
    }
    if !key.is_empty() {
        let matches: Vec<_> = map.values().filter(|c| c.id.starts_with(key)).collect();
        match matches.len() {
            1 => return Ok(matches[0].clone()),
            0 => {}
            _ => {
                return Err(Error::NotFound(format!(
                    "multiple IDs found with provided prefix: {key}"
                )))
            }
        }
    }
    Err(Error::NotFound(format!("No such container: {name_or_id}")))
}

/// A counter that changes with every exit: finished_at of the last run.
fn exits_seen(rec: &Record) -> String {
    format!("{}#{}", rec.state.finished_at, rec.state.restart_count)
}

async fn wait_not_running(c: &Container, timeout: Duration) -> bool {
    let mut rx = c.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if c.snapshot().state.status != Status::Running {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return true,
            Err(_) => return c.snapshot().state.status != Status::Running,
        }
    }
}

/// Sends a signal to a container's first process; false when it is gone.
pub(crate) fn send_signal(pid: i32, sig: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// "SIGTERM", "TERM", "15" -> 15.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(Error::InvalidArgument(format!("Invalid signal: {s}"))),
    };
    Ok(n)
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && n.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub(crate) fn random_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn sha2_of(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn container_config_of(body: &ContainerCreateBody) -> ContainerConfig {
    ContainerConfig {
        hostname: body.hostname.clone(),
        domainname: body.domainname.clone(),
        user: body.user.clone(),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports.clone(),
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: body.env.clone(),
        cmd: body.cmd.clone(),
        healthcheck: body.healthcheck.clone(),
        args_escaped: body.args_escaped,
        image: body.image.clone(),
        volumes: body.volumes.clone(),
        working_dir: body.working_dir.clone(),
        entrypoint: body.entrypoint.clone(),
        network_disabled: body.network_disabled,
        on_build: body.on_build.clone(),
        labels: body.labels.clone(),
        stop_signal: body.stop_signal.clone(),
        stop_timeout: body.stop_timeout,
        shell: body.shell.clone(),
    }
}

/// Rejects, by name, what the system engine does not implement, instead of
/// silently running something other than what was asked.
fn check_supported(body: &ContainerCreateBody) -> Result<()> {
    if body.tty == Some(true) {
        return Err(Error::NotSupported("a terminal (-t/--tty)".into()));
    }
    if body.open_stdin == Some(true) {
        return Err(Error::NotSupported(
            "keeping stdin open (-i/--interactive)".into(),
        ));
    }
    if body
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE")
    {
        return Err(Error::NotSupported("health checks (--health-cmd)".into()));
    }
    let Some(host) = &body.host_config else {
        return Ok(());
    };
    if host.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
        || host.publish_all_ports == Some(true)
    {
        return Err(Error::NotSupported(
            "publishing ports (-p/-P; the system engine has no bridge network, use --network host)"
                .into(),
        ));
    }
    match host.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "none" | "host" => {}
        other => {
            return Err(Error::NotSupported(format!(
                "network mode \"{other}\" (use host, or none, the default)"
            )))
        }
    }
    for (what, mode) in [
        ("pid", &host.pid_mode),
        ("ipc", &host.ipc_mode),
        ("uts", &host.uts_mode),
    ] {
        match mode.as_deref().unwrap_or("") {
            "" | "host" | "private" | "shareable" => {}
            other => {
                return Err(Error::NotSupported(format!(
                    "{what} mode \"{other}\" (use host or leave it empty)"
                )))
            }
        }
    }
    if let Some(rt) = host
        .runtime
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "runc" && *r != "ros")
    {
        return Err(Error::NotSupported(format!("runtime \"{rt}\"")));
    }
    if host.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(Error::NotSupported("links (--link)".into()));
    }
    if let Some(log) = &host.log_config {
        match log.typ.as_deref().unwrap_or("") {
            "" | "json-file" | "local" => {}
            other => {
                return Err(Error::NotSupported(format!(
                    "log driver \"{other}\" (json-file only)"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding one image, `sys:1`, of one empty layer, sealed as
    /// the system image's store is.
    fn system_store(dir: &Path) -> String {
        let s = ImageStore::open(dir).unwrap();
        // An empty tar: two zero blocks.
        let id = s
            .import(&[0u8; 1024][..], Some("sys:1"), Default::default())
            .unwrap();
        s.seal().unwrap();
        id
    }

    #[tokio::test]
    async fn read_only_image_stores_are_listed_and_cannot_be_removed() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let d = tempfile::tempdir().unwrap();
        let ro = d.path().join("system-store");
        let id = system_store(&ro);
        let mut config = Config::new(d.path().join("data"));
        config.read_only_image_stores = vec![d.path().join("missing"), ro.clone()];
        let engine = Engine::open(config).unwrap();
        assert_eq!(engine.images.get("sys:1").unwrap().id, id);
        assert!(engine.images.layer_paths(&id).unwrap()[0].starts_with(&ro));

        let app = crate::api::router(engine.clone());
        let res = app
            .oneshot(
                axum::http::Request::delete("/images/sys:1")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 409);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let msg = String::from_utf8_lossy(&body);
        assert!(
            msg.contains("image sys:1 is part of the system image and cannot be removed"),
            "{msg}"
        );
        assert_eq!(engine.images.get("sys:1").unwrap().id, id);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn container_names_follow_docker_rules() {
        assert!(valid_name("web-1"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("x"));
        assert!(!valid_name("a b"));
    }

    #[test]
    fn unsupported_options_are_named() {
        let body = ContainerCreateBody {
            tty: Some(true),
            ..Default::default()
        };
        let err = check_supported(&body).unwrap_err().to_string();
        assert!(err.contains("--tty"), "{err}");
        let body = ContainerCreateBody {
            host_config: Some(HostConfig {
                network_mode: Some("bridge".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = check_supported(&body).unwrap_err().to_string();
        assert!(err.contains("bridge"), "{err}");
    }
}
