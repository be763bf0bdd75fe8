//! Building images from recipes with a fake bootstrap (no network): the
//! cache, the lock checks, files, hooks and cleanup. One real mmdebstrap
//! build of `os-base` is ignored by default.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use image_build::{
    refresh_lock, Bootstrap, Builder, Error, Lock, PackageRequest, PackageSet, Recipe, Result,
};
use image_store::ImageStore;

/// Writes a root with a dpkg status listing `installed`, counting calls.
struct FakeDebian {
    installed: BTreeMap<String, String>,
    calls: Cell<u32>,
}

impl FakeDebian {
    fn new(pkgs: &[(&str, &str)]) -> Self {
        FakeDebian {
            installed: pkgs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            calls: Cell::new(0),
        }
    }
}

impl Bootstrap for FakeDebian {
    fn id(&self) -> String {
        "fake 1".into()
    }

    fn bootstrap(
        &self,
        _name: &str,
        _request: &PackageRequest,
        pins: Option<&[String]>,
        root: &Path,
        _epoch: u64,
        _progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        self.calls.set(self.calls.get() + 1);
        if let Some(pins) = pins {
            for p in pins {
                let (n, v) = p.split_once('=').unwrap();
                assert_eq!(
                    self.installed.get(n).map(String::as_str),
                    Some(v),
                    "pin {p}"
                );
            }
        }
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc/busybox")).unwrap();
        fs::write(root.join("usr/share/doc/busybox/changelog.gz"), b"log").unwrap();
        fs::write(root.join("usr/share/doc/busybox/copyright"), b"GPL").unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/busybox"), b"\x7fELF").unwrap();
        let status: String = self
            .installed
            .iter()
            .map(|(n, v)| format!("Package: {n}\nStatus: install ok installed\nVersion: {v}\n\n"))
            .collect();
        fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
        Ok(())
    }

    fn resolve(
        &self,
        _name: &str,
        _request: &PackageRequest,
        _progress: &mut dyn FnMut(&str),
    ) -> Result<BTreeMap<String, String>> {
        self.calls.set(self.calls.get() + 1);
        Ok(self.installed.clone())
    }
}

const RECIPE: &str = r#"
suite: trixie
variant: essential
packages: [busybox]
hooks:
  - echo hello > "$1/etc/hooked"
cleanup: [/usr/share/doc/*/changelog*]
config:
  entrypoint: [/usr/bin/busybox]
  cmd: [sh]
  labels: {io.rancher.os.scope: system}
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    images: PathBuf,
    out: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let dir = images.join("mini");
    fs::create_dir_all(dir.join("files/etc")).unwrap();
    fs::write(dir.join("image.yml"), RECIPE).unwrap();
    fs::write(dir.join("files/etc/motd"), b"welcome\n").unwrap();
    let out = tmp.path().join("out");
    Setup {
        _tmp: tmp,
        images,
        out,
    }
}

fn locked(pkgs: &[(&str, &str)]) -> Lock {
    let mut lock = Lock::default();
    lock.insert(
        "mini",
        PackageSet {
            request: PackageRequest {
                suite: "trixie".into(),
                variant: "essential".into(),
                packages: vec!["busybox".into()],
            },
            locked: pkgs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        },
    );
    lock
}

const PKGS: &[(&str, &str)] = &[("busybox", "1:1.37.0-6+b9"), ("libc6", "2.41-12")];

fn builder<'a>(s: &Setup, lock: Lock, fake: &'a FakeDebian) -> Builder<'a> {
    Builder {
        out_dir: s.out.clone(),
        lock,
        epoch: 1_700_000_000,
        default_version: "0.1.0".into(),
        bootstrap: fake,
        gzip_level: 1,
    }
}

#[test]
fn an_image_is_built_with_files_hooks_and_cleanup_and_loads_in_the_engine_store() {
    let s = setup();
    let fake = FakeDebian::new(PKGS);
    let b = builder(&s, locked(PKGS), &fake);
    let recipe = Recipe::load(&s.images.join("mini")).unwrap();
    let built = b.build(&recipe, &mut |_| {}).unwrap();
    assert!(!built.cached);
    assert_eq!(built.tag, "oxos/mini:0.1.0");
    assert_eq!(built.path, s.out.join("mini.tar"));

    let store = ImageStore::open(&s.out.join("store")).unwrap();
    let loaded = store
        .load(fs::File::open(&built.path).unwrap(), &mut |_| {})
        .unwrap();
    assert_eq!(loaded[0].id, built.id);
    let img = store.get("oxos/mini:0.1.0").unwrap();
    assert_eq!(img.diff_ids(), std::slice::from_ref(&built.diff_id));
    assert_eq!(
        img.config.config.entrypoint.as_deref(),
        Some(&["/usr/bin/busybox".to_string()][..])
    );
    assert_eq!(img.config.config.labels["io.rancher.os.scope"], "system");
    let l = &store.layer_paths("oxos/mini:0.1.0").unwrap()[0];
    assert_eq!(fs::read(l.join("etc/motd")).unwrap(), b"welcome\n");
    assert_eq!(fs::read(l.join("etc/hooked")).unwrap(), b"hello\n");
    assert!(
        !l.join("usr/share/doc/busybox/changelog.gz").exists(),
        "cleaned up"
    );
    assert!(l.join("usr/share/doc/busybox/copyright").exists(), "kept");
}

#[test]
fn shared_files_go_in_before_the_images_own_and_are_an_input() {
    let s = setup();
    let shared = s.images.join("shared/greeting/etc");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("motd"), b"shared welcome\n").unwrap();
    fs::write(shared.join("issue"), b"shared issue\n").unwrap();
    fs::write(
        s.images.join("mini/image.yml"),
        format!("{RECIPE}shared_files: [greeting]\n"),
    )
    .unwrap();
    let recipe = Recipe::load(&s.images.join("mini")).unwrap();
    let fake = FakeDebian::new(PKGS);
    let first = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap();
    let store = ImageStore::open(&s.out.join("store")).unwrap();
    store
        .load(fs::File::open(&first.path).unwrap(), &mut |_| {})
        .unwrap();
    let l = &store.layer_paths("oxos/mini:0.1.0").unwrap()[0];
    assert_eq!(fs::read(l.join("etc/issue")).unwrap(), b"shared issue\n");
    assert_eq!(
        fs::read(l.join("etc/motd")).unwrap(),
        b"welcome\n",
        "the image's own files/ come after the shared ones"
    );

    // A changed shared file is a new input.
    fs::write(shared.join("issue"), b"changed\n").unwrap();
    let rebuilt = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap();
    assert!(!rebuilt.cached);
    assert_ne!(rebuilt.diff_id, first.diff_id);
}

#[test]
fn an_unchanged_image_is_not_rebuilt_and_a_changed_input_is() {
    let s = setup();
    let fake = FakeDebian::new(PKGS);
    let recipe = Recipe::load(&s.images.join("mini")).unwrap();
    let first = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap();
    assert_eq!(fake.calls.get(), 1);

    let again = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap();
    assert!(again.cached, "same inputs: reused");
    assert_eq!(fake.calls.get(), 1, "mmdebstrap is not run again");
    assert_eq!(again.id, first.id);

    // A changed file under files/ is a new input.
    fs::write(s.images.join("mini/files/etc/motd"), b"changed\n").unwrap();
    let rebuilt = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap();
    assert!(!rebuilt.cached);
    assert_eq!(fake.calls.get(), 2);
    assert_ne!(rebuilt.diff_id, first.diff_id);

    // So is another epoch, and a deleted archive is rebuilt.
    let mut b = builder(&s, locked(PKGS), &fake);
    b.epoch = 1;
    assert!(!b.build(&recipe, &mut |_| {}).unwrap().cached);
    fs::remove_file(s.out.join("mini.tar")).unwrap();
    assert!(!b.build(&recipe, &mut |_| {}).unwrap().cached);
    assert_eq!(fake.calls.get(), 4);
}

#[test]
fn a_root_that_differs_from_the_lock_fails_and_names_the_refresh() {
    let s = setup();
    let recipe = Recipe::load(&s.images.join("mini")).unwrap();
    // The archive gave one more package than the lock pins.
    let fake = FakeDebian::new(&[
        ("busybox", "1:1.37.0-6+b9"),
        ("libc6", "2.41-12"),
        ("extra", "1.0"),
    ]);
    let e = builder(&s, locked(PKGS), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, Error::LockMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("extra 1.0 is not locked"), "{msg}");
    assert!(msg.contains("cargo xtask lock --only mini"), "{msg}");
    assert!(!s.out.join("mini.tar").exists(), "nothing is written");
}

#[test]
fn an_image_without_a_lock_entry_is_refused_before_any_download() {
    let s = setup();
    let fake = FakeDebian::new(PKGS);
    let recipe = Recipe::load(&s.images.join("mini")).unwrap();
    let e = builder(&s, Lock::default(), &fake)
        .build(&recipe, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the lock has no packages for mini: run `cargo xtask lock --only mini`"
    );
    assert_eq!(fake.calls.get(), 0);
}

#[test]
fn refreshing_the_lock_records_what_ends_up_installed() {
    let s = setup();
    let fake = FakeDebian::new(PKGS);
    let recipes = image_build::load_recipes(&s.images).unwrap();
    let sets = image_build::recipe::parse_sets(
        Path::new("sets.yml"),
        "kernel:\n  suite: trixie\n  packages: [linux-image-amd64]\n",
    )
    .unwrap();
    let mut lock = Lock::default();
    let done = refresh_lock(
        &fake,
        &recipes,
        &sets,
        &mut lock,
        Some("mini"),
        &s.out,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(done, ["mini"]);
    let set = lock.set("mini").unwrap();
    assert_eq!(set.suite(), "trixie");
    assert_eq!(
        set.packages().collect::<Vec<_>>(),
        [("busybox", "1:1.37.0-6+b9"), ("libc6", "2.41-12")]
    );
    assert!(
        lock.set("kernel").is_err(),
        "--only leaves other sets alone"
    );
    refresh_lock(&fake, &recipes, &sets, &mut lock, None, &s.out, &mut |_| {}).unwrap();
    assert_eq!(lock.set("kernel").unwrap().locked.len(), 2);
    // The refreshed lock builds.
    let b = builder(&s, lock, &fake);
    let r = Recipe::load(&s.images.join("mini")).unwrap();
    assert!(b.build(&r, &mut |_| {}).is_ok());
}

/// A real build of the repository's `os-base` with mmdebstrap, as root,
/// against the Debian mirror: `cargo test -p image-build -- --ignored`.
#[test]
#[ignore = "needs root, mmdebstrap and the Debian mirror"]
fn os_base_builds_with_mmdebstrap_and_runs_busybox() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let lock = Lock::load(&images.join(image_build::LOCK_FILE)).unwrap();
    let deb = image_build::Mmdebstrap::new(image_build::DEFAULT_MIRROR).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let b = Builder {
        out_dir: tmp.path().join("out"),
        lock,
        epoch: 1_700_000_000,
        default_version: "test".into(),
        bootstrap: &deb,
        gzip_level: 6,
    };
    let recipe = Recipe::load(&images.join("os-base")).unwrap();
    let built = b.build(&recipe, &mut |l| eprintln!("{l}")).unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    store
        .load(fs::File::open(&built.path).unwrap(), &mut |_| {})
        .unwrap();
    let l = &store.layer_paths("oxos/os-base:test").unwrap()[0];
    assert_eq!(
        fs::read_link(l.join("usr/bin/sh")).unwrap(),
        Path::new("/usr/bin/busybox")
    );
    let out = std::process::Command::new("chroot")
        .arg(l)
        .args(["/bin/sh", "-c", "echo works"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "works\n");
    // A second build of the same inputs gives the same image.
    fs::remove_file(&built.path).unwrap();
    let again = b.build(&recipe, &mut |_| {}).unwrap();
    assert_eq!(again.diff_id, built.diff_id, "the layer is reproducible");
}
