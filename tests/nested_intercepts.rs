//! Every instruction-intercept control L0 offers L1, end to end under Bochs (issue 14,
//! findings 6, 7 and 14): `tests/kernels/vmx32_intercepts.S`, a VMX hypervisor kernel L0 did
//! not write, runs as L1 and checks each control with its guest (L2): set, the instruction
//! exits to it with the architectural exit reason, qualification, instruction information
//! and length and L2 resumes after it; clear, it runs in L2 without reaching L1 (or takes #UD
//! in L2 where a clear enable control says so). Then PML on EPT accessed/dirty flags and
//! VMFUNC 0 (EPTP switching) with their exits, the VM-entry checks of "use TPR shadow", VMCS
//! shadowing (L2's VMREAD/VMWRITE on L1's shadow VMCS), the APIC-access page (L2's TPR
//! accesses virtualized, the others APIC-access exits), and the VM-entry and VM-exit MSR
//! lists, and WRMSR to IA32_TSC by L1 and by L2.

mod common;

use common::turtles;

/// The lines the kernel prints for one case: its name, then each exit and the closing
/// VMCALL with the guest's EDI (0, or the vector of the exception L2 took). Each line is a
/// prefix of what is printed (fields the SDM leaves undefined are left out).
fn case(name: &str, exits: &[&str], edi: u32) -> Vec<String> {
    let mut lines = vec![format!("vmx32i: case {name}")];
    lines.extend(exits.iter().map(|e| format!("vmx32i:   exit reason={e}")));
    lines.push(format!("vmx32i:   VMCALL, guest EDI={edi:#010x}"));
    lines
}

/// Asserts that `block[0]` is a line of L1's console (`L1| ` stripped) and that the lines
/// right after it start with `block[1..]`, in order and with nothing in between.
fn expect_block(console: &[&str], block: &[String]) {
    let start = console.iter().position(|l| *l == block[0]);
    let Some(start) = start else { panic!("`{}` missing from:\n{}", block[0], console.join("\n")) };
    for (i, want) in block.iter().enumerate().skip(1) {
        let got = console.get(start + i).copied().unwrap_or("(end of output)");
        assert!(got.starts_with(want.as_str()), "after `{}`: want `{want}`, got `{got}`", block[0]);
    }
}

#[test]
fn l1_intercept_controls_pml_and_vmfunc_end_to_end() {
    let kernel = common::build_test_kernel("vmx32_intercepts");
    let kernel = kernel.to_str().expect("utf-8 path");
    let run = turtles(&["run", "l0-l1-leaf", "--guest-image", kernel]);
    // Each case's lines are checked as one block, so an extra exit (a control that is clear
    // but still exits, or an exit L0 reflected though L1 never asked) fails the test.
    let no_exit: &[&str] = &[];
    let cases = [
        // Instruction length of HLT is 1; the qualification of INVLPG is the linear address.
        case("HLT exiting", &["0x0000000c qual=0x00000000 info=0x00000000 len=0x00000001"], 0),
        case("INVLPG exiting", &["0x0000000e qual=0x00123000 info=0x00000000 len=0x00000007"], 0),
        case("INVLPG, no exiting", no_exit, 0),
        // MWAIT's qualification bit 0: the monitor hardware is not armed.
        case("MWAIT exiting", &["0x00000024 qual=0x00000000 info=0x00000000 len=0x00000003"], 0),
        case("MONITOR exiting", &["0x00000027 qual=0x00000000 info=0x00000000 len=0x00000003"], 0),
        case("MONITOR, no exiting", no_exit, 0),
        case("RDPMC exiting", &["0x0000000f qual=0x00000000 info=0x00000000 len=0x00000002"], 0),
        case("RDTSC exiting", &["0x00000010 qual=0x00000000 info=0x00000000 len=0x00000002"], 0),
        case("RDTSC, no exiting", no_exit, 0),
        // RDTSCP exits with its own reason (51) under RDTSC exiting; without "enable RDTSCP"
        // it is #UD in L2 (SDM 26.3, 26.1.2).
        case(
            "RDTSCP enabled, RDTSC exiting",
            &["0x00000033 qual=0x00000000 info=0x00000000 len=0x00000003"],
            0,
        ),
        case("RDTSCP enabled, no exiting", no_exit, 0),
        case("RDTSCP not enabled", no_exit, 6),
        // CR access qualification (SDM Table 28-3): CR3, MOV to CR from EBX (0x303); MOV from
        // CR3 to ECX (0x113).
        case("CR3-load exiting", &["0x0000001c qual=0x00000303 info=0x00000000 len=0x00000003"], 0),
        case(
            "CR3-store exiting",
            &["0x0000001c qual=0x00000113 info=0x00000000 len=0x00000003"],
            0,
        ),
        case("CR3, no exiting", no_exit, 0),
        // MOV DR (Table 28-4): MOV EAX, DR7 (0x17); MOV DR1, EBX (0x301).
        case(
            "MOV-DR exiting",
            &[
                "0x0000001d qual=0x00000017 info=0x00000000 len=0x00000003",
                "0x0000001d qual=0x00000301 info=0x00000000 len=0x00000003",
            ],
            0,
        ),
        case("MOV DR, no exiting", no_exit, 0),
        case("PAUSE exiting", &["0x00000028 qual=0x00000000 info=0x00000000 len=0x00000002"], 0),
        case("PAUSE, no exiting", no_exit, 0),
        // Descriptor tables (Tables 28-10, 28-11): the qualification is the displacement; the
        // instruction information has address size 32 (bit 7), DS (bits 17:15), no index
        // (bit 22), base EBX (bits 26:23) and the instruction in bits 29:28 (SGDT, SIDT, LGDT,
        // LIDT); register forms have bit 10 and the register in bits 6:3 (SLDT EAX, STR ECX,
        // LLDT EDX, LTR ESI). Bochs leaves the operand-size bit 11 at 0.
        case(
            "descriptor-table exiting",
            &[
                "0x0000002e qual=0x00000000 info=0x01c18080 len=0x00000003",
                "0x0000002e qual=0x00000008 info=0x11c18080 len=0x00000004",
                "0x0000002e qual=0x00000000 info=0x21c18080 len=0x00000003",
                "0x0000002e qual=0x00000008 info=0x31c18080 len=0x00000004",
                "0x0000002f qual=0x00000000 info=0x00000400 len=0x00000003",
                "0x0000002f qual=0x00000000 info=0x10000408 len=0x00000003",
            ],
            0,
        ),
        case(
            "descriptor-table exiting, LLDT/LTR",
            &[
                "0x0000002f qual=0x00000000 info=0x20000410 len=0x00000003",
                "0x0000002f qual=0x00000000 info=0x30000430 len=0x00000003",
            ],
            0,
        ),
        case("descriptor tables, no exiting", no_exit, 0),
        case("WBINVD exiting", &["0x00000036 qual=0x00000000 info=0x00000000 len=0x00000002"], 0),
        case("WBINVD, no exiting", no_exit, 0),
        // RDRAND/RDSEED (Table 28-14): the register in bits 6:3, operand size 32 (bit 11);
        // Bochs also sets bit 10 (undefined) for the register form.
        case(
            "RDRAND exiting",
            &[
                "0x00000039 qual=0x00000000 info=0x00000c00 len=0x00000003",
                "0x00000039 qual=0x00000000 info=0x00000c08 len=0x00000003",
            ],
            0,
        ),
        case("RDRAND, no exiting", no_exit, 0),
        case("RDSEED exiting", &["0x0000003d qual=0x00000000 info=0x00000c10 len=0x00000003"], 0),
        case("RDSEED, no exiting", no_exit, 0),
        // INVPCID exits under INVLPG exiting when enabled (reason 58; Table 28-13: memory
        // operand [EBX], register EAX in bits 31:28); not enabled, it is #UD.
        case(
            "INVPCID enabled, INVLPG exiting",
            &["0x0000003a qual=0x00000000 info=0x01c18080 len=0x00000005"],
            0,
        ),
        case("INVPCID enabled, no exiting", no_exit, 0),
        case("INVPCID not enabled", no_exit, 6),
        // PAUSE-loop exiting with window 0: the second PAUSE exits; L1 then clears it.
        case(
            "PAUSE-loop exiting",
            &["0x00000028 qual=0x00000000 info=0x00000000 len=0x00000002"],
            0,
        ),
        // XSAVES exits only for components in IA32_XSS (0 on Bochs) too.
        case("XSAVES enabled, XSS-exiting bitmap all ones, IA32_XSS 0", no_exit, 0),
        case("XSAVES enabled, XSS-exiting bitmap 0", no_exit, 0),
        case("XSAVES not enabled", no_exit, 6),
        // L2's RDTSC under a TSC offset of 2^32: its high half is one more than L1's.
        [
            case("TSC offsetting (2^32)", no_exit, 1),
            vec!["vmx32i:   guest TSC high half minus this kernel's=0x00000001".to_string()],
        ]
        .concat(),
        // L2's RDMSR of IA32_TSC, which L1's MSR bitmap passes through, sees the offset too
        // (SDM 25.3): L0 performs it in L1's world (vmcs02 intercepts 0x10), with vmcs02's
        // offset.
        [
            case("TSC offsetting (2^32), RDMSR IA32_TSC passed through", no_exit, 1),
            vec!["vmx32i:   guest TSC high half minus this kernel's=0x00000001".to_string()],
        ]
        .concat(),
        // Bochs's corei7_skylake_x has no monitor trap flag, so L0 does not offer it.
        vec!["vmx32i: case monitor trap flag: not offered".to_string()],
        // With RFLAGS.IF = 1 and nothing blocking, the exit comes before the first instruction.
        case("interrupt-window exiting", &["0x00000007 qual=0x00000000 info="], 0),
    ];
    run.expect(0, &["L1| vmx32i: done"]);
    let all = run.all();
    let console: Vec<&str> =
        all.lines().filter_map(|l| l.split_once("L1| ").map(|(_, t)| t)).collect();
    for c in &cases {
        expect_block(&console, c);
    }
    let blocks: [&[&str]; 7] = [
        // PML (emulated by L0 on EPT12's dirty flags): with index 2 three pages are logged,
        // newest at the lowest index; the fourth write is a PML-full exit (62) with index
        // 0xffff; after L1 resets the index to 511 the write is logged there.
        &[
            "vmx32i: PML: index 2, four pages written",
            "vmx32i:   exit reason=0x0000003e qual=0x00000000 ",
            "vmx32i:   PML index=0x0000ffff",
            "vmx32i:   PML log[2]=0x00800000 log[1]=0x00801000 log[0]=0x00802000",
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   PML index=0x000001fe log[511]=0x00803000",
            // EPT12's accessed and dirty flags: set for a written page, clear for another.
            " EPT A/D=0x00000300 EPT A/D=0x00000000",
            // L1 clears the first page's flags without INVEPT; L2 writes it again: flagged
            // and logged again, as on Bochs, which walks EPT12 at every entry.
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   PML index=0x000001fd log[510]=0x00800000 EPT A/D=0x00000300",
        ],
        // VMFUNC 0: L2 reads the probe through EPT 0 (0x11), EPT 1 (0x22), EPT 0 again; a
        // zero list entry, index 600 and function 1 are VMFUNC exits (59) to L1; L2 ends on
        // EPT 1, which L1 reads back in its EPT-pointer field.
        &[
            "vmx32i: VMFUNC 0: EPTP switching",
            "vmx32i:   exit reason=0x0000003b qual=0x00000000 ",
            "vmx32i:   exit reason=0x0000003b qual=0x00000000 ",
            "vmx32i:   exit reason=0x0000003b qual=0x00000000 ",
            "vmx32i:   VMCALL, guest EDI=0x00112211",
            "vmx32i:   EPTP at the end, relative to EPT 0=0x0000405e",
            // EPT's root where L1 has no RAM: all ones, a misconfiguration (49) for L1 at
            // L2's first access, its page walk's read of the PDE for its code (old L0: it
            // stopped L1, "EPT02 cannot be built").
            "vmx32i: EPT root where there is no RAM",
            "vmx32i:   exit reason=0x00000031 qual=0x00000000 ",
            "vmx32i:   EPT misconfiguration, guest-physical - page directory=0x00000000",
        ],
        // Use TPR shadow (offered by L0 since the hardware has it), VTPR 0x20 (SDM 26.2.1.1):
        // a TPR threshold above VTPR bits 7:4, one with bits 31:4 set and a virtual-APIC
        // address with bits 11:0 not zero are VMfailValid, error 7 (invalid control field);
        // threshold 2 enters, the guest VMCALLs, VTPR unchanged. The guest is 32-bit, where
        // MOV CR8 does not exist: the CR8 virtualization itself is host-tested
        // (`nested::vmx::merge` tests: vmcs02 on L1's page, CR8 exiting as vmcs12 has it).
        // On the L0 before TPR shadow was offered: "vmx32i: TPR shadow: not offered".
        &[
            "vmx32i: TPR shadow: VTPR 0x20",
            "vmx32i:   TPR threshold=0x00000003 virtual-APIC page+0x00000000: VMfailValid, error=0x00000007",
            "vmx32i:   TPR threshold=0x00000013 virtual-APIC page+0x00000000: VMfailValid, error=0x00000007",
            "vmx32i:   TPR threshold=0x00000002 virtual-APIC page+0x00000800: VMfailValid, error=0x00000007",
            "vmx32i:   TPR threshold=0x00000000 virtual-APIC page+0x00000004: VMfailValid, error=0x00000007",
            "vmx32i:   TPR threshold=0x00000002 virtual-APIC page+0x00000000",
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   VTPR after the guest=0x00000020",
            "vmx32i: VMCS shadowing",
        ],
        // VMCS shadowing (SDM 25.10; VMREAD/VMWRITE in VMX non-root operation), offered by
        // L0 since it performs L2's VMREAD/VMWRITE on the shadow VMCS in L1 memory
        // (`nested::vmx::shadow12`). A shadow VMCS can be current but not entered: VMRESUME
        // is VMfailInvalid, CF (SDM 26.1 step 4; bare Bochs checks the launch state instead
        // and gives ZF, error 5). L2 reads GUEST_RIP 0x12345678 from the shadow and writes
        // 0xabcd there without an exit; GUEST_RSP (VMREAD bitmap), GUEST_ES_SELECTOR
        // (VMWRITE bitmap) and an encoding with bit 15 exit to L1 (23, 25, 23), and so does
        // GUEST_RSP named by ESP (register 4: the encoding is L2's RSP, from vmcs02); the ES
        // selector L1 wrote (0x55) read to memory, GUEST_ES_BASE written from memory; an
        // unsupported field is VMfailValid (ZF), error 12 in L1's current VMCS. Then the
        // entry checks: link pointer at the current VMCS, at a VMCS without the shadow
        // indicator: entry failure 33, qualification 4; VMREAD bitmap not page-aligned:
        // VMfailValid 7. All as on bare Bochs but the VMRESUME. On the L0 before VMCS
        // shadowing was offered: "vmx32i: VMCS shadowing: not offered".
        // Then every encoding (kvm-unit-tests' vmx_vmcs_shadow_test for a 32-bit L1): for
        // each of the 32 width/type bases and index 0 to VMCS_ENUM's 0x2e (HIGH accesses
        // too), plus bits 15-31 alone, with the link pointer at the shadow and then
        // FFFFFFFF_FFFFFFFFH, L2's VMREAD/VMWRITE exits exactly when its bitmap bit is set
        // and otherwise gives L1's own flags and values on the shadow (error 12 where L1's
        // access fails): 3,042 fields, no mismatch. L1's VMCS has 169 encodings: the fields
        // of the controls L0 offers (`VmxCaps::has_field`). Bare Bochs: 3,426 fields (its
        // VMCS_ENUM is 0x34), 187 encodings (posted interrupts and virtual-interrupt
        // delivery among its features), no mismatch either. The L0 before gave L1 every
        // field of the SDM (214 encodings, VMCS_ENUM 0x36), offered or not.
        &[
            "vmx32i: VMCS shadowing",
            "vmx32i:   VMRESUME of the shadow VMCS: CF|ZF=0x00000001",
            "vmx32i:   exit reason=0x00000017 qual=0x00000000 info=0x00000418 len=0x00000003",
            "vmx32i:   exit reason=0x00000019 qual=0x00000000 info=0x00000418 len=0x00000003",
            "vmx32i:   exit reason=0x00000017 qual=0x00000000 info=0x00000418 len=0x00000003",
            "vmx32i:   exit reason=0x00000017 qual=0x00000000 info=0x40000418 len=0x00000003",
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   guest: GUEST_RIP=0x12345678 flags=0x00000000 ES selector to memory=0x00000055 unsupported field flags=0x00000040",
            "vmx32i:   VM-instruction error=0x0000000c shadow GUEST_RIP=0x0000abcd GUEST_ES_BASE=0x77777777",
            "vmx32i:   exit reason=0x80000021 qual=0x00000004",
            "vmx32i:   exit reason=0x80000021 qual=0x00000004",
            "vmx32i:   VMREAD bitmap+0x10: VMfailValid, error=0x00000007",
            "vmx32i:   shadow sweep: fields=0x00000be2 supported=0x000000a9 mismatches=0x00000000",
            "vmx32i: APIC-access page, TPR shadow VTPR 0x20",
        ],
        // Virtualize APIC accesses (SDM 29.4), offered since vmcs02 uses L1's own
        // APIC-access page, with the TPR shadow: L2's reads and writes of the TPR (offset
        // 0x80) are virtualized on VTPR without an exit (0x20, then 0x30 after writing
        // 0x30); a read of offset 0x20 and a write of the EOI register (0xb0) are
        // APIC-access exits to L1 (44, qualification offset | access type << 12: 0 linear
        // read, 1 linear write); an APIC-access address with bits 11:0 set is VMfailValid 7.
        // As on bare Bochs. On the L0 before the control was offered: "vmx32i: APIC-access
        // page: not offered".
        &[
            "vmx32i: APIC-access page, TPR shadow VTPR 0x20",
            "vmx32i:   exit reason=0x0000002c qual=0x00000020",
            "vmx32i:   exit reason=0x0000002c qual=0x000010b0",
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   guest read TPR=0x00000020 after writing 0x30=0x00000030 VTPR=0x00000030",
            "vmx32i:   APIC-access page+0x10: VMfailValid, error=0x00000007",
            "vmx32i: MSR lists",
        ],
        // MSR lists (SDM 26.4, 27.4, 27.6): L2 reads what the VM-entry MSR-load list gave it
        // (0x3333) and writes one more; the VM-exit MSR-store list saves L2's values, the
        // VM-exit MSR-load list gives L1 0x4444, and L1's SYSENTER_ESP is its host-state
        // field's 0. The store list's IA32_TSC is the TSC at L2's exit: within
        // TSC_STORE_BOUND (0x80) of L2's RDTSC right before its VMCALL (36 measured; 599
        // when L0 read the TSC as it performed the list). Then a load-list entry WRMSR refuses (IA32_PAT memory type 2, entry 2):
        // a VM-entry failure, reason 34 with bit 31, qualification 2, and the exit's load
        // list still runs (0x5555). Then entry 2 names IA32_FS_BASE, which no list loads:
        // the same failure, after entry 1 (KERNEL_GS_BASE 0x7777) was loaded, as on the
        // processor.
        &[
            "vmx32i: MSR lists: VM-entry load, VM-exit store and load",
            "vmx32i:   VMCALL, guest EDI=0x00003333",
            "vmx32i:   guest read KERNEL_GS_BASE=0x00003333 stored=0x00003334 stored=0x00002222",
            "vmx32i:   stored TSC - guest RDTSC below TSC_STORE_BOUND=0x00000001",
            "vmx32i:   guest SYSENTER_ESP=0x00002222 KERNEL_GS_BASE=0x00004444 SYSENTER_ESP=0x00000000",
            "vmx32i:   exit reason=0x80000022 qual=0x00000002 KERNEL_GS_BASE=0x00005555",
            "vmx32i:   exit reason=0x80000022 qual=0x00000002 KERNEL_GS_BASE=0x00007777",
            "vmx32i: IA32_TSC written",
        ],
        // WRMSR to IA32_TSC (SDM 18.17): L1's TSC takes the value and counts on (RDTSC's
        // high half 0x1234 after writing 0x1234_00000000); L2's WRMSR that L1 passes
        // through writes L1's TSC too (VMX non-root operation writes the TSC itself, not
        // offset): L1 reads on from 0x5678_00000000. As on bare Bochs. The L0 before dropped
        // both writes (high half 0x0 both times). Then L1 writes 0x9abc_00000000, and later
        // 0x7654_00000000, each time resuming L2 with no control changed: L2's RDTSC reads on
        // from each (the L0 before gave L2 0x9abc the second time: vmcs02's offset followed
        // L1's only at a control merge).
        &[
            "vmx32i: IA32_TSC written",
            "vmx32i:   TSC high half=0x00001234",
            "vmx32i:   VMCALL, guest EDI=0x00000000",
            "vmx32i:   TSC high half=0x00005678",
            "vmx32i:   VMCALL, guest EDI=0x00009abc",
            "vmx32i:   VMCALL, guest EDI=0x00007654",
            "vmx32i: done",
        ],
    ];
    for b in blocks {
        expect_block(&console, &b.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    }
    run.expect_absent(&["wanted by neither level", "outside its", "unknown I/O port"]);
}
