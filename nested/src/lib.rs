//! The Turtles core: nested VMX as pure logic (no hardware access).
//!
//! L0 runs on the hardware, L1 is a hypervisor running as L0's guest, L2 is L1's guest.
//! Only L0 executes real VMX instructions; everything L1 does with VMX is emulated here
//! (Ben-Yehuda et al., "The Turtles Project", OSDI 2010; Intel SDM Vol. 3C ch. 24-31).
//! This crate builds for `x86_64-unknown-none` (inside the image) and for the host (tests);
//! the image supplies the hardware through small traits: [`vmcs::Vmcs`] (VMREAD/VMWRITE on
//! the current VMCS), [`guest::GuestMemory`] and [`guest::GuestRegs`] (L1's memory and
//! registers), [`vmx::L1Access`] (memory operands through L1's paging), and for shadow EPT
//! [`ept::shadow::Ept01`] and [`ept::shadow::HostFrames`].
//!
//! # One reflected exit (the hot path)
//!
//! Three VMCSs are involved: **vmcs01** (hardware, L0 runs L1), **vmcs12** (in L1 memory;
//! L0 keeps a cached copy in [`vmx::NestedVmx::vmcs12`]) and **vmcs02** (hardware, L0 runs
//! L2, built from the other two).
//!
//! 1. L2 executes CPUID. The hardware exits to L0 with vmcs02 current.
//! 2. L0 snapshots the exit: [`exits::ExitInfo::read`].
//! 3. [`exits::l0_wants_exit`]: physical interrupts and NMIs, EPT02 violations (resolved by
//!    [`ept::shadow::ShadowEpt::handle_violation`], which may itself turn into an EPT
//!    violation for L1), VMFUNC ([`vmx::NestedVmx::vmfunc`]) and the like stay in L0, which
//!    re-injects any interrupted event delivery ([`vmx::sync::reinject_idt_vectoring`]) and
//!    resumes L2: **one L0 exit**.
//! 4. Otherwise [`exits::l1_wants_exit`] decides from vmcs12's controls, exception bitmap,
//!    CR masks and shadows, I/O and MSR bitmaps whether real hardware would have exited to L1.
//!    ([`exits::route`] does 3 and 4.) If neither level asked for it, the access belongs to
//!    L1's world ([`exits::ExitRoute::ForL1`]): L0 performs it as if L1 had executed it (port
//!    I/O, MSRs, [`vmx::for_l1`] for CR accesses) and resumes L2, never reflecting it.
//! 5. Reflect: [`vmx::sync::sync_vmcs12`] copies exit information and guest state from
//!    vmcs02 into vmcs12; L0 makes vmcs01 current and [`vmx::sync::load_l1_host_state`]
//!    loads vmcs12's host state as L1's state (SDM 27.5). With VMCS shadowing, L0 also
//!    refreshes the shadow VMCS ([`vmcs::shadow::copy_vmcs12_to_shadow`]).
//! 6. L1 handles the exit. Its VMREAD/VMWRITEs either hit the shadow VMCS (no exit) or exit
//!    to L0, which emulates them ([`vmx::NestedVmx::emulate`]): VMWRITE marks the field in
//!    [`vmx::NestedVmx::dirty`].
//! 7. L1 executes VMRESUME: an exit to L0. With shadowing, L0 first copies L1's writes back
//!    ([`vmcs::shadow::copy_shadow_to_vmcs12`], marking changed fields dirty). The emulated
//!    VMRESUME runs the SDM's checks in order: VMfailValid for controls (error 7, see
//!    [`vmx::checks::check_controls`]) and host state (8), a VM-entry-failure exit to L1 for
//!    guest state (reason 33, [`vmx::checks::check_guest_state`]); after the merge the
//!    image loads the VM-entry MSR-load list entry by entry (reason 34 at the first that
//!    fails, [`vmx::msr_lists::load`]).
//! 8. [`vmx::merge::prepare_vmcs02`] writes **only the dirty fields** into vmcs02 (controls
//!    are re-merged only when a control changed: L0's must-haves OR'd with L1's requests,
//!    bitmaps merged by [`vmx::bitmaps`]), clears the dirty set, and L0 enters L2:
//!    **the second L0 exit** of the round trip, the architectural minimum.
//!
//! # Modules
//!
//! * [`arch`]: CR0/CR4/EFER/RFLAGS bits, defined once for the image and this crate.
//! * [`caps`]: the hardware's IA32_VMX_* MSRs as data; [`vmx::l1_caps()`]: what L1 is offered.
//! * [`vmcs`]: the field table (single source of truth), [`vmcs::Vmcs12`], the [`vmcs::Vmcs`]
//!   trait, [`vmcs::FakeVmcs`], dirty sets and VMCS-shadowing bitmaps.
//! * [`vmx`]: VMX instruction emulation, VM-entry checks, vmcs02 merge and vmcs12 sync.
//! * [`exits`]: exit reasons, the exit snapshot, routing and per-reason counters.
//! * [`ept`]: EPT12 walks, EPT02 construction and invalidation, nested VPIDs.
//! * [`addr`], [`guest`]: typed addresses and what nested code sees of L1.
//! * [`paging`]: L1's own paging (linear to L1-physical) for the operands L0 emulates.
//! * `vmcs01` (written by the image's author): L0's own vmcs01 controls.
//!
//! Nothing here allocates on the hot path (routing, merge, sync); guest-controlled values
//! are never unwrapped or used as unchecked indices (see the fuzz test in `proptests.rs`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod arch;
pub mod caps;
pub mod ept;
pub mod exits;
pub mod guest;
pub mod paging;
pub mod vmcs;
pub mod vmcs01;
pub mod vmx;

#[cfg(test)]
mod arch_crosscheck;
#[cfg(test)]
mod testutil;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod paging_tests;
#[cfg(test)]
mod proptests;
