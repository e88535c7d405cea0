//! The VMX instructions L1 executes, emulated by L0 (SDM Vol. 2 "VMX Instruction Reference";
//! Vol. 3C 31.2-31.4 for the conventions and error numbers, 26.1 for VMLAUNCH/VMRESUME).
//!
//! [`NestedVmx`] is L1's VMX state as L0 keeps it: VMX operation on/off, the VMXON pointer,
//! the current-VMCS pointer and a cached copy of the current vmcs12 with its dirty set.
//! Each instruction follows its SDM pseudocode in order — #UD, #GP(0), VMfailInvalid,
//! VMfailValid(n) — and returns a [`VmxResult`]; the image applies it (RFLAGS via
//! [`VmxResult::apply_rflags`], RIP, exception injection, or entering L2).

use crate::arch::{cr0, cr4, efer, rflags};
use core::mem::size_of;

use super::operand::{self, InstrInfo, MemOperand, Operand, Segment, SegmentCache};
use super::shadow12::InMemoryVmcs;
use super::{Exception, VmInstructionError, VmxResult};
use crate::addr::{L1Gpa, fits_phys_width};
use crate::caps::{VmxCaps, feature_control};
use crate::exits::{ExitInfo, ExitReason};
use crate::guest::{GuestMemory, GuestRegs};
use crate::vmcs::{
    Access, DirtySet, LAUNCH_STATE_OFFSET, LaunchState, VMCS12_REVISION, Vmcs, Vmcs12, VmcsError,
};
/// Bit 31 of a VMCS region's first word: a shadow VMCS (SDM Vol. 3C 25.2, 25.10).
pub const SHADOW_VMCS_INDICATOR: u32 = 1 << 31;

/// IA32_FEATURE_CONTROL: locked, with VMX outside SMX enabled.
const FEATURE_CONTROL_LOCKED_VMX: u64 = feature_control::LOCK | feature_control::VMX_OUTSIDE_SMX;

/// L1's processor state that the VMX instruction preconditions look at (from vmcs01's guest
/// state and L0's emulated MSRs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Cpu {
    pub cpl: u8,
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    pub rflags: u64,
    /// CS.L (64-bit code segment).
    pub cs_l: bool,
    /// Blocking by MOV SS in L1's interruptibility state.
    pub mov_ss_blocking: bool,
    /// IA32_FEATURE_CONTROL as L0 emulates it for L1.
    pub feature_control: u64,
}

impl L1Cpu {
    /// A 64-bit ring-0 L1 with VMX enabled (a convenient starting point).
    pub const fn long_mode_ring0() -> Self {
        L1Cpu {
            cpl: 0,
            cr0: cr0::PG | cr0::NE | cr0::ET | cr0::PE,
            cr4: cr4::VMXE | cr4::PAE,
            efer: efer::LME | efer::LMA,
            rflags: rflags::FIXED_1,
            cs_l: true,
            mov_ss_blocking: false,
            feature_control: FEATURE_CONTROL_LOCKED_VMX,
        }
    }

    /// IA-32e mode (EFER.LMA).
    pub const fn is_ia32e(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// 64-bit mode: IA-32e mode with CS.L = 1.
    pub const fn is_64bit_mode(&self) -> bool {
        self.is_ia32e() && self.cs_l
    }

    /// The "(RFLAGS.VM = 1) or (IA32_EFER.LMA = 1 and CS.L = 0)" #UD condition shared by
    /// every VMX instruction.
    const fn bad_mode(&self) -> bool {
        self.rflags & rflags::VM != 0 || (self.is_ia32e() && !self.cs_l)
    }
}

/// What an emulated VMX instruction needs from L1 besides [`L1Cpu`]: registers, physical
/// memory (VMCS regions, bitmaps, MSR lists), memory operands by linear address, and L0's
/// MSR policy for VM-entry MSR-load lists.
pub trait L1Access: GuestRegs + GuestMemory {
    /// Base of a segment register of L1.
    fn segment_base(&self, seg: Segment) -> u64;
    /// The segment register's base, limit and access rights (for the limit and type checks
    /// outside 64-bit mode); flat 4 GiB at [`L1Access::segment_base`] unless overridden.
    fn segment(&self, seg: Segment) -> SegmentCache {
        SegmentCache::flat(seg, self.segment_base(seg))
    }
    /// Reads a memory operand whose segmentation checks passed ([`operand::check_access`]):
    /// the image walks L1's page tables; a failure is the exception to inject, e.g.
    /// [`Exception::page_fault`] with the linear address and error code.
    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception>;
    /// Writes a memory operand.
    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception>;
}

/// Reads a memory operand after the segmentation checks (SDM Vol. 3A 5.3, 5.4.1; 64-bit mode
/// canonical checks), so a limit or type violation is #GP(0)/#SS(0) and a paging failure the
/// image's #PF.
pub(super) fn read_mem(
    l1: &mut impl L1Access,
    cpu: &L1Cpu,
    m: &MemOperand,
    buf: &mut [u8],
) -> Result<(), Exception> {
    operand::check_access(m, buf.len() as u64, false, cpu, &l1.segment(m.segment))?;
    l1.read_operand(m, buf)
}

/// Writes a memory operand after the segmentation checks (see [`read_mem`]).
pub(super) fn write_mem(
    l1: &mut impl L1Access,
    cpu: &L1Cpu,
    m: &MemOperand,
    data: &[u8],
) -> Result<(), Exception> {
    operand::check_access(m, data.len() as u64, true, cpu, &l1.segment(m.segment))?;
    l1.write_operand(m, data)
}

/// TLB/EPT invalidation an INVEPT/INVVPID asks L0 to perform (on EPT02 and vpid02).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Drop the EPT02 shadowing EPT12 rooted at `eptp`.
    EptSingle { eptp: u64 },
    /// Drop every EPT02.
    EptAll,
    /// INVVPID type 0.
    VpidAddress { vpid12: u16, address: u64 },
    /// INVVPID type 1.
    VpidSingle { vpid12: u16 },
    /// INVVPID type 2.
    VpidAll,
    /// INVVPID type 3.
    VpidSingleRetainingGlobals { vpid12: u16 },
}

/// Outcome of VMFUNC executed by L2 (SDM 25.5.6, VMFUNC reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmfuncOutcome {
    /// EPTP switching succeeded: vmcs12's EPT pointer is now `eptp`; L0 writes vmcs02's EPTP
    /// directly (the EPT02 for `eptp` from [`crate::ept::shadow::ShadowEpt::root_for`]) and
    /// advances L2's RIP; no merge is needed.
    Switched { eptp: u64 },
    /// The function or index is invalid: reflect the VMFUNC exit (reason 59) to L1.
    Reflect,
}

/// L1's VMX state as L0 emulates it.
#[derive(Clone, Debug)]
pub struct NestedVmx {
    /// The capability MSRs L1 sees ([`super::l1_caps()`]).
    pub caps: VmxCaps,
    /// The fields of L1's VMCS ([`VmxCaps::has_field`] of `caps`, computed once by
    /// [`NestedVmx::new`] and [`NestedVmx::set_caps`]: L1's VMREAD/VMWRITE that exit test it).
    pub fields: DirtySet,
    /// L1's physical-address width (CPUID.80000008H:EAX bits 7:0 as L0 reports it).
    pub maxphyaddr: u8,
    /// In VMX operation (after VMXON, before VMXOFF).
    pub vmxon: bool,
    pub vmxon_ptr: L1Gpa,
    /// The current-VMCS pointer (`None` is FFFFFFFF_FFFFFFFFH).
    pub current: Option<L1Gpa>,
    /// Cached copy of the current vmcs12 (authoritative while `current` is `Some`).
    pub vmcs12: Vmcs12,
    /// Fields of `vmcs12` changed since the last merge into vmcs02.
    pub dirty: DirtySet,
    /// vmcs12's [`GUEST_RARE`](super::sync::GUEST_RARE) fields are stale: their values are
    /// in vmcs02 (set by L0 after a [`SyncScope::Hot`](super::sync::SyncScope::Hot) sync).
    /// While set, none of them is dirty; L0 asks [`NestedVmx::needs_rare_sync`] before each
    /// emulated instruction and runs [`sync_vmcs12_rare`](super::sync::sync_vmcs12_rare)
    /// (and clears this) when it says so.
    pub rare_stale: bool,
    /// The control and host-state checks passed at the last VM entry with this key, and
    /// [`NestedVmx::dirty`] holds every field L1 changed since (see `launch.rs`).
    pub entry_checked: Option<EntryChecked>,
    /// The VMCS L1 made current before the current one, while it has not cleared it: L0
    /// keeps its data (an active VMCS's data may stay cached in the processor, SDM 25.11.1;
    /// its memory is defined again only after VMCLEAR), so that switching back to it, as an
    /// L1 that keeps a shadow VMCS for its own guest does on every exit it reflects
    /// (VMPTRLD of the shadow, VMWRITEs, VMPTRLD back), costs no copy through L1 memory.
    pub parked: Option<Parked>,
    /// The VMCS whose last VM entry passed its checks: the one vmcs02 was last merged from,
    /// so that a VMCS switched back to keeps its dirty set only if vmcs02 still holds it.
    pub merged: Option<L1Gpa>,
    /// The last VMPTRLD that changed the current VMCS took it from [`NestedVmx::parked`]
    /// (rather than from L1 memory): what L0 built for it while it was current is still
    /// good (the image's hardware shadow VMCS).
    pub unparked: bool,
}

/// An active VMCS that is not current ([`NestedVmx::parked`]), with what L0 tracks of it.
#[derive(Clone, Debug)]
pub struct Parked {
    pub ptr: L1Gpa,
    pub vmcs12: Vmcs12,
    pub dirty: DirtySet,
    pub entry_checked: Option<EntryChecked>,
}

/// What the VM-entry control and host-state checks read besides the fields L1 changes
/// (which [`NestedVmx::dirty`] tracks): the VM-entry controls, whose "IA-32e mode guest" bit
/// L0 updates at each reflected exit, and L1's own IA-32e mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryChecked {
    pub vm_entry_controls: u32,
    pub l1_ia32e: bool,
}

const VMCS12_BYTES: usize = size_of::<Vmcs12>();

impl NestedVmx {
    /// L1 not yet in VMX operation.
    pub fn new(caps: VmxCaps, maxphyaddr: u8) -> Self {
        NestedVmx {
            caps,
            fields: fields_of(&caps),
            maxphyaddr,
            vmxon: false,
            vmxon_ptr: L1Gpa(0),
            current: None,
            vmcs12: Vmcs12::zeroed(VMCS12_REVISION),
            dirty: DirtySet::all(),
            rare_stale: false,
            entry_checked: None,
            parked: None,
            merged: None,
            unparked: false,
        }
    }

    /// Must vmcs12's rare guest fields be synced from vmcs02 before emulating this VMX
    /// instruction of L1? Yes if they are stale and the instruction reads or writes one
    /// (VMREAD/VMWRITE of a rare field: L1 may access any field at any time and must see
    /// L2's state), writes vmcs12 back to L1 memory (VMPTRLD, VMCLEAR, VMXOFF), or enters
    /// L2 after L1 changed a field the rare entry checks depend on ([`super::RARE_CHECK_INPUTS`]).
    #[inline]
    pub fn needs_rare_sync(&self, exit: &ExitInfo, cpu: &L1Cpu, l1: &impl GuestRegs) -> bool {
        use ExitReason::*;
        if !self.rare_stale {
            return false;
        }
        match exit.exit_reason() {
            Some(Vmptrld | Vmclear | Vmxoff) => true,
            Some(Vmread | Vmwrite) => {
                // Only guest-state fields (encoding bits 11:10 = 2) can be rare.
                let encoding = self.field_encoding(InstrInfo(exit.instruction_info), cpu, l1);
                (encoding >> 10) & 3 == 2
                    && crate::vmcs::VmcsField::from_encoding(encoding)
                        .is_some_and(|(f, _)| super::sync::GUEST_RARE_SET.contains(f))
            }
            Some(Vmlaunch | Vmresume) => self.dirty.intersects(&super::RARE_CHECK_INPUTS),
            _ => false,
        }
    }

    /// The field a VMREAD/VMWRITE exit names (from the register operand), if it is one.
    pub fn accessed_field(
        &self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &impl GuestRegs,
    ) -> Option<crate::vmcs::VmcsField> {
        let encoding = self.field_encoding(InstrInfo(exit.instruction_info), cpu, l1);
        crate::vmcs::VmcsField::from_encoding(encoding).map(|(f, _)| f)
    }

    /// Dispatches an L1 exit for a VMX instruction. Returns `None` for reasons that are not
    /// VMX instructions, and for VMCALL outside VMX operation (L0's own hypercall).
    pub fn emulate(
        &mut self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> Option<(VmxResult, Option<Flush>)> {
        use ExitReason::*;
        let r = match exit.exit_reason()? {
            Vmxon => self.vmxon(exit, cpu, l1),
            Vmxoff => self.vmxoff(cpu, l1),
            Vmclear => self.vmclear(exit, cpu, l1),
            Vmptrld => self.vmptrld(exit, cpu, l1),
            Vmptrst => self.vmptrst(exit, cpu, l1),
            Vmread => self.vmread(exit, cpu, l1),
            Vmwrite => self.vmwrite(exit, cpu, l1),
            Vmlaunch => self.vmlaunch(true, cpu, l1),
            Vmresume => self.vmlaunch(false, cpu, l1),
            Invept => return Some(self.invept(exit, cpu, l1)),
            Invvpid => return Some(self.invvpid(exit, cpu, l1)),
            Vmcall => self.vmcall(cpu)?,
            _ => return None,
        };
        Some((r, None))
    }

    /// VMfail (SDM 31.2): VMfailValid with the error stored in the current VMCS, or
    /// VMfailInvalid without one.
    pub(super) fn fail(&mut self, e: VmInstructionError) -> VmxResult {
        if self.current.is_some() {
            self.vmcs12.vm_instruction_error = e.number();
            VmxResult::FailValid(e)
        } else {
            VmxResult::FailInvalid
        }
    }

    /// #UD / #GP(0) preconditions common to the instructions valid in VMX root operation.
    pub(super) fn root_checks(&self, cpu: &L1Cpu) -> Result<(), Exception> {
        if !self.vmxon || cpu.bad_mode() {
            Err(Exception::UD)
        } else if cpu.cpl > 0 {
            Err(Exception::GP0)
        } else {
            Ok(())
        }
    }

    pub(super) fn mem_operand(
        &self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &impl L1Access,
    ) -> Result<MemOperand, Exception> {
        let info = InstrInfo(exit.instruction_info);
        match operand::decode(info, exit.qualification, false, cpu, l1, |s| l1.segment_base(s))? {
            Operand::Memory(m) => Ok(m),
            Operand::Register(_) => Err(Exception::UD),
        }
    }

    pub(super) fn read_u64_operand(
        &self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> Result<u64, Exception> {
        let m = self.mem_operand(exit, cpu, l1)?;
        let mut b = [0u8; 8];
        read_mem(l1, cpu, &m, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub(super) fn valid_region(&self, addr: u64) -> bool {
        addr & 0xfff == 0 && fits_phys_width(addr, self.maxphyaddr)
    }

    /// Writes the cached vmcs12 back to L1 memory and forgets it (Linux
    /// `nested_release_vmcs12`). A write L1's memory cannot take is dropped: the region is
    /// outside L1's RAM, and no later VMPTRLD can load it either.
    /// The caller has synced vmcs12's rare fields ([`NestedVmx::needs_rare_sync`]).
    pub fn release_current(&mut self, mem: &mut impl GuestMemory) {
        self.rare_stale = false;
        self.entry_checked = None;
        if let Some(ptr) = self.current.take() {
            let mut buf = [0u8; VMCS12_BYTES];
            self.vmcs12.to_bytes(&mut buf);
            let _ = mem.write(ptr, &buf);
        }
    }

    /// Writes the parked VMCS back to L1 memory and forgets it (see [`NestedVmx::parked`]).
    pub fn release_parked(&mut self, mem: &mut impl GuestMemory) {
        if let Some(p) = self.parked.take() {
            let mut buf = [0u8; VMCS12_BYTES];
            p.vmcs12.to_bytes(&mut buf);
            let _ = mem.write(p.ptr, &buf);
        }
    }

    /// VMXON (SDM Vol. 2, VMXON).
    pub fn vmxon(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if cpu.cr0 & 1 == 0 || cpu.cr4 & cr4::VMXE == 0 || cpu.bad_mode() {
            return VmxResult::Fault(Exception::UD);
        }
        if self.vmxon {
            if cpu.cpl > 0 {
                return VmxResult::Fault(Exception::GP0);
            }
            return self.fail(VmInstructionError::VmxonInVmxRoot);
        }
        if cpu.cpl > 0
            || !self.caps.cr0_fixed().verify(cpu.cr0)
            || !self.caps.cr4_fixed().verify(cpu.cr4)
            || cpu.feature_control & FEATURE_CONTROL_LOCKED_VMX != FEATURE_CONTROL_LOCKED_VMX
        {
            return VmxResult::Fault(Exception::GP0);
        }
        let addr = match self.read_u64_operand(exit, cpu, l1) {
            Ok(a) => a,
            Err(e) => return VmxResult::Fault(e),
        };
        if !self.valid_region(addr) {
            return VmxResult::FailInvalid;
        }
        match l1.read_u32(L1Gpa(addr)) {
            Ok(rev) if rev == self.caps.revision_id() => {}
            _ => return VmxResult::FailInvalid,
        }
        self.vmxon = true;
        self.vmxon_ptr = L1Gpa(addr);
        self.current = None;
        VmxResult::Succeed
    }

    /// VMXOFF (SDM Vol. 2, VMXOFF). The cached vmcs12 is written back first.
    pub fn vmxoff(&mut self, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        self.release_current(l1);
        self.release_parked(l1);
        self.vmxon = false;
        VmxResult::Succeed
    }

    /// VMCLEAR (SDM Vol. 2, VMCLEAR): errors 2 and 3; writes back the current vmcs12.
    pub fn vmclear(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        let addr = match self.read_u64_operand(exit, cpu, l1) {
            Ok(a) => a,
            Err(e) => return VmxResult::Fault(e),
        };
        if !self.valid_region(addr) {
            return self.fail(VmInstructionError::VmclearInvalidAddress);
        }
        if L1Gpa(addr) == self.vmxon_ptr {
            return self.fail(VmInstructionError::VmclearVmxonPointer);
        }
        if self.current == Some(L1Gpa(addr)) {
            self.vmcs12.launch_state = LaunchState::Clear as u32;
            self.release_current(l1);
        } else if let Some(p) = self.parked.as_mut().filter(|p| p.ptr == L1Gpa(addr)) {
            p.vmcs12.launch_state = LaunchState::Clear as u32;
            self.release_parked(l1);
        } else {
            let at = L1Gpa(addr + LAUNCH_STATE_OFFSET as u64);
            if l1.write_u32(at, LaunchState::Clear as u32).is_err() {
                return self.fail(VmInstructionError::VmclearInvalidAddress);
            }
        }
        VmxResult::Succeed
    }

    /// VMPTRLD (SDM Vol. 2, VMPTRLD): errors 9, 10, 11; loads the vmcs12 into the cache.
    pub fn vmptrld(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        let addr = match self.read_u64_operand(exit, cpu, l1) {
            Ok(a) => a,
            Err(e) => return VmxResult::Fault(e),
        };
        if !self.valid_region(addr) {
            return self.fail(VmInstructionError::VmptrldInvalidAddress);
        }
        if L1Gpa(addr) == self.vmxon_ptr {
            return self.fail(VmInstructionError::VmptrldVmxonPointer);
        }
        let Ok(rev) = l1.read_u32(L1Gpa(addr)) else {
            return self.fail(VmInstructionError::VmptrldInvalidAddress);
        };
        // Bit 31, the shadow-VMCS indicator, is allowed when L1 may use VMCS shadowing (a
        // shadow VMCS can be made current, read and written, but not entered: 26.1).
        let shadow_ok = self.caps.has_vmcs_shadowing();
        if rev & !SHADOW_VMCS_INDICATOR != self.caps.revision_id()
            || (rev & SHADOW_VMCS_INDICATOR != 0 && !shadow_ok)
        {
            return self.fail(VmInstructionError::VmptrldIncorrectRevision);
        }
        let ptr = L1Gpa(addr);
        if self.current == Some(ptr) {
            return VmxResult::Succeed;
        }
        if self.parked.as_ref().is_some_and(|p| p.ptr == ptr) {
            self.unpark(ptr);
            return VmxResult::Succeed;
        }
        let mut buf = [0u8; VMCS12_BYTES];
        if l1.read(ptr, &mut buf).is_err() {
            return self.fail(VmInstructionError::VmptrldInvalidAddress);
        }
        // The current VMCS stays active: parked (the one parked before goes back to memory).
        self.release_parked(l1);
        if let Some(cur) = self.current.take() {
            let vmcs12 = core::mem::replace(&mut self.vmcs12, Vmcs12::from_bytes(&buf));
            self.parked = Some(Parked {
                ptr: cur,
                vmcs12,
                dirty: self.dirty,
                entry_checked: self.entry_checked.take(),
            });
        } else {
            self.vmcs12 = Vmcs12::from_bytes(&buf);
        }
        self.rare_stale = false;
        self.entry_checked = None;
        self.current = Some(ptr);
        self.dirty = DirtySet::all();
        self.unparked = false;
        VmxResult::Succeed
    }

    /// Makes the parked VMCS `ptr` current again, parking the current one (if any) in its
    /// place, without a copy through L1 memory. Its dirty set comes back with it when vmcs02
    /// was last merged from it; otherwise every field is dirty.
    fn unpark(&mut self, ptr: L1Gpa) {
        let Some(mut p) = self.parked.take() else { return };
        core::mem::swap(&mut self.vmcs12, &mut p.vmcs12);
        let dirty = if self.merged == Some(ptr) { p.dirty } else { DirtySet::all() };
        let entry_checked = p.entry_checked;
        if let Some(cur) = self.current {
            p.ptr = cur;
            p.dirty = self.dirty;
            p.entry_checked = self.entry_checked;
            self.parked = Some(p);
        }
        self.current = Some(ptr);
        self.dirty = dirty;
        self.entry_checked = entry_checked;
        self.rare_stale = false;
        self.unparked = true;
    }

    /// VMPTRST (SDM Vol. 2, VMPTRST).
    pub fn vmptrst(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        let m = match self.mem_operand(exit, cpu, l1) {
            Ok(m) => m,
            Err(e) => return VmxResult::Fault(e),
        };
        let ptr = self.current.map_or(u64::MAX, |p| p.0);
        match write_mem(l1, cpu, &m, &ptr.to_le_bytes()) {
            Ok(()) => VmxResult::Succeed,
            Err(e) => VmxResult::Fault(e),
        }
    }

    #[inline]
    fn field_encoding(&self, info: InstrInfo, cpu: &L1Cpu, l1: &impl GuestRegs) -> u64 {
        let v = l1.gpr(info.reg2());
        if cpu.is_64bit_mode() { v } else { v & 0xffff_ffff }
    }

    /// VMREAD (SDM Vol. 2, VMREAD): error 12.
    pub fn vmread(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        if self.current.is_none() {
            return VmxResult::FailInvalid;
        }
        self.vmread_on(Target::Current, exit, cpu, l1)
    }

    /// VMREAD from `target` after the preconditions: the operand, error 12, the result.
    pub(super) fn vmread_on(
        &mut self,
        target: Target,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> VmxResult {
        let info = InstrInfo(exit.instruction_info);
        let op = match operand::decode(info, exit.qualification, true, cpu, l1, |s| {
            l1.segment_base(s)
        }) {
            Ok(op) => op,
            Err(e) => return VmxResult::Fault(e),
        };
        let encoding = self.field_encoding(info, cpu, l1);
        let Some((field, access)) = self.existing_field(encoding) else {
            return self.fail(VmInstructionError::UnsupportedVmcsComponent);
        };
        let value = match target {
            Target::Current => self.vmcs12.read(field),
            Target::Shadow(region) => match &self.parked {
                Some(p) if p.ptr == region => p.vmcs12.read(field),
                _ => InMemoryVmcs { mem: l1, region }.read(field),
            },
        };
        // A HIGH access reads bits 63:32 of a 64-bit field.
        let value = if access == Access::High { value >> 32 } else { value };
        match op {
            Operand::Register(r) => {
                let v = if cpu.is_64bit_mode() { value } else { value & 0xffff_ffff };
                l1.set_gpr(r, v);
            }
            Operand::Memory(m) => {
                let bytes = value.to_le_bytes();
                let n = if cpu.is_64bit_mode() { 8 } else { 4 };
                if let Err(e) = write_mem(l1, cpu, &m, &bytes[..n]) {
                    return VmxResult::Fault(e);
                }
            }
        }
        VmxResult::Succeed
    }

    /// VMWRITE (SDM Vol. 2, VMWRITE): errors 12 and 13; marks the field dirty.
    pub fn vmwrite(&mut self, exit: &ExitInfo, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        if self.current.is_none() {
            return VmxResult::FailInvalid;
        }
        self.vmwrite_on(Target::Current, exit, cpu, l1)
    }

    /// VMWRITE to `target` after the preconditions: the operand, errors 12 and 13, the write
    /// (to vmcs12 marking the field dirty, or into the shadow VMCS in L1 memory).
    pub(super) fn vmwrite_on(
        &mut self,
        target: Target,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> VmxResult {
        let info = InstrInfo(exit.instruction_info);
        let op = match operand::decode(info, exit.qualification, true, cpu, l1, |s| {
            l1.segment_base(s)
        }) {
            Ok(op) => op,
            Err(e) => return VmxResult::Fault(e),
        };
        let value = match op {
            Operand::Register(r) => l1.gpr(r),
            Operand::Memory(m) => {
                let mut b = [0u8; 8];
                let n = if cpu.is_64bit_mode() { 8 } else { 4 };
                if let Err(e) = read_mem(l1, cpu, &m, &mut b[..n]) {
                    return VmxResult::Fault(e);
                }
                u64::from_le_bytes(b)
            }
        };
        let value = if cpu.is_64bit_mode() { value } else { value & 0xffff_ffff };
        let encoding = self.field_encoding(info, cpu, l1);
        let Some((field, _)) = self.existing_field(encoding) else {
            return self.fail(VmInstructionError::UnsupportedVmcsComponent);
        };
        if field.is_read_only() && !self.caps.vmwrite_any_field() {
            return self.fail(VmInstructionError::VmwriteReadOnlyComponent);
        }
        let written = match target {
            Target::Current => self.vmcs12.write_raw(encoding, value),
            Target::Shadow(region) => match &mut self.parked {
                Some(p) if p.ptr == region => p.vmcs12.write_raw(encoding, value),
                _ => InMemoryVmcs { mem: l1, region }.write_raw(encoding, value),
            },
        };
        match written {
            Ok(()) => {
                if matches!(target, Target::Current) {
                    self.dirty.insert(field);
                }
                VmxResult::Succeed
            }
            Err(VmcsError::Unsupported | VmcsError::ReadOnly) => {
                self.fail(VmInstructionError::UnsupportedVmcsComponent)
            }
        }
    }
}

/// The fields a VMCS has under `caps` ([`VmxCaps::has_field`]).
fn fields_of(caps: &VmxCaps) -> DirtySet {
    let mut fields = DirtySet::empty();
    for &f in crate::vmcs::VmcsField::ALL.iter().filter(|f| caps.has_field(**f)) {
        fields.insert(f);
    }
    fields
}

impl NestedVmx {
    /// Replaces the capabilities L1 sees (with the fields its VMCS has).
    pub fn set_caps(&mut self, caps: VmxCaps) {
        self.caps = caps;
        self.fields = fields_of(&caps);
    }

    /// L1's own TSC changed (its WRMSR of IA32_TSC, or a VM-exit MSR-load list's): vmcs02's
    /// TSC offset, which includes L1's, is merged again at the next entry to L2, whichever
    /// of its VMCSs L1 enters (the current or the parked one). A rare event: the merge of the
    /// controls it costs is not on the common VMRESUME path.
    pub fn l1_tsc_changed(&mut self) {
        self.dirty.insert(crate::vmcs::VmcsField::TscOffset);
        if let Some(p) = self.parked.as_mut() {
            p.dirty.insert(crate::vmcs::VmcsField::TscOffset);
        }
    }

    /// The field and access `encoding` names in the VMCS of the processor L1 is shown
    /// ([`VmxCaps::has_field`]), or `None`: a field of a feature L1 is not offered does not
    /// exist for it (VMfailValid 12), as on such a processor.
    #[inline]
    fn existing_field(&self, encoding: u64) -> Option<(crate::vmcs::VmcsField, Access)> {
        crate::vmcs::VmcsField::from_encoding(encoding).filter(|(f, _)| self.fields.contains(*f))
    }
}

/// The VMCS a VMREAD/VMWRITE accesses: L1's current VMCS (vmcs12, cached by L0), or in VMX
/// non-root operation the shadow VMCS vmcs12's link pointer names ([`super::shadow12`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Current,
    Shadow(L1Gpa),
}

#[cfg(test)]
#[path = "instr_tests.rs"]
mod tests;
