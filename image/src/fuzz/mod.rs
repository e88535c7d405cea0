//! The fuzzing L1 (issue 14, "Robustness"): this image, built with config `fuzz-l1` and run by
//! an L0 that exposes VMX, attacks L0 the way a hostile guest hypervisor would. From
//! `turtles.fuzz_seed=S` it runs `turtles.fuzz_programs=N` programs (starting at
//! `turtles.fuzz_first=P`), each a random sequence of VMX instructions with valid, boundary and
//! invalid operands, vmcs12s with one field made invalid, random EPT12 entries and a random
//! L2, and checks every answer against what the SDM allows. A failure is logged as
//! `fuzz: FAIL seed=S program=P step=K ...`; the run ends with `fuzz: done programs=N
//! failures=F` and status 0 only without failures. `turtles.fuzz_trace=1` logs every step.
//!
//! The rooms: [`rng`] (SplitMix64), [`insn`] (the VMX instructions with their exceptions
//! caught), [`expect`] (sets of allowed outcomes), [`world`] (our structures and the valid
//! vmcs12), [`mutate`] (invalid vmcs12 fields and EPT12 entries), [`l2`] (L2's code),
//! [`program`] (the model and the steps), [`entry`] (VMLAUNCH/VMRESUME), [`inv`] (INVEPT,
//! INVVPID, VMCALL).

mod entry;
mod expect;
use crate::arch::vmx_probe as insn;
mod inv;
mod l2;
mod mutate;
mod program;
mod rng;
mod world;

use nested::caps::{VmxCaps, msr};
use x86_64::registers::control::{Cr0, Cr4};

use crate::arch::{cpu, idt};
use crate::shutdown::{self, Status};
use program::{Program, Stats};
use world::World;

/// Programs between two progress lines.
const PROGRESS_EVERY: u64 = 1000;

/// `turtles.<key>=<value>` from the command line, decimal or 0x-hexadecimal.
fn arg(cmdline: &str, key: &str) -> Option<u64> {
    let value = cmdline.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?;
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// L1's physical-address width (CPUID.80000008H:EAX bits 7:0; 36 without the leaf).
fn maxphyaddr() -> u8 {
    if cpu::cpuid(0x8000_0000, 0)[0] >= 0x8000_0008 {
        cpu::cpuid(0x8000_0008, 0)[0] as u8
    } else {
        36
    }
}

/// Makes VMXON possible: IA32_FEATURE_CONTROL (L0 shows it locked with VMX on), the fixed
/// CR0/CR4 bits and CR4.VMXE (SDM Vol. 3C 24.7, 24.8).
fn prepare_vmx(caps: &VmxCaps) -> bool {
    let control = cpu::rdmsr(msr::IA32_FEATURE_CONTROL);
    if control & 5 != 5 {
        log::error!("fuzz: IA32_FEATURE_CONTROL={control:#x} does not allow VMX");
        return false;
    }
    let cr0 = caps.cr0_fixed().adjust(Cr0::read_raw());
    let cr4 = caps.cr4_fixed().adjust(Cr4::read_raw() | 1 << 13);
    // SAFETY: the fixed bits VMX needs keep paging and protection as they are (PE, PG and
    // PAE are already set in long mode).
    unsafe {
        Cr0::write_raw(cr0);
        Cr4::write_raw(cr4);
    }
    true
}

/// Runs the fuzzer and ends the run with its verdict.
pub fn run(caps: &VmxCaps, cmdline: &str) -> ! {
    let seed = arg(cmdline, "turtles.fuzz_seed").unwrap_or(1);
    let programs = arg(cmdline, "turtles.fuzz_programs").unwrap_or(100);
    let first = arg(cmdline, "turtles.fuzz_first").unwrap_or(0);
    let trace = arg(cmdline, "turtles.fuzz_trace").is_some_and(|t| t != 0);
    idt::set_recovery(insn::recover);
    let controls = match nested::vmcs01::choose(caps) {
        Ok(c) => c,
        Err(e) => {
            log::error!("fuzz: the VMX offered cannot run a guest: {e}");
            shutdown::exit(Status::Failure);
        }
    };
    let width = maxphyaddr();
    if !prepare_vmx(caps) {
        shutdown::exit(Status::Failure);
    }
    let Some(world) = World::new(*caps, controls, width) else {
        log::error!("fuzz: out of memory for the fuzzer's structures");
        shutdown::exit(Status::Failure);
    };
    log::info!(
        "fuzz: seed={seed} programs={programs} first={first} maxphyaddr={width} revision={:#x} \
         vmwrite-any-field={}",
        caps.revision_id(),
        caps.vmwrite_any_field()
    );
    let mut stats = Stats::new();
    let mut failed_programs = 0u64;
    for index in first..first.saturating_add(programs) {
        let mut p = Program::new(&world, seed, index, trace, &mut stats);
        p.run();
        if p.failed {
            failed_programs += 1;
        }
        let done = index - first + 1;
        if done.is_multiple_of(PROGRESS_EVERY) && done < programs {
            log::info!("fuzz: progress programs={done} failures={failed_programs}");
        }
    }
    report(&stats);
    log::info!("fuzz: done programs={programs} failures={failed_programs} seed={seed}");
    shutdown::exit(if failed_programs == 0 { Status::Success } else { Status::Failure })
}

fn report(s: &Stats) {
    let valid: u64 = s.fail_valid.iter().sum();
    let exits: u64 = s.exits.iter().sum();
    log::info!(
        "fuzz: outcomes steps={} VMsucceed={} VMfailInvalid={} VMfailValid={valid} faults={} \
         exits={exits} entry-failures={}",
        s.steps,
        s.succeed,
        s.fail_invalid,
        s.faults,
        s.entry_failures
    );
    let mut line = alloc::string::String::new();
    for (n, &count) in s.fail_valid.iter().enumerate().filter(|(_, c)| **c > 0) {
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {n}:{count}"));
    }
    log::info!("fuzz: VMfailValid by error:{line}");
    line.clear();
    for (n, &count) in s.exits.iter().enumerate().filter(|(_, c)| **c > 0) {
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {n}:{count}"));
    }
    log::info!("fuzz: exits by reason:{line}");
}
