//! Basic VM-exit reasons (SDM Vol. 3D Appendix C) and exit counters.

/// A basic exit reason (bits 15:0 of the exit-reason field), SDM names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ExitReason {
    ExceptionOrNmi = 0,
    ExternalInterrupt = 1,
    TripleFault = 2,
    InitSignal = 3,
    StartupIpi = 4,
    IoSmi = 5,
    OtherSmi = 6,
    InterruptWindow = 7,
    NmiWindow = 8,
    TaskSwitch = 9,
    Cpuid = 10,
    Getsec = 11,
    Hlt = 12,
    Invd = 13,
    Invlpg = 14,
    Rdpmc = 15,
    Rdtsc = 16,
    Rsm = 17,
    Vmcall = 18,
    Vmclear = 19,
    Vmlaunch = 20,
    Vmptrld = 21,
    Vmptrst = 22,
    Vmread = 23,
    Vmresume = 24,
    Vmwrite = 25,
    Vmxoff = 26,
    Vmxon = 27,
    CrAccess = 28,
    DrAccess = 29,
    IoInstruction = 30,
    Rdmsr = 31,
    Wrmsr = 32,
    EntryFailGuestState = 33,
    EntryFailMsrLoading = 34,
    Mwait = 36,
    MonitorTrapFlag = 37,
    Monitor = 39,
    Pause = 40,
    EntryFailMachineCheck = 41,
    TprBelowThreshold = 43,
    ApicAccess = 44,
    VirtualizedEoi = 45,
    GdtrIdtrAccess = 46,
    LdtrTrAccess = 47,
    EptViolation = 48,
    EptMisconfig = 49,
    Invept = 50,
    Rdtscp = 51,
    PreemptionTimer = 52,
    Invvpid = 53,
    Wbinvd = 54,
    Xsetbv = 55,
    ApicWrite = 56,
    Rdrand = 57,
    Invpcid = 58,
    Vmfunc = 59,
    Encls = 60,
    Rdseed = 61,
    PmlFull = 62,
    Xsaves = 63,
    Xrstors = 64,
    Pconfig = 65,
    SppEvent = 66,
    Umwait = 67,
    Tpause = 68,
    Loadiwkey = 69,
    Enclv = 70,
    EnqcmdPasidFail = 72,
    EnqcmdsPasidFail = 73,
    BusLock = 74,
    InstructionTimeout = 75,
    Seamcall = 76,
    Tdcall = 77,
    Rdmsrlist = 78,
    Wrmsrlist = 79,
}

/// Exit-reason bit 31: VM-entry failure (SDM 25.9.1).
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;

/// Number of counter slots: one per basic reason number up to the highest defined.
pub const EXIT_REASON_SLOTS: usize = 80;

impl ExitReason {
    /// The reason numbered `basic`, or `None` for an undefined number.
    #[inline(always)]
    pub const fn from_basic(basic: u16) -> Option<ExitReason> {
        use ExitReason::*;
        Some(match basic {
            0 => ExceptionOrNmi,
            1 => ExternalInterrupt,
            2 => TripleFault,
            3 => InitSignal,
            4 => StartupIpi,
            5 => IoSmi,
            6 => OtherSmi,
            7 => InterruptWindow,
            8 => NmiWindow,
            9 => TaskSwitch,
            10 => Cpuid,
            11 => Getsec,
            12 => Hlt,
            13 => Invd,
            14 => Invlpg,
            15 => Rdpmc,
            16 => Rdtsc,
            17 => Rsm,
            18 => Vmcall,
            19 => Vmclear,
            20 => Vmlaunch,
            21 => Vmptrld,
            22 => Vmptrst,
            23 => Vmread,
            24 => Vmresume,
            25 => Vmwrite,
            26 => Vmxoff,
            27 => Vmxon,
            28 => CrAccess,
            29 => DrAccess,
            30 => IoInstruction,
            31 => Rdmsr,
            32 => Wrmsr,
            33 => EntryFailGuestState,
            34 => EntryFailMsrLoading,
            36 => Mwait,
            37 => MonitorTrapFlag,
            39 => Monitor,
            40 => Pause,
            41 => EntryFailMachineCheck,
            43 => TprBelowThreshold,
            44 => ApicAccess,
            45 => VirtualizedEoi,
            46 => GdtrIdtrAccess,
            47 => LdtrTrAccess,
            48 => EptViolation,
            49 => EptMisconfig,
            50 => Invept,
            51 => Rdtscp,
            52 => PreemptionTimer,
            53 => Invvpid,
            54 => Wbinvd,
            55 => Xsetbv,
            56 => ApicWrite,
            57 => Rdrand,
            58 => Invpcid,
            59 => Vmfunc,
            60 => Encls,
            61 => Rdseed,
            62 => PmlFull,
            63 => Xsaves,
            64 => Xrstors,
            65 => Pconfig,
            66 => SppEvent,
            67 => Umwait,
            68 => Tpause,
            69 => Loadiwkey,
            70 => Enclv,
            72 => EnqcmdPasidFail,
            73 => EnqcmdsPasidFail,
            74 => BusLock,
            75 => InstructionTimeout,
            76 => Seamcall,
            77 => Tdcall,
            78 => Rdmsrlist,
            79 => Wrmsrlist,
            _ => return None,
        })
    }

    /// The basic reason number.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// True for the exits of the VMX instructions (SDM Vol. 3D Appendix C: VMCALL, VMCLEAR,
    /// VMLAUNCH, VMPTRLD, VMPTRST, VMREAD, VMRESUME, VMWRITE, VMXOFF, VMXON, INVEPT,
    /// INVVPID): #UD while a guest has no VMX, emulated for L1 when it has. VMFUNC is not
    /// one of them (it exits only on a failed function).
    #[inline]
    pub const fn is_vmx_instruction(self) -> bool {
        use ExitReason::*;
        matches!(
            self,
            Vmcall
                | Vmclear
                | Vmlaunch
                | Vmptrld
                | Vmptrst
                | Vmread
                | Vmresume
                | Vmwrite
                | Vmxoff
                | Vmxon
                | Invept
                | Invvpid
        )
    }
}

/// Exits counted per basic reason (NOVA `Counter::vmi`); undefined reasons share the last
/// slot's neighbour `unknown`.
#[derive(Clone, Debug)]
pub struct ExitCounters {
    pub per_reason: [u64; EXIT_REASON_SLOTS],
    pub unknown: u64,
}

impl Default for ExitCounters {
    fn default() -> Self {
        Self { per_reason: [0; EXIT_REASON_SLOTS], unknown: 0 }
    }
}

impl ExitCounters {
    /// Counts one exit with the raw exit-reason field `reason`.
    #[inline(always)]
    pub fn record(&mut self, reason: u32) {
        match self.per_reason.get_mut((reason & 0xffff) as usize) {
            Some(c) => *c = c.wrapping_add(1),
            None => self.unknown = self.unknown.wrapping_add(1),
        }
    }

    /// Exits counted for `reason`.
    pub fn get(&self, reason: ExitReason) -> u64 {
        self.per_reason.get(reason.number() as usize).copied().unwrap_or(0)
    }

    /// All exits counted.
    pub fn total(&self) -> u64 {
        self.per_reason.iter().fold(self.unknown, |a, &b| a.wrapping_add(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        let mut defined = 0;
        for n in 0..=u16::MAX {
            if let Some(r) = ExitReason::from_basic(n) {
                assert_eq!(r.number(), n);
                defined += 1;
            }
        }
        assert_eq!(defined, 76);
        assert_eq!(ExitReason::from_basic(35), None);
        assert_eq!(ExitReason::from_basic(48), Some(ExitReason::EptViolation));
    }

    #[test]
    fn vmx_instruction_exits_are_the_twelve_of_appendix_c() {
        let vmx: Vec<u16> = (0..=u16::MAX)
            .filter_map(ExitReason::from_basic)
            .filter(|r| r.is_vmx_instruction())
            .map(ExitReason::number)
            .collect();
        assert_eq!(vmx, [18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 50, 53]);
        assert!(!ExitReason::Vmfunc.is_vmx_instruction());
    }

    #[test]
    fn counters() {
        let mut c = ExitCounters::default();
        c.record(10);
        c.record(10);
        c.record(EXIT_REASON_ENTRY_FAILURE | 33);
        c.record(500);
        assert_eq!(c.get(ExitReason::Cpuid), 2);
        assert_eq!(c.get(ExitReason::EntryFailGuestState), 1);
        assert_eq!(c.unknown, 1);
        assert_eq!(c.total(), 4);
    }
}
