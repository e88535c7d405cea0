//! The outcomes the SDM allows for one step, as a set ([`Expect`]), and the check of an
//! actual outcome against it.

use core::fmt;

use crate::arch::vmx_probe::Outcome;

/// Exception vectors L0 may inject for a VMX instruction (SDM Vol. 2, "Protected Mode
/// Exceptions" of each instruction).
pub const UD: u8 = 6;
pub const GP: u8 = 13;

/// A set of allowed outcomes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    pub succeed: bool,
    pub fail_invalid: bool,
    /// VMfailValid error numbers (bit n: error n).
    pub fail_valid: u64,
    /// Exception vectors (bit n: vector n).
    pub faults: u64,
    /// Exit reasons of a VM exit back to L1 (bit n: basic reason n, bit 31 of the reason clear).
    pub exits: u64,
    /// Exit reasons of a VM-entry failure (bit n: basic reason n with bit 31 set).
    pub entry_failures: u64,
}

impl Expect {
    pub const fn succeed() -> Self {
        Expect {
            succeed: true,
            fail_invalid: false,
            fail_valid: 0,
            faults: 0,
            exits: 0,
            entry_failures: 0,
        }
    }

    pub const fn fault(vector: u8) -> Self {
        Expect { succeed: false, faults: 1 << vector, ..Self::NONE }
    }

    pub const fn invalid() -> Self {
        Expect { fail_invalid: true, ..Self::NONE }
    }

    pub const fn valid(n: u32) -> Self {
        Expect { fail_valid: 1 << n, ..Self::NONE }
    }

    pub const fn exits(mask: u64) -> Self {
        Expect { exits: mask, ..Self::NONE }
    }

    pub const fn entry_failure(reason: u32) -> Self {
        Expect { entry_failures: 1 << reason, ..Self::NONE }
    }

    const NONE: Expect = Expect {
        succeed: false,
        fail_invalid: false,
        fail_valid: 0,
        faults: 0,
        exits: 0,
        entry_failures: 0,
    };

    /// Either outcome set.
    pub const fn or(self, other: Expect) -> Expect {
        Expect {
            succeed: self.succeed | other.succeed,
            fail_invalid: self.fail_invalid | other.fail_invalid,
            fail_valid: self.fail_valid | other.fail_valid,
            faults: self.faults | other.faults,
            exits: self.exits | other.exits,
            entry_failures: self.entry_failures | other.entry_failures,
        }
    }

    pub fn allows(&self, o: Outcome) -> bool {
        let has = |mask: u64, n: u32| n < 64 && mask & (1 << n) != 0;
        match o {
            Outcome::Succeed => self.succeed,
            Outcome::FailInvalid => self.fail_invalid,
            Outcome::FailValid(n) => has(self.fail_valid, n),
            Outcome::Fault(v) => has(self.faults, u32::from(v)),
            Outcome::Exit(r) if r & (1 << 31) != 0 => has(self.entry_failures, r & 0xffff),
            Outcome::Exit(r) => r >> 16 == 0 && has(self.exits, r),
        }
    }
}

fn bits(f: &mut fmt::Formatter<'_>, name: &str, mask: u64, first: &mut bool) -> fmt::Result {
    if mask == 0 {
        return Ok(());
    }
    write!(f, "{}{name}(", if *first { "" } else { "|" })?;
    *first = false;
    let mut sep = "";
    for n in (0..64).filter(|n| mask & (1 << n) != 0) {
        write!(f, "{sep}{n}")?;
        sep = ",";
    }
    f.write_str(")")
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (on, name) in [(self.succeed, "VMsucceed"), (self.fail_invalid, "VMfailInvalid")] {
            if on {
                write!(f, "{}{name}", if first { "" } else { "|" })?;
                first = false;
            }
        }
        bits(f, "VMfailValid", self.fail_valid, &mut first)?;
        bits(f, "fault", self.faults, &mut first)?;
        bits(f, "exit", self.exits, &mut first)?;
        bits(f, "entry-failure-exit", self.entry_failures, &mut first)?;
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}
