//! `mounts`: file systems mounted and swap areas enabled in the host's mount
//! namespace.
//!
//! Each entry is a cloud-init/RancherOS list `[device, mount point, type,
//! options]`; a missing or empty type means `auto`, missing or empty
//! options mean `defaults`; a fifth and sixth field (fstab's dump and pass)
//! are accepted and ignored. The calls are made from a thread that has
//! entered the target mount namespace (see [`in_namespace`]), so paths,
//! /dev and /proc/thread-self are the host's.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use config::Value;
use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::error::{Error, Result};

/// One `mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// A path, `LABEL=x`, `UUID=x`, `PARTUUID=x`, `PARTLABEL=x`, or a name
    /// such as `tmpfs`.
    pub device: String,
    /// Where it is mounted (`none` for swap).
    pub target: String,
    /// File system type; empty means `auto`.
    pub fstype: String,
    /// Comma-separated options; empty means `defaults`.
    pub options: String,
}

/// Reads an entry: a list of 2 to 6 scalars (null is an empty field).
pub fn entry_from_value(value: &Value) -> Result<Entry> {
    let bad = |why: String| Error::MountEntry(why);
    let items = match value {
        Value::Sequence(items) => items,
        other => {
            return Err(bad(format!(
                "must be a list [device, mount point, type, options], not {}",
                config::kind(other)
            )))
        }
    };
    if !(2..=6).contains(&items.len()) {
        return Err(bad(format!(
            "must have 2 to 6 fields [device, mount point, type, options], not {}",
            items.len()
        )));
    }
    let mut fields = Vec::with_capacity(4);
    for item in items.iter().take(4) {
        fields.push(match item {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => {
                return Err(bad(format!(
                    "fields must be strings, not {}",
                    config::kind(other)
                )))
            }
        });
    }
    fields.resize(4, String::new());
    let [device, target, fstype, options]: [String; 4] = fields
        .try_into()
        .map_err(|_| bad("must have 4 fields".into()))?;
    if device.is_empty() {
        return Err(bad("the device is empty".into()));
    }
    Ok(Entry {
        device,
        target,
        fstype,
        options,
    })
}

/// The options string split for mount(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags for the mount call.
    pub flags: MsFlags,
    /// Propagation changes (shared, private ...), each made by a call of its
    /// own after the mount, as mount(8) does: the kernel takes them only alone.
    pub propagation: Vec<MsFlags>,
    /// Everything that is not a flag, comma-joined, for the file system.
    pub data: String,
    /// `loop` was asked for.
    pub want_loop: bool,
}

impl Options {
    /// `bind` or `rbind`.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// `remount`.
    pub fn is_remount(&self) -> bool {
        self.flags.contains(MsFlags::MS_REMOUNT)
    }
}

/// Splits options as mount(8) does: known flags set or clear bits, fstab-only
/// words (`auto`, `nofail`, `x-*` ...) are dropped, the rest is file system
/// data (`size=10m`, `mode=0755`). Hand-written: this table is mount(8)'s
/// (libmount's optmap), which no crate exposes on its own.
pub fn parse_options(options: &str) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        want_loop: false,
    };
    let mut data = Vec::new();
    for word in options.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (set, clear) = match word {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "shared" => prop(&mut o, MsFlags::MS_SHARED),
            "private" => prop(&mut o, MsFlags::MS_PRIVATE),
            "slave" => prop(&mut o, MsFlags::MS_SLAVE),
            "unbindable" => prop(&mut o, MsFlags::MS_UNBINDABLE),
            "rshared" => prop(&mut o, MsFlags::MS_SHARED | MsFlags::MS_REC),
            "rprivate" => prop(&mut o, MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "rslave" => prop(&mut o, MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "runbindable" => prop(&mut o, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            "loop" => {
                o.want_loop = true;
                continue;
            }
            // Words only fstab, mount(8) or systemd read; not for the kernel.
            "auto" | "noauto" | "user" | "nouser" | "users" | "owner" | "group" | "nofail"
            | "_netdev" | "nobootwait" | "sw" => continue,
            w if w.starts_with("x-") || w.starts_with("comment=") || w.starts_with("loop=") => {
                if w.starts_with("loop=") {
                    o.want_loop = true;
                }
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    o
}

fn prop(o: &mut Options, flags: MsFlags) -> (MsFlags, MsFlags) {
    o.propagation.push(flags);
    (MsFlags::empty(), MsFlags::empty())
}

/// Device tags and the /dev/disk directory udev lists them in.
const TAGS: [(&str, &str); 4] = [
    ("LABEL=", "by-label"),
    ("UUID=", "by-uuid"),
    ("PARTUUID=", "by-partuuid"),
    ("PARTLABEL=", "by-partlabel"),
];

fn is_tag(device: &str) -> bool {
    TAGS.iter().any(|(prefix, _)| device.starts_with(prefix))
}

/// The real path of a device: a tag (`LABEL=x`, `UUID=x`, `PARTUUID=x`,
/// `PARTLABEL=x`) through udev's links under `dev_disk`, a path with its
/// symlinks resolved (so it reads as /proc/thread-self/mountinfo and
/// /proc/swaps show it).
pub fn resolve_device(device: &str, dev_disk: &Path) -> Result<PathBuf> {
    for (prefix, dir) in TAGS {
        if let Some(value) = device.strip_prefix(prefix) {
            let value = value.trim_matches('"');
            if value.is_empty() || value.contains('/') {
                return Err(Error::MountEntry(format!("{device}: not a valid tag")));
            }
            let link = dev_disk.join(dir).join(value);
            return std::fs::canonicalize(&link).map_err(|_| Error::NoDevice {
                detail: format!(" ({} is missing)", link.display()),
            });
        }
    }
    std::fs::canonicalize(device).map_err(|_| Error::NoDevice {
        detail: String::new(),
    })
}

/// Runs `f` on a thread of its own that has entered the mount namespace at
/// `ns` (`None`: the current one). The thread first unshares its file
/// system attributes (CLONE_FS): setns(2) refuses a mount namespace to a
/// thread that shares them with others, and the rest of the process keeps
/// its own namespace, root and working directory.
pub fn in_namespace<T: Send>(ns: Option<&Path>, f: impl FnOnce() -> T + Send) -> Result<T> {
    let Some(ns) = ns else {
        return Ok(f());
    };
    let enter = |source: Errno| Error::Namespace {
        path: ns.to_owned(),
        source,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(ns).map_err(|e| Error::Io {
                    what: "failed to open the mount namespace",
                    path: ns.to_owned(),
                    source: e,
                })?;
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(enter)?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNS).map_err(enter)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Entry("the mount thread panicked".into())))
    })
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Mounted, with this file system type (the one found, for `auto`).
    Mounted(String),
    /// The source was already mounted there; nothing done.
    AlreadyMounted,
    /// Swap enabled on this path.
    SwapOn(PathBuf),
    /// Swap was already enabled on this path.
    SwapAlreadyOn(PathBuf),
}

/// Applies one entry in the current mount namespace.
pub fn apply(entry: &Entry, dev_disk: &Path) -> Result<Done> {
    let opts = parse_options(&entry.options);
    if opts.want_loop {
        return Err(Error::NotSupported(
            "the loop option (set up a loop device in bootcmd and name /dev/loopN)".into(),
        ));
    }
    let fstype = entry.fstype.as_str();
    if fstype == "swap" {
        return swap_on(entry, dev_disk);
    }
    if fstype.starts_with("nfs") {
        return Err(Error::NotSupported(format!("{fstype} mounts")));
    }
    if !entry.target.starts_with('/') {
        return Err(Error::MountEntry(format!(
            "the mount point {:?} is not an absolute path",
            entry.target
        )));
    }
    // A source that names a file (a device, a directory to bind) must exist;
    // anything else (tmpfs, proc, none) is the kernel's to read.
    let source: String = if opts.is_bind() || is_tag(&entry.device) || entry.device.starts_with('/')
    {
        resolve_device(&entry.device, dev_disk)?
            .to_string_lossy()
            .into_owned()
    } else {
        entry.device.clone()
    };
    let target = Path::new(&entry.target);
    if !target.exists() {
        std::fs::create_dir_all(target).map_err(|e| Error::Io {
            what: "failed to create the mount point",
            path: target.to_owned(),
            source: e,
        })?;
    }
    let target = std::fs::canonicalize(target).map_err(|e| Error::Io {
        what: "failed to resolve the mount point",
        path: target.to_owned(),
        source: e,
    })?;
    if !opts.is_remount() && already_mounted(&source, &target, opts.is_bind()) {
        return Ok(Done::AlreadyMounted);
    }
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let used = if opts.is_bind() && opts.is_remount() {
        // `bind,remount,ro`: new flags for an existing bind mount.
        sys_mount(None, &target, None, opts.flags, None, "bind")?;
        "bind".to_owned()
    } else if opts.is_bind() {
        let bind = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        sys_mount(Some(&source), &target, None, bind, None, "bind")?;
        // The kernel ignores other flags on a bind; mount(8) applies them
        // with a remount of the bind.
        let rest = opts.flags - bind;
        if !rest.is_empty() {
            let flags = rest | MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
            sys_mount(None, &target, None, flags, None, "bind")?;
        }
        "bind".to_owned()
    } else if opts.is_remount() || !(fstype.is_empty() || fstype == "auto") {
        let t = (!fstype.is_empty()).then_some(fstype);
        sys_mount(Some(&source), &target, t, opts.flags, data, fstype)?;
        fstype.to_owned()
    } else {
        mount_auto(&source, &target, opts.flags, data)?
    };
    for prop in &opts.propagation {
        sys_mount(None, &target, None, *prop, None, &used)?;
    }
    Ok(Done::Mounted(used))
}

/// Tries every file system type the kernel knows until one mounts, which is
/// what mount(8) falls back to when blkid cannot tell the type: the types
/// are those of /proc/filesystems without `nodev` (they need no device).
/// Only EINVAL and ENODEV (not this type) move on to the next, as in
/// libmount; any other error is the answer.
fn mount_auto(source: &str, target: &Path, flags: MsFlags, data: Option<&str>) -> Result<String> {
    let list = std::fs::read_to_string("/proc/filesystems").map_err(|e| Error::Io {
        what: "failed to read",
        path: "/proc/filesystems".into(),
        source: e,
    })?;
    let types: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    for t in &types {
        match nix::mount::mount(Some(source), target, Some(*t), flags, data) {
            Ok(()) => return Ok((*t).to_owned()),
            Err(Errno::EINVAL | Errno::ENODEV) => continue,
            Err(e) => return Err(mount_error(e, t)),
        }
    }
    Err(Error::AutoType(types.join(", ")))
}

fn sys_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| mount_error(e, what))
}

/// mount(2)'s errno in mount(8)'s words.
fn mount_error(e: Errno, fstype: &str) -> Error {
    let reason = match e {
        Errno::ENODEV => format!("unknown file system type {fstype}"),
        Errno::ENOENT => "no such device or mount point".to_owned(),
        Errno::ENOTBLK => "not a block device".to_owned(),
        Errno::EBUSY => "already mounted or busy".to_owned(),
        Errno::EINVAL => "wrong file system type, bad option or bad superblock".to_owned(),
        Errno::EACCES | Errno::EROFS => "write-protected".to_owned(),
        Errno::EPERM => "permission denied (CAP_SYS_ADMIN is needed)".to_owned(),
        other => errno_text(other),
    };
    Error::Mount(reason)
}

/// An errno's description, lowercase.
pub(crate) fn errno_text(e: Errno) -> String {
    let desc = e.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => format!("{e}"),
    }
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Ok(v) = u8::from_str_radix(field.get(i + 1..i + 4).unwrap_or(""), 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `source` is already mounted on `target` in this thread's mount
/// namespace: a mountinfo line for `target` whose source is `source` or
/// whose device numbers are the block device's; for a bind, the target is
/// the source's own directory (same device and inode).
fn already_mounted(source: &str, target: &Path, bind: bool) -> bool {
    if bind {
        return match (std::fs::metadata(source), std::fs::metadata(target)) {
            (Ok(s), Ok(t)) => {
                s.dev() == t.dev() && s.ino() == t.ino() && Path::new(source) != target
            }
            _ => false,
        };
    }
    // thread-self, not self: /proc/self is the thread group leader's view,
    // and this thread may have entered another namespace.
    let Ok(info) = std::fs::read_to_string("/proc/thread-self/mountinfo") else {
        return false;
    };
    let rdev = std::fs::metadata(source)
        .ok()
        .filter(|m| m.file_type().is_block_device())
        .map(|m| {
            let r = m.rdev();
            format!("{}:{}", nix::sys::stat::major(r), nix::sys::stat::minor(r))
        });
    info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        let on_target = fields
            .get(4)
            .is_some_and(|m| Path::new(&unescape(m)) == target);
        let same_source = fields.get(sep + 2).is_some_and(|s| unescape(s) == source)
            || rdev.as_deref().is_some_and(|r| fields.get(2) == Some(&r));
        on_target && same_source
    })
}

/// The signature mkswap writes at the end of the first page.
const SWAP_MAGIC: &[u8] = b"SWAPSPACE2";
// linux/swap.h; the libc crate does not export them.
const SWAP_FLAG_PREFER: libc::c_int = 0x8000;
const SWAP_FLAG_PRIO_MASK: libc::c_int = 0x7fff;
const SWAP_FLAG_DISCARD: libc::c_int = 0x10000;

/// swapon(2)'s flags from the options: `pri=N`, `discard`; the rest (`sw`,
/// `defaults`, `nofail`) is ignored.
pub fn swap_flags(options: &str) -> Result<libc::c_int> {
    let mut flags = 0;
    for word in options.split(',').map(str::trim) {
        if let Some(p) = word.strip_prefix("pri=") {
            let pri: libc::c_int = p
                .parse()
                .ok()
                .filter(|p| (0..=SWAP_FLAG_PRIO_MASK).contains(p))
                .ok_or_else(|| Error::MountEntry(format!("swap priority {p:?}: not 0 to 32767")))?;
            flags |= SWAP_FLAG_PREFER | pri;
        } else if word == "discard" || word.starts_with("discard=") {
            flags |= SWAP_FLAG_DISCARD;
        }
    }
    Ok(flags)
}

/// Checks that `path` starts with a swap area: "SWAPSPACE2" at page size
/// minus 10, so a wrong device gives this error instead of swapon's EINVAL.
pub fn check_swap_signature(path: &Path) -> Result<()> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096);
    let io = |e| Error::Io {
        what: "failed to read",
        path: path.to_owned(),
        source: e,
    };
    let mut first = Vec::with_capacity(page);
    std::fs::File::open(path)
        .map_err(io)?
        .take(page as u64)
        .read_to_end(&mut first)
        .map_err(io)?;
    if first.len() < page || &first[page - SWAP_MAGIC.len()..] != SWAP_MAGIC {
        return Err(Error::NoSwapSignature {
            path: path.to_owned(),
            offset: page - SWAP_MAGIC.len(),
        });
    }
    Ok(())
}

/// Whether /proc/swaps lists `path`.
fn swap_active(path: &Path) -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| {
        s.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .any(|p| Path::new(&unescape(p)) == path)
    })
}

fn swap_on(entry: &Entry, dev_disk: &Path) -> Result<Done> {
    let path = resolve_device(&entry.device, dev_disk)?;
    if swap_active(&path) {
        return Ok(Done::SwapAlreadyOn(path));
    }
    let flags = swap_flags(&entry.options)?;
    check_swap_signature(&path)?;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::MountEntry("the device holds a NUL byte".into()))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::swapon(c.as_ptr(), flags) };
    if rc != 0 {
        let e = Errno::last();
        return Err(Error::Swap(match e {
            Errno::EBUSY => "already in use".to_owned(),
            Errno::EINVAL => {
                "refused by the kernel (a file with holes, or on a file system without swap files)"
                    .to_owned()
            }
            Errno::EPERM => "permission denied (CAP_SYS_ADMIN is needed)".to_owned(),
            other => errno_text(other),
        }));
    }
    Ok(Done::SwapOn(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn entries_take_defaults_and_reject_bad_shapes() {
        let e = entry_from_value(&v("[/dev/vdb, /mnt/b]")).unwrap();
        assert_eq!((e.fstype.as_str(), e.options.as_str()), ("", ""));
        let e = entry_from_value(&v("[/swap, none, swap, sw, 0, 0]")).unwrap();
        assert_eq!(e.fstype, "swap");
        assert_eq!(e.options, "sw");
        let e = entry_from_value(&v("[tmpfs, /t, ~, 'size=1m']")).unwrap();
        assert_eq!(e.fstype, "");
        for bad in [
            "/dev/vdb",
            "[/dev/vdb]",
            "[a, b, c, d, e, f, g]",
            "[a, [b]]",
            "['', /x]",
        ] {
            assert!(entry_from_value(&v(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_split_into_flags_and_data() {
        type F = MsFlags;
        let table: &[(&str, MsFlags, &str)] = &[
            ("", F::empty(), ""),
            ("defaults", F::empty(), ""),
            ("ro", F::MS_RDONLY, ""),
            ("ro,rw", F::empty(), ""),
            ("rw,ro", F::MS_RDONLY, ""),
            (
                "noexec,nosuid,nodev",
                F::MS_NOEXEC | F::MS_NOSUID | F::MS_NODEV,
                "",
            ),
            ("noatime,relatime", F::MS_NOATIME | F::MS_RELATIME, ""),
            ("sync,dirsync", F::MS_SYNCHRONOUS | F::MS_DIRSYNC, ""),
            ("bind", F::MS_BIND, ""),
            ("rbind,ro", F::MS_BIND | F::MS_REC | F::MS_RDONLY, ""),
            ("remount,ro", F::MS_REMOUNT | F::MS_RDONLY, ""),
            (
                "defaults,nofail,x-systemd.requires=cloud-init.service,nobootwait",
                F::empty(),
                "",
            ),
            (
                "size=10m,mode=0755,nosuid",
                F::MS_NOSUID,
                "size=10m,mode=0755",
            ),
            (
                "data=ordered, errors=remount-ro",
                F::empty(),
                "data=ordered,errors=remount-ro",
            ),
        ];
        for (text, flags, data) in table {
            let o = parse_options(text);
            assert_eq!(o.flags, *flags, "{text}");
            assert_eq!(o.data, *data, "{text}");
            assert!(o.propagation.is_empty() && !o.want_loop, "{text}");
        }
        let o = parse_options("rshared,private,ro");
        assert_eq!(
            o.propagation,
            [F::MS_SHARED | F::MS_REC, F::MS_PRIVATE],
            "propagation is kept apart"
        );
        assert_eq!(o.flags, F::MS_RDONLY);
        assert!(parse_options("loop,ro").want_loop);
    }

    #[test]
    fn swap_options_become_flags() {
        assert_eq!(swap_flags("sw").unwrap(), 0);
        assert_eq!(swap_flags("defaults,pri=5").unwrap(), 0x8000 | 5);
        assert_eq!(swap_flags("discard").unwrap(), 0x10000);
        assert!(swap_flags("pri=-1").is_err());
        assert!(swap_flags("pri=x").is_err());
    }

    #[test]
    fn tags_resolve_through_dev_disk() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("fake-dev");
        std::fs::write(&dev, "").unwrap();
        std::fs::create_dir_all(dir.path().join("by-label")).unwrap();
        std::fs::create_dir_all(dir.path().join("by-uuid")).unwrap();
        std::os::unix::fs::symlink(&dev, dir.path().join("by-label/DATA")).unwrap();
        std::os::unix::fs::symlink(&dev, dir.path().join("by-uuid/1234-ab")).unwrap();
        let dev = std::fs::canonicalize(&dev).unwrap();
        assert_eq!(resolve_device("LABEL=DATA", dir.path()).unwrap(), dev);
        assert_eq!(resolve_device("UUID=1234-ab", dir.path()).unwrap(), dev);
        let e = resolve_device("LABEL=OTHER", dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "no such device ({}/by-label/OTHER is missing)",
                dir.path().display()
            )
        );
        assert!(resolve_device("LABEL=../x", dir.path()).is_err());
        assert_eq!(
            resolve_device("/no/such/disk", dir.path())
                .unwrap_err()
                .to_string(),
            "no such device"
        );
    }

    #[test]
    fn a_file_without_the_swap_signature_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("not-swap");
        std::fs::write(&f, vec![0u8; 1 << 16]).unwrap();
        let e = check_swap_signature(&f).unwrap_err().to_string();
        assert!(e.contains("is not a swap area"), "{e}");
        assert!(e.contains("run mkswap"), "{e}");
        std::fs::write(&f, b"short").unwrap();
        assert!(check_swap_signature(&f).is_err());
        // The signature where mkswap puts it.
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .unwrap()
            .unwrap() as usize;
        let mut bytes = vec![0u8; page * 4];
        bytes[page - 10..page].copy_from_slice(b"SWAPSPACE2");
        std::fs::write(&f, &bytes).unwrap();
        check_swap_signature(&f).unwrap();
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
    }
}
