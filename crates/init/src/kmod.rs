//! Loading kernel modules without kmod: `modules.dep`, `modules.alias` and
//! `finit_module(2)`, for PID 1 and for the `modprobe` personality of `ros`.
//!
//! # Background
//!
//! Neither the initrd nor the system image holds kmod: PID 1 loads modules
//! itself, and `/usr/sbin/modprobe` is a link to `ros`. What modprobe does
//! for a module is small: read `modules.dep` (written by `depmod` at build
//! time), load the module's dependencies first, then the module, skipping
//! what is built in (`modules.builtin`) or already loaded
//! (`/sys/module/NAME`). Modules are loaded with `finit_module` and
//! `MODULE_INIT_COMPRESSED_FILE`, so the kernel decompresses Debian's
//! `.ko.xz` files itself (CONFIG_MODULE_DECOMPRESS). No crate does this
//! without linking libkmod, which would not link statically into `ros`.
//!
//! The kernel asks for modules too: when a netfilter expression, a link
//! type (`rtnl-link-bridge`), a file system (`fs-overlay`), a protocol family
//! (`net-pf-..`), a crypto algorithm or a NAT chain (`nft-chain-2-nat`) is
//! missing, it runs the helper named in `/proc/sys/kernel/modprobe` as
//! `HELPER -q -- NAME` and waits for it. Docker runs `modprobe` for
//! `br_netfilter`, `overlay` or `ip_tables`. Most of those names are aliases,
//! which `depmod` writes to `modules.alias` (`alias PATTERN MODULE`, PATTERN
//! a shell glob such as `pci:v00001AF4d00001000sv*sd*bc*sc*i*`), and some
//! modules want others loaded around them (`modules.softdep`:
//! `softdep MOD pre: A B post: C`).
//!
//! # Design
//!
//! - [`ModuleIndex`] reads `modules.dep`, and when present
//!   `modules.builtin`, `modules.alias`, `modules.softdep` and the aliases of
//!   built-in modules from `modules.builtin.modinfo`. Only the module names
//!   of `modules.dep` are indexed; the alias texts are kept as read and
//!   scanned when a name is asked for, comparing the literal start of each
//!   pattern byte by byte first (Debian's full `modules.alias`, 27,000
//!   lines, takes about 2 ms; the system image's, 1,700 lines, a tenth).
//! - [`ModuleIndex::resolve`] looks a name up in libkmod's order: a module
//!   name (`-` and `_` are the same), else every module one of whose alias
//!   patterns matches (all of them are loaded, as modprobe does), else a
//!   built-in module or an alias of one (nothing to do), else the name is
//!   not found. Patterns are matched by `fnmatch(3)` without flags, the
//!   matcher libkmod itself uses, after the name and the pattern have both
//!   had `-` turned into `_` outside brackets (libkmod's `alias_normalize`).
//! - [`load`] (PID 1) and [`modprobe_main`] share one prober: the `pre:`
//!   soft dependencies (best effort: one that fails is a warning), the
//!   module's dependencies and the module, then the `post:` ones. What
//!   `/sys/module` already lists is skipped.
//! - [`modprobe_main`] takes modprobe's common options (see [`USAGE`]) and
//!   the module directory `/usr/lib/modules/$(uname -r)` (else
//!   `/lib/modules/...`; `MODPROBE_MODULES_DIR` overrides it). A name that
//!   `/sys/module` lists already answers at once, without reading any index:
//!   the kernel waits for this program. It never panics; it exits 0 when the
//!   modules are loaded, already loaded or built in, and 1 with a one-line
//!   error otherwise (`-q` keeps the error quiet).
//!
//! # Limitations
//!
//! - There is no `/etc/modprobe.d`: no `options`, `install`, `blacklist` or
//!   configured `alias` lines; `-b` is accepted and has nothing to apply,
//!   `-C` is refused.
//! - Removing modules (`-r`) and forced loading (`-f`) are not supported.
//! - Module parameters and `modprobe.blacklist=` from the kernel command
//!   line are not applied.
//! - Only the text indexes are read (not `modules.*.bin`), and
//!   `modules.symbols` (`symbol:NAME` requests) is not searched.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Write;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Error;

/// `finit_module` flag: the file is compressed, let the kernel decompress it.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The module name of a path in modules.dep: `kernel/fs/ext4/ext4.ko.xz` ->
/// `ext4`; dashes become underscores, as the kernel names modules.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// An alias or a requested name as libkmod compares them: `-` becomes `_`
/// except inside `[...]`, where it may be a range.
pub fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut bracket = false;
    for c in alias.chars() {
        out.push(match c {
            '[' if !bracket => {
                bracket = true;
                c
            }
            ']' if bracket => {
                bracket = false;
                c
            }
            '-' if !bracket => '_',
            c => c,
        });
    }
    out
}

/// Whether the alias `pattern` (a shell glob: `*`, `?`, `[...]`) matches
/// `name`; both already normalized ([`normalize_alias`]).
///
/// The match is `fnmatch(3)` without flags, which is what libkmod uses for
/// `modules.alias`, so `*` also matches `/` and `\` escapes; no crate is
/// needed for it, and the `glob` crate differs (no escapes, `**` refused). The
/// literal text before the first wildcard is compared first: most of the
/// thousands of lines of `modules.alias` fail there without a C call.
pub fn alias_matches(pattern: &str, name: &str) -> bool {
    let literal = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    if literal == pattern.len() {
        return pattern == name;
    }
    if !name.starts_with(&pattern[..literal]) {
        return false;
    }
    let (Ok(pattern), Ok(name)) = (CString::new(pattern), CString::new(name)) else {
        return false;
    };
    // SAFETY: both arguments are NUL-terminated strings that outlive the
    // call; fnmatch only reads them.
    unsafe { libc::fnmatch(pattern.as_ptr(), name.as_ptr(), 0) == 0 }
}

/// Whether `raw`, an alias pattern as written (up to the first
/// whitespace, the rest of a `modules.alias` line may follow), matches
/// `name` (normalized); when it does, the length of the pattern.
///
/// The literal start of the pattern has no brackets, so it is compared
/// byte by byte with `-` read as `_`: most lines of `modules.alias` differ
/// from the name within a few bytes and are left there, without finding
/// where the pattern ends or allocating. Only a pattern whose literal
/// start matches is normalized and given to `fnmatch`.
fn raw_alias_matches(raw: &str, name: &str) -> Option<usize> {
    let (bytes, name_bytes) = (raw.as_bytes(), name.as_bytes());
    let is_end = |b: &u8| b.is_ascii_whitespace();
    let mut at = 0;
    loop {
        match bytes.get(at) {
            None | Some(b' ' | b'\t' | b'\n' | b'\r') => {
                return (at == name_bytes.len()).then_some(at);
            }
            Some(b'*' | b'?' | b'[' | b'\\') => break,
            Some(&b) => {
                let b = if b == b'-' { b'_' } else { b };
                if name_bytes.get(at) != Some(&b) {
                    return None;
                }
            }
        }
        at += 1;
    }
    let end = bytes[at..]
        .iter()
        .position(is_end)
        .map_or(bytes.len(), |n| at + n);
    alias_matches(&normalize_alias(&raw[..end]), name).then_some(end)
}

/// One `alias PATTERN MODULE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The glob pattern, normalized ([`normalize_alias`]).
    pub pattern: String,
    /// The module it names, as the kernel names modules.
    pub module: String,
}

/// The `(pattern, module)` of each `alias PATTERN MODULE` line, as written.
fn alias_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "alias" {
            return None;
        }
        Some((words.next()?, words.next()?))
    })
}

/// The `(pattern, module)` of each `MODULE.alias=PATTERN` entry of
/// `modules.builtin.modinfo` (NUL-separated `MODULE.KEY=VALUE` entries).
fn builtin_alias_entries(modinfo: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    modinfo.split(|b| *b == 0).filter_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        let (module, field) = entry.split_once('.')?;
        Some((field.strip_prefix("alias=")?, module))
    })
}

/// Parses the text of `modules.alias`; comments and other lines are
/// skipped.
pub fn parse_aliases(text: &str) -> Vec<Alias> {
    alias_lines(text)
        .map(|(pattern, module)| Alias {
            pattern: normalize_alias(pattern),
            module: module_name(module),
        })
        .collect()
}

/// The aliases of built-in modules, from `modules.builtin.modinfo`.
pub fn parse_builtin_aliases(modinfo: &[u8]) -> Vec<Alias> {
    builtin_alias_entries(modinfo)
        .map(|(pattern, module)| Alias {
            pattern: normalize_alias(pattern),
            module: module_name(module),
        })
        .collect()
}

/// The soft dependencies of one module: loaded before it and after it when
/// they can be, without failing it when they cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftDep {
    /// Names (modules or aliases) to load first.
    pub pre: Vec<String>,
    /// Names (modules or aliases) to load after.
    pub post: Vec<String>,
}

/// Parses the text of `modules.softdep` (`softdep MOD pre: A B post: C`),
/// by module name. Two lines for one module add up; names before `pre:` or
/// `post:` are ignored, as modprobe ignores them.
pub fn parse_softdeps(text: &str) -> BTreeMap<String, SoftDep> {
    let mut softdeps: BTreeMap<String, SoftDep> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else {
            continue;
        };
        let entry = softdeps.entry(module_name(module)).or_default();
        // Which list the following names go to; none before `pre:`/`post:`.
        let mut list: Option<&mut Vec<String>> = None;
        for word in words {
            match word {
                "pre:" => list = Some(&mut entry.pre),
                "post:" => list = Some(&mut entry.post),
                name => {
                    if let Some(list) = list.as_deref_mut() {
                        list.push(name.to_string());
                    }
                }
            }
        }
    }
    softdeps
}

/// What a requested name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// These modules (one for a module name, all that match for an alias).
    Modules(Vec<String>),
    /// A module built into the kernel, or an alias of one: nothing to load.
    Builtin,
}

/// The modules of one kernel, from its `modules.dep` and, when present,
/// `modules.builtin`, `modules.alias`, `modules.softdep` and
/// `modules.builtin.modinfo`.
///
/// The texts are kept as read and looked at when a name is asked for:
/// `modules.alias` has tens of thousands of lines and a modprobe run wants
/// one of them. Only the names of `modules.dep` are indexed.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// The text of `modules.dep`.
    dep: String,
    /// Module name -> its line in `dep`.
    modules: BTreeMap<String, Range<usize>>,
    builtin: BTreeSet<String>,
    /// The texts of `modules.alias`, one after the other.
    aliases: String,
    /// `modules.builtin.modinfo`.
    builtin_modinfo: Vec<u8>,
    softdeps: BTreeMap<String, SoftDep>,
}

impl ModuleIndex {
    /// Reads `DIR/modules.dep` and, when present, `DIR/modules.builtin`,
    /// `DIR/modules.alias`, `DIR/modules.softdep` and
    /// `DIR/modules.builtin.modinfo`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| Error::Io {
                what: format!("read {}", path.display()),
                source,
            })
        };
        let dep = read("modules.dep")?;
        let builtin = read("modules.builtin").unwrap_or_default();
        let mut index = Self::parse(dir, &dep, &builtin)
            .with_softdeps(&read("modules.softdep").unwrap_or_default());
        index.aliases = read("modules.alias").unwrap_or_default();
        index.builtin_modinfo =
            std::fs::read(dir.join("modules.builtin.modinfo")).unwrap_or_default();
        Ok(index)
    }

    /// Parses the texts of `modules.dep` and `modules.builtin`.
    pub fn parse(dir: &Path, dep: &str, builtin: &str) -> Self {
        let mut modules = BTreeMap::new();
        let mut start = 0;
        for line in dep.split_inclusive('\n') {
            if let Some((file, _)) = line.split_once(':') {
                modules.insert(module_name(file.trim()), start..start + line.len());
            }
            start += line.len();
        }
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        Self {
            dir: dir.to_path_buf(),
            dep: dep.to_string(),
            modules,
            builtin,
            ..Self::default()
        }
    }

    /// Adds the aliases of a `modules.alias` text.
    pub fn with_aliases(mut self, text: &str) -> Self {
        self.aliases.push_str(text);
        if !self.aliases.ends_with('\n') {
            self.aliases.push('\n');
        }
        self
    }

    /// Adds the aliases of built-in modules, from the bytes of
    /// `modules.builtin.modinfo`.
    pub fn with_builtin_modinfo(mut self, modinfo: &[u8]) -> Self {
        self.builtin_modinfo.push(0);
        self.builtin_modinfo.extend_from_slice(modinfo);
        self
    }

    /// Adds the soft dependencies of a `modules.softdep` text.
    pub fn with_softdeps(mut self, text: &str) -> Self {
        for (module, softdep) in parse_softdeps(text) {
            let entry = self.softdeps.entry(module).or_default();
            entry.pre.extend(softdep.pre);
            entry.post.extend(softdep.post);
        }
        self
    }

    /// The directory the module files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every module the index knows, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The soft dependencies of module `name`, if it has any.
    pub fn softdep(&self, name: &str) -> Option<&SoftDep> {
        self.softdeps.get(&name.replace('-', "_"))
    }

    /// The file of module `name` (relative to the directory) and the files
    /// it depends on, from its `modules.dep` line.
    fn entry(&self, name: &str) -> Option<(&str, std::str::SplitWhitespace<'_>)> {
        let line = self.dep.get(self.modules.get(name)?.clone())?;
        let (file, deps) = line.split_once(':')?;
        Some((file.trim(), deps.split_whitespace()))
    }

    /// What `name` stands for: a module, else the modules of every alias
    /// that matches it (in `modules.alias` order, each once), else a
    /// built-in module or alias. Anything else is not found.
    pub fn resolve(&self, name: &str) -> Result<Resolved, Error> {
        if name.is_empty() {
            return Err(Error::Other("empty module name".to_string()));
        }
        let normal = normalize_alias(name);
        if self.modules.contains_key(&normal) {
            return Ok(Resolved::Modules(vec![normal]));
        }
        let mut found: Vec<String> = Vec::new();
        for line in self.aliases.lines() {
            // `alias PATTERN MODULE`; see raw_alias_matches for why the
            // line is not split into words first.
            let Some(rest) = line
                .strip_prefix("alias")
                .filter(|rest| rest.starts_with([' ', '\t']))
            else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(end) = raw_alias_matches(rest, &normal) else {
                continue;
            };
            let Some(module) = rest[end..].split_whitespace().next() else {
                continue;
            };
            let module = module_name(module);
            if !found.contains(&module) {
                found.push(module);
            }
        }
        if !found.is_empty() {
            return Ok(Resolved::Modules(found));
        }
        if self.builtin.contains(&normal)
            || builtin_alias_entries(&self.builtin_modinfo)
                .any(|(pattern, _)| raw_alias_matches(pattern, &normal).is_some())
        {
            return Ok(Resolved::Builtin);
        }
        Err(Error::Other(format!(
            "module {name} not found in {}",
            self.dir.display()
        )))
    }

    /// The files to load for `name`, dependencies first, each once. A
    /// built-in module needs nothing; an unknown one is an error.
    pub fn load_order(&self, name: &str) -> Result<Vec<(String, PathBuf)>, Error> {
        let name = name.replace('-', "_");
        if self.is_builtin(&name) {
            return Ok(Vec::new());
        }
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(&name, &mut seen, &mut order)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), Error> {
        if !seen.insert(name.to_string()) || self.is_builtin(name) {
            return Ok(());
        }
        let (file, deps) = self
            .entry(name)
            .ok_or_else(|| Error::UnknownModule(name.to_string()))?;
        // modules.dep lists every dependency, transitively; visiting them
        // in turn still puts each before what needs it.
        for dep in deps {
            self.visit(&module_name(dep), seen, order)?;
        }
        order.push((name.to_string(), self.dir.join(file)));
        Ok(())
    }
}

/// The `modalias` of every device the kernel lists under
/// `SYS/bus/*/devices` (what udev's coldplug reads), each once. Devices
/// without one (or with an empty one) are left out.
pub fn device_aliases(sys: &Path) -> BTreeSet<String> {
    let mut aliases = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return aliases;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for device in devices.flatten() {
            if let Ok(alias) = std::fs::read_to_string(device.path().join("modalias")) {
                let alias = alias.trim();
                if !alias.is_empty() {
                    aliases.insert(alias.to_string());
                }
            }
        }
    }
    aliases
}

/// The modules of `index` that drive the devices of `aliases` (`modalias`
/// strings), each once, in the order of the first alias naming it. An
/// alias that no module drives, or that only a built-in driver does, adds
/// nothing.
pub fn drivers_for<'a>(
    index: &ModuleIndex,
    aliases: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for alias in aliases {
        if let Ok(Resolved::Modules(found)) = index.resolve(alias) {
            for module in found {
                if !modules.contains(&module) {
                    modules.push(module);
                }
            }
        }
    }
    modules
}

/// Loads `name` (a module or an alias) with its soft dependencies and its
/// dependencies. `params` go to the module(s) `name` stands for. A soft
/// dependency that fails is logged and does not fail `name`.
pub fn load(index: &ModuleIndex, name: &str, params: &str) -> Result<(), Error> {
    let mut out = std::io::sink();
    let mut prober = Prober::new(index, Path::new("/sys/module"), Action::Insert, &mut out);
    let result = prober.probe(name, params);
    for warning in &prober.warnings {
        tracing::warn!("modules: {warning}");
    }
    result
}

/// At most this many threads load modules at once ([`load_parallel`]).
pub const MAX_LOAD_THREADS: usize = 4;

/// Loads each of `names` (modules or aliases, as [`load`] with no
/// parameters) on up to `threads` threads at once; returns the errors, each
/// with its name, in the order of `names`.
///
/// Loading a module is mostly the kernel's work in the calling thread
/// (reading and decompressing the `.ko.xz`, relocating, running its init),
/// so one thread leaves the other CPUs idle: the initrd's 37 modules took
/// 3.8 s one after another under QEMU without KVM. Threads that meet on a
/// shared dependency are put in order by the kernel: a second
/// `finit_module` of a module waits for the first and gets EEXIST, which
/// counts as success here, and a module whose dependency is still
/// initialising waits for that dependency's symbols.
pub fn load_parallel(
    index: &ModuleIndex,
    names: &[String],
    threads: usize,
) -> Vec<(String, Error)> {
    for_each_parallel(names, threads, |name| load(index, name, ""))
        .into_iter()
        .map(|(i, e)| (names[i].clone(), e))
        .collect()
}

/// The number of threads for [`load_parallel`]: the CPUs this process may
/// run on, at most [`MAX_LOAD_THREADS`].
pub fn load_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_LOAD_THREADS)
}

/// Runs `work` once for each of `items`, on the calling thread and up to
/// `threads - 1` more, each taking the next item not taken yet; returns the
/// errors with their items' indexes, in item order. A thread that cannot be
/// started leaves its share to the others, and a panicking `work` is an
/// error for its item: PID 1 calls this and must not panic.
fn for_each_parallel<T: Sync>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<(), Error> + Sync,
) -> Vec<(usize, Error)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<(usize, Error)>> = Mutex::new(Vec::new());
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)))
            .unwrap_or_else(|_| Err(Error::Other(format!("loading item {i} panicked"))));
        if let Err(e) = result {
            errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, e));
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.clamp(1, items.len().max(1)))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, worker).ok())
            .collect();
        worker();
        for helper in helpers {
            // The worker catches panics, so joining cannot fail.
            let _ = helper.join();
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(PoisonError::into_inner);
    errors.sort_by_key(|(i, _)| *i);
    errors
}

/// What the prober does with each module file it would load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Load it (`finit_module`).
    Insert,
    /// Only say it (`-n`, with `-v`).
    DryRun,
    /// Say `insmod PATH` for it even when loaded (`--show-depends`).
    ShowDepends,
}

/// One run of loading names: the index, where loaded modules are listed, and
/// what was done already (soft dependencies may loop).
struct Prober<'a> {
    index: &'a ModuleIndex,
    sys_module: &'a Path,
    action: Action,
    /// Print `insmod PATH PARAMS` for each module loaded (`-v`).
    verbose: bool,
    /// A module loaded already is an error (`--first-time`).
    first_time: bool,
    out: &'a mut dyn Write,
    /// Modules probed in this run.
    done: BTreeSet<String>,
    /// Modules whose file was loaded (or said) in this run.
    listed: BTreeSet<String>,
    /// Soft dependencies that failed.
    warnings: Vec<String>,
}

impl<'a> Prober<'a> {
    fn new(
        index: &'a ModuleIndex,
        sys_module: &'a Path,
        action: Action,
        out: &'a mut dyn Write,
    ) -> Self {
        Self {
            index,
            sys_module,
            action,
            verbose: false,
            first_time: false,
            out,
            done: BTreeSet::new(),
            listed: BTreeSet::new(),
            warnings: Vec::new(),
        }
    }

    fn is_loaded(&self, module: &str) -> bool {
        is_loaded(self.sys_module, module)
    }

    /// Loads what `name` stands for; with several modules, each is tried
    /// and the first error is returned.
    fn probe(&mut self, name: &str, params: &str) -> Result<(), Error> {
        match self.index.resolve(name)? {
            Resolved::Builtin => {
                if self.first_time {
                    return Err(Error::Other(format!(
                        "module {name} is built into the kernel"
                    )));
                }
                if self.action == Action::ShowDepends {
                    let _ = writeln!(self.out, "builtin {}", normalize_alias(name));
                }
                Ok(())
            }
            Resolved::Modules(modules) => {
                let mut first_error = None;
                for module in modules {
                    if let Err(e) = self.probe_module(&module, params) {
                        first_error.get_or_insert(e);
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
        }
    }

    fn probe_module(&mut self, module: &str, params: &str) -> Result<(), Error> {
        if !self.done.insert(module.to_string()) {
            return Ok(());
        }
        if self.is_loaded(module) {
            if self.first_time {
                return Err(Error::Other(format!("module {module} is already loaded")));
            }
            if self.action != Action::ShowDepends {
                return Ok(());
            }
        }
        let softdep = self.index.softdep(module).cloned().unwrap_or_default();
        for name in &softdep.pre {
            self.probe_soft(module, name);
        }
        for (dep, path) in self.index.load_order(module)? {
            // A dependency of two modules (or of a module and one of its
            // soft dependencies) is loaded, or said, once.
            if !self.listed.insert(dep.clone()) {
                continue;
            }
            let own = if dep == module { params } else { "" };
            // A dependency's own soft dependencies come with it when it is
            // loaded, as with libkmod: erofs needs libcrc32c, whose init
            // asks the crypto API for the crc32c that its `pre:` names, and
            // fails (ENOENT) when nothing has registered one yet. (The
            // module's own are probed around this loop.) `--show-depends`
            // lists them too, loaded or not, as it lists the dependencies.
            let dep_softdep =
                if dep == module || (self.action != Action::ShowDepends && self.is_loaded(&dep)) {
                    SoftDep::default()
                } else {
                    self.index.softdep(&dep).cloned().unwrap_or_default()
                };
            for name in &dep_softdep.pre {
                self.probe_soft(&dep, name);
            }
            let line = if own.is_empty() {
                format!("insmod {}", path.display())
            } else {
                format!("insmod {} {own}", path.display())
            };
            match self.action {
                Action::ShowDepends => {
                    let _ = writeln!(self.out, "{line}");
                }
                Action::DryRun | Action::Insert => {
                    if self.is_loaded(&dep) {
                        continue;
                    }
                    if self.verbose {
                        let _ = writeln!(self.out, "{line}");
                    }
                    if self.action == Action::Insert {
                        insert(&dep, &path, own)?;
                    }
                }
            }
            for name in &dep_softdep.post {
                self.probe_soft(&dep, name);
            }
        }
        for name in &softdep.post {
            self.probe_soft(module, name);
        }
        Ok(())
    }

    /// A soft dependency: probed without failing the module that wants it.
    fn probe_soft(&mut self, module: &str, name: &str) {
        // `--first-time` is about the names asked for, not their helpers.
        let first_time = std::mem::replace(&mut self.first_time, false);
        if let Err(e) = self.probe(name, "") {
            self.warnings
                .push(format!("soft dependency {name} of {module}: {e}"));
        }
        self.first_time = first_time;
    }
}

/// Whether `/sys/module` (`sys_module`) lists `module` as ready: loaded
/// and done initialising (its `initstate` is `live`), or built in with
/// parameters (no `initstate`). A module another thread or process is
/// still initialising (`coming`) is not: its users load it again, and the
/// kernel makes that second load wait for the first (then EEXIST). So a
/// module that needs what another registers in its init (a soft
/// dependency: libcrc32c needs a crc32c) does not start before it when
/// threads load modules side by side. A name that is not one path
/// component never is.
fn is_loaded(sys_module: &Path, module: &str) -> bool {
    if module.is_empty() || module == "." || module == ".." || module.contains('/') {
        return false;
    }
    let dir = sys_module.join(module);
    match std::fs::read_to_string(dir.join("initstate")) {
        Ok(state) => state.trim() == "live",
        Err(_) => dir.exists(),
    }
}

/// `finit_module` of one file. EEXIST (loaded meanwhile) is success.
fn insert(name: &str, path: &Path, params: &str) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        what: format!("open module {}", path.display()),
        source,
    })?;
    let params = std::ffi::CString::new(params).unwrap_or_default();
    let compressed = path
        .extension()
        .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: finit_module takes a file descriptor we own, a NUL-terminated
    // parameter string that outlives the call, and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        tracing::debug!("loaded module {name}");
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(Error::Io {
        what: format!("load module {name} ({})", path.display()),
        source: err,
    })
}

/// `modprobe --help`.
pub const USAGE: &str = "\
usage: modprobe [options] [--] MODULE [PARAM=VALUE ...]
       modprobe [options] -a MODULE [MODULE ...]

Loads a kernel module, or every module an alias names, with its
dependencies, from /usr/lib/modules/$(uname -r) (MODPROBE_MODULES_DIR
overrides it). Built-in and loaded modules are success.

Options:
  -a, --all             every argument is a module name
  -q, --quiet           print no error
  -v, --verbose         print `insmod PATH` for each module loaded
  -n, --dry-run, --show do everything but load
  -D, --show-depends    print the modules that would load, loaded or not
  -b, --use-blacklist   accepted (there is no modprobe.d, so no blacklist)
  -i, --ignore-install  accepted (there are no install commands)
  -s, --syslog          errors to the kernel log (/dev/kmsg)
      --first-time      fail if a module is loaded or built in already
  -d, --dirname DIR     modules in DIR/usr/lib/modules/VERSION
  -S, --set-version VER the kernel version (default: uname -r)
  -h, --help            this help
  -V, --version         the version

Not supported: -r (removal), -f (forcing), -C (configuration), -c.
";

/// The options of one `modprobe` command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    all: bool,
    quiet: bool,
    verbose: bool,
    dry_run: bool,
    show_depends: bool,
    syslog: bool,
    first_time: bool,
    help: bool,
    version: bool,
    dirname: Option<String>,
    kernel: Option<String>,
    /// The names, or the name and its parameters.
    args: Vec<String>,
}

/// Parses modprobe's command line (`args` without argv[0]) as getopt_long
/// would: options anywhere before `--`, short ones bundled (`-qa`), values
/// attached or not (`-S6.1`, `--dirname=/x`, `-d /x`).
///
/// Written by hand: `init` has no argument parser and modprobe's options
/// are few; the error is a one-line message for the caller to print.
fn parse_options(args: &[String]) -> Result<Options, String> {
    const UNSUPPORTED: &[(&str, char, &str)] = &[
        ("remove", 'r', "removing modules is not supported"),
        (
            "remove-dependencies",
            '\0',
            "removing modules is not supported",
        ),
        ("force", 'f', "forced loading is not supported"),
        ("force-vermagic", '\0', "forced loading is not supported"),
        ("force-modversion", '\0', "forced loading is not supported"),
        (
            "config",
            'C',
            "configuration files are not supported (there is no modprobe.d)",
        ),
        ("showconfig", 'c', "--showconfig is not supported"),
        ("show-config", '\0', "--showconfig is not supported"),
        ("resolve-alias", 'R', "--resolve-alias is not supported yet"),
    ];
    let mut options = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            options.args.extend(rest.by_ref().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (long, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                attached
                    .clone()
                    .or_else(|| rest.next().cloned())
                    .ok_or_else(|| format!("option --{what} needs a value"))
            };
            match long {
                "all" => options.all = true,
                "quiet" => options.quiet = true,
                "verbose" => options.verbose = true,
                "dry-run" | "show" => options.dry_run = true,
                "show-depends" => options.show_depends = true,
                "use-blacklist" | "ignore-install" => {}
                "syslog" => options.syslog = true,
                "first-time" => options.first_time = true,
                "help" => options.help = true,
                "version" => options.version = true,
                "dirname" => options.dirname = Some(value(long)?),
                "set-version" => options.kernel = Some(value(long)?),
                _ => {
                    return Err(UNSUPPORTED
                        .iter()
                        .find(|(name, _, _)| *name == long)
                        .map_or_else(|| format!("unknown option --{long}"), |u| u.2.to_string()))
                }
            }
            continue;
        }
        let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            options.args.push(arg.clone());
            continue;
        };
        for (at, c) in shorts.char_indices() {
            match c {
                'a' => options.all = true,
                'q' => options.quiet = true,
                'v' => options.verbose = true,
                'n' => options.dry_run = true,
                'D' => options.show_depends = true,
                'b' | 'i' => {}
                's' => options.syslog = true,
                'h' => options.help = true,
                'V' => options.version = true,
                'd' | 'S' => {
                    let attached = &shorts[at + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        rest.next()
                            .cloned()
                            .ok_or_else(|| format!("option -{c} needs a value"))?
                    } else {
                        attached.to_string()
                    };
                    if c == 'd' {
                        options.dirname = Some(value);
                    } else {
                        options.kernel = Some(value);
                    }
                    break;
                }
                _ => {
                    return Err(UNSUPPORTED
                        .iter()
                        .find(|(_, short, _)| *short == c)
                        .map_or_else(|| format!("unknown option -{c}"), |u| u.2.to_string()))
                }
            }
        }
    }
    Ok(options)
}

/// Where a `modprobe` run looks: the module directory when the environment
/// names one, the loaded modules, the kernel log.
struct Host {
    /// `MODPROBE_MODULES_DIR`.
    modules_dir: Option<PathBuf>,
    /// `/sys/module`.
    sys_module: PathBuf,
    /// `/dev/kmsg`, for `-s`.
    kmsg: PathBuf,
}

/// The module directory: DIR/usr/lib/modules/VERSION, else
/// DIR/lib/modules/VERSION (DIR is `-d`, else `/`; VERSION is `-S`, else the
/// running kernel's). `MODPROBE_MODULES_DIR` replaces it unless `-d` or `-S`
/// was given.
fn modules_dir(options: &Options, from_env: Option<&Path>) -> PathBuf {
    if let (Some(dir), None, None) = (from_env, &options.dirname, &options.kernel) {
        return dir.to_path_buf();
    }
    let root = Path::new(options.dirname.as_deref().unwrap_or("/"));
    let kernel = options.kernel.clone().unwrap_or_else(|| {
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let usr = root.join("usr/lib/modules").join(&kernel);
    let lib = root.join("lib/modules").join(&kernel);
    if !usr.exists() && lib.exists() {
        lib
    } else {
        usr
    }
}

/// `modprobe`: `args` is the whole command line, `argv[0]` included. Returns
/// the exit status: 0 when every module asked for is loaded (now or
/// before) or built in, 1 otherwise, with a one-line error on stderr
/// unless `-q`.
pub fn modprobe_main(args: &[String]) -> i32 {
    let host = Host {
        modules_dir: std::env::var_os("MODPROBE_MODULES_DIR").map(PathBuf::from),
        sys_module: PathBuf::from("/sys/module"),
        kmsg: PathBuf::from("/dev/kmsg"),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    modprobe(
        args.get(1..).unwrap_or_default(),
        &host,
        &mut stdout.lock(),
        &mut stderr.lock(),
    )
}

fn modprobe(args: &[String], host: &Host, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(e) => {
            let _ = writeln!(err, "modprobe: {e}");
            return 1;
        }
    };
    if options.help {
        let _ = out.write_all(USAGE.as_bytes());
        return 0;
    }
    if options.version {
        let _ = writeln!(out, "modprobe (OxOS ros {})", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    // Errors: stderr, or the kernel log with -s (stderr when it cannot be
    // opened), nowhere with -q.
    let mut report = |message: &str| {
        if options.quiet {
            return;
        }
        if options.syslog {
            let kmsg = std::fs::OpenOptions::new().write(true).open(&host.kmsg);
            if let Ok(mut kmsg) = kmsg {
                // <3>: KERN_ERR.
                if kmsg
                    .write_all(format!("<3>modprobe: {message}\n").as_bytes())
                    .is_ok()
                {
                    return;
                }
            }
        }
        let _ = writeln!(err, "modprobe: {message}");
    };
    let requests: Vec<(&str, String)> = if options.all {
        options
            .args
            .iter()
            .map(|n| (n.as_str(), String::new()))
            .collect()
    } else {
        options
            .args
            .split_first()
            .map(|(name, params)| (name.as_str(), params.join(" ")))
            .into_iter()
            .collect()
    };
    if requests.is_empty() {
        report("missing module name (modprobe --help)");
        return 1;
    }
    let action = if options.show_depends {
        Action::ShowDepends
    } else if options.dry_run {
        Action::DryRun
    } else {
        Action::Insert
    };
    // The kernel waits for this program: a module loaded already answers
    // without reading any index.
    let pending: Vec<&(&str, String)> = requests
        .iter()
        .filter(|(name, _)| {
            action == Action::ShowDepends
                || options.first_time
                || !is_loaded(&host.sys_module, &normalize_alias(name))
        })
        .collect();
    if pending.is_empty() {
        return 0;
    }
    let dir = modules_dir(&options, host.modules_dir.as_deref());
    let index = match ModuleIndex::load(&dir) {
        Ok(index) => index,
        Err(e) => {
            report(&e.to_string());
            return 1;
        }
    };
    let mut prober = Prober::new(&index, &host.sys_module, action, out);
    prober.verbose = options.verbose;
    prober.first_time = options.first_time;
    let mut status = 0;
    for (name, params) in pending {
        if let Err(e) = prober.probe(name, params) {
            report(&e.to_string());
            status = 1;
        }
    }
    for warning in std::mem::take(&mut prober.warnings) {
        report(&format!("warning: {warning}"));
    }
    status
}
#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/drivers/net/bonding/bonding.ko.xz: kernel/net/tls/tls.ko.xz
kernel/net/tls/tls.ko.xz:
kernel/drivers/block/virtio-blk.ko.xz:
";

    #[test]
    fn parallel_work_runs_each_item_once_and_reports_errors_in_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let items: Vec<usize> = (0..40).collect();
        for threads in [0, 1, 2, 4, 64] {
            let runs: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
            let errors = for_each_parallel(&items, threads, |&i| {
                runs[i].fetch_add(1, Ordering::SeqCst);
                match i % 7 {
                    3 => Err(Error::Other(format!("item {i} failed"))),
                    5 => panic!("item {i} panics"),
                    _ => Ok(()),
                }
            });
            assert!(
                runs.iter().all(|r| r.load(Ordering::SeqCst) == 1),
                "{threads} threads"
            );
            let failed: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
            let want: Vec<usize> = items
                .iter()
                .copied()
                .filter(|i| i % 7 == 3 || i % 7 == 5)
                .collect();
            assert_eq!(failed, want, "{threads} threads");
            assert_eq!(
                errors[0].1.to_string(),
                Error::Other("item 3 failed".into()).to_string()
            );
            assert!(
                errors[1].1.to_string().contains("panicked"),
                "{}",
                errors[1].1
            );
        }
        assert!(for_each_parallel(&[] as &[usize], 4, |_| Ok(())).is_empty());
    }

    #[test]
    fn parallel_work_runs_items_at_the_same_time() {
        // Item 0 waits for item 1 to start: with one thread it would wait in
        // vain (and fail after 10 s), with two it goes on.
        let (started, wait) = std::sync::mpsc::channel::<()>();
        let started = std::sync::Mutex::new(started);
        let wait = std::sync::Mutex::new(wait);
        let errors = for_each_parallel(&[0, 1], 2, |&i| {
            if i == 1 {
                started.lock().unwrap().send(()).unwrap();
                return Ok(());
            }
            wait.lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(10))
                .map_err(|_| Error::Other("item 1 did not start meanwhile".into()))
        });
        assert!(errors.is_empty(), "{}", errors[0].1);
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let index = ModuleIndex::parse(Path::new("/m"), DEP, "kernel/fs/mbcache.ko\n");
        let order: Vec<String> = index
            .load_order("ext4")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(order, ["crc16", "jbd2", "ext4"], "mbcache is built in");
        let (_, path) = &index.load_order("bonding").unwrap()[1];
        assert_eq!(
            path,
            Path::new("/m/kernel/drivers/net/bonding/bonding.ko.xz")
        );
    }

    #[test]
    fn names_with_dashes_match_underscores() {
        let index = ModuleIndex::parse(Path::new("/m"), DEP, "");
        assert_eq!(
            module_name("kernel/drivers/block/virtio-blk.ko.xz"),
            "virtio_blk"
        );
        assert_eq!(index.load_order("virtio-blk").unwrap().len(), 1);
        assert_eq!(index.load_order("virtio_blk").unwrap().len(), 1);
    }

    #[test]
    fn unknown_and_builtin_modules() {
        let index = ModuleIndex::parse(Path::new("/m"), DEP, "kernel/fs/ext4/ext4.ko\n");
        assert!(index.load_order("ext4").unwrap().is_empty());
        let err = index.load_order("nosuch").unwrap_err().to_string();
        assert_eq!(err, "no kernel module named nosuch");
    }

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias rtnl-link-bridge bridge
alias fs-overlay overlay
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net
alias pci:v00001AF4d00001041sv*sd*bc*sc*i* virtio_net
alias usb:v0BDAp8153d[0-2]*dc*dsc*dp*ic*isc*ip*in* r8152
alias crypto-crc32c crc32c_generic
alias crypto-crc32c crc32c-intel
alias net-pf-10 ipv6
alias malformed
";

    #[test]
    fn alias_lines_are_parsed_and_normalized() {
        let aliases = parse_aliases(ALIAS);
        assert_eq!(
            aliases.len(),
            8,
            "the comment and the short line are skipped"
        );
        assert_eq!(
            aliases[0],
            Alias {
                pattern: "rtnl_link_bridge".into(),
                module: "bridge".into()
            }
        );
        assert_eq!(
            aliases[4].pattern,
            "usb:v0BDAp8153d[0-2]*dc*dsc*dp*ic*isc*ip*in*"
        );
        assert_eq!(aliases[6].module, "crc32c_intel");
    }

    #[test]
    fn softdep_lines_are_parsed() {
        let text = "\
# Soft dependencies extracted from modules themselves.
softdep nf_conntrack pre: nf_defrag_ipv4 nf_defrag_ipv6 post: nf-ct-extra
softdep crc32c post: crc32c-intel
softdep nf-conntrack pre: extra
softdep
";
        let softdeps = parse_softdeps(text);
        assert_eq!(softdeps.len(), 2);
        assert_eq!(
            softdeps["nf_conntrack"],
            SoftDep {
                pre: vec![
                    "nf_defrag_ipv4".into(),
                    "nf_defrag_ipv6".into(),
                    "extra".into()
                ],
                post: vec!["nf-ct-extra".into()],
            }
        );
        assert!(softdeps["crc32c"].pre.is_empty());
        assert_eq!(softdeps["crc32c"].post, ["crc32c-intel"]);
    }

    #[test]
    fn builtin_aliases_come_from_modinfo() {
        let modinfo = b"overlay.license=GPL\0overlay.alias=fs-overlay\0unix.alias=net-pf-1\0\0";
        let aliases = parse_builtin_aliases(modinfo);
        assert_eq!(aliases.len(), 2);
        assert_eq!(aliases[0].pattern, "fs_overlay");
        assert_eq!(aliases[1].module, "unix");
    }

    #[test]
    fn glob_patterns_match_as_modprobe_does() {
        let pci = "pci:v00001AF4d00001000sv*sd*bc*sc*i*";
        assert!(alias_matches(
            pci,
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!alias_matches(
            pci,
            "pci:v00001AF4d00001041sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(
            !alias_matches(pci, "pci:v00001AF4d00001000"),
            "sv* is needed"
        );
        let usb = "usb:v0BDAp8153d[0-2]*dc*";
        assert!(alias_matches(usb, "usb:v0BDAp8153d1030dc00"));
        assert!(!alias_matches(usb, "usb:v0BDAp8153d3000dc00"));
        assert!(alias_matches("of:N*T*Cfoo[!0]", "of:NxTyCfoo1"));
        assert!(!alias_matches("of:N*T*Cfoo[!0]", "of:NxTyCfoo0"));
        assert!(alias_matches("net_pf_1?", "net_pf_10"));
        assert!(!alias_matches("net_pf_1?", "net_pf_1"));
        assert!(alias_matches("fs_overlay", "fs_overlay"));
        assert!(!alias_matches("fs_overlay", "fs_overlayx"));
        // `-` stays a range inside brackets and is `_` outside.
        assert_eq!(normalize_alias("dev-[a-c]-x"), "dev_[a-c]_x");
        assert!(alias_matches(
            &normalize_alias("dev-[a-c]-x"),
            &normalize_alias("dev-b-x")
        ));
        assert!(!alias_matches("a*", "a\0b"), "a NUL never matches");
        // modules.alias lines as written, against a normalized name.
        assert_eq!(
            raw_alias_matches("rtnl-link-bridge", "rtnl_link_bridge"),
            Some(16)
        );
        assert_eq!(
            raw_alias_matches("rtnl-link-bridge bridge", "rtnl_link_bridge"),
            Some(16)
        );
        assert_eq!(raw_alias_matches("fs-overlay", "fs_overlay2"), None);
        assert_eq!(raw_alias_matches("fs-overlay overlay", "fs_overla"), None);
        assert_eq!(raw_alias_matches("dev-[a-c]-x* m", "dev_b_x1"), Some(12));
        assert_eq!(raw_alias_matches("dev-[a-c]-x* m", "dev_d_x1"), None);
        assert_eq!(raw_alias_matches("nft-expr-*\tm", "nft_expr_ct"), Some(10));
        assert_eq!(
            raw_alias_matches("a*b c", "axb c"),
            None,
            "the pattern ends at the space"
        );
    }

    fn index() -> ModuleIndex {
        let dep = "\
kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz
kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz
kernel/net/llc/llc.ko.xz:
kernel/drivers/net/virtio_net.ko.xz:
kernel/drivers/net/dummy.ko.xz:
kernel/crypto/crc32c_generic.ko.xz:
kernel/arch/x86/crypto/crc32c-intel.ko.xz:
kernel/net/netfilter/nf_conntrack.ko.xz: kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz:
kernel/net/netfilter/nf_ct_extra.ko.xz:
";
        let alias = format!("{ALIAS}alias dummy virtio_net\nalias nf-ct-extra nf_ct_extra\n");
        ModuleIndex::parse(Path::new("/m"), dep, "kernel/fs/overlayfs/overlay.ko\n")
            .with_aliases(&alias)
            .with_softdeps(
                "softdep nf_conntrack pre: nf_defrag_ipv4 nosuch post: nf-ct-extra\n\
                 softdep nf_ct_extra pre: nf_conntrack\n",
            )
    }

    #[test]
    fn coldplug_reads_every_device_alias_once_and_finds_their_drivers() {
        let sys = tempfile::tempdir().unwrap();
        let device = |bus: &str, name: &str, alias: Option<&str>| {
            let dir = sys.path().join("bus").join(bus).join("devices").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(alias) = alias {
                std::fs::write(dir.join("modalias"), format!("{alias}\n")).unwrap();
            }
        };
        let nic = "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00";
        device("pci", "0000:00:03.0", Some(nic));
        device("pci", "0000:00:04.0", Some(nic));
        device("pci", "0000:00:00.0", Some("pci:v00008086d00001237sv*"));
        device("virtio", "virtio0", Some(""));
        device("cpu", "cpu0", None);
        std::fs::create_dir_all(sys.path().join("bus/empty")).unwrap();
        let aliases = device_aliases(sys.path());
        assert_eq!(
            aliases.iter().map(String::as_str).collect::<Vec<_>>(),
            [nic, "pci:v00008086d00001237sv*"],
            "one alias per kind of device; none for devices without one"
        );
        assert_eq!(
            drivers_for(&index(), &aliases),
            ["virtio_net"],
            "a device no module drives adds nothing"
        );
        let usb = "usb:v0BDAp8153d0100dc00dsc00dp00icFFiscFFip00in00".to_string();
        assert_eq!(
            drivers_for(&index(), [&usb, &nic.to_string(), &usb]),
            ["r8152", "virtio_net"],
            "each module once, in the order of the devices"
        );
        assert!(device_aliases(&sys.path().join("nosuch")).is_empty());
    }

    #[test]
    fn a_module_name_beats_an_alias_and_an_alias_beats_builtin() {
        let mut index = index();
        let modules =
            |names: &[&str]| Resolved::Modules(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(index.resolve("dummy").unwrap(), modules(&["dummy"]));
        assert_eq!(
            index.resolve("rtnl-link-bridge").unwrap(),
            modules(&["bridge"])
        );
        assert_eq!(
            index.resolve("rtnl_link_bridge").unwrap(),
            modules(&["bridge"])
        );
        assert_eq!(
            index
                .resolve("pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00")
                .unwrap(),
            modules(&["virtio_net"])
        );
        assert_eq!(
            index.resolve("crypto-crc32c").unwrap(),
            modules(&["crc32c_generic", "crc32c_intel"]),
            "every matching alias, in file order"
        );
        assert_eq!(index.resolve("overlay").unwrap(), Resolved::Builtin);
        assert_eq!(
            index.resolve("fs-overlay").unwrap(),
            modules(&["overlay"]),
            "modules.alias comes before modules.builtin"
        );
        index.aliases = index
            .aliases
            .lines()
            .filter(|l| !l.ends_with(" overlay"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(index.resolve("fs-overlay").is_err());
        index = index.with_builtin_modinfo(b"overlay.alias=fs-overlay\0");
        assert_eq!(index.resolve("fs-overlay").unwrap(), Resolved::Builtin);
        assert_eq!(
            index.resolve("nosuch").unwrap_err().to_string(),
            "module nosuch not found in /m"
        );
    }

    /// A fake module tree and /sys/module in a temporary directory.
    struct Fixture {
        tmp: tempfile::TempDir,
        host: Host,
    }

    impl Fixture {
        fn new(loaded: &[&str]) -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("modules");
            std::fs::create_dir_all(&dir).unwrap();
            let index = index();
            std::fs::write(dir.join("modules.dep"), &index.dep).unwrap();
            std::fs::write(
                dir.join("modules.builtin"),
                "kernel/fs/overlayfs/overlay.ko\n",
            )
            .unwrap();
            std::fs::write(
                dir.join("modules.alias"),
                format!("{ALIAS}alias nf-ct-extra nf_ct_extra\n"),
            )
            .unwrap();
            std::fs::write(
                dir.join("modules.softdep"),
                "softdep nf_conntrack pre: nf_defrag_ipv4 nosuch post: nf-ct-extra\n",
            )
            .unwrap();
            std::fs::write(
                dir.join("modules.builtin.modinfo"),
                b"unix.alias=net-pf-1\0unix.license=GPL\0",
            )
            .unwrap();
            let sys_module = tmp.path().join("sys/module");
            for name in loaded {
                std::fs::create_dir_all(sys_module.join(name)).unwrap();
            }
            std::fs::create_dir_all(&sys_module).unwrap();
            // The kernel log exists; modprobe does not create it.
            std::fs::write(tmp.path().join("kmsg"), "").unwrap();
            let host = Host {
                modules_dir: Some(dir),
                sys_module,
                kmsg: tmp.path().join("kmsg"),
            };
            Self { tmp, host }
        }

        fn dir(&self) -> PathBuf {
            self.tmp.path().join("modules")
        }

        /// Exit status, stdout and stderr of `modprobe ARGS`.
        fn run(&self, args: &[&str]) -> (i32, String, String) {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let status = modprobe(&args, &self.host, &mut out, &mut err);
            (
                status,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        }
    }

    #[test]
    fn loaded_and_builtin_targets_succeed_quietly() {
        let fx = Fixture::new(&["bridge", "stp", "llc"]);
        assert_eq!(
            fx.run(&["-q", "--", "rtnl-link-bridge"]),
            (0, "".into(), "".into())
        );
        assert_eq!(fx.run(&["bridge"]), (0, "".into(), "".into()));
        assert_eq!(fx.run(&["overlay"]), (0, "".into(), "".into()));
        assert_eq!(fx.run(&["-q", "--", "net-pf-1"]), (0, "".into(), "".into()));
        assert_eq!(
            fx.run(&["-v", "-a", "bridge", "overlay"]),
            (0, "".into(), "".into())
        );
    }

    #[test]
    fn a_module_still_initialising_is_not_taken_for_loaded() {
        let sys = tempfile::tempdir().unwrap();
        for (module, state) in [("crc32c_generic", Some("coming")), ("ext4", Some("live"))] {
            let dir = sys.path().join(module);
            std::fs::create_dir(&dir).unwrap();
            if let Some(state) = state {
                std::fs::write(dir.join("initstate"), format!("{state}\n")).unwrap();
            }
        }
        // Built in, with parameters: a directory without initstate.
        std::fs::create_dir(sys.path().join("printk")).unwrap();
        assert!(!is_loaded(sys.path(), "crc32c_generic"));
        assert!(is_loaded(sys.path(), "ext4"));
        assert!(is_loaded(sys.path(), "printk"));
        assert!(!is_loaded(sys.path(), "nosuch"));
    }

    #[test]
    fn unknown_names_fail_with_one_line_unless_quiet() {
        let fx = Fixture::new(&["bridge"]);
        let dir = fx.dir();
        let (status, out, err) = fx.run(&["nosuch"]);
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            format!("modprobe: module nosuch not found in {}\n", dir.display())
        );
        assert_eq!(fx.run(&["-q", "--", "nosuch"]), (1, "".into(), "".into()));
        // /sys/module itself, or what is above it, is no module.
        for name in ["", ".", "..", "../module", "/"] {
            assert_eq!(fx.run(&["-q", "--", name]).0, 1, "{name:?}");
        }
        assert_eq!(fx.run(&[""]).2, "modprobe: empty module name\n");
        let (status, _, err) = fx.run(&["-a", "bridge", "nosuch", "overlay", "nf-nope"]);
        assert_eq!(status, 1);
        assert_eq!(err.lines().count(), 2, "{err}");
        // -s: the kernel log, not stderr.
        let (status, _, err) = fx.run(&["-s", "nosuch"]);
        assert_eq!((status, err.as_str()), (1, ""));
        let kmsg = std::fs::read_to_string(&fx.host.kmsg).unwrap();
        assert!(
            kmsg.starts_with("<3>modprobe: module nosuch not found"),
            "{kmsg}"
        );
    }

    #[test]
    fn dry_run_prints_what_is_missing_dependencies_first() {
        let fx = Fixture::new(&["llc"]);
        let m = fx.dir();
        let (status, out, err) = fx.run(&["-n", "-v", "br-netfilter"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(
            out,
            format!(
                "insmod {0}/kernel/net/802/stp.ko.xz\n\
                 insmod {0}/kernel/net/bridge/bridge.ko.xz\n\
                 insmod {0}/kernel/net/bridge/br_netfilter.ko.xz\n",
                m.display()
            ),
            "llc is loaded"
        );
        let (status, out, _) = fx.run(&["-nv", "dummy", "numdummies=2", "x=y"]);
        assert_eq!(status, 0);
        assert_eq!(
            out,
            format!(
                "insmod {}/kernel/drivers/net/dummy.ko.xz numdummies=2 x=y\n",
                m.display()
            )
        );
        let (_, out, _) = fx.run(&["-n", "dummy"]);
        assert_eq!(out, "", "without -v a dry run says nothing");
    }

    #[test]
    fn show_depends_lists_loaded_and_builtin_modules_too() {
        let fx = Fixture::new(&["bridge", "stp", "llc"]);
        let m = fx.dir();
        let (status, out, _) = fx.run(&["--show-depends", "rtnl-link-bridge"]);
        assert_eq!(status, 0);
        assert_eq!(
            out,
            format!(
                "insmod {0}/kernel/net/llc/llc.ko.xz\n\
                 insmod {0}/kernel/net/802/stp.ko.xz\n\
                 insmod {0}/kernel/net/bridge/bridge.ko.xz\n",
                m.display()
            )
        );
        assert_eq!(fx.run(&["-D", "overlay"]).1, "builtin overlay\n");
    }

    #[test]
    fn soft_dependencies_load_around_the_module_and_may_fail() {
        let fx = Fixture::new(&[]);
        let m = fx.dir();
        let (status, out, err) = fx.run(&["-n", "-v", "nf_conntrack"]);
        assert_eq!(status, 0, "a missing soft dependency does not fail");
        assert_eq!(
            out,
            format!(
                "insmod {0}/kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko.xz\n\
                 insmod {0}/kernel/net/netfilter/nf_conntrack.ko.xz\n\
                 insmod {0}/kernel/net/netfilter/nf_ct_extra.ko.xz\n",
                m.display()
            )
        );
        assert_eq!(
            err,
            format!(
                "modprobe: warning: soft dependency nosuch of nf_conntrack: module nosuch not found in {}\n",
                m.display()
            )
        );
        assert_eq!(
            fx.run(&["-q", "-n", "nf_conntrack"]),
            (0, "".into(), "".into())
        );
    }

    #[test]
    fn a_dependencys_soft_dependencies_load_with_it() {
        // As erofs needs libcrc32c, whose init needs a crc32c: bridge needs
        // stp, and here stp wants dummy first and virtio_net after.
        let with_softdep = |loaded: &[&str]| {
            let fx = Fixture::new(loaded);
            std::fs::write(
                fx.dir().join("modules.softdep"),
                "softdep stp pre: dummy post: virtio_net\n",
            )
            .unwrap();
            fx
        };
        let all = |fx: &Fixture| {
            format!(
                "insmod {0}/kernel/net/llc/llc.ko.xz\n\
                 insmod {0}/kernel/drivers/net/dummy.ko.xz\n\
                 insmod {0}/kernel/net/802/stp.ko.xz\n\
                 insmod {0}/kernel/drivers/net/virtio_net.ko.xz\n\
                 insmod {0}/kernel/net/bridge/bridge.ko.xz\n",
                fx.dir().display()
            )
        };
        let fx = with_softdep(&[]);
        let (status, out, _) = fx.run(&["-n", "-v", "bridge"]);
        assert_eq!(status, 0);
        assert_eq!(out, all(&fx));
        // A dependency that is loaded already brings nothing.
        let fx = with_softdep(&["llc", "stp"]);
        assert_eq!(
            fx.run(&["-n", "-v", "bridge"]).1,
            format!(
                "insmod {}/kernel/net/bridge/bridge.ko.xz\n",
                fx.dir().display()
            )
        );
        // --show-depends lists everything loading would need, loaded or
        // not, the dependency's soft dependencies in their places.
        assert_eq!(fx.run(&["--show-depends", "bridge"]).1, all(&fx));
    }

    #[test]
    fn loading_a_missing_file_fails_naming_it() {
        // Nothing is loaded here: the file does not exist, so no
        // finit_module happens.
        let fx = Fixture::new(&["llc", "stp"]);
        let (status, _, err) = fx.run(&["bridge"]);
        assert_eq!(status, 1);
        assert!(
            err.starts_with(&format!(
                "modprobe: cannot open module {}/kernel/net/bridge/bridge.ko.xz: ",
                fx.dir().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn first_time_refuses_loaded_and_builtin_modules() {
        let fx = Fixture::new(&["bridge"]);
        assert_eq!(
            fx.run(&["--first-time", "rtnl-link-bridge"]),
            (
                1,
                "".into(),
                "modprobe: module bridge is already loaded\n".into()
            )
        );
        assert_eq!(
            fx.run(&["--first-time", "overlay"]).2,
            "modprobe: module overlay is built into the kernel\n"
        );
    }

    #[test]
    fn usage_errors_and_unsupported_options() {
        let fx = Fixture::new(&[]);
        assert_eq!(
            fx.run(&["-r", "bridge"]),
            (
                1,
                "".into(),
                "modprobe: removing modules is not supported\n".into()
            )
        );
        assert_eq!(fx.run(&["-q", "-r", "bridge"]).0, 1);
        assert_eq!(fx.run(&["-x"]).2, "modprobe: unknown option -x\n");
        assert_eq!(
            fx.run(&["--frobnicate"]).2,
            "modprobe: unknown option --frobnicate\n"
        );
        assert_eq!(fx.run(&["-C", "/etc/x"]).0, 1);
        assert_eq!(fx.run(&["-q"]), (1, "".into(), "".into()));
        assert_eq!(
            fx.run(&["-v"]).2,
            "modprobe: missing module name (modprobe --help)\n"
        );
        let (status, out, _) = fx.run(&["--help"]);
        assert_eq!((status, out.as_str()), (0, USAGE));
        assert_eq!(modprobe_main(&["modprobe".into(), "-h".into()]), 0);
        assert_eq!(
            modprobe_main(&["modprobe".into(), "--remove".into(), "x".into()]),
            1
        );
        assert_eq!(modprobe_main(&[]), 1, "no argv at all");
    }

    #[test]
    fn options_parse_like_getopt() {
        let parse =
            |args: &[&str]| parse_options(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let o = parse(&["-q", "--", "nft-chain-2-nat"]).unwrap();
        assert!(o.quiet && !o.all);
        assert_eq!(o.args, ["nft-chain-2-nat"]);
        let o = parse(&["-qab", "x", "y"]).unwrap();
        assert!(o.quiet && o.all);
        assert_eq!(o.args, ["x", "y"]);
        let o = parse(&["ext4", "-v", "--dirname=/img", "-S6.1.0", "a=1", "--", "-b"]).unwrap();
        assert!(o.verbose);
        assert_eq!(o.dirname.as_deref(), Some("/img"));
        assert_eq!(o.kernel.as_deref(), Some("6.1.0"));
        assert_eq!(
            o.args,
            ["ext4", "a=1", "-b"],
            "after -- nothing is an option"
        );
        let o = parse(&["-d", "/img", "--set-version", "6.2", "x"]).unwrap();
        assert_eq!(
            (o.dirname.as_deref(), o.kernel.as_deref()),
            (Some("/img"), Some("6.2"))
        );
        assert_eq!(parse(&["-S"]).unwrap_err(), "option -S needs a value");
        assert_eq!(
            parse(&["-f", "x"]).unwrap_err(),
            "forced loading is not supported"
        );
    }

    #[test]
    fn module_directory_follows_options_then_environment() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("lib/modules/6.1.0")).unwrap();
        let env = Path::new("/fixture");
        let opts = |args: &[&str]| {
            parse_options(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(modules_dir(&opts(&["x"]), Some(env)), env);
        let root = tmp.path().display().to_string();
        assert_eq!(
            modules_dir(&opts(&["-d", &root, "-S", "6.1.0", "x"]), Some(env)),
            tmp.path().join("lib/modules/6.1.0"),
            "/lib/modules when only it exists"
        );
        std::fs::create_dir_all(tmp.path().join("usr/lib/modules/6.1.0")).unwrap();
        assert_eq!(
            modules_dir(&opts(&["-d", &root, "-S", "6.1.0", "x"]), None),
            tmp.path().join("usr/lib/modules/6.1.0")
        );
        assert_eq!(
            modules_dir(&opts(&["-S", "9.9", "x"]), None),
            Path::new("/usr/lib/modules/9.9")
        );
    }

    #[test]
    fn a_module_this_host_has_loaded_is_left_alone() {
        // A real /sys/module entry, under a module file that does not
        // exist: were it not seen as loaded, opening the file would fail.
        let Some(name) = std::fs::read_dir("/sys/module")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            eprintln!("no /sys/module here; skipped");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("modules.dep"),
            format!("kernel/missing/{name}.ko.xz:\n"),
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("modules.alias"),
            format!("alias test-alias-* {name}\n"),
        )
        .unwrap();
        let host = Host {
            modules_dir: Some(tmp.path().to_path_buf()),
            sys_module: PathBuf::from("/sys/module"),
            kmsg: tmp.path().join("kmsg"),
        };
        let args = ["-v".to_string(), "test-alias-1".to_string()];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(
            modprobe(&args, &host, &mut out, &mut err),
            0,
            "{name}: {err:?}"
        );
        assert!(out.is_empty() && err.is_empty());
        let index = ModuleIndex::load(tmp.path()).unwrap();
        load(&index, "test-alias-2", "").unwrap();
        assert_eq!(
            load(&index, "nosuch", "").unwrap_err().to_string(),
            format!("module nosuch not found in {}", tmp.path().display())
        );
    }

    #[test]
    fn missing_module_directory_is_reported() {
        let fx = Fixture::new(&[]);
        let host = Host {
            modules_dir: Some(fx.tmp.path().join("none")),
            sys_module: fx.host.sys_module.clone(),
            kmsg: fx.host.kmsg.clone(),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(modprobe(&["dummy".into()], &host, &mut out, &mut err), 1);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(&format!(
                "modprobe: cannot read {}/none/modules.dep: ",
                fx.tmp.path().display()
            )),
            "{err}"
        );
    }
}
