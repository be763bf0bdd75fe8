//! `rancher.services_include`: services that live outside the config, in
//! service indexes (repositories), local files or URLs.
//!
//! # Background
//!
//! RancherOS let a user turn on optional system services (`open-vm-tools`,
//! `kernel-headers`, `zfs`, ...) with `ros service enable NAME`, which sets
//! `rancher.services_include.NAME: true`. A key of that map is one of:
//!
//! - a service name, looked up in the repositories of
//!   `rancher.repositories.<repo>.url`;
//! - an absolute local path (`/var/lib/rancher/conf/my-service.yml`);
//! - an `http://` or `https://` URL of a compose file.
//!
//! A repository (rancher/os-services) is a directory tree served over HTTP:
//!
//! ```text
//! index.yml               services: [name, ...]  consoles: [...]  engines: [...]
//! o/open-vm-tools.yml     one compose (v1) file per entry, under the
//! k/kernel-headers.yml    first letter of its name
//! ```
//!
//! Each file is a compose document that may define several services (a
//! service and its volume container, say). RancherOS cached every download
//! under /var/lib/rancher/cache so that a service enabled once still starts
//! when the network is down at the next boot.
//!
//! # Design
//!
//! - [`Includes`] holds the HTTP client (with a timeout) and the cache
//!   directory, given by the caller (`/var/lib/rancher/cache` on the OS, a
//!   temporary directory in tests).
//! - A repository URL is either `http(s)://...` or a local directory (an
//!   absolute path or `file://` URL), so an index on the state partition or
//!   an ISO works the same as one on a web server.
//! - A name is looked up in each repository in name order (the order of
//!   `rancher.repositories` keys), first at `<repo>/<first letter>/<name>.yml`
//!   as rancher/os-services lays files out, then at `<repo>/<name>.yml` for a
//!   flat index. The first repository that has it wins.
//! - Downloads go to the network first. A successful download is written to
//!   the cache atomically (a temporary file renamed over the old one), under
//!   the SHA-256 of the URL. When the network fails (no route, refused,
//!   timeout, a 5xx answer) the cached copy is used; a 404 means the file is
//!   not there and the cache is not consulted, so a flat lookup does not
//!   shadow a moved file.
//! - The document is parsed into a [`Project`]; its text is kept too
//!   ([`Included::text`]) for a caller that interpolates `${VAR}` itself.
//! - [`Includes::list`] reads each repository's `index.yml` (for
//!   `ros service list`, `ros console list`, `ros engine list`): a mapping
//!   of `services`, `consoles` and `engines` lists as RancherOS wrote it, or
//!   a plain list of service names.
//!
//! # Limitations
//!
//! - The index is not consulted to resolve a name: as in RancherOS, a
//!   service file that exists is used even if `index.yml` does not list it.
//! - Relative local paths are not supported (a key that is not absolute,
//!   not a URL and holds a `/` is an error).
//! - No retries beyond one attempt per URL; `rancher.http_load_retries` is
//!   not read yet.
//! - The cache never expires; a newer file replaces it at the next
//!   successful download.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{ComposeError, Project};

/// How long one HTTP request may take, connection included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One enabled entry of `rancher.services_include`, loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Included {
    /// The key as written in `services_include`.
    pub entry: String,
    /// Where the document came from: a path or a URL.
    pub location: String,
    /// Whether the document is the cached copy of `location` (the network
    /// failed).
    pub from_cache: bool,
    /// The document as read, before any interpolation.
    pub text: String,
    /// Its services.
    pub project: Project,
}

/// The entries of one repository's `index.yml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The repository's name (its key under `rancher.repositories`).
    pub repository: String,
    /// Where `index.yml` was read.
    pub location: String,
    /// Whether it is the cached copy (the network failed).
    pub from_cache: bool,
    /// Service names (`ros service list`).
    pub services: Vec<String>,
    /// Console names (`ros console list`).
    pub consoles: Vec<String>,
    /// Engine names (`ros engine list`).
    pub engines: Vec<String>,
}

/// Where an entry or a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Url(String),
    Path(PathBuf),
}

impl Location {
    fn parse(text: &str) -> Option<Self> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Some(Self::Url(text.to_owned()))
        } else if let Some(path) = text.strip_prefix("file://") {
            Some(Self::Path(PathBuf::from(path)))
        } else if text.starts_with('/') {
            Some(Self::Path(PathBuf::from(text)))
        } else {
            None
        }
    }

    /// `self` joined with a relative path of `/`-separated parts.
    fn join(&self, relative: &str) -> Self {
        match self {
            Self::Url(u) => Self::Url(format!("{}/{relative}", u.trim_end_matches('/'))),
            Self::Path(p) => Self::Path(p.join(relative)),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(u) => f.write_str(u),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a document could not be had.
enum Miss {
    /// It is not there (no such file, HTTP 404 or 410).
    NotFound,
    /// It may be there but could not be read, and no cached copy exists.
    Unavailable(String),
}

/// A document read from a location.
struct Fetched {
    text: String,
    from_cache: bool,
}

/// Loads `services_include` entries and service indexes, with a download
/// cache.
#[derive(Debug, Clone)]
pub struct Includes {
    client: reqwest::Client,
    cache_dir: PathBuf,
}

impl Includes {
    /// Downloads with [`DEFAULT_TIMEOUT`], cached under `cache_dir`
    /// (created when the first download is saved).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self, ComposeError> {
        Self::with_timeout(cache_dir, DEFAULT_TIMEOUT)
    }

    /// Like [`Includes::new`] with another timeout for each request.
    pub fn with_timeout(
        cache_dir: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, ComposeError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_certs_only(tls_roots::reqwest_roots())
            .build()
            .map_err(|e| ComposeError::HttpClient(e.to_string()))?;
        Ok(Self::with_client(cache_dir, client))
    }

    /// Downloads through `client` (for proxies or TLS settings of the
    /// caller's choosing), cached under `cache_dir`.
    pub fn with_client(cache_dir: impl Into<PathBuf>, client: reqwest::Client) -> Self {
        Self {
            client,
            cache_dir: cache_dir.into(),
        }
    }

    /// The cache file of a URL.
    pub fn cache_path(&self, url: &str) -> PathBuf {
        self.cache_dir
            .join(hex::encode(Sha256::digest(url.as_bytes())))
    }

    /// Loads every enabled entry of `include` (`services_include`: name,
    /// local path or URL -> enabled), in key order. `repositories` maps a
    /// repository name to its URL or directory (`rancher.repositories`).
    /// The first entry that cannot be loaded is the error.
    pub async fn resolve(
        &self,
        include: &BTreeMap<String, bool>,
        repositories: &BTreeMap<String, String>,
    ) -> Result<Vec<Included>, ComposeError> {
        let mut out = Vec::new();
        for (entry, enabled) in include {
            if *enabled {
                out.push(self.resolve_entry(entry, repositories).await?);
            }
        }
        Ok(out)
    }

    /// Loads one entry: a local path, a URL, or a service name looked up
    /// in `repositories` (see the module docs for the order).
    pub async fn resolve_entry(
        &self,
        entry: &str,
        repositories: &BTreeMap<String, String>,
    ) -> Result<Included, ComposeError> {
        if let Some(location) = Location::parse(entry) {
            return match self.fetch(&location).await {
                Ok(fetched) => included(entry, &location, fetched),
                Err(Miss::NotFound) => Err(ComposeError::IncludeNotFound {
                    entry: entry.to_owned(),
                    searched: location.to_string(),
                }),
                Err(Miss::Unavailable(reason)) => Err(ComposeError::IncludeUnavailable {
                    entry: entry.to_owned(),
                    location: location.to_string(),
                    reason,
                }),
            };
        }
        let first = check_name(entry)?;
        let mut searched = Vec::new();
        let mut unavailable: Option<(String, String)> = None;
        for (repo, url) in repositories {
            let Some(base) = Location::parse(url) else {
                tracing::warn!(repository = %repo, url = %url, "ignoring a repository that is neither a URL nor an absolute path");
                continue;
            };
            searched.push(format!("{repo} ({base})"));
            for relative in [format!("{first}/{entry}.yml"), format!("{entry}.yml")] {
                let location = base.join(&relative);
                match self.fetch(&location).await {
                    Ok(fetched) => return included(entry, &location, fetched),
                    Err(Miss::NotFound) => {}
                    Err(Miss::Unavailable(reason)) => {
                        tracing::warn!(entry, location = %location, "{reason}");
                        unavailable.get_or_insert((location.to_string(), reason));
                    }
                }
            }
        }
        // Not found anywhere that answered; if some repository could not be
        // asked, that is the more useful error.
        if let Some((location, reason)) = unavailable {
            return Err(ComposeError::IncludeUnavailable {
                entry: entry.to_owned(),
                location,
                reason,
            });
        }
        Err(ComposeError::IncludeNotFound {
            entry: entry.to_owned(),
            searched: if searched.is_empty() {
                "no repository is configured (rancher.repositories)".to_owned()
            } else {
                searched.join(", ")
            },
        })
    }

    /// Reads the `index.yml` of each repository, in name order; each
    /// repository has its own result so that one unreachable index does not
    /// hide the others.
    pub async fn list(
        &self,
        repositories: &BTreeMap<String, String>,
    ) -> Vec<Result<Index, ComposeError>> {
        let mut out = Vec::new();
        for (repo, url) in repositories {
            out.push(self.list_one(repo, url).await);
        }
        out
    }

    /// Reads the `index.yml` of one repository.
    pub async fn list_one(&self, repository: &str, url: &str) -> Result<Index, ComposeError> {
        let Some(base) = Location::parse(url) else {
            return Err(ComposeError::IndexUnavailable {
                repository: repository.to_owned(),
                location: url.to_owned(),
                reason: "the url is neither http(s):// nor an absolute path".to_owned(),
            });
        };
        let location = base.join("index.yml");
        let fetched = match self.fetch(&location).await {
            Ok(f) => f,
            Err(Miss::NotFound) => {
                return Err(ComposeError::IndexUnavailable {
                    repository: repository.to_owned(),
                    location: location.to_string(),
                    reason: "not found".to_owned(),
                })
            }
            Err(Miss::Unavailable(reason)) => {
                return Err(ComposeError::IndexUnavailable {
                    repository: repository.to_owned(),
                    location: location.to_string(),
                    reason,
                })
            }
        };
        let mut index =
            parse_index(&fetched.text).map_err(|reason| ComposeError::IndexInvalid {
                location: location.to_string(),
                reason,
            })?;
        index.repository = repository.to_owned();
        index.location = location.to_string();
        index.from_cache = fetched.from_cache;
        Ok(index)
    }

    async fn fetch(&self, location: &Location) -> Result<Fetched, Miss> {
        match location {
            Location::Path(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => Ok(Fetched {
                    text,
                    from_cache: false,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Miss::NotFound),
                Err(e) => Err(Miss::Unavailable(e.to_string())),
            },
            Location::Url(url) => match self.download(url).await {
                Ok(Some(text)) => {
                    self.save(url, &text).await;
                    Ok(Fetched {
                        text,
                        from_cache: false,
                    })
                }
                Ok(None) => Err(Miss::NotFound),
                Err(reason) => {
                    let cached = self.cache_path(url);
                    match tokio::fs::read_to_string(&cached).await {
                        Ok(text) => {
                            tracing::info!(url, cache = %cached.display(), "using the cached copy: {reason}");
                            Ok(Fetched {
                                text,
                                from_cache: true,
                            })
                        }
                        Err(_) => Err(Miss::Unavailable(format!("{reason}, and no cached copy"))),
                    }
                }
            },
        }
    }

    /// `Ok(None)` for 404 and 410; `Err` for everything that leaves it open
    /// whether the file exists.
    async fn download(&self, url: &str) -> Result<Option<String>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        response.text().await.map(Some).map_err(|e| describe(&e))
    }

    /// Saves a download to the cache atomically; a failure only costs the
    /// offline copy, so it is logged, not returned.
    async fn save(&self, url: &str, text: &str) {
        let dir = self.cache_dir.clone();
        let path = self.cache_path(url);
        let text = text.to_owned();
        let result = tokio::task::spawn_blocking(move || write_atomic(&dir, &path, &text)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(url, "cannot cache the download: {e}"),
            Err(e) => tracing::warn!(url, "cannot cache the download: {e}"),
        }
    }
}

/// The `rancher.repositories` of the config model as [`Includes`] takes
/// them: name -> URL, without the repositories that have no URL.
pub fn repository_urls(
    repositories: &BTreeMap<String, config::model::Repository>,
) -> BTreeMap<String, String> {
    repositories
        .iter()
        .filter_map(|(name, repo)| {
            let url = repo.url.as_deref()?.trim();
            (!url.is_empty()).then(|| (name.clone(), url.to_owned()))
        })
        .collect()
}

fn included(entry: &str, location: &Location, fetched: Fetched) -> Result<Included, ComposeError> {
    let project =
        Project::from_yaml(&fetched.text).map_err(|source| ComposeError::IncludeInvalid {
            entry: entry.to_owned(),
            location: location.to_string(),
            source: Box::new(source),
        })?;
    Ok(Included {
        entry: entry.to_owned(),
        location: location.to_string(),
        from_cache: fetched.from_cache,
        text: fetched.text,
        project,
    })
}

/// A service name must be one path component; returns its first letter,
/// the directory rancher/os-services keeps it under.
fn check_name(entry: &str) -> Result<char, ComposeError> {
    let invalid = |reason: &str| ComposeError::IncludeInvalidName {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(first) = entry.chars().next() else {
        return Err(invalid("the name is empty"));
    };
    if entry.contains('/') || entry.contains('\\') {
        return Err(invalid(
            "a name cannot hold a slash (a local path must be absolute, a url http:// or https://)",
        ));
    }
    if entry == "." || entry == ".." || entry.chars().any(char::is_control) {
        return Err(invalid("not a service name"));
    }
    Ok(first)
}

/// `index.yml`: `{services: [..], consoles: [..], engines: [..]}` or a plain
/// list of service names.
fn parse_index(text: &str) -> Result<Index, String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Sections {
            #[serde(default)]
            services: Vec<String>,
            #[serde(default)]
            consoles: Vec<String>,
            #[serde(default)]
            engines: Vec<String>,
        },
        List(Vec<String>),
    }
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(Index::default());
    }
    let raw: Raw = serde_norway::from_value(value).map_err(|_| {
        "expected a mapping of services, consoles and engines lists, or a list of service names"
            .to_owned()
    })?;
    Ok(match raw {
        Raw::Sections {
            services,
            consoles,
            engines,
        } => Index {
            services,
            consoles,
            engines,
            ..Index::default()
        },
        Raw::List(services) => Index {
            services,
            ..Index::default()
        },
    })
}

/// The cache file replaced atomically (`atomic_file`), so that a reader
/// never sees half a download.
fn write_atomic(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    atomic_file::write(path, text.as_bytes())
}

/// A reqwest error with its causes ("error sending request: connection
/// refused"), since its own message leaves the cause out.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_forms() {
        let i = parse_index("services: [a, b]\nconsoles: [debian]\n").unwrap();
        assert_eq!(i.services, ["a", "b"]);
        assert_eq!(i.consoles, ["debian"]);
        assert!(i.engines.is_empty());
        assert_eq!(parse_index("- x\n- y\n").unwrap().services, ["x", "y"]);
        assert_eq!(parse_index("").unwrap(), Index::default());
        let err = parse_index("services: 3\n").unwrap_err();
        assert!(err.contains("expected a mapping"), "{err}");
    }

    #[test]
    fn names_are_one_path_component() {
        assert_eq!(check_name("open-vm-tools").unwrap(), 'o');
        for bad in ["", "a/b", "..", "x\ny", "rel\\x"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("services_include {bad:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn repositories_of_the_config() {
        let cfg = config::Config::parse(
            "rancher:\n  repositories:\n    core: {url: 'https://h/os-services'}\n    empty: {}\n    blank: {url: ''}\n",
            Path::new("c.yml"),
        )
        .unwrap();
        let model: config::model::CloudConfig = cfg.typed().unwrap();
        assert_eq!(
            repository_urls(&model.rancher.repositories),
            map(&[("core", "https://h/os-services".to_owned())])
        );
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("https://h/x/").unwrap().join("index.yml"),
            Location::Url("https://h/x/index.yml".into())
        );
        assert_eq!(
            Location::parse("file:///srv/idx")
                .unwrap()
                .join("o/open.yml"),
            Location::Path("/srv/idx/o/open.yml".into())
        );
        assert_eq!(Location::parse("open-vm-tools"), None);
    }

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{StatusCode, Uri};

    const OPEN_VM_TOOLS: &str = "\
open-vm-tools:
  image: ${REGISTRY_DOMAIN}/rancher/os-openvmtools:10.3.10-1
  command: /usr/bin/vmtoolsd
  labels:
    io.rancher.os.scope: system
    io.rancher.os.after: console
  net: host
  privileged: true
  volumes_from: [open-vm-tools-volumes]
open-vm-tools-volumes:
  image: busybox
  labels:
    io.rancher.os.createonly: \"true\"
";

    /// A repository laid out as rancher/os-services, plus a flat entry.
    fn repository(dir: &Path) {
        let write = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "index.yml",
            "services:\n  - open-vm-tools\n  - flat\nconsoles: [debian, alpine]\nengines: [docker-26.1]\n",
        );
        write("o/open-vm-tools.yml", OPEN_VM_TOOLS);
        write(
            "flat.yml",
            "version: '2'\nservices:\n  flat:\n    image: alpine\n",
        );
        write("b/broken.yml", "broken:\n  image: [not, a, string]\n");
    }

    fn map<V: Clone>(entries: &[(&str, V)]) -> BTreeMap<String, V> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn names(p: &Project) -> Vec<&str> {
        p.names().collect()
    }

    /// Serves a directory on 127.0.0.1; answers 503 while `down` is set.
    struct Server {
        url: String,
        down: Arc<AtomicBool>,
        requests: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    struct Served {
        dir: PathBuf,
        down: Arc<AtomicBool>,
        requests: Arc<AtomicUsize>,
    }

    async fn file(State(s): State<Arc<Served>>, uri: Uri) -> (StatusCode, String) {
        s.requests.fetch_add(1, Ordering::SeqCst);
        if s.down.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
        }
        let rel = uri.path().trim_start_matches('/');
        if rel.split('/').any(|part| part == "..") {
            return (StatusCode::BAD_REQUEST, String::new());
        }
        match std::fs::read_to_string(s.dir.join(rel)) {
            Ok(text) => (StatusCode::OK, text),
            Err(_) => (StatusCode::NOT_FOUND, String::new()),
        }
    }

    async fn serve(dir: &Path) -> Server {
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Served {
            dir: dir.to_owned(),
            down: down.clone(),
            requests: requests.clone(),
        });
        let app = axum::Router::new().fallback(file).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url,
            down,
            requests,
            task,
        }
    }

    impl Server {
        /// Stops listening; connections already open are not reused by a new
        /// `Includes` (its own client).
        async fn stop(self) {
            self.task.abort();
            let _ = self.task.await;
        }
    }

    fn includes(cache: &Path) -> Includes {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Includes::with_client(cache, client)
    }

    #[tokio::test]
    async fn directory_index() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        repository(&repo);
        let inc = includes(&tmp.path().join("cache"));
        let repos = map(&[("core", repo.display().to_string())]);

        let got = inc
            .resolve(
                &map(&[("open-vm-tools", true), ("flat", true), ("zfs", false)]),
                &repos,
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "the disabled entry is skipped");
        assert_eq!(got[0].entry, "flat");
        assert_eq!(got[0].location, repo.join("flat.yml").display().to_string());
        assert_eq!(names(&got[0].project), ["flat"]);
        assert_eq!(got[1].entry, "open-vm-tools");
        assert_eq!(
            got[1].location,
            repo.join("o/open-vm-tools.yml").display().to_string()
        );
        assert_eq!(
            names(&got[1].project),
            ["open-vm-tools", "open-vm-tools-volumes"]
        );
        assert_eq!(
            got[1].project.start_order().unwrap(),
            ["open-vm-tools-volumes", "open-vm-tools"]
        );
        assert!(
            got[1].text.contains("${REGISTRY_DOMAIN}"),
            "text is as written"
        );

        let file_url = map(&[("core", format!("file://{}", repo.display()))]);
        let index = inc.list(&file_url).await;
        let index = index[0].as_ref().unwrap();
        assert_eq!(index.repository, "core");
        assert_eq!(index.services, ["open-vm-tools", "flat"]);
        assert_eq!(index.consoles, ["debian", "alpine"]);
        assert_eq!(index.engines, ["docker-26.1"]);
        assert!(!index.from_cache);
        assert!(
            !tmp.path().join("cache").exists(),
            "local files are not cached"
        );
    }

    #[tokio::test]
    async fn url_index_is_cached_for_when_the_server_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        repository(&repo);
        let cache = tmp.path().join("cache");
        let server = serve(&repo).await;
        let repos = map(&[("core", format!("{}/", server.url))]);
        let include = map(&[("open-vm-tools", true), ("flat", true)]);

        let online = includes(&cache).resolve(&include, &repos).await.unwrap();
        assert_eq!(
            online[1].location,
            format!("{}/o/open-vm-tools.yml", server.url)
        );
        assert!(online.iter().all(|i| !i.from_cache));
        let index = includes(&cache)
            .list_one("core", &server.url)
            .await
            .unwrap();
        assert_eq!(index.services, ["open-vm-tools", "flat"]);
        let cached = includes(&cache).cache_path(&format!("{}/o/open-vm-tools.yml", server.url));
        assert_eq!(std::fs::read_to_string(cached).unwrap(), OPEN_VM_TOOLS);

        // A server that answers 503 is a network failure: the cache is used.
        server.down.store(true, Ordering::SeqCst);
        let before = server.requests.load(Ordering::SeqCst);
        let degraded = includes(&cache).resolve(&include, &repos).await.unwrap();
        assert!(
            server.requests.load(Ordering::SeqCst) > before,
            "the network is tried first"
        );
        assert!(degraded.iter().all(|i| i.from_cache));
        assert_eq!(degraded[1].project, online[1].project);

        // No server at all: the same from the cache, and the index too.
        let url = server.url.clone();
        server.stop().await;
        let offline = includes(&cache).resolve(&include, &repos).await.unwrap();
        assert_eq!(
            offline
                .iter()
                .map(|i| (&i.entry, &i.project))
                .collect::<Vec<_>>(),
            online
                .iter()
                .map(|i| (&i.entry, &i.project))
                .collect::<Vec<_>>()
        );
        assert!(offline.iter().all(|i| i.from_cache));
        let index = includes(&cache).list_one("core", &url).await.unwrap();
        assert!(index.from_cache);
        assert_eq!(index.consoles, ["debian", "alpine"]);

        // Never downloaded: a clear error naming the entry and the URL.
        let err = includes(&cache)
            .resolve_entry("never-fetched", &repos)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "services_include never-fetched: cannot load {url}/n/never-fetched.yml: "
            )),
            "{err}"
        );
        assert!(err.ends_with("and no cached copy"), "{err}");
        let err = includes(&cache)
            .list_one("extra", "http://127.0.0.1:9/")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("service index extra: cannot load http://127.0.0.1:9/index.yml: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unknown_entry_names_the_entry_and_the_indexes() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        repository(&repo);
        let server = serve(&repo).await;
        let inc = includes(&tmp.path().join("cache"));
        let repos = map(&[
            ("core", server.url.clone()),
            ("local", repo.display().to_string()),
        ]);
        let err = inc
            .resolve(&map(&[("no-such-service", true)]), &repos)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "services_include no-such-service: not found in core ({}), local ({})",
                server.url,
                repo.display()
            )
        );
        let err = inc
            .resolve_entry("x", &BTreeMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "services_include x: not found in no repository is configured (rancher.repositories)"
        );
        let err = inc
            .resolve_entry("conf/my.yml", &repos)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a local path must be absolute"), "{err}");
        let err = inc
            .resolve_entry("broken", &repos)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "services_include broken ({}/b/broken.yml): service broken: ",
                server.url
            )),
            "{err}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn local_path_and_url_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        repository(&repo);
        let own = tmp.path().join("my-service.yml");
        std::fs::write(&own, "mine:\n  image: alpine\n  command: [sleep, '1']\n").unwrap();
        let server = serve(&repo).await;
        let inc = includes(&tmp.path().join("cache"));
        let url = format!("{}/flat.yml", server.url);
        let path = own.display().to_string();
        let got = inc
            .resolve(
                &map(&[(path.as_str(), true), (url.as_str(), true)]),
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(got[0].entry, path);
        assert_eq!(got[0].location, path);
        assert_eq!(names(&got[0].project), ["mine"]);
        assert_eq!(got[1].entry, url);
        assert_eq!(names(&got[1].project), ["flat"]);

        let missing = tmp.path().join("nope.yml").display().to_string();
        let err = inc
            .resolve_entry(&missing, &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("services_include {missing}: not found in {missing}")
        );
        let gone = format!("{}/gone.yml", server.url);
        let err = inc
            .resolve_entry(&gone, &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("services_include {gone}: not found in {gone}")
        );
        server.stop().await;
    }
}
