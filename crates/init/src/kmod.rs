//! Loading kernel modules without kmod: `modules.dep` and `finit_module(2)`.
//!
//! The initrd holds only `ros`, so there is no `modprobe` to call. What
//! modprobe does for a module is small: read `modules.dep` (written by
//! `depmod` at build time), load the module's dependencies first, then the
//! module, skipping what is built in (`modules.builtin`) or already loaded
//! (`/sys/module/NAME`). Modules are loaded with `finit_module` and
//! `MODULE_INIT_COMPRESSED_FILE`, so the kernel decompresses Debian's
//! `.ko.xz` files itself (CONFIG_MODULE_DECOMPRESS). No crate does this
//! without linking libkmod, which would not link statically into `ros`.

use std::collections::{BTreeMap, BTreeSet};
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

/// The modules of one kernel, from its `modules.dep` and `modules.builtin`.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// Module name -> (its file relative to `dir`, its dependencies' names).
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Reads `DIR/modules.dep` and, when present, `DIR/modules.builtin`.
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
        Ok(Self::parse(dir, &dep, &builtin))
    }

    /// Parses the texts of `modules.dep` and `modules.builtin`.
    pub fn parse(dir: &Path, dep: &str, builtin: &str) -> Self {
        let mut modules = BTreeMap::new();
        for line in dep.lines() {
            let Some((file, deps)) = line.split_once(':') else {
                continue;
            };
            let deps = deps.split_whitespace().map(module_name).collect();
            modules.insert(module_name(file), (file.trim().to_string(), deps));
        }
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        Self {
            dir: dir.to_path_buf(),
            modules,
            builtin,
        }
    }

    /// Every module the index knows, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
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
            .modules
            .get(name)
            .ok_or_else(|| Error::UnknownModule(name.to_string()))?;
        // modules.dep lists every dependency, transitively; visiting them
        // in turn still puts each before what needs it.
        for dep in deps {
            self.visit(dep, seen, order)?;
        }
        order.push((name.to_string(), self.dir.join(file)));
        Ok(())
    }
}

/// Whether a module is loaded already (`/sys/module/NAME` exists).
fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).exists()
}

/// Loads `name` and its dependencies. `params` go to the module itself.
pub fn load(index: &ModuleIndex, name: &str, params: &str) -> Result<(), Error> {
    for (module, path) in index.load_order(name)? {
        if is_loaded(&module) {
            continue;
        }
        let own = if module == name.replace('-', "_") {
            params
        } else {
            ""
        };
        insert(&module, &path, own)?;
    }
    Ok(())
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
}
