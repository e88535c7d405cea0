//! Nested VMX under Bochs: L0 exposes VMX to L1 (the turtles image as a guest hypervisor),
//! which runs the leaf as L2 with the same results as at depth 1.

mod common;

use common::turtles;

#[test]
fn depth2_l0_runs_l1_runs_the_leaf() {
    let run = turtles(&["run", "l0-l1-leaf", "--timeout", "600"]);
    run.expect(
        0,
        &[
            "vmx: exposing VMX to the guest (nested)",
            // L1 sees VMX through L0's emulated capability MSRs and turns it on.
            "L1| [L1 cpu0 INFO ] platform: vendor=GenuineIntel family=0x6 model=0x55 hypervisor=yes vmx=yes",
            "L1| [L1 cpu0 INFO ] vmx: this CPU can run guests",
            "L1| [L1 cpu0 INFO ] guest: ",
            // L2's console goes through L1's emulated UART, then L0's.
            "L1| L2| [L2 cpu0 INFO ] turtles 0.1.0 config=leaf role=leaf depth=2",
            "L1| L2| [L2 cpu0 INFO ] workload: cpuid rounds=1000",
            "result=0x6ff16ceb966783d4", // the same compute checksum as at depth 0 and 1
            "L1| L2| turtles: exit status=0",
            "L1| [L1 cpu0 INFO ] guest: exited with status 0",
            "[L0 cpu0 INFO ] guest: exited with status 0",
            "exits: Vmlaunch=1",
            "exits: Vmresume=",
            "exits: EptViolation=",
            "exits: nested: L2 caused",
            // Nested VPID: the VPID L1 gives the leaf is mapped to a hardware VPID of L0's.
            "[L0 cpu0 INFO ] vmx: L1's VPID 1 for its guest runs as hardware VPID 3",
        ],
    );
    // Each L2 CPUID is one exit for L1 and, with VMCS shadowing and L1's CPUID cache, the
    // architectural minimum of two for L0 (L2's CPUID, L1's VMRESUME).
    let line = run.lines_with("L2| [L2 cpu0 INFO ] workload: cpuid rounds=1000");
    assert!(line.iter().any(|l| l.contains("exits=1000 l0-exits=2000 ")), "{line:?}");
    assert!(run.all().contains("vmx: VMCS shadowing on for L1's VMREAD/VMWRITE"));
}

#[test]
fn depth2_without_vmcs_shadowing_traps_every_vmread() {
    let run = turtles(&[
        "run",
        "l0-l1-leaf",
        "--timeout",
        "600",
        "--cmdline",
        "turtles.vmcs_shadowing=off",
    ]);
    run.expect(0, &["L1| L2| turtles: exit status=0", "result=0x6ff16ceb966783d4"]);
    run.expect_absent(&["VMCS shadowing on"]);
    // Without shadowing L1's VMREADs of the exit information trap: many L0 exits per CPUID.
    let line = run.lines_with("L2| [L2 cpu0 INFO ] workload: cpuid rounds=1000");
    let l0: u64 = line
        .iter()
        .find_map(|l| l.split("l0-exits=").nth(1)?.split_whitespace().next()?.parse().ok())
        .expect("l0-exits in the cpuid line");
    assert!(l0 > 5 * 1000, "expected trapped VMREADs, got {l0} L0 exits: {line:?}");
}

#[test]
fn depth3_l0_runs_l1_runs_l1_runs_the_leaf() {
    turtles(&["run", "l0-l1-l1-leaf", "--timeout", "900"]).expect(
        0,
        &[
            "L1| L2| [L2 cpu0 INFO ] vmx: this CPU can run guests",
            "L1| L2| L3| [L3 cpu0 INFO ] turtles 0.1.0 config=leaf role=leaf depth=3",
            "L1| L2| L3| [L3 cpu0 INFO ] workload: cpuid rounds=1000",
            "result=0x6ff16ceb966783d4",
            "L1| L2| L3| turtles: exit status=0",
            "[L0 cpu0 INFO ] guest: exited with status 0",
        ],
    );
}

/// `cargo run -- run l0-l1-leaf` with extra arguments.
fn depth2(extra: &[&str]) -> common::Run {
    let mut args = vec!["run", "l0-l1-leaf", "--timeout", "600"];
    args.extend_from_slice(extra);
    turtles(&args)
}

#[test]
fn bad_l1_vmcs12_controls_get_vmfailvalid_7() {
    depth2(&["--guest-cmdline", "turtles.test=bad-controls"]).expect(
        4,
        &[
            "L1| [L1 cpu0 INFO ] self-test: bad-controls",
            "[L0 cpu0 WARN ] L1 VM instruction failed: EntryInvalidControlFields (error 7): check PinControls",
            "L1| [L1 cpu0 ERROR] VMLAUNCH of vmcs01 failed: VMfailValid, VM-instruction error 7",
            "L1| [L1 cpu0 ERROR] guest: stopped by L1: VM entry failed",
            "[L0 cpu0 INFO ] guest: exited with status 4",
        ],
    );
}

#[test]
fn bad_l2_guest_state_is_a_vm_entry_failure_exit_to_l1() {
    depth2(&["--guest-cmdline", "turtles.test=bad-guest-state"]).expect(
        4,
        &[
            "L1| [L1 cpu0 INFO ] self-test: bad-guest-state",
            "L1| [L1 cpu0 ERROR] VM entry failed: invalid guest state (reason 0x80000021",
            "L1| [L1 cpu0 INFO ] L1 is still running after stopping its guest",
            "[L0 cpu0 INFO ] guest: exited with status 4",
        ],
    );
}

#[test]
fn bad_l1_vmptrld_address_gets_error_9() {
    depth2(&["--guest-cmdline", "turtles.test=bad-vmptrld"]).expect(
        0,
        &[
            "L1| [L1 cpu0 INFO ] self-test: VMPTRLD of 0x1234: Err(Valid(9))",
            // L1 carries on: its guest still runs to the end.
            "L1| L2| turtles: exit status=0",
        ],
    );
}

/// L1's EPT12 maps L2's first 2 MiB to 3 GiB, where L1 has nothing. L2's first instruction
/// fetch reads all ones there (FF FF): #UD in L2. Delivering it reads L2's IDT, also there:
/// that access is the processor's, not an instruction's, so L0 does not emulate it and L1
/// gets the EPT violation (on hardware the all-ones gate would end in a triple fault); L1
/// stops its guest and lives.
#[test]
fn ept12_outside_l1_memory_is_reflected_to_l1_as_an_ept_violation() {
    depth2(&["--guest-cmdline", "turtles.test=bad-ept"]).expect(
        4,
        &[
            "L1| [L1 cpu0 INFO ] self-test: bad-ept",
            "guest instruction fetch at guest-physical 0xc0100038, where there is neither RAM \
             nor a device: all ones, FF FF is #UD (rip 0x100038)",
            "outside L1's memory: reflecting an EPT violation to L1",
            "L1| [L1 cpu0 ERROR] guest read at guest-physical 0x30 is outside its",
            "L1| [L1 cpu0 ERROR] guest: stopped by L1: access outside guest memory",
            "[L0 cpu0 INFO ] guest: exited with status 4",
        ],
    );
}

#[test]
fn l2_triple_fault_is_reflected_to_l1() {
    depth2(&["--leaf-cmdline", "turtles.test=triplefault"]).expect(
        4,
        &[
            "L1| L2| [L2 cpu0 INFO ] self-test: triplefault",
            "L1| [L1 cpu0 ERROR] guest triple fault: stopping the guest",
            "L1| [L1 cpu0 INFO ] L1 is still running after stopping its guest",
            "[L0 cpu0 INFO ] guest: exited with status 4",
        ],
    );
}

#[test]
fn l1_triple_fault_stops_l1_and_l0_lives() {
    depth2(&["--guest-cmdline", "turtles.test=triplefault"]).expect(
        4,
        &[
            "L1| [L1 cpu0 INFO ] self-test: triplefault",
            "[L0 cpu0 ERROR] guest triple fault: stopping the guest",
            "[L0 cpu0 INFO ] L0 is still running after stopping its guest",
        ],
    );
}

/// A VMX hypervisor L0 did not write, on the PC L0 models: the PIT's IRQ0 through the 8259s
/// and the APIC's virtual wire, its local APIC in xAPIC mode
/// (MMIO through EPT violations) and x2APIC mode (MSRs) with self-IPIs and timers, the PIT,
/// then VMX with its guest's exits reflected, its own timer interrupt arriving while its
/// guest runs (an external-interrupt exit with the vector acknowledged), and an interrupt it
/// injects into its guest. Round 3, what it gives its guest without exits: its VMREAD and
/// VMPTRST to an unmapped page take #PF with CR2 and the error code; a port (COM1) and an MSR
/// (IA32_STAR) passed through to its guest reach its own UART and MSR and never exit to it;
/// CR0.TS owned with a read shadow; PAUSE and WBINVD exiting fire; clearing CR4.VMXE, which
/// it does not own, is a #GP in its guest as on hardware. Round 4: its guest, on EPT12,
/// reaches its local APIC through a guest-physical alias (version, ID, TPR, a self-IPI).
/// Round 5: its APIC timer's interrupt arrives while its preemption timer runs in its guest.
/// Round 6: an interrupt its guest takes itself, pending while the guest has interrupts off,
/// arrives right after STI's next instruction. Round 7: a #GP it intercepts, raised by an
/// instruction L0 performs for it in its guest, exits to it. Round 8: its guest's string I/O
/// to ports it passes through reaches them through its guest's paging and EPT12.
#[test]
fn l0_runs_an_unmodified_vmx_hypervisor_as_l1() {
    let kernel = common::build_test_kernel("vmx32");
    let kernel = kernel.to_str().expect("utf-8 path");
    let run = turtles(&["run", "l0-l1-leaf", "--guest-image", kernel]);
    run.expect(
        0,
        &[
            "L1| vmx32: a plain VMX hypervisor kernel, not turtles",
            // IA32_APIC_BASE at reset: default base, BSP, globally enabled.
            "L1| vmx32: PIT IRQ0 through the 8259 and the APIC's virtual wire: interrupts=0x00000003",
            "L1| vmx32: IA32_APIC_BASE=0xfee00900",
            "L1| vmx32: xAPIC version=0x00050014",
            "L1| vmx32: xAPIC self-IPI delivered",
            // A second NMI, sent while the first one blocks NMIs, arrives at its IRET (L0's
            // NMI window), not at some later exit.
            "L1| vmx32: xAPIC NMI IPIs to itself taken (the second sent in the first's handler)=0x00000002",
            "L1| vmx32: the second NMI interrupted at the first's return point, EIP - it=0x00000000",
            // Device-page instructions beyond MOV, as the bare processor does them (issue 14):
            // XCHG, OR/AND/SUB/ADD/XOR with a memory destination (flags in bits 19:8: SUB's
            // CF PF SF, ADD's PF AF), TEST (flags and SETcc, twice), MOVSX.
            "L1| vmx32: xAPIC xchg %eax (0x30) with TPR 0x20: old TPR in %eax, new TPR=0x00002030",
            "L1| vmx32: xAPIC TPR after orl $0x0f, andl $~0x10, lock or %ecx (0x40)=0x0000006f",
            "L1| vmx32: xAPIC subl $0x70 from TPR 0x6f: flags, TPR=0x000085ff",
            "L1| vmx32: xAPIC addl $1 to TPR 0xff: flags, TPR=0x00001400",
            "L1| vmx32: xAPIC TPR after xorl $0x5a to 0, then lock xorl $0xff=0x00005aa5",
            "L1| vmx32: xAPIC testl $0x100 on SVR (flags, setnz), test %ecx (0xff000000) on the version (flags, setz)=0x04014401",
            "L1| vmx32: xAPIC movsbl of SVR=0xffffffff",
            "L1| vmx32: xAPIC movswl of SVR=0x000001ff",
            "L1| vmx32: xAPIC movsbw of SVR into 0x12345678=0x1234ffff",
            // Nothing answers at 0xfed00000 (no HPET): all ones, the store dropped.
            "L1| vmx32: load from unbacked guest-physical 0xfed00000 after a store=0xffffffff",
            "L1| vmx32: xAPIC one-shot timer woke HLT, current count=0x00000000",
            "L1| vmx32: PIT channel 2 reached 1193 counts, TSC ticks=0x",
            "L1| vmx32: x2APIC id=0x00000000",
            "L1| vmx32: x2APIC version=0x00050014",
            "L1| vmx32: x2APIC self-IPI delivered",
            "L1| vmx32: x2APIC periodic timer interrupts=0x00000003",
            // The processor L0 shows (issue 14): DEBUGCTL's LBR and BTF are writable, no PDCM
            // and no PMU are shown (so their MSRs' #GP is consistent), the MTRRs exist and keep
            // their values, OSXSAVE follows L1's own CR4 and XSETBV works.
            "L1| vmx32: IA32_DEBUGCTL=0x00000003",
            // Its DR7 survives its exits to L0 (vmcs01 saves and loads the debug controls).
            "L1| vmx32: DR7 after an exit to L0=0x00000402",
            "L1| vmx32: CPUID PDCM (then PERF_CAPABILITIES read)=0x00000000",
            "L1| vmx32: CPUID architectural PMU version=0x00000000",
            "L1| vmx32: IA32_MTRRCAP=0x00000508",
            "L1| vmx32: IA32_MTRR_PHYSBASE0=0x80000006",
            "L1| vmx32: CPUID XSAVE|OSXSAVE=0x04000000",
            "L1| vmx32: CPUID XSAVE|OSXSAVE=0x0c000000",
            "L1| vmx32: XCR0 after XSETBV=0x00000003",
            // Single-stepping (RFLAGS.TF) over CPUID and OUT, which L0 emulates: the #DB trap
            // comes right after each, with DR6.BS (bit 14), as on the processor.
            "L1| vmx32: single-step #DBs=0x00000002",
            "L1| vmx32: #DB after CPUID, EIP - next instruction=0x00000000",
            "L1| vmx32: #DB after OUT, EIP - next instruction=0x00000000",
            "L1| vmx32: DR6.BS in both=0x00004000",
            // DR0-DR3 breakpoints on accesses L0 performs (an OUT, a store where nothing
            // is): the debug trap right after the instruction, with DR6.B0 and DR6.B1.
            "L1| vmx32: breakpoint #DBs=0x00000002",
            "L1| vmx32: I/O breakpoint #DB after OUT, EIP - next instruction=0x00000000",
            "L1| vmx32: DR6.B3-B0=0x00000001",
            "L1| vmx32: write breakpoint #DB after the store, EIP - next instruction=0x00000000",
            "L1| vmx32: DR6.B3-B0=0x00000002",
            // String I/O to ports L0 models: a line by REP OUTSB; REP INSB of the 8259's
            // mask (0xff) three times forwards (ECX 0, EDI + 3), then twice backwards (DF:
            // EDI from buffer + 7 to + 5, bytes 6 and 7 filled).
            "L1| vmx32: REP OUTSB reached COM1",
            "L1| vmx32: REP INSB from port 0x21: ECX after=0x00000000",
            "L1| vmx32: REP INSB: EDI - buffer=0x00000003",
            "L1| vmx32: REP INSB: bytes=0x00ffffff",
            "L1| vmx32: REP INSB: EDI - buffer=0x00000005",
            "L1| vmx32: REP INSB: bytes=0xffff0000",
            "L1| vmx32: VMXON ok",
            "L1| vmx32: VMLAUNCH",
            // Its guest's CPUID, OUT and HLT, each reflected to it by L0.
            "L1| vmx32: L2 exit reason=0x0000000a",
            "L1| vmx32: L2 exit reason=0x0000001e",
            "L1| vmx32: L2 exit reason=0x0000000c",
            // Round 2: L1's APIC timer while L2 spins, then L1's injection into L2.
            "L1| vmx32: round 2: L1 timer interrupt while L2 runs",
            "L1| vmx32: L2 exit reason=0x00000001",
            "L1| vmx32: external-interrupt exit, intr-info=0x80000044",
            "L1| vmx32: L2 took the injected vector 0x50",
            // Round 3.
            "L1| vmx32: round 3: operand faults, pass-through, intercepts",
            "L1| vmx32: VMREAD to an unmapped page: #PF, CR2=0xfa000010",
            "L1| vmx32: VMPTRST to an unmapped page: #PF, CR2=0xfa000020",
            "L1| vmx32: #PF error code=0x00000002",
            "L1| vmx32: L2 wrote this line to COM1 itself",
            // L2 single-steps an IN from COM1, which L0 performs for L1: its #DB handler
            // reports 0x40 (DR6.BS, at the next instruction).
            "L1| vmx32: round 3 OUT 0x80, al=0x00000040",
            "L1| vmx32: round 3 OUT 0x80, al=0x00000008",
            "L1| vmx32: IA32_STAR after L2's RDMSR/WRMSR=0x12345678",
            "L1| vmx32: CR access exit, qualification=0x00000020",
            "L1| vmx32: L2 exit reason=0x00000028",
            "L1| vmx32: L2 exit reason=0x00000036",
            "L1| vmx32: round 3 OUT 0x80, al=0x0000000d",
            // Round 4 (finding 5): its guest reaches its local APIC through EPT12 (version,
            // ID, TPR written and read back, a self-IPI that arrives as an exit to it).
            "L1| vmx32: round 4: L2 reaches L1's local APIC through EPT12",
            "L1| vmx32: round 4 OUT 0x80, eax=0x00050014",
            "L1| vmx32: round 4 OUT 0x80, eax=0x00000000",
            "L1| vmx32: round 4 OUT 0x80, eax=0x00000020",
            // EPT12 maps 0xc0001000 to L1-physical 0xfed00000, where L1 has nothing.
            "L1| vmx32: round 4 OUT 0x80, eax=0xffffffff",
            // A call there fetches all ones: FF FF is #UD in L2, at the call's target.
            "L1| vmx32: round 4 OUT 0x80, eax=0xc0001000",
            "L1| vmx32: external-interrupt exit, intr-info=0x80000045",
            "L1| vmx32: L1's TPR after L2's write=0x00000020",
            // Round 5 (finding 15): its APIC timer interrupt arrives while its own
            // preemption timer, armed far out, runs in its guest.
            "L1| vmx32: round 5: L1 timer interrupt with L1's preemption timer armed",
            "L1| vmx32: external-interrupt exit, intr-info=0x80000046",
            // An INIT it sent itself in VMX root operation exits from its guest.
            "L1| vmx32: INIT to itself, held in VMX root operation: L2 exit reason=0x00000003",
            // Round 6: its timer fires while its guest, which takes its interrupts, has them
            // off and makes no exits; after STI and one more instruction the vector arrives
            // right there (L0's interrupt window), not at some later exit.
            "L1| vmx32: round 6: L1 timer interrupt while L2 has interrupts off, taken after STI",
            "L1| vmx32: round 6: vector 0x47 pending in L1's IRR while L2 has IF=0: 0x00000080",
            "L1| vmx32: round 6: L2 took 0x47, return EIP - after STI's next instruction: 0x47000000",
            // Round 7: the #GP of an instruction L0 performs for it (L2 clearing CR4.VMXE)
            // is an exit to it once its exception bitmap has #GP.
            "L1| vmx32: round 7: a #GP its host intercepts, raised by an instruction L0 performs",
            "L1| vmx32: L2 exit reason=0x00000000",
            "L1| vmx32: round 7: exception exit, intr-info=0x80000b0d",
            "L1| vmx32: round 7: error code=0x00000000",
            "L1| vmx32: round 7: guest RIP - the MOV to CR4=0x00000000",
            // Round 8: its guest's REP OUTSB/INSB on ports it passes through, performed by
            // L0 through its guest's paging and EPT12, with its EPT violation on the way.
            "L1| vmx32: round 8: L2's string I/O to ports it passes through, through EPT12",
            "L1| vmx32: L2 wrote this line with REP OUTSB",
            "L1| vmx32: L2 exit reason=0x00000030",
            "L1| vmx32: round 8: EPT violation in L2's REP INSB, qualification=0x00000182",
            "L1| vmx32: round 8: guest-physical - the INSB target=0x00000000",
            "L1| vmx32: round 8: guest-linear - the INSB target=0x00000000",
            "L1| vmx32: round 8: L2's ECX=0x00000004",
            "L1| vmx32: round 8: bytes L2's REP INSB read from port 0x21=0xffffffff",
            // The DR7 its guest wrote natively, saved by the exit (vmcs12 saves debug
            // controls).
            "L1| vmx32: round 8: L2's DR7 as its exit saved it=0x00000408",
            "L1| vmx32: round 8: L2's ECX=0x00000000",
            "L1| vmx32: round 8: L2's EDI - the INSB target=0x00000004",
            "L1| vmx32: L2 halted: done, exits=0x0000001b",
            "exits: Vmlaunch=1",
            // Only what it asked for reached it: COM1, IA32_STAR and CR4 stayed in L0, its
            // APIC's accesses from L2 were performed by L0.
            ", 27 reflected to L1",
        ],
    );
    // The guest never touched an address L0 does not model.
    run.expect_absent(&["unknown I/O port", "outside its", "unexpected interrupt"]);
}
