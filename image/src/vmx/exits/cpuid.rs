//! CPUID (exit reason 10) and XSETBV (exit reason 55): the guest's CPUID is the host's
//! filtered by the pure policy `pc::cpuid` (what L0 cannot back is hidden, the hypervisor bit
//! and turtles' leaves 0x40000000.. are added), with the bits that mirror the executing
//! level's state (CR4.OSXSAVE, CR4.PKE, the APIC's global enable) read at answer time; XSETBV
//! sets the guest's XCR0 after `pc::cpuid::xsetbv_valid`'s checks, so the XSAVE features CPUID
//! shows work.

use nested::caps::proc2;
use nested::vmcs::{Vmcs, VmcsField as F};
use pc::cpuid::{self as policy, Features, Live};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::ratelimit::RateLimit;
use crate::vmx::action::Action;
use crate::vmx::guest::Guest;
use nested::vmx::Exception;

pub use policy::signature_words;

/// The guest's answers without their live bits. CPUID is constant, and under a turtles L0
/// every CPUID this level executes is itself an exit: answering from the cache keeps a
/// reflected CPUID at the architectural two L0 exits (L2's CPUID and L1's VMRESUME). One
/// guest runs per boot, so what the cache keeps holds for the guest's whole life.
static CACHE: hermit_sync::SpinMutex<CpuidCache> = hermit_sync::SpinMutex::new(CpuidCache::new());

/// The highest leaves the guest sees and the features its VMCS enables, read on the first
/// cache miss.
#[derive(Clone, Copy)]
struct Limits {
    max_basic: u32,
    max_ext: u32,
    features: Features,
}

struct CpuidCache {
    entries: [(u32, u32, [u32; 4]); 64],
    len: usize,
    /// The entry the last lookup found (guests repeat a leaf: looked at first).
    last: usize,
    limits: Option<Limits>,
}

impl CpuidCache {
    const fn new() -> Self {
        CpuidCache { entries: [(0, 0, [0; 4]); 64], len: 0, last: 0, limits: None }
    }

    /// The cached static answer for `leaf`, `subleaf` (cached leaves resolve to themselves;
    /// hypervisor leaves are never cached).
    #[inline(always)]
    fn lookup(&mut self, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
        let key = if policy::uses_subleaf(leaf) { subleaf } else { 0 };
        let entries = &self.entries[..self.len.min(self.entries.len())];
        if let Some(e) = entries.get(self.last)
            && e.0 == leaf
            && e.1 == key
        {
            return Some(e.2);
        }
        let i = entries.iter().position(|e| e.0 == leaf && e.1 == key)?;
        self.last = i;
        entries.get(i).map(|e| e.2)
    }

    fn limits(&mut self, v: &HwVmcs, vmx: bool) -> Limits {
        *self.limits.get_or_insert_with(|| Limits {
            max_basic: policy::max_basic(cpu::cpuid(0, 0)[0]),
            max_ext: policy::max_extended(cpu::cpuid(0x8000_0000, 0)[0]),
            features: features(v, vmx),
        })
    }

    /// The static answer for `leaf`, `subleaf` (from the cache when it is there) and the
    /// leaf the processor answered for it.
    fn get(&mut self, leaf: u32, subleaf: u32, v: &HwVmcs, vmx: bool) -> ([u32; 4], u32) {
        let key = if policy::uses_subleaf(leaf) { subleaf } else { 0 };
        if let Some(e) = self.entries[..self.len].iter().find(|e| e.0 == leaf && e.1 == key) {
            return (e.2, leaf);
        }
        let limits = self.limits(v, vmx);
        let resolved = policy::resolve(leaf, limits.max_basic, limits.max_ext);
        let host = cpu::cpuid(resolved, subleaf);
        let mut value = policy::static_answer(resolved, subleaf, host, &limits.features);
        if resolved == policy::TSC_LEAF {
            value = tsc_leaf(value);
        }
        if resolved == 0xd && subleaf == 1 {
            // The processor's EBX may be the standard format's size (Bochs'): the guest
            // has XSAVEC and no XSAVES, so it is the compacted size for its XCR0.
            value[1] = policy::compacted_xsave_size(hardware_xcr0(), |i| cpu::cpuid(0xd, i));
        }
        if resolved == leaf
            && policy::cacheable(leaf)
            && let Some(slot) = self.entries.get_mut(self.len)
        {
            *slot = (leaf, key, value);
            self.len += 1;
        }
        (value, resolved)
    }
}

/// What the guest's VMCS lets the guest's processor do beyond the host's CPUID.
fn features(v: &HwVmcs, vmx: bool) -> Features {
    let secondary = v.read(F::SecondaryVmExecControl) as u32;
    Features {
        vmx,
        rdtscp: secondary & proc2::ENABLE_RDTSCP != 0,
        invpcid: secondary & proc2::ENABLE_INVPCID != 0,
    }
}

/// The rate [`publish_tsc_rate`] publishes (0: none, the host's leaf 0x15 stands).
static TSC_RATE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Publishes `tsc_hz`, the rate the device models count guest time with, in CPUID leaf 0x15
/// (`pc::cpuid::tsc_leaf`), so the guest reads its TSC frequency instead of calibrating it.
/// Called before the guest runs; the answer is computed on the leaf's cache miss.
pub fn publish_tsc_rate(tsc_hz: u64) {
    TSC_RATE.store(tsc_hz, core::sync::atomic::Ordering::Relaxed);
}

/// The guest's TSC rate in Hz: the published rate, else the host's base frequency from CPUID
/// leaf 0x16 (EAX, MHz; 0 when the host has no such leaf). MSR_PLATFORM_INFO is made from it.
#[cold]
#[inline(never)]
pub fn tsc_rate() -> u64 {
    match TSC_RATE.load(core::sync::atomic::Ordering::Relaxed) {
        0 if cpu::cpuid(0, 0)[0] >= 0x16 => u64::from(cpu::cpuid(0x16, 0)[0]) * 1_000_000,
        0 => 0,
        hz => hz,
    }
}

/// Leaf 0x15's answer: the published rate, else the host's (`value`).
#[cold]
#[inline(never)]
fn tsc_leaf(value: [u32; 4]) -> [u32; 4] {
    policy::tsc_leaf(TSC_RATE.load(core::sync::atomic::Ordering::Relaxed)).unwrap_or(value)
}

/// The guest's [`Features`], as its CPUID shows them (read once per guest, like the answers).
pub fn guest_features(v: &HwVmcs, vmx: bool) -> Features {
    CACHE.lock().limits(v, vmx).features
}

pub fn handle(g: &mut Guest, v: &HwVmcs) -> Action {
    let (leaf, subleaf) = (g.regs.rax as u32, g.regs.rcx as u32);
    // The common case first: a leaf answered before.
    let cached = CACHE.lock().lookup(leaf, subleaf);
    let [a, b, c, d] = match cached {
        Some(value) if policy::has_live_bits(leaf) => live_bits(g, v, leaf, subleaf, value),
        Some(value) => value,
        None => answer(g, v, leaf, subleaf),
    };
    g.regs.rax = u64::from(a);
    g.regs.rbx = u64::from(b);
    g.regs.rcx = u64::from(c);
    g.regs.rdx = u64::from(d);
    Action::Skip
}

/// The static answer `value` for `leaf` (as resolved) with the executing level's state: for
/// L1's CPUID L1's CR4, for L2's CPUID that a turtles L1 answers, L2's (vmcs12's guest CR4).
fn live_bits(g: &Guest, v: &HwVmcs, leaf: u32, subleaf: u32, value: [u32; 4]) -> [u32; 4] {
    let live = Live {
        cr4: super::cr::guest_cr4(v),
        apic_enabled: g.devices.lapic().base_msr() & pc::lapic::base::EN != 0,
    };
    policy::live_bits(leaf, subleaf, value, &live)
}

/// A leaf not in the cache: hypervisor leaves, or the first time of a leaf.
#[inline(never)]
fn answer(g: &mut Guest, v: &HwVmcs, leaf: u32, subleaf: u32) -> [u32; 4] {
    if leaf == super::mark::LEAF {
        return super::mark::mark(g, subleaf);
    }
    if policy::is_hypervisor_leaf(leaf) {
        // Forwarded to the level below (never cached: it changes).
        let below = if leaf == 0x4000_0003 && g.depth > 1 { cpu::cpuid(leaf, 0) } else { [0; 4] };
        // Summing the counters costs ~100 instructions: only the counter leaves need it.
        let exits = if leaf == 0x4000_0002 || leaf == 0x4000_0003 { g.counters.total() } else { 0 };
        policy::hypervisor_leaf(leaf, g.depth, exits, below)
    } else {
        let (value, resolved) = CACHE.lock().get(leaf, subleaf, v, g.nested.is_some());
        if policy::has_live_bits(resolved) {
            live_bits(g, v, resolved, subleaf, value)
        } else {
            value
        }
    }
}

/// The host processor has XSAVE (CPUID.1:ECX), so CR4.OSXSAVE may be set.
fn host_has_xsave() -> bool {
    cpu::cpuid(1, 0)[2] & policy::leaf1_ecx::XSAVE != 0
}

/// Runs `access` (XGETBV or XSETBV) with CR4.OSXSAVE set, then puts L0's CR4 back: L0 runs
/// with OSXSAVE clear, and XGETBV/XSETBV #UD without it.
///
/// # Safety
/// The host has XSAVE ([`host_has_xsave`]), and `access` is sound with CR4.OSXSAVE set.
unsafe fn with_osxsave<T>(access: impl FnOnce() -> T) -> T {
    use x86_64::registers::control::Cr4;

    let cr4 = Cr4::read_raw();
    // SAFETY: the caller checked the host has XSAVE, so CR4.OSXSAVE may be set; only
    // `access` runs with it, and the previous CR4 comes back right after.
    unsafe { Cr4::write_raw(cr4 | policy::CR4_OSXSAVE) };
    let result = access();
    // SAFETY: the value L0 had before.
    unsafe { Cr4::write_raw(cr4) };
    result
}

/// XCR0 as the executing level set it (the hardware's: see [`xsetbv`]).
fn hardware_xcr0() -> u64 {
    if !host_has_xsave() {
        return 0;
    }
    // SAFETY: the host has XSAVE (checked above); XGETBV of XCR0 only reads.
    unsafe { with_osxsave(x86_64::registers::xcontrol::XCr0::read_raw) }
}

static XSETBV_REFUSED: RateLimit = RateLimit::new(8);

/// XSETBV: sets the guest's XCR0 in the hardware (L0 itself uses no XSAVE state, and VMX
/// transitions leave XCR0 alone, so the value stays the guest's) after the checks the
/// processor makes (SDM Vol. 2B XSETBV), against the components the guest's CPUID shows.
pub fn xsetbv(g: &mut Guest) -> Action {
    let xcr = g.regs.rcx as u32;
    let value = (g.regs.rdx << 32) | (g.regs.rax & 0xffff_ffff);
    let has_xsave = host_has_xsave();
    let [eax, _, _, edx] = if has_xsave { cpu::cpuid(0xd, 0) } else { [0; 4] };
    let shown = (u64::from(eax) | (u64::from(edx) << 32)) & policy::XCR0_SHOWN;
    if !policy::xsetbv_valid(xcr, value, shown) {
        if XSETBV_REFUSED.allow() {
            log::warn!("guest XSETBV of XCR{xcr} = {value:#x} refused: injecting #GP(0)");
        }
        return Action::raise(Exception::GP0);
    }
    // SAFETY: the host has XSAVE (checked above, or `shown` would be empty and the value
    // refused). The value passed the processor's XCR0 checks against components the host
    // supports; L0 runs without SSE/AVX state of its own.
    unsafe { with_osxsave(|| x86_64::registers::xcontrol::XCr0::write_raw(value)) };
    Action::Skip
}
