//! # console: the OxOS console (`ros console-init`)
//!
//! # Background
//!
//! In RancherOS the console is a system container that users log in to:
//! it holds the `rancher` user, sshd and the gettys, and shares the host's
//! network, process, IPC and UTS namespaces, /home, /opt, /var/lib/rancher
//! and /run with it. Its entrypoint, `ros console-init`, turns the
//! cloud-config into users, keys and sshd settings each time the container
//! starts, then runs the login programs. OxOS keeps that shape: the
//! `console` service runs image `oxos/console` (busybox, OpenSSH, sudo) or
//! `oxos/debian-console` with `ros console-init` as its entrypoint.
//!
//! # Design
//!
//! - [`settings::Settings`] reads only the keys the console acts on from the
//!   merged config (`hostname`, `ssh_authorized_keys`, `rancher.ssh.*`,
//!   `rancher.console`), typed with the config crate's model; a bad value
//!   elsewhere in the config does not keep SSH from starting.
//!   `rancher.password` and `rancher.autologin` are read only from the
//!   layers of the kernel command line (/proc/cmdline and init.yml), as in
//!   RancherOS, so that a password in user-data is never used. The SSH
//!   keys and hostname of a cloud's metadata (saved by `ros
//!   cloud-init-save`, read back with `datasource::load_metadata`) are
//!   applied after every layer.
//! - [`setup::setup`] is the whole setup as a function over a root
//!   directory (`--root`, ROS_ROOT): [`accounts`] edits /etc/passwd, group,
//!   shadow and gshadow as text (atomic writes, only changed files
//!   written), [`ssh`] writes authorized_keys, host keys and an
//!   sshd_config drop-in, and the command links are made. Running it twice
//!   changes nothing the second time, which the tests check.
//! - Host keys are made once and kept in
//!   /var/lib/rancher/conf/ssh on the state disk, so that a reboot or a
//!   console switch does not change the machine's SSH identity. Keys given
//!   in `rancher.ssh.keys` win over kept ones. Ed25519 is made
//!   before sshd starts, in-process with the `ssh-key` crate
//!   ([`ssh::InProcessEd25519`]: `ssh-keygen`'s start alone took over a
//!   second on an emulated CPU); ECDSA and RSA, made by `ssh-keygen`
//!   (OpenSSH's own RSA), which take seconds on a slow or
//!   emulated CPU, are made after it by `ros console-init --finish-host-keys` at the
//!   lowest priority, and sshd serves it from its next start (a SIGHUP
//!   would reset connections arriving during sshd's re-exec). Key
//!   generation is behind [`ssh::HostKeyGen`] so tests can count its calls.
//! - The password, when set, is a SHA-512 crypt hash made with the
//!   `sha-crypt` crate: the busybox console has no `openssl` or `chpasswd`
//!   with SHA-512. A hash that already matches is kept, so restarts do not
//!   rewrite /etc/shadow.
//! - [`getty`] picks the image's tools: util-linux agetty if present, else
//!   busybox getty; Debian's essential set has no `login` since trixie, so
//!   busybox's login applet is linked at /usr/local/sbin/login. ttys: tty1,
//!   ttyS0 and every `console=` of the kernel command line whose device is
//!   there (a serial port without a UART is skipped).
//! - [`supervise`] runs sshd and the gettys as children on a
//!   single-threaded tokio runtime (which reaps them), restarts each with a
//!   doubling wait (1 s up to 60 s; at once after a run of 10 s or more, as
//!   after a logout), and on SIGTERM or SIGINT stops them all (SIGKILL
//!   after 5 s) and exits 0. /opt/rancher/bin/start.sh and /etc/rc.local,
//!   when executable, run once beside them (RancherOS ran them before
//!   starting sshd; here a slow script does not hold up logins).
//!
//! # Limitations
//!
//! - A config file that does not parse, or a wrong value in a key the
//!   console reads, stops the console with an error naming the file or key;
//!   the service restarts it, but there is no login until the config is
//!   fixed (`ros config validate` checks a file before it is saved).
//! - Without `rancher.password` the password is locked at every start: a
//!   password set with `passwd` in the console lasts until it restarts.
//! - Keys are only added to authorized_keys, never removed: the file is on
//!   the state disk and may hold keys added by hand.
//! - A password given after `--` and kept in init.yml was read as a YAML
//!   scalar there: `007` becomes `7`. Words still on /proc/cmdline are
//!   read as typed.
//! - Only tty1, ttyS0 and the `console=` ttys get a getty, not tty2-6.

mod error;
mod fsutil;

pub mod accounts;
pub mod cli;
pub mod getty;
pub mod settings;
pub mod setup;
pub mod ssh;
pub mod supervise;

pub use error::{Error, Result};
pub use settings::Settings;
pub use setup::{setup, Plan};
