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
    for part in ["cpuid rounds=1000", "io rounds=1000", "memory rounds=4096", "compute", "mixed"] {
        let lines: Vec<String> = run
            .lines_with("L1| L2| [")
            .into_iter()
            .filter(|l| l.contains(&format!("workload: {part}")))
            .collect();
        assert_eq!(lines.len(), 1, "workload part `{part}` missing or repeated:\n{all}");
        assert!(lines[0].contains("result=0x"), "{}", lines[0]);
    }
    assert!(all.contains("L1| L2| turtles: exit status=0"), "{all}");
}
