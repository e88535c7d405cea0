//! One fuzz program: a random sequence of VMX steps from one seed, each checked against what
//! the SDM allows given the architectural state the fuzzer tracks ([`Model`]): VMX operation,
//! the VMXON pointer, the current VMCS, each region's launch state and whether it holds a
//! valid vmcs12, a mutated one (and which check must refuse it) or something unknown (never
//! entered). The error numbers are those of SDM Vol. 3C 31.4; the order of the checks that of
//! each instruction's pseudocode (Vol. 2) and of VM entry (Vol. 3C 26.1-26.4).

use core::fmt;

use nested::caps::proc2;
use nested::vmcs::{FieldType, VmcsField as F};
use x86_64::registers::control::{Cr0, Cr4};

use super::expect::{Expect, GP, UD};
use super::mutate::Class;
use super::rng::Rng;
use super::world::{BEYOND_RAM, VMCS_REGIONS, World};
use crate::arch::vmx_probe::{self as insn, Outcome};

const CR4_VMXE: u64 = 1 << 13;
const CR0_NE: u64 = 1 << 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Launch {
    Clear,
    Launched,
    Unknown,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Content {
    Unknown,
    Valid,
    Bad(Class),
    /// Random guest state with the preemption timer on: any exit, or a VM-entry failure.
    Wild,
    /// Random controls with the preemption timer on: any exit, VMfailValid 7 or 8, or a
    /// VM-entry failure.
    WildControls,
}

/// What the fuzzer knows of the VMX state L0 emulates for it.
pub(super) struct Model {
    pub vmxon: bool,
    pub vmxon_ptr: u64,
    pub current: Option<u64>,
    pub launch: [Launch; VMCS_REGIONS],
    pub content: [Content; VMCS_REGIONS],
    /// The last VMWRITE that succeeded on the current VMCS, for a read-back.
    pub written: Option<(F, u64)>,
    /// The exits the loaded L2 may cause.
    pub l2_exits: u64,
    /// The last exit was an instruction's, of this length (a resume may skip it).
    pub last_exit_len: Option<u64>,
    /// Where the L2 of each region starts at its next entry: the snippet's first instruction
    /// after a build, then the guest RIP its last exit saved (SDM Vol. 3C 28.3.3, "Saving
    /// RIP"), moved by a VMWRITE past the exit. VMCLEAR copies the VMCS data to memory and
    /// only clears the launch state (31.3, "VMCLEAR"), and VM entry loads RIP from the
    /// guest-state area (27.3.2.3): a VMLAUNCH after VMCLEAR starts there, not at the
    /// snippet's first instruction.
    pub start: [Option<u64>; VMCS_REGIONS],
}

/// Counts of outcomes over a run.
pub struct Stats {
    pub steps: u64,
    pub succeed: u64,
    pub fail_invalid: u64,
    pub fail_valid: [u64; 32],
    pub faults: u64,
    pub exits: [u64; 64],
    pub entry_failures: u64,
}

impl Stats {
    pub const fn new() -> Self {
        Stats {
            steps: 0,
            succeed: 0,
            fail_invalid: 0,
            fail_valid: [0; 32],
            faults: 0,
            exits: [0; 64],
            entry_failures: 0,
        }
    }

    fn record(&mut self, o: Outcome) {
        self.steps += 1;
        match o {
            Outcome::Succeed => self.succeed += 1,
            Outcome::FailInvalid => self.fail_invalid += 1,
            Outcome::FailValid(n) => self.fail_valid[(n as usize).min(31)] += 1,
            Outcome::Fault(_) => self.faults += 1,
            Outcome::Exit(r) if r & (1 << 31) != 0 => self.entry_failures += 1,
            Outcome::Exit(r) => self.exits[(r as usize & 0xffff).min(63)] += 1,
        }
    }
}

/// How a VMCS pointer operand was chosen.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ptr {
    Region(usize),
    Vmxon,
    Misaligned,
    BeyondMaxphyaddr,
    WrongRevision,
    BeyondRam,
}

/// Failure lines printed before they are only counted (L0's console must stay bounded).
static LOGGED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
const LOG_LIMIT: u32 = 40;

pub struct Program<'a> {
    pub(super) w: &'a World,
    pub(super) rng: Rng,
    seed: u64,
    pub(super) index: u64,
    pub(super) step: u32,
    pub(super) trace: bool,
    pub(super) m: Model,
    pub failed: bool,
    stats: &'a mut Stats,
    /// The loaded L2's terminal instruction (reason, RIP, length), checked at its exit.
    pub(super) terminal: Option<(u32, u64, u64)>,
}

impl<'a> Program<'a> {
    pub fn new(w: &'a World, seed: u64, index: u64, trace: bool, stats: &'a mut Stats) -> Self {
        Program {
            w,
            rng: Rng::for_program(seed, index),
            seed,
            index,
            step: 0,
            trace,
            m: Model {
                vmxon: false,
                vmxon_ptr: u64::MAX,
                current: None,
                launch: [Launch::Unknown; VMCS_REGIONS],
                content: [Content::Unknown; VMCS_REGIONS],
                written: None,
                l2_exits: 0,
                last_exit_len: None,
                start: [None; VMCS_REGIONS],
            },
            failed: false,
            stats,
            terminal: None,
        }
    }

    /// Checks `got` against `allowed`; logs a failure with everything needed to replay it.
    pub(super) fn check(
        &mut self,
        what: fmt::Arguments<'_>,
        got: Outcome,
        allowed: Expect,
    ) -> bool {
        self.stats.record(got);
        // VMfailValid writes the VM-instruction error field and a VM exit the exit
        // information and guest state: a value written there before is gone.
        match (got, self.m.written) {
            (Outcome::FailValid(_), Some((F::VmInstructionError, _))) | (Outcome::Exit(_), _) => {
                self.m.written = None;
            }
            _ => {}
        }
        if self.trace {
            log::info!("fuzz: {}.{} {what} -> {got}", self.index, self.step);
        }
        if allowed.allows(got) {
            return true;
        }
        self.fail(format_args!("{what}: got {got}, allowed {allowed}"));
        false
    }

    pub(super) fn fail(&mut self, what: fmt::Arguments<'_>) {
        self.failed = true;
        use core::sync::atomic::Ordering;
        if LOGGED.fetch_add(1, Ordering::Relaxed) < LOG_LIMIT {
            log::error!(
                "fuzz: FAIL seed={} program={} step={} {what}",
                self.seed,
                self.index,
                self.step
            );
        }
    }

    /// VMfail(n): VMfailValid with a current VMCS, VMfailInvalid without (SDM 31.2).
    pub(super) fn vmfail(&self, n: u32) -> Expect {
        if self.m.current.is_some() { Expect::valid(n) } else { Expect::invalid() }
    }

    fn valid_address(&self, addr: u64) -> bool {
        addr & 0xfff == 0 && addr >> self.w.maxphyaddr == 0
    }

    pub(super) fn region_of(&self, addr: u64) -> Option<usize> {
        self.w.vmcs.iter().position(|&r| r == addr)
    }

    fn pick_ptr(&mut self) -> (Ptr, u64) {
        let w = self.w;
        let i = self.rng.below(VMCS_REGIONS as u64) as usize;
        match self.rng.below(12) {
            0..=5 => (Ptr::Region(i), w.vmcs[i]),
            6 => (Ptr::Vmxon, if self.m.vmxon { self.m.vmxon_ptr } else { w.vmxon }),
            7 => (Ptr::Misaligned, w.vmcs[i] + 1 + self.rng.below(0xfff)),
            8 => {
                let addr = match self.rng.below(3) {
                    0 => 1 << w.maxphyaddr | w.vmcs[i],
                    1 => !0xfff,
                    _ => {
                        1 << (u64::from(w.maxphyaddr)
                            + self.rng.below(64 - u64::from(w.maxphyaddr)))
                    }
                };
                (Ptr::BeyondMaxphyaddr, addr)
            }
            9 => (Ptr::WrongRevision, w.junk),
            10 => (Ptr::BeyondRam, BEYOND_RAM + self.rng.below(0x1000) * 4096),
            _ => (Ptr::Region(i), w.vmcs[i]),
        }
    }

    /// Runs the program: maybe VMXON (after bad attempts), random steps, VMXOFF.
    pub fn run(&mut self) {
        self.w.reset_regions(&mut self.rng);
        self.w.build_ept();
        if self.rng.chance(9, 10) {
            for _ in 0..self.rng.below(3) {
                let kind = 1 + self.rng.below(5);
                self.vmxon(kind);
            }
            self.vmxon(0);
        }
        let steps = 4 + self.rng.below(28) as u32;
        for k in 1..=steps {
            if self.failed {
                break;
            }
            self.step = k;
            match self.rng.below(100) {
                0..=4 => {
                    let kind = self.rng.below(6);
                    self.vmxon(kind)
                }
                5..=6 => self.vmxoff(),
                7..=8 => self.clear_vmxe(),
                9..=16 => self.vmclear(),
                17..=24 => self.vmptrld(),
                25..=27 => self.vmptrst(),
                28..=38 => self.vmread(),
                39..=49 => self.vmwrite(),
                50..=71 => self.launch(),
                72..=83 => self.resume(),
                84..=88 => self.invept(),
                89..=94 => self.invvpid(),
                _ => self.vmcall(),
            }
        }
        self.step += 1;
        if self.failed {
            // The model may be wrong: leave VMX operation whatever L0 thinks.
            let _ = insn::vmxoff();
        } else if self.m.vmxon {
            let got = insn::vmxoff();
            self.check(format_args!("final vmxoff"), got, Expect::succeed());
        }
        let cr4 = Cr4::read_raw();
        if cr4 & CR4_VMXE == 0 {
            let _ = insn::write_cr4(cr4 | CR4_VMXE);
        }
    }

    /// VMXON: 0 the VMXON region, 1 misaligned, 2 beyond MAXPHYADDR, 3 a wrong revision,
    /// 4 beyond L1's memory, 5 a VMCS region (a valid VMXON region too).
    fn vmxon(&mut self, kind: u64) {
        let w = self.w;
        let addr = match kind {
            0 => w.vmxon,
            1 => w.vmxon + 1 + self.rng.below(0xfff),
            2 => w.vmxon | 1 << w.maxphyaddr,
            3 => w.junk,
            4 => BEYOND_RAM,
            _ => w.vmcs[self.rng.below(VMCS_REGIONS as u64) as usize],
        };
        let allowed = if self.m.vmxon {
            self.vmfail(15)
        } else if !self.valid_address(addr) || kind == 3 || kind == 4 {
            Expect::invalid()
        } else {
            Expect::succeed()
        };
        let got = insn::vmxon(addr);
        if self.check(format_args!("vmxon(kind {kind}, {addr:#x})"), got, allowed)
            && got == Outcome::Succeed
        {
            self.m.vmxon = true;
            self.m.vmxon_ptr = addr;
            self.m.current = None;
            self.m.written = None;
        }
    }

    fn vmxoff(&mut self) {
        let allowed = if self.m.vmxon { Expect::succeed() } else { Expect::fault(UD) };
        let got = insn::vmxoff();
        if self.check(format_args!("vmxoff"), got, allowed) && got == Outcome::Succeed {
            self.m.vmxon = false;
            self.m.current = None;
            self.m.written = None;
        }
    }

    /// Clearing CR4.VMXE: #GP in VMX operation (SDM Vol. 3C 24.8), as is clearing CR0.NE;
    /// outside it allowed, and VMXON then raises #UD.
    fn clear_vmxe(&mut self) {
        if self.m.vmxon && self.rng.chance(1, 3) {
            let cr0 = Cr0::read_raw();
            let got = insn::write_cr0(cr0 & !CR0_NE);
            if !self.check(
                format_args!("mov cr0 without NE in VMX operation"),
                got,
                Expect::fault(GP),
            ) && got == Outcome::Succeed
            {
                let _ = insn::write_cr0(cr0);
            }
            return;
        }
        let cr4 = Cr4::read_raw();
        let got = insn::write_cr4(cr4 & !CR4_VMXE);
        if self.m.vmxon {
            if !self.check(
                format_args!("mov cr4 without VMXE in VMX operation"),
                got,
                Expect::fault(GP),
            ) && got == Outcome::Succeed
            {
                let _ = insn::write_cr4(cr4);
            }
            return;
        }
        if self.check(format_args!("mov cr4 without VMXE"), got, Expect::succeed()) {
            let got = insn::vmxon(self.w.vmxon);
            self.check(format_args!("vmxon with CR4.VMXE clear"), got, Expect::fault(UD));
            if got == Outcome::Succeed {
                let _ = insn::vmxoff();
            }
        }
        let got = insn::write_cr4(cr4);
        self.check(format_args!("mov cr4 restoring VMXE"), got, Expect::succeed());
    }

    fn expect_vmclear(&self, ptr: Ptr, addr: u64) -> Expect {
        if !self.m.vmxon {
            Expect::fault(UD)
        } else if !self.valid_address(addr) {
            self.vmfail(2)
        } else if addr == self.m.vmxon_ptr {
            self.vmfail(3)
        } else if ptr == Ptr::BeyondRam {
            // Hardware writes to memory that is not there; L0 may refuse the address.
            Expect::succeed().or(self.vmfail(2))
        } else {
            Expect::succeed()
        }
    }

    pub(super) fn do_vmclear(&mut self, ptr: Ptr, addr: u64) -> Outcome {
        let allowed = self.expect_vmclear(ptr, addr);
        let got = insn::vmclear(addr);
        if self.check(format_args!("vmclear({ptr:?}, {addr:#x})"), got, allowed)
            && got == Outcome::Succeed
        {
            if let Some(i) = self.region_of(addr) {
                self.m.launch[i] = Launch::Clear;
            }
            if self.m.current == Some(addr) {
                self.m.current = None;
                self.m.written = None;
            }
        }
        got
    }

    fn vmclear(&mut self) {
        let (ptr, addr) = self.pick_ptr();
        self.do_vmclear(ptr, addr);
    }

    fn expect_vmptrld(&self, ptr: Ptr, addr: u64) -> Expect {
        if !self.m.vmxon {
            return Expect::fault(UD);
        }
        if !self.valid_address(addr) {
            return self.vmfail(9);
        }
        if addr == self.m.vmxon_ptr {
            return self.vmfail(10);
        }
        match ptr {
            Ptr::BeyondRam => self.vmfail(9).or(self.vmfail(11)),
            Ptr::WrongRevision => {
                // SAFETY: the junk page is ours.
                let rev = unsafe { (addr as *const u32).read_volatile() };
                let shadow = rev == self.w.caps.revision_id() | 1 << 31
                    && self.w.caps.secondary().can_set(proc2::VMCS_SHADOWING);
                if shadow { Expect::succeed() } else { self.vmfail(11) }
            }
            _ => Expect::succeed(),
        }
    }

    pub(super) fn do_vmptrld(&mut self, ptr: Ptr, addr: u64) -> Outcome {
        let allowed = self.expect_vmptrld(ptr, addr);
        let got = insn::vmptrld(addr);
        if self.check(format_args!("vmptrld({ptr:?}, {addr:#x})"), got, allowed)
            && got == Outcome::Succeed
        {
            self.m.current = Some(addr);
            self.m.written = None;
        }
        got
    }

    fn vmptrld(&mut self) {
        let (ptr, addr) = self.pick_ptr();
        self.do_vmptrld(ptr, addr);
    }

    fn vmptrst(&mut self) {
        let allowed = if self.m.vmxon { Expect::succeed() } else { Expect::fault(UD) };
        let (got, ptr) = insn::vmptrst();
        if self.check(format_args!("vmptrst"), got, allowed) && got == Outcome::Succeed {
            let want = self.m.current.unwrap_or(u64::MAX);
            if ptr != want {
                self.fail(format_args!("vmptrst stored {ptr:#x}, the current VMCS is {want:#x}"));
            }
        }
    }

    /// A field encoding: a table field, its HIGH half, the last one written, a random 15-bit
    /// encoding, one with bits above 14 set, or the VM-instruction error field.
    fn pick_encoding(&mut self) -> u64 {
        let all = F::ALL;
        match self.rng.below(8) {
            0..=2 => u64::from(all[self.rng.below(all.len() as u64) as usize].encoding()),
            3 => {
                let f = all[self.rng.below(all.len() as u64) as usize];
                u64::from(f.encoding() | 1)
            }
            4 => match self.m.written {
                Some((f, _)) => u64::from(f.encoding()),
                None => 0x4400,
            },
            5 => self.rng.below(0x8000),
            6 => self.rng.below(0x8000) | 1 << (15 + self.rng.below(49)),
            _ => 0x4400,
        }
    }

    /// The field `enc` names in the VMCS of the processor L0 shows (its capabilities give
    /// the fields that exist); `None`: VMREAD and VMWRITE are VMfailValid(12).
    fn field(&self, enc: u64) -> Option<(F, nested::vmcs::Access)> {
        F::from_encoding(enc).filter(|(f, _)| self.w.caps.has_field(*f))
    }

    fn vmread(&mut self) {
        let enc = self.pick_encoding();
        let field = self.field(enc);
        let allowed = if !self.m.vmxon {
            Expect::fault(UD)
        } else if self.m.current.is_none() {
            Expect::invalid()
        } else if field.is_none() {
            self.vmfail(12)
        } else {
            Expect::succeed()
        };
        let (got, value) = insn::vmread(enc);
        if self.check(format_args!("vmread({enc:#x})"), got, allowed)
            && got == Outcome::Succeed
            && let (Some((f, nested::vmcs::Access::Full)), Some((wf, wv))) = (field, self.m.written)
            && f == wf
        {
            let want = wv & f.width().mask();
            if value != want {
                self.fail(format_args!(
                    "vmread({enc:#x}) after vmwrite of {want:#x} read {value:#x} ({})",
                    f.name()
                ));
            }
        }
    }

    fn vmwrite(&mut self) {
        let enc = self.pick_encoding();
        let value = self.rng.value();
        let field = self.field(enc);
        let allowed = if !self.m.vmxon {
            Expect::fault(UD)
        } else if self.m.current.is_none() {
            Expect::invalid()
        } else {
            match field {
                None => self.vmfail(12),
                Some((f, _))
                    if f.field_type() == FieldType::ExitInfo
                        && !self.w.caps.vmwrite_any_field() =>
                {
                    self.vmfail(13)
                }
                Some(_) => Expect::succeed(),
            }
        };
        let got = insn::vmwrite(enc, value);
        if self.check(format_args!("vmwrite({enc:#x}, {value:#x})"), got, allowed)
            && got == Outcome::Succeed
        {
            if let Some(i) = self.m.current.and_then(|c| self.region_of(c)) {
                self.m.content[i] = Content::Unknown;
            }
            self.m.written = match field {
                Some((f, nested::vmcs::Access::Full)) => Some((f, value)),
                _ => None,
            };
        }
    }
}
