//! INVEPT, INVVPID and VMCALL in VMX root operation, checked against their SDM pseudocode
//! (Vol. 2 instruction reference; Vol. 3C 29.4.3 for the invalidation types): #UD when not
//! offered or outside VMX operation, VMfailValid(28) for unsupported types and invalid
//! descriptors, VMfail(1) or (19) for VMCALL without dual-monitor treatment.

use nested::caps::{ept_vpid, proc2};

use super::expect::{Expect, UD};
use super::program::{Launch, Program};
use crate::arch::vmx_probe as insn;

impl Program<'_> {
    pub(super) fn invept(&mut self) {
        let caps = &self.w.caps;
        let offered =
            caps.secondary().can_set(proc2::ENABLE_EPT) && caps.ept_vpid_has(ept_vpid::INVEPT);
        let ty = match self.rng.below(6) {
            0 | 1 => 1,
            2 | 3 => 2,
            4 => self.rng.pick(&[0, 3]),
            _ => self.rng.next(),
        };
        let valid_eptp = self.w.eptp();
        let (eptp, good) = match self.rng.below(6) {
            0 => ((valid_eptp & !7) | 1, false),
            1 => (valid_eptp & !0x38, false),
            2 => (valid_eptp | 1 << 9, false),
            3 => (valid_eptp | 1 << self.w.maxphyaddr, false),
            _ => (valid_eptp, true),
        };
        let supported = match ty {
            1 => caps.ept_vpid_has(ept_vpid::INVEPT_SINGLE_CONTEXT),
            2 => caps.ept_vpid_has(ept_vpid::INVEPT_ALL_CONTEXT),
            _ => false,
        };
        let allowed = if !offered || !self.m.vmxon {
            Expect::fault(UD)
        } else if !supported || (ty == 1 && !good) {
            self.vmfail(28)
        } else {
            Expect::succeed()
        };
        let got = insn::invept(ty, &[eptp, 0]);
        self.check(format_args!("invept(type {ty:#x}, eptp {eptp:#x})"), got, allowed);
    }

    pub(super) fn invvpid(&mut self) {
        let caps = &self.w.caps;
        let offered =
            caps.secondary().can_set(proc2::ENABLE_VPID) && caps.ept_vpid_has(ept_vpid::INVVPID);
        let ty = if self.rng.chance(1, 8) { self.rng.next() } else { self.rng.below(4) };
        let vpid = if self.rng.chance(1, 4) { 0 } else { 1 + self.rng.below(0xffff) };
        let reserved = if self.rng.chance(1, 6) { 1 << (16 + self.rng.below(48)) } else { 0 };
        let canonical = self.rng.chance(3, 4);
        let address = if canonical {
            self.rng.next() & 0x7fff_ffff_ffff
        } else {
            1 << 47 | (self.rng.next() & 0x7fff_ffff_f000)
        };
        let cap = match ty {
            0 => ept_vpid::INVVPID_INDIVIDUAL_ADDRESS,
            1 => ept_vpid::INVVPID_SINGLE_CONTEXT,
            2 => ept_vpid::INVVPID_ALL_CONTEXT,
            3 => ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS,
            _ => 0,
        };
        let allowed = if !offered || !self.m.vmxon {
            Expect::fault(UD)
        } else if cap == 0 || !caps.ept_vpid_has(cap) || reserved != 0 {
            self.vmfail(28)
        } else {
            match ty {
                0 if vpid == 0 || !canonical => self.vmfail(28),
                1 | 3 if vpid == 0 => self.vmfail(28),
                _ => Expect::succeed(),
            }
        };
        let got = insn::invvpid(ty, &[vpid | reserved, address]);
        self.check(
            format_args!("invvpid(type {ty:#x}, vpid {vpid:#x}|{reserved:#x}, {address:#x})"),
            got,
            allowed,
        );
    }

    /// VMCALL in VMX root operation: no dual-monitor treatment is offered, so VMfail(19) with
    /// a launched current VMCS, else VMfail(1) (SDM Vol. 2, VMCALL).
    pub(super) fn vmcall(&mut self) {
        let launch = self.m.current.and_then(|c| self.region_of(c)).map(|i| self.m.launch[i]);
        let allowed = if !self.m.vmxon {
            Expect::fault(UD)
        } else {
            match launch {
                _ if self.m.current.is_none() => Expect::invalid(),
                Some(Launch::Launched) => self.vmfail(19),
                Some(Launch::Clear) => self.vmfail(1),
                _ => self.vmfail(1).or(self.vmfail(19)),
            }
        };
        let got = insn::vmcall();
        self.check(format_args!("vmcall in VMX root operation"), got, allowed);
    }
}
