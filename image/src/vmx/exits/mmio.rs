//! The guest's accesses to its local APIC's xAPIC page (SDM Vol. 3A 11.4.1) and to the I/O
//! APIC's page at 0xfec00000, and to the virtio-mmio windows of the guest's virtio devices
//! (`machine::virtio`). EPT01 maps only guest RAM, so an access to any of them is an EPT
//! violation (exit reason 48) that lands here: L0 fetches the instruction through the guest's
//! paging, decodes it (`pc::decode`: the MOV, MOVZX/MOVSX, CMP, TEST, XCHG and read-modify-write ALU
//! forms drivers use for device registers), carries
//! out its load or store on the device model and moves RIP past it (EPT violations report no
//! instruction length). The same devices are L1's when its guest L2 reaches them through EPT12
//! ([`l2_device`]): L2's instruction is fetched through L2's paging and EPT12.
//!
//! A data access to a physical address with neither RAM nor a modelled device behind it is
//! performed as on a PC, where nothing answers it: a load reads all ones, a store is dropped
//! ([`Page::Unbacked`]). An instruction that starts there reads all ones too: FF FF, which
//! is FF /7, a reserved opcode, so the processor raises #UD ([`unbacked_fetch`]). One that
//! starts in RAM and runs into such a page is not emulated (the caller stops the guest, or
//! reflects L2's EPT violation to L1).

use nested::arch::{BreakAccess, cr0, efer, segment_ar};
use nested::ept::l2_mmio::L2Memory;
use nested::ept::walk::{access_of, bits};
use nested::exits::ExitInfo;
use nested::guest::GuestMemory as PhysMemory;
use nested::paging::AccessKind;
use nested::vmcs::{Vmcs, VmcsField as F};
use pc::decode::{self, CpuMode, MmioAccess, Operand};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::guest::paging;
use crate::machine::virtio::Window;
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::guest::Guest;
use crate::vmx::guest::{gpr, set_gpr};

static UNDECODED: RateLimit = RateLimit::new(8);
static UNBACKED: RateLimit = RateLimit::new(8);

/// The guest's execution mode, which sets operand and address sizes for the decoder.
fn cpu_mode(v: &HwVmcs) -> CpuMode {
    let cs = v.read(F::GuestCsArBytes);
    if v.read(F::GuestCr0) & cr0::PE == 0 {
        CpuMode::Real16
    } else if v.read(F::GuestIa32Efer) & efer::LMA != 0 && cs & segment_ar::L != 0 {
        CpuMode::Long64
    } else if cs & segment_ar::DB != 0 {
        CpuMode::Protected32
    } else {
        CpuMode::Protected16
    }
}

/// The device page an access hit.
#[derive(Clone, Copy, Debug)]
enum Page {
    Lapic,
    IoApic,
    Virtio(Window),
    /// Neither RAM nor a device: loads read all ones, stores are dropped.
    Unbacked,
}

/// EPT-violation qualification bits 7 and 8: the guest-linear address is valid and the
/// access was to the address it translates to, not to a paging-structure entry.
const LINEAR_TRANSLATION: u64 = 1 << 7 | 1 << 8;

/// The access of the EPT violation `info` is one an instruction makes to its memory operand,
/// which L0 can perform by decoding the instruction: a data access to a linear address's
/// translation, outside event delivery (an IDT read while delivering an event, or a page
/// walk, is the processor's own and is not emulated).
fn instruction_data_access(info: &ExitInfo) -> bool {
    let q = info.qualification;
    access_of(q) & bits::EXEC as u8 == 0
        && q & LINEAR_TRANSLATION == LINEAR_TRANSLATION
        && info.idt_vectoring_info & nested::exits::intr_info::VALID == 0
}

/// The device page at guest-physical `gpa` of L0's guest (L1), if L0 models one there
/// (its local APIC, the I/O APIC or one of its virtio-mmio devices), or, for an
/// instruction's data access ([`instruction_data_access`]), [`Page::Unbacked`] where its
/// RAM is not either.
fn page_at(g: &Guest, gpa: u64, info: &ExitInfo) -> Option<Page> {
    if let Some(page) = device_page(g, gpa) {
        Some(page)
    } else if instruction_data_access(info) && g.memory.slice(gpa, 1).is_none() {
        if UNBACKED.allow() {
            log::warn!(
                "guest access to guest-physical {gpa:#x}, where there is neither RAM nor a \
                 device: loads read all ones, stores are dropped"
            );
        }
        Some(Page::Unbacked)
    } else {
        None
    }
}

/// The device page L0 models for its guest (L1) at guest-physical `gpa`: its local APIC,
/// the I/O APIC or one of its virtio-mmio devices.
fn device_page(g: &Guest, gpa: u64) -> Option<Page> {
    if g.devices.lapic().mmio_base() == Some(gpa & !0xfff) {
        Some(Page::Lapic)
    } else if crate::machine::Devices::ioapic_owns(gpa) {
        Some(Page::IoApic)
    } else {
        g.devices.virtio_owns(gpa).map(Page::Virtio)
    }
}

/// The guest's execution mode, RIP, and the linear address of the instruction there
/// (CS.base + RIP, 32-bit outside 64-bit mode).
fn instruction_start(v: &HwVmcs) -> (CpuMode, u64, u64) {
    let mode = cpu_mode(v);
    let rip = v.read(F::GuestRip);
    let linear = match mode {
        CpuMode::Long64 => rip,
        _ => v.read(F::GuestCsBase).wrapping_add(rip) & 0xffff_ffff,
    };
    (mode, rip, linear)
}

/// Emulates the access if `info` is an EPT violation on a device page of the guest's, or a
/// data access where it has neither RAM nor a device ([`page_at`]); `None` for any other
/// guest-physical address.
pub fn device(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Option<Action> {
    let gpa = info.guest_physical_address;
    let page = page_at(g, gpa, info)?;
    let fetched = fetch(v, &g.memory);
    Some(perform(g, v, gpa, info.guest_linear_address, page, fetched))
}

/// L2's access that EPT12 translated to L1-physical `l1gpa` (issue 14, finding 5): if L0
/// models a device of L1 there, the access is performed on it, as L1's own would be, and L2
/// resumes past the instruction (a data access where L1 has neither RAM nor a device reads
/// all ones or is dropped); `None` if nothing of L1's is there (an instruction fetch outside
/// L1's memory). `v` is vmcs02 (L2's registers and paging); L2's instruction is fetched
/// through L2's paging and EPT12; `info` is the EPT violation.
pub fn l2_device(
    g: &mut Guest,
    v: &mut HwVmcs,
    l1gpa: u64,
    eptp12: u64,
    caps: &nested::caps::VmxCaps,
    maxphyaddr: u8,
    info: &ExitInfo,
) -> Option<Action> {
    let page = page_at(g, l1gpa, info)?;
    let l2mem = L2Memory { l1: &g.memory, eptp12: Some(eptp12), caps, maxphyaddr };
    let fetched = fetch(v, &l2mem);
    Some(perform(g, v, l1gpa, info.guest_linear_address, page, fetched))
}

/// An EPT violation of the guest's (`v`: its VMCS) that is the fetch of an instruction's
/// first byte from guest-physical `gpa`, where it has neither RAM nor a device: the bytes
/// read are all ones, FF FF is FF /7, reserved in every mode (SDM Vol. 2D A.4, opcode group
/// 5), so the processor raises #UD at that RIP. `None` for any other access, and for an
/// instruction that began in RAM and runs into such a page (its bytes are not all ones).
pub fn unbacked_fetch(g: &Guest, v: &HwVmcs, gpa: u64, info: &ExitInfo) -> Option<Action> {
    let q = info.qualification;
    if access_of(q) & bits::EXEC as u8 == 0 || q & LINEAR_TRANSLATION != LINEAR_TRANSLATION {
        return None;
    }
    if g.memory.slice(gpa, 1).is_some() || device_page(g, gpa).is_some() {
        return None;
    }
    let (_, rip, start) = instruction_start(v);
    if info.guest_linear_address != start {
        return None;
    }
    if UNBACKED.allow() {
        log::warn!(
            "guest instruction fetch at guest-physical {gpa:#x}, where there is neither RAM \
             nor a device: all ones, FF FF is #UD (rip {rip:#x})"
        );
    }
    Some(Action::raise(nested::vmx::Exception::UD))
}

/// The instruction at the guest's RIP, read through its paging from `mem`.
struct Fetched {
    bytes: [u8; 15],
    len: usize,
    mode: CpuMode,
    rip: u64,
}

fn fetch(v: &HwVmcs, mem: &impl PhysMemory) -> Fetched {
    let (mode, rip, linear) = instruction_start(v);
    let mut bytes = [0u8; 15];
    let len = paging::read_linear(v, mem, linear, AccessKind::Fetch, &mut bytes);
    Fetched { bytes, len, mode, rip }
}

/// A `size`-byte load at `gpa` from `page`'s device.
fn load(g: &mut Guest, page: Page, gpa: u64, size: u8, now: u64) -> u64 {
    let offset = (gpa & 0xfff) as u32;
    let shift = (offset & 3) * 8;
    match page {
        Page::Lapic => {
            u64::from(g.devices.with_lapic(|lapic| lapic.read_mmio(offset & !3, now))) >> shift
        }
        Page::IoApic => u64::from(g.devices.ioapic_read(offset & !3)) >> shift,
        Page::Virtio(w) => g.devices.virtio_read(w, gpa, size),
        Page::Unbacked => u64::MAX,
    }
}

/// A `size`-byte store of `value` (its low `size` bytes) at `gpa` to `page`'s device.
fn store(g: &mut Guest, page: Page, gpa: u64, size: u8, value: u64, now: u64) {
    let offset = (gpa & 0xfff) as u32;
    let shift = (offset & 3) * 8;
    if let Page::Virtio(w) = page {
        g.devices.virtio_write(&mut g.memory, w, gpa, size, value);
    }
    let value = value << shift;
    match page {
        Page::Virtio(_) | Page::Unbacked => {}
        Page::Lapic => {
            g.devices.with_lapic(|lapic| lapic.write_mmio(offset & !3, value as u32, now))
        }
        Page::IoApic => g.devices.ioapic_write(offset & !3, value as u32),
    }
}

/// The low `size` bytes of an instruction's register or immediate operand
/// ([`decode::store_value`]).
fn operand_value(g: &Guest, v: &HwVmcs, op: Operand, size: u8) -> u64 {
    let reg = match op {
        Operand::Reg { index, .. } => gpr(g, v, u64::from(index)),
        Operand::Imm(_) => 0,
    };
    decode::store_value(reg, op, size)
}

/// Writes `value` loaded from memory to register operand `dest` ([`decode::apply_load`]).
fn set_operand(g: &mut Guest, v: &mut HwVmcs, dest: Operand, size: u8, extend_to: u8, value: u64) {
    if let Operand::Reg { index, .. } = dest {
        let old = gpr(g, v, u64::from(index));
        let new = decode::apply_load(old, dest, size, extend_to, value);
        set_gpr(g, v, u64::from(index), new);
    }
}

/// Decodes the fetched instruction, performs its load, store, or load then store (XCHG and
/// the read-modify-write ALU ops) at `gpa` on `page`'s device and retires it.
fn perform(g: &mut Guest, v: &mut HwVmcs, gpa: u64, linear: u64, page: Page, f: Fetched) -> Action {
    let Fetched { bytes, len: fetched, mode, rip } = f;
    let decoded = match decode::decode(&bytes[..fetched], mode) {
        Ok(d) => d,
        Err(e) => {
            if UNDECODED.allow() {
                log::error!(
                    "guest access to its {page:?} page at {gpa:#x} by an instruction L0 cannot \
                     emulate ({e:?}; bytes {:02x?} at rip {rip:#x}, {mode:?})",
                    &bytes[..fetched]
                );
            }
            return Action::Stop(GuestEnd::Failed(
                "unsupported instruction on a device page (APIC, I/O APIC or virtio)",
            ));
        }
    };
    let now = cpu::rdtsc();
    match decoded.access {
        MmioAccess::Load { dest, size, zero_extend_to } => {
            let value = load(g, page, gpa, size, now);
            set_operand(g, v, dest, size, zero_extend_to, value);
        }
        MmioAccess::LoadSignExtended { dest, size, extend_to } => {
            let value = decode::sign_extend(load(g, page, gpa, size, now), size);
            set_operand(g, v, dest, extend_to, extend_to, value);
        }
        MmioAccess::Compare { other, size, memory_first } => {
            let memory = load(g, page, gpa, size, now);
            let other = operand_value(g, v, other, size);
            let (a, b) = if memory_first { (memory, other) } else { (other, memory) };
            let rflags = decode::cmp_rflags(v.read(F::GuestRflags), a, b, size);
            v.write(F::GuestRflags, rflags);
        }
        MmioAccess::Test { other, size } => {
            let memory = load(g, page, gpa, size, now);
            let other = operand_value(g, v, other, size);
            let rflags = v.read(F::GuestRflags);
            let (_, rflags) = decode::alu(decode::AluOp::And, rflags, memory, other, size);
            v.write(F::GuestRflags, rflags);
        }
        MmioAccess::Store { src, size } => {
            let value = operand_value(g, v, src, size);
            store(g, page, gpa, size, value, now);
        }
        // One load, then one store of the same size at the same address: the device sees
        // what a MOV from and a MOV to the register would do.
        MmioAccess::Exchange { reg, size } => {
            let memory = load(g, page, gpa, size, now);
            let value = operand_value(g, v, reg, size);
            store(g, page, gpa, size, value, now);
            set_operand(g, v, reg, size, size, memory);
        }
        MmioAccess::Modify { op, src, size } => {
            let memory = load(g, page, gpa, size, now);
            let src = operand_value(g, v, src, size);
            let (value, rflags) = decode::alu(op, v.read(F::GuestRflags), memory, src, size);
            store(g, page, gpa, size, value, now);
            v.write(F::GuestRflags, rflags);
        }
    }
    // A read-modify-write is a write for data breakpoints (R/W 01 and 11 both meet it).
    let (kind, size) = match decoded.access {
        MmioAccess::Load { size, .. }
        | MmioAccess::LoadSignExtended { size, .. }
        | MmioAccess::Compare { size, .. }
        | MmioAccess::Test { size, .. } => (BreakAccess::Read, size),
        MmioAccess::Store { size, .. }
        | MmioAccess::Exchange { size, .. }
        | MmioAccess::Modify { size, .. } => (BreakAccess::Write, size),
    };
    crate::vmx::action::breakpoints(v, kind, linear, u64::from(size));
    let next = rip.wrapping_add(u64::from(decoded.len));
    let next = if mode == CpuMode::Long64 { next } else { next & 0xffff_ffff };
    crate::vmx::action::retire_instruction(v, next);
    Action::Resume
}
