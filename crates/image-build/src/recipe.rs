//! Image recipes (`images/<name>/image.yml`) and the package sets that are
//! not images (`images/sets.yml`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The recipe file name inside an image directory.
pub const RECIPE_FILE: &str = "image.yml";
/// The directory, next to the recipe, whose tree is copied into the root.
pub const FILES_DIR: &str = "files";
/// The directory, directly under the images directory, of file trees that
/// several images share (`shared_files: [NAME]` names `shared/NAME/`).
pub const SHARED_DIR: &str = "shared";
/// The file, directly under the images directory, that declares package sets
/// that are not images (the kernel).
pub const SETS_FILE: &str = "sets.yml";

/// The mmdebstrap variants a recipe may name.
pub const VARIANTS: &[&str] = &[
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
];

/// What to ask the Debian archive for: the input of both the lock and a
/// build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRequest {
    /// Debian suite (`trixie`, `bookworm`).
    pub suite: String,
    /// mmdebstrap variant: `extract` unpacks the packages and their
    /// dependencies without running maintainer scripts; the others install
    /// (see mmdebstrap(1)).
    pub variant: String,
    /// Package names, without versions (versions come from the lock).
    pub packages: Vec<String>,
}

/// The runtime configuration written into the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment variables; written sorted by name as `NAME=value`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// The file as written; checked and turned into a [`Recipe`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<String>,
    suite: String,
    #[serde(default = "default_variant")]
    variant: String,
    packages: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    shared_files: Vec<String>,
    #[serde(default)]
    hooks: Vec<String>,
    #[serde(default)]
    cleanup: Vec<String>,
    #[serde(default)]
    config: RuntimeConfig,
}

fn default_variant() -> String {
    "essential".into()
}

/// One system image, as declared under `images/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The directory name; the image is tagged `oxos/<name>:<version>`.
    pub name: String,
    /// The image directory.
    pub dir: PathBuf,
    pub description: Option<String>,
    /// Tag version; when absent the builder's default (the OxOS version).
    pub version: Option<String>,
    pub request: PackageRequest,
    /// Packages (of an `extract` image) whose files are removed after
    /// extraction: dependencies only maintainer scripts need (perl-base,
    /// debconf, adduser). They stay in the lock.
    pub exclude: Vec<String>,
    /// Trees of the images directory's `shared/` copied into the root, in
    /// this order, before the recipe's own `files/` (which may overwrite
    /// them): files that several images ship, kept once.
    pub shared_files: Vec<String>,
    /// Shell commands run on the build host after the packages and files are
    /// in place, as `sh -c HOOK sh ROOT` (the root directory is `$1`).
    pub hooks: Vec<String>,
    /// Absolute glob patterns removed from the root before packing.
    pub cleanup: Vec<String>,
    pub config: RuntimeConfig,
    /// The recipe text as read: the cache key hashes these bytes, so an
    /// edit made while a build runs cannot be mixed with what was parsed.
    pub source: String,
}

impl Recipe {
    /// Reads and checks `dir/image.yml`; the image is named after `dir`.
    pub fn load(dir: &Path) -> Result<Recipe> {
        let file = dir.join(RECIPE_FILE);
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::recipe(&file, "(directory)", "a UTF-8 directory name"))?
            .to_string();
        let text = fs::read_to_string(&file).map_err(|e| Error::io("read recipe", &file, e))?;
        let recipe = Recipe::parse(&name, dir, &file, &text)?;
        for (i, shared) in recipe.shared_files().into_iter().enumerate() {
            if !shared.is_dir() {
                return Err(Error::recipe(
                    &file,
                    format!("shared_files[{i}]"),
                    format!("a directory, but {} is none", shared.display()),
                ));
            }
        }
        Ok(recipe)
    }

    /// Parses recipe text (`file` is named in errors).
    pub fn parse(name: &str, dir: &Path, file: &Path, text: &str) -> Result<Recipe> {
        check_image_name(name).map_err(|e| Error::recipe(file, "(directory)", e))?;
        let raw: RecipeFile = parse_yaml(file, text)?;
        let request = PackageRequest {
            suite: raw.suite,
            variant: raw.variant,
            packages: raw.packages,
        };
        check_request(file, "", &request)?;
        if let Some(v) = &raw.version {
            check_tag(v).map_err(|e| Error::recipe(file, "version", e))?;
        }
        for (i, c) in raw.cleanup.iter().enumerate() {
            check_cleanup(c).map_err(|e| Error::recipe(file, format!("cleanup[{i}]"), e))?;
        }
        for (i, p) in raw.exclude.iter().enumerate() {
            check_package_name(p).map_err(|e| Error::recipe(file, format!("exclude[{i}]"), e))?;
        }
        if !raw.exclude.is_empty() && request.variant != "extract" {
            return Err(Error::recipe(
                file,
                "exclude",
                format!(
                    "no exclude list with variant {} (only extract images can drop packages)",
                    request.variant
                ),
            ));
        }
        // Shared trees are named as image directories are.
        for (i, name) in raw.shared_files.iter().enumerate() {
            check_image_name(name).map_err(|e| {
                Error::recipe(
                    file,
                    format!("shared_files[{i}]"),
                    format!("the name of a directory under {SHARED_DIR}/: {e}"),
                )
            })?;
        }
        for (i, h) in raw.hooks.iter().enumerate() {
            if h.trim().is_empty() {
                return Err(Error::recipe(
                    file,
                    format!("hooks[{i}]"),
                    "a non-empty shell command",
                ));
            }
        }
        check_config(file, &raw.config)?;
        Ok(Recipe {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            description: raw.description,
            version: raw.version,
            request,
            exclude: raw.exclude,
            shared_files: raw.shared_files,
            hooks: raw.hooks,
            cleanup: raw.cleanup,
            config: raw.config,
            source: text.to_string(),
        })
    }

    /// The recipe file.
    pub fn file(&self) -> PathBuf {
        self.dir.join(RECIPE_FILE)
    }

    /// The files directory (it may not exist).
    pub fn files_dir(&self) -> PathBuf {
        self.dir.join(FILES_DIR)
    }

    /// The shared trees of `shared_files`, in order: `shared/NAME` in the
    /// directory that holds the image's directory.
    pub fn shared_files(&self) -> Vec<PathBuf> {
        let images = self.dir.parent().unwrap_or(Path::new("."));
        self.shared_files
            .iter()
            .map(|name| images.join(SHARED_DIR).join(name))
            .collect()
    }

    /// `oxos/<name>:<version>`, the version being the recipe's or `default`.
    pub fn tag(&self, default_version: &str) -> String {
        format!(
            "oxos/{}:{}",
            self.name,
            self.version.as_deref().unwrap_or(default_version)
        )
    }
}

/// Every recipe under `images_dir` (each subdirectory with an `image.yml`),
/// sorted by name.
pub fn load_recipes(images_dir: &Path) -> Result<Vec<Recipe>> {
    let mut dirs = Vec::new();
    let rd = fs::read_dir(images_dir).map_err(|e| Error::io("read directory", images_dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read directory", images_dir, e))?;
        let path = entry.path();
        if path.join(RECIPE_FILE).is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    dirs.iter().map(|d| Recipe::load(d)).collect()
}

/// A package set that is not an image (such as `kernel`), from `sets.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub request: PackageRequest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFile {
    suite: String,
    #[serde(default = "default_set_variant")]
    variant: String,
    packages: Vec<String>,
}

fn default_set_variant() -> String {
    "custom".into()
}

/// The package sets of `images_dir/sets.yml` (none when the file is
/// absent), sorted by name. A set resolves to its packages and their
/// dependency closure.
pub fn load_sets(images_dir: &Path) -> Result<Vec<SetSpec>> {
    let file = images_dir.join(SETS_FILE);
    let text = match fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &file, e)),
    };
    parse_sets(&file, &text)
}

/// Parses the text of a `sets.yml` (`file` is named in errors).
pub fn parse_sets(file: &Path, text: &str) -> Result<Vec<SetSpec>> {
    let raw: BTreeMap<String, SetFile> = parse_yaml(file, text)?;
    let mut out = Vec::new();
    for (name, s) in raw {
        check_image_name(&name).map_err(|e| Error::recipe(file, &name, e))?;
        let request = PackageRequest {
            suite: s.suite,
            variant: s.variant,
            packages: s.packages,
        };
        check_request(file, &format!("{name}."), &request)?;
        out.push(SetSpec { name, request });
    }
    Ok(out)
}

/// Deserialises YAML, naming the key path of the first error.
fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    if text.trim().is_empty() {
        return Err(Error::recipe(
            file,
            "(document)",
            "a YAML mapping, got an empty file",
        ));
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path == "?" || path.is_empty() {
            "(document)".to_string()
        } else {
            path
        };
        let msg = e.into_inner().to_string();
        // serde_norway prefixes its message with the key path itself.
        let msg = match msg.split_once(": ") {
            Some((p, rest)) if !p.contains(' ') && key.starts_with(p) => rest.to_string(),
            _ => msg,
        };
        Error::recipe(file, key, msg)
    })
}

fn check_request(file: &Path, prefix: &str, r: &PackageRequest) -> Result<()> {
    if r.suite.is_empty()
        || !r
            .suite
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::recipe(
            file,
            format!("{prefix}suite"),
            format!("a Debian suite name such as trixie, got {:?}", r.suite),
        ));
    }
    if !VARIANTS.contains(&r.variant.as_str()) {
        return Err(Error::recipe(
            file,
            format!("{prefix}variant"),
            format!("one of {}, got {:?}", VARIANTS.join(", "), r.variant),
        ));
    }
    if r.packages.is_empty() {
        return Err(Error::recipe(
            file,
            format!("{prefix}packages"),
            "a non-empty list of Debian package names",
        ));
    }
    for (i, p) in r.packages.iter().enumerate() {
        check_package_name(p)
            .map_err(|e| Error::recipe(file, format!("{prefix}packages[{i}]"), e))?;
    }
    Ok(())
}

/// Debian policy 5.6.1: lowercase letters, digits, `+ - .`, at least two
/// characters, starting with an alphanumeric.
pub(crate) fn check_package_name(p: &str) -> std::result::Result<(), String> {
    if p.contains('=') {
        return Err(format!(
            "a package name without a version (versions are pinned by the lock), got {p:?}"
        ));
    }
    let ok = p.len() >= 2
        && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("a Debian package name, got {p:?}"))
    }
}

fn check_image_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a name of lowercase letters, digits, '-', '.' or '_', got {name:?}"
        ))
    }
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(v: &str) -> std::result::Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("a Docker tag such as 1.0 or v26.1, got {v:?}"))
    }
}

fn check_cleanup(pattern: &str) -> std::result::Result<(), String> {
    if !pattern.starts_with('/') || pattern == "/" {
        return Err(format!(
            "an absolute path or glob inside the root such as /usr/share/doc/*, got {pattern:?}"
        ));
    }
    if pattern.split('/').any(|c| c == "..") {
        return Err(format!("a path without '..', got {pattern:?}"));
    }
    glob::Pattern::new(pattern).map_err(|e| format!("a valid glob pattern: {e}"))?;
    Ok(())
}

fn check_config(file: &Path, c: &RuntimeConfig) -> Result<()> {
    for (key, v) in [("config.entrypoint", &c.entrypoint), ("config.cmd", &c.cmd)] {
        if let Some(v) = v {
            if v.is_empty() || v[0].is_empty() {
                return Err(Error::recipe(
                    file,
                    key,
                    "a non-empty list whose first item is a program",
                ));
            }
        }
    }
    for k in c.env.keys() {
        if k.is_empty() || k.contains('=') {
            return Err(Error::recipe(
                file,
                format!("config.env.{k}"),
                "a variable name without '='",
            ));
        }
    }
    for (i, v) in c.volumes.iter().enumerate() {
        if !v.starts_with('/') {
            return Err(Error::recipe(
                file,
                format!("config.volumes[{i}]"),
                format!("an absolute path, got {v:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(
            "console",
            Path::new("images/console"),
            Path::new("images/console/image.yml"),
            text,
        )
    }

    const GOOD: &str = r#"
description: the console
suite: trixie
packages: [busybox, openssh-server]
hooks: ["rm -f \"$1\"/etc/ssh/ssh_host_*"]
cleanup: [/usr/share/doc/*, /var/lib/apt/lists/*]
config:
  entrypoint: [/usr/sbin/sshd, -D]
  env: {PATH: /usr/bin, A: b}
  labels: {io.rancher.os.scope: system}
"#;

    #[test]
    fn a_good_recipe_is_read_with_defaults() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.request.suite, "trixie");
        assert_eq!(r.request.variant, "essential");
        assert_eq!(r.request.packages, ["busybox", "openssh-server"]);
        assert_eq!(r.config.entrypoint.as_deref().unwrap()[0], "/usr/sbin/sshd");
        assert_eq!(r.config.env.keys().collect::<Vec<_>>(), ["A", "PATH"]);
        assert_eq!(r.tag("0.1.0"), "oxos/console:0.1.0");
        assert_eq!(r.cleanup.len(), 2);
    }

    #[test]
    fn an_explicit_version_is_the_tag() {
        let r = parse("suite: trixie\nversion: v26.1\npackages: [docker.io]\n").unwrap();
        assert_eq!(r.tag("0.1.0"), "oxos/console:v26.1");
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_recipes_name_the_file_the_key_and_what_was_expected() {
        let cases: &[(&str, &str, &str)] = &[
            ("packages: [a1]\n", "(document)", "missing field `suite`"),
            (
                "suite: trixie\npakages: [a1]\n",
                "pakages",
                "unknown field `pakages`",
            ),
            (
                "suite: trixie\npackages: busybox\n",
                "packages",
                "expected a sequence",
            ),
            (
                "suite: trixie\npackages: []\n",
                "packages",
                "non-empty list",
            ),
            (
                "suite: trixie\npackages: [busybox=1.0]\n",
                "packages[0]",
                "without a version",
            ),
            (
                "suite: trixie\npackages: [Bad_Name]\n",
                "packages[0]",
                "Debian package name",
            ),
            (
                "suite: trixie\nvariant: tiny\npackages: [a1]\n",
                "variant",
                "one of extract",
            ),
            (
                "suite: trixie\npackages: [a1]\nshared_files: [../docker]\n",
                "shared_files[0]",
                "the name of a directory under shared/",
            ),
            (
                "suite: Trixie!\npackages: [a1]\n",
                "suite",
                "Debian suite name",
            ),
            (
                "suite: trixie\npackages: [a1]\ncleanup: [usr/share]\n",
                "cleanup[0]",
                "absolute",
            ),
            (
                "suite: trixie\npackages: [a1]\ncleanup: [/a/../b]\n",
                "cleanup[0]",
                "'..'",
            ),
            (
                "suite: trixie\npackages: [a1]\nconfig: {entrypoint: []}\n",
                "config.entrypoint",
                "non-empty",
            ),
            (
                "suite: trixie\npackages: [a1]\nconfig: {cmd: [1, {a: b}]}\n",
                "config.cmd[1]",
                "expected a string",
            ),
            (
                "suite: trixie\npackages: [a1]\nconfig: {entrypiont: [sh]}\n",
                "config.entrypiont",
                "unknown field `entrypiont`",
            ),
            (
                "suite: trixie\npackages: [a1]\nversion: \"1 0\"\n",
                "version",
                "Docker tag",
            ),
            (
                "suite: trixie\npackages: [a1]\nhooks: [\" \"]\n",
                "hooks[0]",
                "non-empty shell command",
            ),
            (
                "suite: trixie\npackages: [a1]\nexclude: [perl-base]\n",
                "exclude",
                "only extract images",
            ),
            (
                "suite: trixie\nvariant: extract\npackages: [a1]\nexclude: [\"x y\"]\n",
                "exclude[0]",
                "Debian package name",
            ),
            ("", "(document)", "empty file"),
        ];
        for (text, key, expected) in cases {
            let e = err(text);
            assert!(
                e.starts_with(&format!("images/console/image.yml: {key}: ")),
                "recipe {text:?}: error {e:?} should name key {key}"
            );
            assert!(
                e.contains(expected),
                "recipe {text:?}: error {e:?} should say {expected:?}"
            );
        }
    }

    #[test]
    fn sets_default_to_the_dependency_closure() {
        let sets = parse_sets(
            Path::new("images/sets.yml"),
            "kernel:\n  suite: trixie\n  packages: [linux-image-amd64]\n",
        )
        .unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].name, "kernel");
        assert_eq!(sets[0].request.variant, "custom");
        let e = parse_sets(
            Path::new("images/sets.yml"),
            "kernel:\n  suite: trixie\n  packages: [linux-image-amd64]\n  extra: 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("images/sets.yml: kernel.extra: unknown"),
            "{e}"
        );
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn recipes_are_found_per_directory() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["b-img", "a-img"] {
            fs::create_dir(tmp.path().join(n)).unwrap();
            fs::write(
                tmp.path().join(n).join(RECIPE_FILE),
                "suite: trixie\npackages: [busybox]\n",
            )
            .unwrap();
        }
        fs::create_dir(tmp.path().join("not-an-image")).unwrap();
        let names: Vec<_> = load_recipes(tmp.path())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a-img", "b-img"]);
    }

    #[test]
    fn shared_files_are_directories_beside_the_images_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("engine");
        fs::create_dir(&dir).unwrap();
        fs::write(
            dir.join(RECIPE_FILE),
            "suite: trixie\npackages: [busybox]\nshared_files: [engine-scripts]\n",
        )
        .unwrap();
        let e = Recipe::load(&dir).unwrap_err().to_string();
        assert!(e.contains("engine/image.yml"), "{e}");
        assert!(e.contains("shared_files[0]"), "{e}");
        assert!(e.contains("shared/engine-scripts is none"), "{e}");
        fs::create_dir_all(tmp.path().join("shared/engine-scripts")).unwrap();
        let r = Recipe::load(&dir).unwrap();
        assert_eq!(r.shared_files(), [tmp.path().join("shared/engine-scripts")]);
        let names: Vec<_> = load_recipes(tmp.path())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["engine"], "shared/ is not an image");
    }
}
