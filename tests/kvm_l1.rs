//! Linux KVM as L1 on turtles' L0 (issue 12, `l0-kvm-leaf`): Bochs -> turtles L0 (VMX
//! exposed) -> Debian's Linux, which loads kvm_intel with nested=1 on L0's emulated VMX ->
//! the launcher on /dev/kvm -> the turtles leaf (L2), whose workload must finish. KVM
//! refusing to load fails the test with the kernel's own KVM messages.

mod common;

use common::{Run, turtles};

/// The KVM lines `/init` prints when kvm_intel does not load (`kvm: | <dmesg line>`).
fn kvm_refusal(run: &Run) -> String {
    run.lines_with("kvm: ").join("\n")
}

#[test]
fn linux_kvm_as_l1_runs_the_leaf_on_turtles_l0() {
    let run = turtles(&["run", "l0-kvm-leaf", "--timeout", "1500"]);
    let all = run.all();
    assert!(
        all.contains("L1| kvm: loaded: kvm-intel nested=1"),
        "kvm_intel did not load on turtles' L0; KVM said:\n{}\n\nfull output:\n{all}",
        kvm_refusal(&run)
    );
    run.expect(
        0,
        &[
            "vmx: exposing VMX to the guest (nested)",
            // What kvm_intel chose from the capability MSRs L0 offers.
            "nested=Y ept=Y vpid=Y unrestricted_guest=Y",
            // VMCS shadowing, which L0 offers (it performs L2's VMREAD/VMWRITE on the
            // shadow VMCS in L1 memory), and FlexPriority (the TPR shadow and the
            // APIC-access page on L1's own pages): KVM uses both.
            "enable_shadow_vmcs=Y flexpriority=Y",
            "L1| launcher: ",
            "L1| launcher: guest exited with status 0",
            "L1| kvm: launcher exited with status 0",
            "L1| turtles: exit status=0",
            "guest: powered off (ACPI S5)",
            // L0 saw KVM's VMX instructions and ran KVM's guest as its L2.
            "exits: Vmlaunch=",
            "exits: nested: L2 caused",
        ],
    );
    // The leaf's workload ran to its end under KVM (L2), every part with its result.
    expect_every_workload_part(&run, "L1| L2| [");
    assert!(all.contains("L1| L2| turtles: exit status=0"), "{all}");
}

/// Depth 3 with real KVM in the middle (`l0-kvm-l1-leaf`): Bochs -> turtles L0 -> Debian's
/// Linux with kvm_intel on L0's emulated VMX (L1) -> turtles as KVM's guest hypervisor (L2,
/// on KVM's nested VMX, which runs on L0's) -> the leaf (L3). KVM uses the VMCS shadowing L0
/// offers for turtles' VMREAD/VMWRITE (its L2's), switching between its vmcs12 and its shadow
/// VMCS around every exit it reflects (VMPTRLD, VMCLEAR): L0 performs those of KVM's guest on
/// KVM's shadow VMCS and keeps the VMCS KVM switches away from parked. The leaf's workload
/// runs to its end, every part with its result, and status 0 comes back through every level.
#[test]
fn linux_kvm_as_l1_runs_turtles_as_l2_running_the_leaf() {
    let run = turtles(&["run", "l0-kvm-l1-leaf", "--timeout", "2400"]);
    run.expect(
        0,
        &[
            "vmx: exposing VMX to the guest (nested)",
            "enable_shadow_vmcs=Y flexpriority=Y",
            "L1| L2| [L1 cpu0 INFO ] vmx: VMXON done",
            "L1| L2| turtles: exit status=0",
            "L1| kvm: launcher exited with status 0",
            "guest: powered off (ACPI S5)",
            // KVM's guest hypervisor (L2) exits through L0, which performs its shadowed
            // VMREAD/VMWRITE and reflects the rest to KVM.
            "exits: Vmptrld=",
            "exits: Vmclear=",
            "exits: nested: L2 caused",
        ],
    );
    expect_every_workload_part(&run, "L1| L2| L2| [");
}

/// The leaf's workload lines under `prefix`: every part exactly once, each with its result.
fn expect_every_workload_part(run: &common::Run, prefix: &str) {
    let all = run.all();
    for part in ["cpuid rounds=1000", "io rounds=1000", "memory rounds=4096", "compute", "mixed"] {
        let lines: Vec<String> = run
            .lines_with(prefix)
            .into_iter()
            .filter(|l| l.contains(&format!("workload: {part}")))
            .collect();
        assert_eq!(lines.len(), 1, "workload part `{part}` missing or repeated:\n{all}");
        assert!(lines[0].contains("result=0x"), "{}", lines[0]);
    }
}

/// kvm_intel refusing to load (here: a bad value for its `nested` parameter, through Linux's
/// command line) ends the run with status 2 and the kernel's own message, through the exit
/// port L0 gives its guest.
#[test]
fn kvm_refusing_to_load_fails_the_run_with_kvms_message() {
    let run = turtles(&[
        "run",
        "l0-kvm-leaf",
        "--timeout",
        "1500",
        "--guest-cmdline",
        "kvm_intel.nested=maybe",
    ]);
    run.expect(
        2,
        &[
            "L1| kvm: KVM did not load (kvm-intel nested=1 nested=maybe); the kernel said:",
            "L1| kvm: | ",
            "L1| turtles: exit status=2",
            "guest: exited with status 2",
        ],
    )
    .expect_absent(&["L1| launcher: "]);
    // KVM's own words, from the kernel log.
    let said = kvm_refusal(&run);
    assert!(said.contains("kvm_intel: `maybe' invalid for parameter `nested'"), "{said}");
}
