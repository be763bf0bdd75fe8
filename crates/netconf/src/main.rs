//! `netconf`: `ros netconf` as its own binary, for the crate's tests (the
//! DHCP hook calls the running binary back) and for running it by hand.

fn main() -> std::process::ExitCode {
    let code = netconf::cli::main(std::env::args_os().collect());
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
