//! `turtles-launcher`: a small VMM on Linux KVM (the rust-vmm crates `kvm-ioctls`,
//! `kvm-bindings` and `vm-memory`) that boots a turtles image, or any multiboot/PVH kernel,
//! with its boot modules and command line, so turtles runs as a KVM guest: as L1 on a Linux
//! KVM acting as L0 (config `kvm-l1-leaf`), or the leaf directly on KVM (`bench vs-kvm`).
//!
//! ```text
//! turtles-launcher [--mem MIB] [--cmdline TEXT] [--prefix TEXT] IMAGE [MODULE[=CMDLINE]]...
//! ```
//!
//! The guest sees KVM's supported CPUID with the hypervisor bit (VMX too when the host runs
//! kvm_intel with nested=1), KVM's in-kernel local APIC, I/O APIC, 8259s and PIT, COM1 (its
//! lines printed on stdout, each after `--prefix`, default `L1| `), the reset ports and the
//! exit port 0xf4. Exit status: the byte the guest wrote to port 0xf4; 2 for a launcher
//! error (bad image, no /dev/kvm; the message on stderr); 4 when the guest reset the machine.
//! At the end it prints KVM's own exit counters from debugfs when it is mounted
//! (`kvm: stats: exits=N ...`, on stderr).
//! Built static for `x86_64-unknown-linux-musl` so it runs in the runner's initramfs.

mod args;
mod boot;
mod cpuid;
mod error;
mod ports;
mod stats;
mod vm;

use std::process::ExitCode;

use error::LaunchError;
use vm::Stop;

/// The launcher itself failed (turtles' runner uses the same number).
pub const STATUS_LAUNCHER_ERROR: u8 = 2;
/// The guest reset the machine (turtles' "guest stopped").
pub const STATUS_GUEST_RESET: u8 = 4;

fn launch() -> Result<Stop, LaunchError> {
    let args = args::parse(std::env::args().skip(1)).map_err(LaunchError::Args)?;
    let mut ram = boot::Ram::new(args.mem_mib)?;
    let state = boot::load(&mut ram, &args)?;
    let mut vm = vm::Vm::new(ram, &state)?;
    eprintln!(
        "launcher: {} booted via {:?} at {:#x} with {} module(s), {} MiB, VMX {}",
        args.image.display(),
        state.protocol,
        state.entry,
        args.modules.len(),
        args.mem_mib,
        if vm.vmx { "shown" } else { "not available (host kvm_intel without nested=1)" }
    );
    let mut ports = ports::Ports::default();
    let stop = vm.run(&mut ports, &mut std::io::stdout().lock(), &args.prefix);
    // While the VM still exists: KVM's counters include it.
    if let Some(line) = stats::line(std::path::Path::new(stats::DEBUGFS_KVM)) {
        eprintln!("{line}");
    }
    stop
}

fn main() -> ExitCode {
    match launch() {
        Ok(Stop::Exit(code)) => {
            eprintln!("launcher: guest exited with status {code}");
            ExitCode::from(code)
        }
        Ok(Stop::Reset(why)) => {
            eprintln!("launcher: guest stopped: {why}");
            ExitCode::from(STATUS_GUEST_RESET)
        }
        Err(LaunchError::Args(args::ArgsError::Help)) => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("launcher: {e}");
            ExitCode::from(STATUS_LAUNCHER_ERROR)
        }
    }
}
