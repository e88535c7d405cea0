//! Entering L2: building a valid vmcs12 with a fresh L2 and EPT12, mutating it, VMLAUNCH and
//! VMRESUME with the outcome the SDM prescribes for the region's launch state and content
//! (Vol. 3C 26.1: errors 4 and 5, then 7, 8, then exits 33 and 34), and the checks of the exit
//! that comes back (reason in L2's set, RIP and instruction length of the instruction L2 must
//! exit at from where it started, the failing MSR-load entry in the exit qualification).

use nested::caps::ept_vpid;
use nested::vmcs::VmcsField as F;

use super::expect::{Expect, UD};
use super::l2::{self, Snippet, bit, reason};
use super::mutate::{self, Class};
use super::program::{Content, Launch, Program, Ptr};
use super::world::VMCS_REGIONS;
use crate::arch::vmx_probe::{self as insn, Outcome};

/// Exit reasons of instructions whose exit reports an instruction length (SDM 27.2.5).
const INSTRUCTION_EXITS: u64 = bit(reason::CPUID)
    | bit(reason::HLT)
    | bit(reason::INVD)
    | bit(reason::VMCALL)
    | bit(reason::IO)
    | bit(reason::RDMSR)
    | bit(reason::WRMSR);

fn read(f: F) -> u64 {
    insn::vmread(u64::from(f.encoding())).1
}

impl Program<'_> {
    /// Builds a valid vmcs12 in a region (VMCLEAR, VMPTRLD, every field), with a fresh L2
    /// and EPT12, maybe mutates them, and enters with VMLAUNCH (now and then VMRESUME).
    pub(super) fn launch(&mut self) {
        let i = self.rng.below(VMCS_REGIONS as u64) as usize;
        if self.m.vmxon && self.rng.chance(9, 10) {
            let addr = self.w.vmcs[i];
            if self.do_vmclear(Ptr::Region(i), addr) != Outcome::Succeed
                || self.do_vmptrld(Ptr::Region(i), addr) != Outcome::Succeed
            {
                return;
            }
            self.build(i);
            if self.failed {
                return;
            }
        }
        let launch = self.rng.chance(9, 10);
        self.enter(launch);
    }

    fn build(&mut self, i: usize) {
        let w = self.w;
        let timer = (w.caps.has_preemption_timer() && self.rng.chance(3, 4))
            .then(|| self.rng.below(3000) as u32);
        let snippet: Snippet = l2::generate(&mut self.rng, timer.is_some());
        w.load_l2(&snippet);
        w.build_ept();
        let mut exits = snippet.exits | bit(reason::EXTERNAL_INTERRUPT);
        if timer.is_some() {
            exits |= bit(reason::PREEMPTION_TIMER);
        }
        if self.rng.chance(1, 4) {
            let (what, more) = mutate::ept12(w, &mut self.rng, snippet.touched_page);
            if self.trace {
                log::info!("fuzz: {}.{} ept12 mutation {what}", self.index, self.step);
            }
            exits |= bit(reason::EPT_VIOLATION) | bit(reason::EPT_MISCONFIG) | more;
        }
        if self.m.vmxon && w.caps.ept_vpid_has(ept_vpid::INVEPT | ept_vpid::INVEPT_ALL_CONTEXT) {
            let got = insn::invept(2, &[0, 0]);
            self.check(
                format_args!("invept(all-context) after building EPT12"),
                got,
                Expect::succeed(),
            );
        }
        self.m.l2_exits = exits;
        self.m.last_exit_len = None;
        if let Err((f, got)) = w.write_vmcs12(&mut self.rng, timer) {
            self.fail(format_args!(
                "vmwrite {} while building a valid vmcs12: got {got}",
                f.name()
            ));
            return;
        }
        // L2's code and EPT12 are shared: a valid vmcs12 of another region now runs code it
        // was not built for.
        for c in &mut self.m.content {
            if *c == Content::Valid {
                *c = Content::Unknown;
            }
        }
        self.m.content[i] = Content::Valid;
        self.m.launch[i] = Launch::Clear;
        self.m.start[i] = Some(l2::CODE_GPA);
        self.m.written = None;
        if timer.is_some() && self.rng.chance(1, 10) {
            let n = mutate::wild_controls(&mut self.rng);
            self.m.content[i] = Content::WildControls;
            if self.trace {
                log::info!("fuzz: {}.{} {n} random control fields", self.index, self.step);
            }
        } else if timer.is_some() && self.rng.chance(1, 8) {
            let n = mutate::wild_guest(&mut self.rng);
            self.m.content[i] = Content::Wild;
            if self.trace {
                log::info!("fuzz: {}.{} {n} random guest-state fields", self.index, self.step);
            }
        } else if self.rng.chance(1, 2) {
            let mut class = None;
            let mut names = [""; 2];
            for name in names.iter_mut().take(1 + self.rng.below(2) as usize) {
                if let Some(m) = mutate::vmcs12(w, &mut self.rng) {
                    *name = m.name;
                    class = Some(class.map_or(m.class, |c: Class| c.min(m.class)));
                }
            }
            if let Some(c) = class {
                self.m.content[i] = Content::Bad(c);
                if self.trace {
                    log::info!("fuzz: {}.{} vmcs12 mutation {names:?}", self.index, self.step);
                }
            }
        }
        self.terminal = snippet.terminal;
    }

    /// The region the current VMCS is, if it is one of ours.
    fn current_region(&self) -> Option<usize> {
        self.m.current.and_then(|c| self.region_of(c))
    }

    /// VMLAUNCH (`launch`) or VMRESUME of the current VMCS, checked.
    pub(super) fn enter(&mut self, launch: bool) {
        let name = if launch { "vmlaunch" } else { "vmresume" };
        let region = self.current_region();
        let allowed = if !self.m.vmxon {
            Expect::fault(UD)
        } else if self.m.current.is_none() {
            Expect::invalid()
        } else {
            let Some(i) = region else { return };
            match (launch, self.m.launch[i], self.m.content[i]) {
                (_, Launch::Unknown, _) | (_, _, Content::Unknown) => return,
                (true, Launch::Launched, _) => self.vmfail(4),
                (false, Launch::Clear, _) => self.vmfail(5),
                (_, _, Content::Bad(Class::Controls)) => self.vmfail(7),
                (_, _, Content::Bad(Class::Host)) => self.vmfail(8),
                (_, _, Content::Bad(Class::Guest)) => {
                    Expect::entry_failure(reason::ENTRY_FAILURE_GUEST)
                }
                (_, _, Content::Bad(Class::MsrLoad)) => {
                    Expect::entry_failure(reason::ENTRY_FAILURE_MSR)
                }
                (_, _, Content::Wild) => {
                    Expect::exits(u64::MAX).or(Expect::entry_failure(reason::ENTRY_FAILURE_GUEST))
                }
                (_, _, Content::WildControls) => Expect::exits(u64::MAX)
                    .or(Expect::entry_failure(reason::ENTRY_FAILURE_GUEST))
                    .or(Expect::entry_failure(reason::ENTRY_FAILURE_MSR))
                    .or(self.vmfail(7))
                    .or(self.vmfail(8)),
                // A VMLAUNCH after VMCLEAR starts L2 where it stopped: maybe past the terminal
                // instruction, in the CPUID loop.
                (true, _, Content::Valid) if self.m.start[i] == Some(l2::CODE_GPA) => {
                    Expect::exits(self.m.l2_exits)
                }
                (_, _, Content::Valid) => Expect::exits(self.m.l2_exits | bit(reason::CPUID)),
            }
        };
        let got = insn::enter(launch, self.m.vmxon && self.m.current.is_some());
        if !self.check(format_args!("{name}"), got, allowed) {
            return;
        }
        let Outcome::Exit(r) = got else { return };
        let Some(i) = region else { return };
        self.m.last_exit_len = None;
        if r & (1 << 31) != 0 {
            self.m.launch[i] = Launch::Unknown;
            if r & 0xffff == reason::ENTRY_FAILURE_MSR {
                let q = read(F::ExitQualification);
                if q != 1 {
                    self.fail(format_args!("{name}: MSR-load failure names entry {q}, not 1"));
                }
            }
            return;
        }
        self.m.launch[i] = Launch::Launched;
        if matches!(self.m.content[i], Content::Wild | Content::WildControls) {
            // Where a random L2 stopped is its own business; do not resume it.
            self.m.content[i] = Content::Unknown;
            return;
        }
        let start = self.m.start[i];
        let at = read(F::GuestRip);
        self.m.start[i] = Some(at);
        if self.trace {
            log::info!("fuzz: {}.{} exit {r} at rip {at:#x}", self.index, self.step);
        }
        if INSTRUCTION_EXITS & bit(r) != 0 {
            let len = read(F::VmExitInstructionLen);
            self.m.last_exit_len = Some(len);
            if let Some((t, rip, want)) =
                self.terminal.zip(start).and_then(|(t, s)| l2::exit_site(t, s))
                && t == r
                && (at != rip || len != want)
            {
                self.fail(format_args!(
                    "{name}: exit {r} at rip {at:#x} length {len}, expected rip {rip:#x} \
                     length {want} (L2 started at {:#x})",
                    start.unwrap_or(0)
                ));
            }
        }
    }

    /// VMRESUME of a launched, valid vmcs12, maybe past the instruction that exited.
    pub(super) fn resume(&mut self) {
        let ready = self.m.vmxon
            && self.current_region().is_some_and(|i| {
                self.m.launch[i] == Launch::Launched && self.m.content[i] == Content::Valid
            });
        if !ready {
            return self.launch();
        }
        if let Some(len) = self.m.last_exit_len
            && self.rng.chance(2, 3)
        {
            let rip = read(F::GuestRip) + len;
            let got = insn::vmwrite(u64::from(F::GuestRip.encoding()), rip);
            if self.check(format_args!("vmwrite(GUEST_RIP past the exit)"), got, Expect::succeed())
                && let Some(i) = self.current_region()
            {
                self.m.start[i] = Some(rip);
            }
        }
        self.enter(false);
    }
}
