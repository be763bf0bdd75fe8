//! Datasource names, as written in `rancher.cloud_init.datasources`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The metadata service address of EC2 (IMDS), link-local so that no DNS is
/// needed during boot.
pub const EC2_URL: &str = "http://169.254.169.254";
/// The metadata service address of GCE (the IP of metadata.google.internal).
pub const GCE_URL: &str = "http://169.254.169.254";
/// The metadata service address of DigitalOcean.
pub const DIGITALOCEAN_URL: &str = "http://169.254.169.254";
/// Where a config drive is expected when `configdrive` names no path.
pub const CONFIGDRIVE_PATH: &str = "/media/config-2";

/// Datasources RancherOS knew that OxOS recognises but does not implement.
pub const NOT_SUPPORTED_YET: &[&str] = &[
    "packet",
    "cloudstack",
    "exoscale",
    "azure",
    "vmware",
    "proxmox",
    "aliyun",
];

/// The datasource list used when the config names none (COMPAT.md).
pub fn default_sources() -> Vec<Source> {
    vec![Source::ConfigDrive {
        path: Some(PathBuf::from(CONFIGDRIVE_PATH)),
    }]
}

/// One place user-data and metadata may come from.
///
/// The metadata services carry their base URL so that tests (and unusual
/// clouds) can point them elsewhere; [`Source::from_str`] fills in the real
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OpenStack config drive: the directory `path` if it holds
    /// `openstack/`, otherwise a block device labelled `config-2`, mounted
    /// read-only for the read.
    ConfigDrive { path: Option<PathBuf> },
    /// `cloud-config-url=URL` on the kernel command line, fetched.
    Cmdline,
    /// User-data at a URL.
    Url(String),
    /// User-data in a local file.
    File(PathBuf),
    /// cloud-init's NoCloud: the directory `path` if it holds `user-data` or
    /// `meta-data`, otherwise a block device labelled `cidata`.
    NoCloud { path: Option<PathBuf> },
    /// Amazon EC2 instance metadata (IMDSv2, falling back to IMDSv1).
    Ec2 { base_url: String },
    /// Google Compute Engine metadata.
    Gce { base_url: String },
    /// DigitalOcean droplet metadata.
    DigitalOcean { base_url: String },
}

impl Source {
    /// Every implemented source with its default settings: what `*` means.
    pub fn all() -> Vec<Source> {
        vec![
            Source::ConfigDrive {
                path: Some(PathBuf::from(CONFIGDRIVE_PATH)),
            },
            Source::Cmdline,
            Source::NoCloud { path: None },
            Source::Ec2 {
                base_url: EC2_URL.to_owned(),
            },
            Source::Gce {
                base_url: GCE_URL.to_owned(),
            },
            Source::DigitalOcean {
                base_url: DIGITALOCEAN_URL.to_owned(),
            },
        ]
    }

    /// Whether the source reads only local things (the command line, files,
    /// block devices) and not a metadata service; init polls these before
    /// the network is up. `cmdline` counts as local although it fetches its
    /// URL, as in RancherOS.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Source::ConfigDrive { .. } | Source::Cmdline | Source::File(_) | Source::NoCloud { .. }
        )
    }
}

impl fmt::Display for Source {
    /// The source as it is written in the datasource list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ConfigDrive { path: None } => f.write_str("configdrive"),
            Source::ConfigDrive { path: Some(p) } => write!(f, "configdrive:{}", p.display()),
            Source::Cmdline => f.write_str("cmdline"),
            Source::Url(u) => write!(f, "url:{u}"),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::NoCloud { path: None } => f.write_str("nocloud"),
            Source::NoCloud { path: Some(p) } => write!(f, "nocloud:{}", p.display()),
            Source::Ec2 { .. } => f.write_str("ec2"),
            Source::Gce { .. } => f.write_str("gce"),
            Source::DigitalOcean { .. } => f.write_str("digitalocean"),
        }
    }
}

impl FromStr for Source {
    type Err = Error;

    /// Parses one entry of the datasource list. `*` is not a single source:
    /// use [`parse_sources`] for lists.
    fn from_str(entry: &str) -> Result<Self> {
        let entry = entry.trim();
        let (kind, arg) = match entry.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (entry, None),
        };
        let invalid = |reason: &str| Error::InvalidSource {
            name: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let path = |arg: Option<&str>| match arg {
            None => Ok(None),
            Some("") => Err(invalid("the path after ':' is empty")),
            Some(p) => Ok(Some(PathBuf::from(p))),
        };
        let no_arg = |source: Source| match arg {
            None => Ok(source),
            Some(_) => Err(invalid("this datasource takes no argument")),
        };
        match kind {
            "configdrive" => Ok(Source::ConfigDrive { path: path(arg)? }),
            "nocloud" => Ok(Source::NoCloud { path: path(arg)? }),
            "file" => path(arg)?
                .map(Source::File)
                .ok_or_else(|| invalid("file needs a path: file:PATH")),
            "url" => match arg {
                Some(u) if !u.is_empty() => Ok(Source::Url(u.to_owned())),
                _ => Err(invalid("url needs an address: url:URL")),
            },
            "cmdline" => no_arg(Source::Cmdline),
            "ec2" => no_arg(Source::Ec2 {
                base_url: EC2_URL.to_owned(),
            }),
            "gce" => no_arg(Source::Gce {
                base_url: GCE_URL.to_owned(),
            }),
            "digitalocean" => no_arg(Source::DigitalOcean {
                base_url: DIGITALOCEAN_URL.to_owned(),
            }),
            k if NOT_SUPPORTED_YET.contains(&k) => Err(Error::NotSupportedYet(entry.to_owned())),
            _ => Err(Error::UnknownSource(entry.to_owned())),
        }
    }
}

/// A parsed datasource list: the usable sources, in list order and without
/// duplicates, and one error for each entry that was left out (unknown, not
/// supported yet, or badly written). The caller logs the errors as warnings;
/// they never stop the other sources.
#[derive(Debug, Default)]
pub struct SourceList {
    pub sources: Vec<Source>,
    pub problems: Vec<Error>,
}

/// Parses the `rancher.cloud_init.datasources` list. `*` adds every
/// implemented source ([`Source::all`]) at its place in the list. An empty
/// list gives [`default_sources`].
pub fn parse_sources<S: AsRef<str>>(entries: &[S]) -> SourceList {
    let mut list = SourceList::default();
    if entries.is_empty() {
        list.sources = default_sources();
        return list;
    }
    let push = |list: &mut SourceList, source: Source| {
        if !list.sources.contains(&source) {
            list.sources.push(source);
        }
    };
    for entry in entries {
        let entry = entry.as_ref().trim();
        if entry == "*" {
            for source in Source::all() {
                push(&mut list, source);
            }
            continue;
        }
        match entry.parse() {
            Ok(source) => push(&mut list, source),
            Err(e) => list.problems.push(e),
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses_and_prints_back() {
        for entry in [
            "configdrive",
            "configdrive:/media/config-2",
            "cmdline",
            "url:http://example.com/user-data",
            "file:/var/lib/user-data",
            "nocloud",
            "nocloud:/media/cidata",
            "ec2",
            "gce",
            "digitalocean",
        ] {
            let source: Source = entry.parse().unwrap();
            assert_eq!(source.to_string(), entry);
        }
    }

    #[test]
    fn only_network_free_sources_are_local() {
        let local: Vec<String> = Source::all()
            .into_iter()
            .filter(Source::is_local)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(local, ["configdrive:/media/config-2", "cmdline", "nocloud"]);
        assert!(Source::File("/x".into()).is_local());
        assert!(!Source::Url("http://x".into()).is_local());
    }

    #[test]
    fn url_keeps_its_own_colons() {
        let source: Source = "url:http://127.0.0.1:8080/x".parse().unwrap();
        assert_eq!(source, Source::Url("http://127.0.0.1:8080/x".into()));
    }

    #[test]
    fn recognised_but_unimplemented_sources_say_so() {
        for name in NOT_SUPPORTED_YET {
            let err = name.parse::<Source>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("datasource {name} is not supported yet")
            );
        }
        let err = "openstak".parse::<Source>().unwrap_err();
        assert_eq!(err.to_string(), "unknown datasource \"openstak\"");
    }

    #[test]
    fn arguments_are_checked() {
        assert!("url:".parse::<Source>().is_err());
        assert!("file".parse::<Source>().is_err());
        assert!("ec2:foo".parse::<Source>().is_err());
        assert!("configdrive:".parse::<Source>().is_err());
    }

    #[test]
    fn star_expands_and_problems_are_kept_aside() {
        let list = parse_sources(&["file:/x", "*", "packet", "cmdline"]);
        assert_eq!(list.sources[0], Source::File("/x".into()));
        assert_eq!(list.sources.len(), 1 + Source::all().len());
        assert_eq!(list.problems.len(), 1);
        assert!(list.problems[0].to_string().contains("packet"));
    }

    #[test]
    fn empty_list_is_the_default_config_drive() {
        let list = parse_sources::<&str>(&[]);
        assert_eq!(list.sources, default_sources());
        assert_eq!(list.sources[0].to_string(), "configdrive:/media/config-2");
    }
}
