//! Login prompts: which ttys get a getty, and with which program.

use config::Root;

use crate::accounts::USER;
use crate::error::Result;
use crate::fsutil::{self, Attrs};
use crate::settings::Settings;
use crate::supervise::Program;

/// The autologin helper for busybox getty (which has no `--autologin`).
pub const AUTOLOGIN: &str = "/usr/local/sbin/autologin";
/// A `login` for images without one (busybox's applet, through a link).
pub const LOGIN_LINK: &str = "/usr/local/sbin/login";

/// The ttys that always get a getty when they exist.
const DEFAULT_TTYS: [&str; 2] = ["tty1", "ttyS0"];
/// Serial line speed when `console=` gives none.
const DEFAULT_BAUD: u32 = 115200;

/// A tty to run a getty on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tty {
    pub name: String,
    /// Line speed; `None` for a virtual terminal.
    pub baud: Option<u32>,
    pub autologin: bool,
}

/// Whether a tty is a virtual terminal (tty1, tty2, ...); the rest are
/// serial lines (ttyS0, ttyAMA0, hvc0, ...).
fn is_vt(name: &str) -> bool {
    name.strip_prefix("tty")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Whether the tty can carry a login: its device exists and, for a serial
/// port, the kernel found a UART behind it (every PC has /dev/ttyS0-3, but
/// a port of type 0 has no hardware and getty would only fail on it).
fn usable(root: &Root, name: &str) -> bool {
    if !root.join("/dev").join(name).exists() {
        return false;
    }
    let kind = root.join("/sys/class/tty").join(name).join("type");
    !std::fs::read_to_string(kind).is_ok_and(|t| t.trim() == "0")
}

/// The ttys that get a getty: tty1, ttyS0 and every `console=` of the
/// kernel command line (tty0 means the current virtual terminal, tty1
/// here), if the device is usable.
pub fn ttys(root: &Root, settings: &Settings) -> Vec<Tty> {
    let mut names: Vec<(String, Option<u32>)> =
        DEFAULT_TTYS.iter().map(|n| (n.to_string(), None)).collect();
    for (name, baud) in &settings.kernel_consoles {
        let name = if name == "tty0" {
            "tty1"
        } else {
            name.as_str()
        };
        match names.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = entry.1.or(*baud),
            None => names.push((name.to_owned(), *baud)),
        }
    }
    names
        .into_iter()
        .filter(|(name, _)| usable(root, name))
        .map(|(name, baud)| Tty {
            baud: (!is_vt(&name)).then(|| baud.unwrap_or(DEFAULT_BAUD)),
            autologin: settings.autologin.contains(&name),
            name,
        })
        .collect()
}

/// The getty and login programs an image has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `/sbin/agetty` (util-linux), else busybox's getty applet.
    pub getty: Getty,
    /// The login program, `None` if the image has none.
    pub login: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Getty {
    Agetty(String),
    Busybox(String),
    None,
}

fn first_existing(root: &Root, paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| root.join(p).exists())
        .map(|p| p.to_string())
}

/// Finds getty and login in the image under `root`. An image with busybox
/// but no `login` (Debian's essential set has none since trixie) gets
/// [`LOGIN_LINK`], a link to busybox, which runs as its login applet.
pub fn tools(root: &Root) -> Result<Tools> {
    let busybox = first_existing(root, &["/usr/bin/busybox", "/bin/busybox"]);
    let getty = match (
        first_existing(root, &["/sbin/agetty", "/usr/sbin/agetty"]),
        &busybox,
    ) {
        (Some(agetty), _) => Getty::Agetty(agetty),
        (None, Some(bb)) => Getty::Busybox(bb.clone()),
        (None, None) => Getty::None,
    };
    let login = match (
        first_existing(root, &["/bin/login", "/usr/bin/login"]),
        &busybox,
    ) {
        (Some(login), _) => Some(login),
        (None, Some(bb)) => {
            fsutil::symlink(bb.as_ref(), &root.join(LOGIN_LINK))?;
            Some(LOGIN_LINK.to_owned())
        }
        (None, None) => None,
    };
    Ok(Tools { getty, login })
}

/// Writes [`AUTOLOGIN`], which busybox getty runs (`-n -l`) in place of
/// login on autologin ttys.
pub fn write_autologin(root: &Root, login: &str) -> Result<()> {
    let text = format!(
        "#!/bin/sh\n\
         # Written by ros console-init: logs {USER} in without a password on\n\
         # the ttys of rancher.autologin.\n\
         exec {login} -f {USER}\n"
    );
    fsutil::write_file(&root.join(AUTOLOGIN), text.as_bytes(), Attrs::root(0o755))?;
    Ok(())
}

/// The getty command line for `tty`.
pub fn program(tools: &Tools, tty: &Tty) -> Option<Program> {
    let login = tools.login.as_deref()?;
    let mut argv: Vec<String> = Vec::new();
    match &tools.getty {
        Getty::Agetty(path) => {
            argv.push(path.clone());
            if tty.autologin {
                argv.extend(["--autologin".into(), USER.into()]);
            }
            argv.extend(["--login-program".into(), login.into()]);
            match tty.baud {
                None => argv.extend(["--noclear".into(), tty.name.clone(), "linux".into()]),
                Some(baud) => argv.extend([
                    "-L".into(),
                    baud.to_string(),
                    tty.name.clone(),
                    "vt100".into(),
                ]),
            }
        }
        Getty::Busybox(path) => {
            argv.extend([path.clone(), "getty".into()]);
            if tty.autologin {
                argv.extend(["-n".into(), "-l".into(), AUTOLOGIN.into()]);
            } else {
                argv.extend(["-l".into(), login.into()]);
            }
            match tty.baud {
                None => argv.extend(["38400".into(), tty.name.clone(), "linux".into()]),
                Some(baud) => argv.extend([
                    "-L".into(),
                    baud.to_string(),
                    tty.name.clone(),
                    "vt100".into(),
                ]),
            }
        }
        Getty::None => return None,
    }
    Some(Program {
        name: format!("getty {}", tty.name),
        argv,
        stdio_null: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Root, path: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn ttys_are_those_that_exist_and_those_the_kernel_names() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        touch(&root, "/dev/tty1");
        touch(&root, "/dev/ttyS0");
        touch(&root, "/dev/ttyS1");
        touch(&root, "/dev/hvc0");
        // ttyS1 has no UART behind it.
        std::fs::create_dir_all(root.join("/sys/class/tty/ttyS1")).unwrap();
        std::fs::write(root.join("/sys/class/tty/ttyS1/type"), "0\n").unwrap();
        let settings = Settings {
            kernel_consoles: vec![
                ("tty0".into(), None),
                ("ttyS1".into(), Some(9600)),
                ("hvc0".into(), None),
                ("ttyS9".into(), None),
            ],
            autologin: vec!["ttyS0".into()],
            ..Default::default()
        };
        let got = ttys(&root, &settings);
        assert_eq!(
            got,
            [
                Tty {
                    name: "tty1".into(),
                    baud: None,
                    autologin: false
                },
                Tty {
                    name: "ttyS0".into(),
                    baud: Some(115200),
                    autologin: true
                },
                Tty {
                    name: "hvc0".into(),
                    baud: Some(115200),
                    autologin: false
                },
            ]
        );
    }

    #[test]
    fn busybox_images_get_busybox_getty_and_login() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        touch(&root, "/usr/bin/busybox");
        let t = tools(&root).unwrap();
        assert_eq!(t.getty, Getty::Busybox("/usr/bin/busybox".into()));
        assert_eq!(t.login.as_deref(), Some(LOGIN_LINK));
        assert_eq!(
            std::fs::read_link(root.join(LOGIN_LINK)).unwrap(),
            std::path::Path::new("/usr/bin/busybox")
        );
        let serial = Tty {
            name: "ttyS0".into(),
            baud: Some(115200),
            autologin: true,
        };
        assert_eq!(
            program(&t, &serial).unwrap().argv,
            [
                "/usr/bin/busybox",
                "getty",
                "-n",
                "-l",
                AUTOLOGIN,
                "-L",
                "115200",
                "ttyS0",
                "vt100"
            ]
        );
    }

    #[test]
    fn agetty_is_preferred_and_no_login_means_no_getty() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        touch(&root, "/sbin/agetty");
        let vt = Tty {
            name: "tty1".into(),
            baud: None,
            autologin: true,
        };
        let t = tools(&root).unwrap();
        assert_eq!(t.login, None);
        assert_eq!(program(&t, &vt), None);
        touch(&root, "/bin/login");
        let t = tools(&root).unwrap();
        assert_eq!(
            program(&t, &vt).unwrap().argv,
            [
                "/sbin/agetty",
                "--autologin",
                "rancher",
                "--login-program",
                "/bin/login",
                "--noclear",
                "tty1",
                "linux"
            ]
        );
    }
}
