//! VM exits: reasons, the [`ExitInfo`] snapshot and the routing decision (SDM Vol. 3C ch. 28).
//!
//! L0 snapshots the exit-information fields of vmcs02 once into an [`ExitInfo`] value and
//! decides with two pure predicates (house style 6): [`routing::l0_wants_exit`] ("if L0 wants
//! the exit, it trumps L1's desires") and [`routing::l1_wants_exit`] (what vmcs12's controls
//! and bitmaps say). Everything L1 does not want, L0 handles as it would for L1 itself.

pub mod reasons;
pub mod routing;

pub use reasons::{EXIT_REASON_ENTRY_FAILURE, ExitCounters, ExitReason};
pub use routing::{ExitRoute, L0Intercepts, RoutingError, l0_wants_exit, l1_wants_exit, route};

use crate::vmcs::{Vmcs, VmcsField};

/// Interruption-information format shared by the VM-exit interruption-information,
/// IDT-vectoring information and VM-entry interruption-information fields (SDM 25.8.3,
/// 25.9.2, 25.9.3).
pub mod intr_info {
    /// Bits 7:0: vector.
    pub const VECTOR_MASK: u32 = 0xff;
    /// Bits 10:8: interruption type.
    pub const TYPE_MASK: u32 = 7 << 8;
    pub const TYPE_EXTERNAL_INTERRUPT: u32 = 0 << 8;
    pub const TYPE_NMI: u32 = 2 << 8;
    pub const TYPE_HARD_EXCEPTION: u32 = 3 << 8;
    pub const TYPE_SOFT_INTERRUPT: u32 = 4 << 8;
    pub const TYPE_PRIV_SOFT_EXCEPTION: u32 = 5 << 8;
    pub const TYPE_SOFT_EXCEPTION: u32 = 6 << 8;
    pub const TYPE_OTHER_EVENT: u32 = 7 << 8;
    /// Bit 11: an error code is delivered/valid.
    pub const DELIVER_ERROR_CODE: u32 = 1 << 11;
    /// Bit 12 (exit and IDT-vectoring info): NMI unblocking due to IRET.
    pub const NMI_UNBLOCKING: u32 = 1 << 12;
    /// Bit 31: the field is valid.
    pub const VALID: u32 = 1 << 31;

    /// Vector of an interruption-information value.
    pub const fn vector(info: u32) -> u8 {
        (info & VECTOR_MASK) as u8
    }

    /// Type bits (still shifted) of an interruption-information value.
    pub const fn kind(info: u32) -> u32 {
        info & TYPE_MASK
    }
}

/// Exception vectors used by routing and entry checks.
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const UD: u8 = 6;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const CP: u8 = 21;
}

/// The exit-information fields of one VM exit, read once (SDM 25.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Full exit-reason field (basic reason in bits 15:0, entry failure in bit 31).
    pub reason: u32,
    pub qualification: u64,
    pub instruction_len: u32,
    pub instruction_info: u32,
    /// VM-exit interruption information.
    pub intr_info: u32,
    /// VM-exit interruption error code.
    pub intr_error_code: u32,
    pub idt_vectoring_info: u32,
    pub idt_vectoring_error_code: u32,
    pub guest_physical_address: u64,
    pub guest_linear_address: u64,
}

/// The exit-information fields besides the reason that an exit reason defines (SDM Vol. 3C
/// 28.2.1-28.2.5), as [`ExitInfo::read`] reads them: the exit qualification, the
/// instruction length, the VMX instruction information, or all of them.
pub mod defined {
    pub const QUALIFICATION: u8 = 1;
    pub const INSTRUCTION_LEN: u8 = 2;
    pub const INSTRUCTION_INFO: u8 = 4;
    /// The guest-linear address and instruction information, when the qualification says
    /// the I/O instruction is a string one (INS/OUTS; SDM 28.2.5).
    pub const STRING_IO_OPERANDS: u8 = 8;
    /// The exit qualification only when the instruction information says the operand is in
    /// memory (bit 10 clear): VMREAD/VMWRITE with a register operand have no displacement,
    /// and the qualification is then zero (SDM 28.2.1).
    pub const MEMORY_QUALIFICATION: u8 = 16;
    /// Every field (interruption and IDT-vectoring information, error codes, guest-physical
    /// and guest-linear address too).
    pub const ALL: u8 = 0xff;
}

/// Exit qualification bit 4 of an I/O exit: a string instruction (SDM Table 28-5).
const IO_STRING: u64 = 1 << 4;
/// VMX instruction information bit 10 of VMREAD/VMWRITE: the operand is a register.
const REGISTER_OPERAND: u32 = 1 << 10;

/// Which exit-information fields `reason` defines. Exits caused by executing an instruction
/// never happen during event delivery, so their IDT-vectoring (and VM-exit interruption)
/// information is invalid, and they report no guest-physical or guest-linear address: for
/// them only the instruction length, the qualification where 28.2.1 defines one and, for
/// the instructions with an operand, the instruction information are read. I/O reads the
/// qualification and length, and for INS/OUTS also the instruction information and
/// guest-linear address. Every other reason (exceptions, interrupts, EPT violations, LMSW
/// with a memory operand, entry failures, unknown reasons) reads every field.
#[inline(always)]
pub const fn defined_fields(reason: u32) -> u8 {
    if reason & EXIT_REASON_ENTRY_FAILURE != 0 || reason as u16 as usize >= DEFINED.len() {
        return defined::ALL;
    }
    DEFINED[reason as u16 as usize]
}

/// [`defined_fields`] per basic reason number, so the exit path looks it up instead of
/// matching (one load).
const DEFINED: [u8; reasons::EXIT_REASON_SLOTS] = {
    let mut t = [defined::ALL; reasons::EXIT_REASON_SLOTS];
    let mut i = 0;
    while i < t.len() {
        t[i] = defined_by_reason(i as u16);
        i += 1;
    }
    t
};

const fn defined_by_reason(basic: u16) -> u8 {
    use ExitReason::*;
    use defined::*;
    match ExitReason::from_basic(basic) {
        // No exit qualification (28.2.1 defines none for them; it reads as zero).
        Some(
            Cpuid | Getsec | Hlt | Invd | Rdpmc | Rdtsc | Rdtscp | Rsm | Vmcall | Vmlaunch
            | Vmresume | Vmxoff | Rdmsr | Wrmsr | Pause | Wbinvd | Xsetbv,
        ) => INSTRUCTION_LEN,
        Some(Mwait | Monitor | DrAccess | Invlpg) => QUALIFICATION | INSTRUCTION_LEN,
        Some(Vmread | Vmwrite) => MEMORY_QUALIFICATION | INSTRUCTION_LEN | INSTRUCTION_INFO,
        Some(
            Vmclear | Vmptrld | Vmptrst | Vmxon | Invept | Invvpid | Invpcid | Rdrand | Rdseed
            | GdtrIdtrAccess | LdtrTrAccess | Xsaves | Xrstors,
        ) => QUALIFICATION | INSTRUCTION_LEN | INSTRUCTION_INFO,
        Some(IoInstruction) => QUALIFICATION | INSTRUCTION_LEN | STRING_IO_OPERANDS,
        _ => ALL,
    }
}

impl ExitInfo {
    /// Snapshots the exit-information fields of `vmcs` that the exit's reason defines
    /// ([`defined_fields`]: 2 to 4 VMREADs for instruction exits, 10 for the others); the
    /// fields it leaves undefined read as zero (valid bits clear).
    #[inline(always)]
    pub fn read(vmcs: &impl Vmcs) -> Self {
        let reason = vmcs.read(VmcsField::VmExitReason) as u32;
        let fields = defined_fields(reason);
        if fields != defined::ALL {
            let has = |f: u8| fields & f != 0;
            let mut info = ExitInfo {
                reason,
                qualification: if has(defined::QUALIFICATION) {
                    vmcs.read(VmcsField::ExitQualification)
                } else {
                    0
                },
                instruction_len: if has(defined::INSTRUCTION_LEN) {
                    vmcs.read(VmcsField::VmExitInstructionLen) as u32
                } else {
                    0
                },
                instruction_info: if has(defined::INSTRUCTION_INFO) {
                    vmcs.read(VmcsField::VmxInstructionInfo) as u32
                } else {
                    0
                },
                ..ExitInfo::default()
            };
            if has(defined::MEMORY_QUALIFICATION) && info.instruction_info & REGISTER_OPERAND == 0 {
                info.qualification = vmcs.read(VmcsField::ExitQualification);
            }
            if has(defined::STRING_IO_OPERANDS) && info.qualification & IO_STRING != 0 {
                info.instruction_info = vmcs.read(VmcsField::VmxInstructionInfo) as u32;
                info.guest_linear_address = vmcs.read(VmcsField::GuestLinearAddress);
            }
            return info;
        }
        ExitInfo {
            reason,
            qualification: vmcs.read(VmcsField::ExitQualification),
            instruction_len: vmcs.read(VmcsField::VmExitInstructionLen) as u32,
            instruction_info: vmcs.read(VmcsField::VmxInstructionInfo) as u32,
            intr_info: vmcs.read(VmcsField::VmExitInterruptionInfo) as u32,
            intr_error_code: vmcs.read(VmcsField::VmExitInterruptionErrorCode) as u32,
            idt_vectoring_info: vmcs.read(VmcsField::IdtVectoringInfo) as u32,
            idt_vectoring_error_code: vmcs.read(VmcsField::IdtVectoringErrorCode) as u32,
            guest_physical_address: vmcs.read(VmcsField::GuestPhysicalAddress),
            guest_linear_address: vmcs.read(VmcsField::GuestLinearAddress),
        }
    }

    /// Bits 15:0 of the exit reason.
    #[inline]
    pub const fn basic(&self) -> u16 {
        self.reason as u16
    }

    /// The basic reason, or `None` if the number is undefined.
    #[inline]
    pub const fn exit_reason(&self) -> Option<ExitReason> {
        ExitReason::from_basic(self.basic())
    }

    /// Bit 31: the exit is a VM-entry failure.
    #[inline]
    pub const fn is_entry_failure(&self) -> bool {
        self.reason & EXIT_REASON_ENTRY_FAILURE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcs::FakeVmcs;

    fn vmcs_with(reason: u32) -> FakeVmcs {
        let mut v = FakeVmcs::new();
        for (i, f) in [
            VmcsField::ExitQualification,
            VmcsField::VmExitInstructionLen,
            VmcsField::VmxInstructionInfo,
            VmcsField::VmExitInterruptionInfo,
            VmcsField::VmExitInterruptionErrorCode,
            VmcsField::IdtVectoringInfo,
            VmcsField::IdtVectoringErrorCode,
            VmcsField::GuestPhysicalAddress,
            VmcsField::GuestLinearAddress,
        ]
        .into_iter()
        .enumerate()
        {
            v.poke(f, 0x8000_0000 | (i as u64 + 1));
        }
        v.poke(VmcsField::VmExitReason, reason.into());
        v
    }

    #[test]
    fn instruction_exits_read_only_their_fields() {
        let v = vmcs_with(10);
        v.clear_log();
        let e = ExitInfo::read(&v);
        assert_eq!(v.log().len(), 2, "CPUID: reason and length");
        assert_eq!((e.reason, e.instruction_len), (10, 0x8000_0002));
        assert_eq!((e.intr_info, e.idt_vectoring_info, e.guest_linear_address), (0, 0, 0));
        let e = ExitInfo::read(&vmcs_with(23));
        assert_eq!(e.instruction_info, 0x8000_0003, "VMREAD has an operand");
        assert_eq!(e.qualification, 0x8000_0001, "in memory: its displacement");
        assert_eq!(e.idt_vectoring_info, 0);
        // A register operand has no displacement: the qualification is zero, not read.
        let mut v = vmcs_with(25);
        v.write(VmcsField::VmxInstructionInfo, 1 << 10);
        v.clear_log();
        let e = ExitInfo::read(&v);
        assert_eq!(v.log().len(), 3, "VMWRITE reg: reason, length, instruction information");
        assert_eq!((e.qualification, e.instruction_info), (0, 1 << 10));
    }

    #[test]
    fn io_exits_read_string_operands_only_for_ins_outs() {
        let mut v = vmcs_with(30);
        v.write(VmcsField::ExitQualification, 0x80 << 16); // OUT to port 0x80
        v.clear_log();
        let e = ExitInfo::read(&v);
        assert_eq!(v.log().len(), 3, "reason, qualification, length");
        assert_eq!((e.guest_linear_address, e.instruction_info, e.idt_vectoring_info), (0, 0, 0));
        v.write(VmcsField::ExitQualification, 0x80 << 16 | 1 << 4); // OUTS
        let e = ExitInfo::read(&v);
        assert_eq!((e.guest_linear_address, e.instruction_info), (0x8000_0009, 0x8000_0003));
    }

    #[test]
    fn other_exits_read_everything() {
        // Exceptions, EPT violations, CR access (LMSW's linear address), task switches,
        // entry failures and undefined reasons may carry any field.
        for reason in [0, 1, 9, 28, 48, 49, 2, 33 | EXIT_REASON_ENTRY_FAILURE, 10 | 1 << 31, 200] {
            let v = vmcs_with(reason);
            let e = ExitInfo::read(&v);
            assert_eq!(defined_fields(reason), defined::ALL, "reason {reason:#x}");
            assert_eq!(e.guest_linear_address, 0x8000_0009, "reason {reason:#x}");
            assert_eq!(e.idt_vectoring_info, 0x8000_0006, "reason {reason:#x}");
        }
    }
}

/// The interruption-information layout and the fields each exit defines, with the SDM's
/// numbers written out (cargo-mutants survivors: constants checked only against themselves).
#[cfg(test)]
mod sdm_tests {
    use super::*;
    use crate::vmcs::FakeVmcs;

    /// A VMCS whose exit-information fields all hold distinct nonzero values.
    fn exit_vmcs(reason: u32) -> FakeVmcs {
        let mut v = FakeVmcs::new();
        v.poke(VmcsField::ExitQualification, 0x11);
        v.poke(VmcsField::VmExitInstructionLen, 3);
        v.poke(VmcsField::VmxInstructionInfo, 0x33);
        v.poke(VmcsField::VmExitInterruptionInfo, 0x8000_0b0e);
        v.poke(VmcsField::VmExitInterruptionErrorCode, 0x55);
        v.poke(VmcsField::IdtVectoringInfo, 0x8000_0300);
        v.poke(VmcsField::IdtVectoringErrorCode, 0x77);
        v.poke(VmcsField::GuestPhysicalAddress, 0x8800);
        v.poke(VmcsField::GuestLinearAddress, 0x9900);
        v.poke(VmcsField::VmExitReason, reason.into());
        v
    }

    #[test]
    fn interruption_information_format_of_table_25_17() {
        // SDM 25.8.3 / 25.9.2: vector 7:0, type 10:8, error code valid 11, NMI unblocking
        // due to IRET 12, valid 31.
        assert_eq!(intr_info::VECTOR_MASK, 0xff);
        assert_eq!(intr_info::TYPE_MASK, 0x700);
        assert_eq!(intr_info::TYPE_EXTERNAL_INTERRUPT, 0);
        assert_eq!(intr_info::TYPE_NMI, 0x200);
        assert_eq!(intr_info::TYPE_HARD_EXCEPTION, 0x300);
        assert_eq!(intr_info::TYPE_SOFT_INTERRUPT, 0x400);
        assert_eq!(intr_info::TYPE_PRIV_SOFT_EXCEPTION, 0x500);
        assert_eq!(intr_info::TYPE_SOFT_EXCEPTION, 0x600);
        assert_eq!(intr_info::TYPE_OTHER_EVENT, 0x700);
        assert_eq!(intr_info::DELIVER_ERROR_CODE, 0x800);
        assert_eq!(intr_info::NMI_UNBLOCKING, 0x1000);
        assert_eq!(intr_info::VALID, 0x8000_0000);
        // A #PF with an error code, as a processor reports it.
        let pf = 0x8000_0b0e;
        assert_eq!(intr_info::vector(pf), 14);
        assert_eq!(intr_info::kind(pf), 0x300);
        assert_eq!(intr_info::kind(0x8000_0702), 0x700, "type 7 keeps all three type bits");
    }

    #[test]
    fn qualification_and_length_only_for_mwait_monitor_mov_dr_invlpg() {
        // MWAIT 36, MONITOR 39, MOV DR 29, INVLPG 14: SDM 28.2.1 defines a qualification,
        // and they have no VMX instruction information.
        for reason in [36, 39, 29, 14] {
            let v = exit_vmcs(reason);
            let e = ExitInfo::read(&v);
            assert_eq!(v.log().len(), 3, "reason {reason}: reason, qualification, length");
            assert_eq!((e.qualification, e.instruction_len), (0x11, 3), "reason {reason}");
            assert_eq!((e.instruction_info, e.intr_info, e.idt_vectoring_info), (0, 0, 0));
        }
    }

    #[test]
    fn instruction_information_for_the_instructions_with_an_operand() {
        // VMCLEAR 19, VMPTRLD 21, VMPTRST 22, VMXON 27, INVEPT 50, INVVPID 53, INVPCID 58,
        // RDRAND 57, RDSEED 61, GDTR/IDTR 46, LDTR/TR 47, XSAVES 63, XRSTORS 64 (SDM 28.2.5).
        for reason in [19, 21, 22, 27, 50, 53, 58, 57, 61, 46, 47, 63, 64] {
            let v = exit_vmcs(reason);
            let e = ExitInfo::read(&v);
            assert_eq!(v.log().len(), 4, "reason {reason}");
            assert_eq!(
                (e.qualification, e.instruction_len, e.instruction_info),
                (0x11, 3, 0x33),
                "reason {reason}"
            );
            assert_eq!((e.intr_info, e.idt_vectoring_info, e.guest_physical_address), (0, 0, 0));
        }
    }

    #[test]
    fn entry_failure_is_bit_31_of_the_exit_reason() {
        // SDM 25.9.1: bit 31 set for a VM-entry failure, whatever the basic reason.
        let failed = |reason: u32| ExitInfo { reason, ..ExitInfo::default() }.is_entry_failure();
        assert!(failed(0x8000_0021), "33, invalid guest state");
        assert!(failed(0x8000_0022), "34, MSR loading");
        assert!(failed(0x8000_0000));
        assert!(!failed(33), "reason 33 without bit 31");
        assert!(!failed(0), "an exception exit");
        assert!(!failed(0x7fff_ffff), "every bit but 31");
        let e = ExitInfo::read(&exit_vmcs(0x8000_0021));
        assert!(e.is_entry_failure());
        assert_eq!((e.basic(), e.exit_reason()), (33, Some(ExitReason::EntryFailGuestState)));
    }
}
