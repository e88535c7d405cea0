//! The VM on /dev/kvm: memory slot 0 over [`Ram`], KVM's in-kernel irqchip (local APIC,
//! I/O APIC, 8259s) and PIT, one vCPU with [`crate::cpuid`]'s CPUID, entered the way every
//! boot protocol of the `loader` crate starts a kernel (32-bit protected mode, flat segments,
//! paging off, EAX/EBX from [`BootState`]), and the run loop: port I/O to [`Ports`], MMIO
//! outside RAM and the in-kernel devices reads all-ones, and the end of the run as a
//! [`Stop`].

use std::io::{ErrorKind, Write};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use loader::BootState;

use crate::boot::Ram;
use crate::cpuid;
use crate::error::{LaunchError, kvm};
use crate::ports::{PortAction, Ports};

/// Intel VMX needs a three-page area for the real-mode TSS and one page for the identity map
/// of unrestricted-guest-less CPUs: below the BIOS area at the top of 4 GiB, as Firecracker
/// and QEMU put them.
const TSS_ADDRESS: usize = 0xfffb_d000;
const IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// The PIT's speaker port (61h) and IRQ0 emulated in the kernel (`KVM_PIT_SPEAKER_DUMMY`
/// not set).
const PIT_FLAGS: u32 = 0;
/// COM1's ISA IRQ.
const COM1_IRQ: u32 = 4;
/// Local APIC registers LVT LINT0 and LINT1 (SDM Vol. 3A Table 11-1) and their delivery
/// modes: LINT0 ExtINT (the 8259s' output, virtual-wire mode), LINT1 NMI, as PC firmware
/// leaves them.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const DELIVERY_EXTINT: u32 = 0b111 << 8;
const DELIVERY_NMI: u32 = 0b100 << 8;

/// Flat 4 GiB segments of the protected-mode entry (multiboot 3.2 machine state).
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const SEGMENT_TYPE_CODE: u8 = 0xb; // execute/read, accessed
const SEGMENT_TYPE_DATA: u8 = 0x3; // read/write, accessed
const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// How a run ended (other than by a launcher error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote its status to the exit port.
    Exit(u8),
    /// The guest reset the machine (a reset port or a triple fault) or halted for good.
    Reset(&'static str),
}

/// A VM ready to run.
pub struct Vm {
    _kvm: Kvm,
    vm: VmFd,
    vcpu: VcpuFd,
    /// Kept alive while KVM maps it.
    _ram: Ram,
    pub vmx: bool,
}

impl Vm {
    /// Creates the VM over `ram` and its vCPU at `boot`.
    pub fn new(ram: Ram, boot: &BootState) -> Result<Self, LaunchError> {
        let kvm_fd = Kvm::new().map_err(kvm("open /dev/kvm"))?;
        let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
        vm.set_tss_address(TSS_ADDRESS).map_err(kvm("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(IDENTITY_MAP_ADDRESS)
            .map_err(kvm("KVM_SET_IDENTITY_MAP_ADDR"))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.size(),
            userspace_addr: ram.host_address()?,
        };
        // SAFETY: the region is `ram`'s whole mapping, which `Vm` owns and keeps alive (and
        // mapped) as long as the VM exists; nothing else maps guest-physical 0.
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
        vm.create_pit2(kvm_pit_config { flags: PIT_FLAGS, ..Default::default() })
            .map_err(kvm("KVM_CREATE_PIT2"))?;
        let vcpu = vm.create_vcpu(0).map_err(kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid_list = kvm_fd
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let shown = cpuid::adjust(cpuid_list.as_mut_slice());
        vcpu.set_cpuid2(&cpuid_list).map_err(kvm("KVM_SET_CPUID2"))?;
        virtual_wire(&vcpu)?;
        enter(&vcpu, boot)?;
        Ok(Vm { _kvm: kvm_fd, vm, vcpu, _ram: ram, vmx: shown.vmx })
    }

    /// Runs the guest until it stops; its lines go to `out` with `prefix`.
    pub fn run(
        &mut self,
        ports: &mut Ports,
        out: &mut dyn Write,
        prefix: &str,
    ) -> Result<Stop, LaunchError> {
        let mut irq = false;
        let mut unknown_mmio_logged = false;
        let stop = loop {
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(LaunchError::Kvm { what: "KVM_RUN", error: e }),
            };
            let action = match exit {
                VcpuExit::IoOut(port, data) => ports.write(port, data),
                VcpuExit::IoIn(port, data) => {
                    ports.read(port, data);
                    PortAction::Continue
                }
                VcpuExit::MmioRead(_, data) => {
                    data.fill(0xff);
                    PortAction::Continue
                }
                VcpuExit::MmioWrite(addr, _) => {
                    if !unknown_mmio_logged {
                        eprintln!(
                            "launcher: guest MMIO write to {addr:#x} (no device there; ignored, said once)"
                        );
                        unknown_mmio_logged = true;
                    }
                    PortAction::Continue
                }
                VcpuExit::Intr => PortAction::Continue,
                VcpuExit::Hlt => break Stop::Reset("halted with nothing to wake it"),
                VcpuExit::Shutdown => break Stop::Reset("triple fault (shutdown)"),
                VcpuExit::SystemEvent(..) => {
                    break Stop::Reset("system event (reset or power off)");
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    return Err(LaunchError::Guest(format!(
                        "VM entry failed on cpu {cpu}: hardware entry failure reason {reason:#x}"
                    )));
                }
                VcpuExit::InternalError => {
                    return Err(LaunchError::Guest(
                        "KVM internal error (KVM_EXIT_INTERNAL_ERROR)".into(),
                    ));
                }
                other => {
                    return Err(LaunchError::Guest(format!("unexpected KVM exit {other:?}")));
                }
            };
            for line in ports.take_lines() {
                let _ = writeln!(out, "{prefix}{line}");
                let _ = out.flush();
            }
            if ports.uart_irq() != irq {
                irq = !irq;
                self.vm.set_irq_line(COM1_IRQ, irq).map_err(kvm("KVM_IRQ_LINE"))?;
            }
            match action {
                PortAction::Continue => {}
                PortAction::Exit(code) => break Stop::Exit(code),
                PortAction::Reset => break Stop::Reset("reset through a reset port"),
            }
        };
        if let Some(line) = ports.take_partial() {
            let _ = writeln!(out, "{prefix}{line}");
        }
        let _ = out.flush();
        Ok(stop)
    }
}

fn interrupted(e: &kvm_ioctls::Error) -> bool {
    matches!(
        std::io::Error::from_raw_os_error(e.errno()).kind(),
        ErrorKind::Interrupted | ErrorKind::WouldBlock
    )
}

/// LINT0 ExtINT and LINT1 NMI.
fn virtual_wire(vcpu: &VcpuFd) -> Result<(), LaunchError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT_LINT0, DELIVERY_EXTINT), (APIC_LVT_LINT1, DELIVERY_NMI)] {
        let bytes = &mut lapic.regs[reg..reg + 4];
        let old =
            u32::from_le_bytes([bytes[0] as u8, bytes[1] as u8, bytes[2] as u8, bytes[3] as u8]);
        // Delivery mode bits 10:8 and the mask bit 16 cleared, the rest kept.
        let new = (old & !(0b111 << 8 | 1 << 16)) | mode;
        for (b, v) in bytes.iter_mut().zip(new.to_le_bytes()) {
            *b = v as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

/// The boot protocols' entry state.
fn enter(vcpu: &VcpuFd, boot: &BootState) -> Result<(), LaunchError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let flat = |selector: u16, type_: u8| kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = flat(CODE_SELECTOR, SEGMENT_TYPE_CODE);
    let data = flat(DATA_SELECTOR, SEGMENT_TYPE_DATA);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: boot.entry,
        rax: boot.rax,
        rbx: boot.rbx,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))
}
