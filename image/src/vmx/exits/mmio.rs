//! The guest's accesses to its local APIC's xAPIC page (SDM Vol. 3A 11.4.1) and to the I/O
//! APIC's page at 0xfec00000, and to the virtio-mmio windows of the guest's virtio devices
//! (`machine::virtio`). EPT01 maps only guest RAM, so an access to any of them is an EPT
//! violation (exit reason 48) that lands here: L0 fetches the instruction through the guest's
//! paging, decodes it (`pc::decode`: the MOV forms drivers use for device registers), carries
//! out its load or store on the device model and moves RIP past it (EPT violations report no
//! instruction length).

use nested::arch::{cr0, efer, segment_ar};
use nested::exits::ExitInfo;
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
}

/// Emulates the access if `info` is an EPT violation on the local APIC's xAPIC page or the
/// I/O APIC's page; `None` for any other guest-physical address.
pub fn device(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Option<Action> {
    let gpa = info.guest_physical_address;
    let page = if g.devices.lapic().mmio_base() == Some(gpa & !0xfff) {
        Page::Lapic
    } else if crate::machine::Devices::ioapic_owns(gpa) {
        Page::IoApic
    } else if let Some(w) = g.devices.virtio_owns(gpa) {
        Page::Virtio(w)
    } else {
        return None;
    };
    let mode = cpu_mode(v);
    let rip = v.read(F::GuestRip);
    let linear = match mode {
        CpuMode::Long64 => rip,
        _ => v.read(F::GuestCsBase).wrapping_add(rip) & 0xffff_ffff,
    };
    let mut bytes = [0u8; 15];
    let fetched = paging::read_linear(v, &g.memory, linear, AccessKind::Fetch, &mut bytes);
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
            return Some(Action::Stop(GuestEnd::Failed(
                "unsupported instruction on a device page (APIC, I/O APIC or virtio)",
            )));
        }
    };
    let offset = (gpa & 0xfff) as u32;
    let shift = (offset & 3) * 8;
    let now = cpu::rdtsc();
    match decoded.access {
        MmioAccess::Load { dest, size, zero_extend_to } => {
            let value = match page {
                Page::Lapic => {
                    u64::from(g.devices.with_lapic(|lapic| lapic.read_mmio(offset & !3, now)))
                        >> shift
                }
                Page::IoApic => u64::from(g.devices.ioapic_read(offset & !3)) >> shift,
                Page::Virtio(w) => g.devices.virtio_read(w, gpa, size),
            };
            if let Operand::Reg { index, .. } = dest {
                let old = gpr(g, v, u64::from(index));
                let new = decode::apply_load(old, dest, size, zero_extend_to, value);
                set_gpr(g, v, u64::from(index), new);
            }
        }
        MmioAccess::Store { src, size } => {
            let reg = match src {
                Operand::Reg { index, .. } => gpr(g, v, u64::from(index)),
                Operand::Imm(_) => 0,
            };
            let value = decode::store_value(reg, src, size);
            if let Page::Virtio(w) = page {
                g.devices.virtio_write(&mut g.memory, w, gpa, size, value);
            }
            let value = value << shift;
            match page {
                Page::Virtio(_) => {}
                Page::Lapic => {
                    g.devices.with_lapic(|lapic| lapic.write_mmio(offset & !3, value as u32, now))
                }
                Page::IoApic => g.devices.ioapic_write(offset & !3, value as u32),
            }
        }
    }
    let next = rip.wrapping_add(u64::from(decoded.len));
    let next = if mode == CpuMode::Long64 { next } else { next & 0xffff_ffff };
    crate::vmx::action::retire_instruction(v, next);
    Some(Action::Resume)
}
