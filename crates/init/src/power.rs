//! `reboot`, `poweroff`, `halt` and `shutdown`: ask PID 1 to shut down.
//!
//! PID 1 turns signals into an orderly shutdown (see [`crate::stage2`]):
//! SIGTERM reboots, SIGUSR1 halts, SIGUSR2 powers off. These commands only
//! send the signal; `-f` skips PID 1 and calls reboot(2) at once, after a
//! sync, as the classic `reboot -f` does.

use crate::stage2::Shutdown;

/// What a command name and its arguments ask for.
pub fn parse(name: &str, args: &[String]) -> Result<(Shutdown, bool), String> {
    let force = args.iter().any(|a| a == "-f" || a == "--force");
    let how = match name {
        "reboot" => Shutdown::Reboot,
        "poweroff" => Shutdown::PowerOff,
        "halt" => Shutdown::Halt,
        "shutdown" => {
            if args.iter().any(|a| a == "-r" || a == "--reboot") {
                Shutdown::Reboot
            } else if args.iter().any(|a| a == "-H" || a == "--halt") {
                Shutdown::Halt
            } else {
                Shutdown::PowerOff
            }
        }
        other => return Err(format!("unknown power command {other:?}")),
    };
    for a in args {
        let known = matches!(
            a.as_str(),
            "-f" | "--force"
                | "-r"
                | "--reboot"
                | "-h"
                | "-P"
                | "--poweroff"
                | "-H"
                | "--halt"
                | "now"
        );
        if !known {
            return Err(format!(
                "unknown argument {a:?} (usage: {name} [-f]; shutdown [-r|-h|-H] [now])"
            ));
        }
    }
    Ok((how, force))
}

/// `reboot`, `poweroff`, `halt`, `shutdown` with `args[0]` the command name.
pub fn main(name: &str, args: &[String]) -> i32 {
    let (how, force) = match parse(name, args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{name}: {e}");
            return 2;
        }
    };
    if force {
        nix::unistd::sync();
        let mode = match how {
            Shutdown::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
            Shutdown::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
            Shutdown::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
        };
        let err = nix::sys::reboot::reboot(mode);
        eprintln!("{name}: {err:?}");
        return 1;
    }
    let signal = match how {
        Shutdown::Reboot => nix::sys::signal::SIGTERM,
        Shutdown::PowerOff => nix::sys::signal::SIGUSR2,
        Shutdown::Halt => nix::sys::signal::SIGUSR1,
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), signal) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: cannot signal PID 1: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_and_flags() {
        assert_eq!(parse("reboot", &[]).unwrap(), (Shutdown::Reboot, false));
        assert_eq!(
            parse("poweroff", &words("-f")).unwrap(),
            (Shutdown::PowerOff, true)
        );
        assert_eq!(
            parse("shutdown", &words("-r now")).unwrap().0,
            Shutdown::Reboot
        );
        assert_eq!(
            parse("shutdown", &words("-h now")).unwrap().0,
            Shutdown::PowerOff
        );
        assert_eq!(parse("shutdown", &words("-H")).unwrap().0, Shutdown::Halt);
        assert!(parse("halt", &words("--bogus"))
            .unwrap_err()
            .contains("--bogus"));
    }
}
