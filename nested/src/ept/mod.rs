//! Multi-dimensional paging: EPT12 walks and the EPT02 shadow (Turtles §4.1; SDM Vol. 3C
//! 29.3 EPT, 29.3.3 EPT-induced VM exits, 29.4.3 INVEPT).
//!
//! L1 runs L2 with its own EPT (EPT12: L2Gpa → L1Gpa); L0 maps L1 with EPT01 (L1Gpa → Hpa).
//! The hardware walks only one EPT, so L0 builds EPT02 (L2Gpa → Hpa) on demand: each EPT02
//! violation is resolved by walking EPT12 ([`walk`]) and EPT01, then installing the composed
//! entry ([`shadow`]); faults in EPT12 are reflected to L1 as the EPT violation or
//! misconfiguration it would have seen.

pub mod l2_mmio;
pub mod shadow;
pub mod walk;

use crate::caps::{VmxCaps, ept_vpid};

/// EPTP bits (SDM 25.6.11).
pub mod eptp {
    /// Bits 2:0: memory type of the paging structures (0 = UC, 6 = WB).
    pub const MEMTYPE_MASK: u64 = 7;
    /// Bits 5:3: page-walk length minus one.
    pub const WALK_LENGTH_MASK: u64 = 7 << 3;
    /// 4-level walk (length 4, encoded as 3).
    pub const WALK_LENGTH_4: u64 = 3 << 3;
    /// Bit 6: accessed and dirty flags.
    pub const AD_ENABLE: u64 = 1 << 6;
    /// Bits 11:7: reserved here (bit 7 is supervisor shadow-stack control, not offered).
    pub const RESERVED_LOW: u64 = 0x1f << 7;
    /// Bits 51:12 (up to MAXPHYADDR): the PML4 table's physical address.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// True if `value` is an EPTP L1 may use under `caps` (SDM 26.2.1.1, the EPTP bullets; also
/// INVEPT single-context and VMFUNC EPTP switching).
pub fn eptp_valid(value: u64, caps: &VmxCaps, maxphyaddr: u8) -> bool {
    let memtype_ok = match value & eptp::MEMTYPE_MASK {
        0 => caps.ept_vpid_has(ept_vpid::MEMTYPE_UC),
        6 => caps.ept_vpid_has(ept_vpid::MEMTYPE_WB),
        _ => false,
    };
    let walk_ok = value & eptp::WALK_LENGTH_MASK == eptp::WALK_LENGTH_4
        && caps.ept_vpid_has(ept_vpid::PAGE_WALK_4);
    let ad_ok = value & eptp::AD_ENABLE == 0 || caps.ept_vpid_has(ept_vpid::ACCESSED_DIRTY);
    memtype_ok
        && walk_ok
        && ad_ok
        && value & eptp::RESERVED_LOW == 0
        && crate::addr::fits_phys_width(value, maxphyaddr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every EPTP rule of SDM 26.2.1.1 on its own: memory type UC or WB (each only if
    /// offered), a 4-level walk, A/D only if offered, bits 11:7 clear, the address within
    /// MAXPHYADDR.
    #[test]
    fn eptp_rules() {
        let all = ept_vpid::MEMTYPE_UC
            | ept_vpid::MEMTYPE_WB
            | ept_vpid::PAGE_WALK_4
            | ept_vpid::ACCESSED_DIRTY;
        let caps = VmxCaps { ept_vpid: all, ..VmxCaps::default() };
        let base = 0x1000 | eptp::WALK_LENGTH_4;
        assert!(eptp_valid(base, &caps, 36), "UC");
        assert!(eptp_valid(base | 6, &caps, 36), "WB");
        assert!(eptp_valid(base | 6 | eptp::AD_ENABLE, &caps, 36), "WB with A/D");
        for memtype in [1, 2, 3, 4, 5, 7] {
            assert!(!eptp_valid(base | memtype, &caps, 36), "memory type {memtype}");
        }
        let no_uc = VmxCaps { ept_vpid: all & !ept_vpid::MEMTYPE_UC, ..caps };
        assert!(!eptp_valid(base, &no_uc, 36));
        assert!(eptp_valid(base | 6, &no_uc, 36));
        let no_wb = VmxCaps { ept_vpid: all & !ept_vpid::MEMTYPE_WB, ..caps };
        assert!(!eptp_valid(base | 6, &no_wb, 36));
        let no_ad = VmxCaps { ept_vpid: all & !ept_vpid::ACCESSED_DIRTY, ..caps };
        assert!(!eptp_valid(base | 6 | eptp::AD_ENABLE, &no_ad, 36));
        assert!(eptp_valid(base | 6, &no_ad, 36));
        let no_walk = VmxCaps { ept_vpid: all & !ept_vpid::PAGE_WALK_4, ..caps };
        assert!(!eptp_valid(base | 6, &no_walk, 36));
        assert!(!eptp_valid(0x1000 | 6 | 4 << 3, &caps, 36), "5-level walk");
        assert!(!eptp_valid(0x1000 | 6 | 2 << 3, &caps, 36), "3-level walk");
        for bit in 7..12 {
            assert!(!eptp_valid(base | 6 | 1 << bit, &caps, 36), "reserved bit {bit}");
        }
        assert!(eptp_valid(0xf_ffff_f000 | eptp::WALK_LENGTH_4 | 6, &caps, 36));
        assert!(!eptp_valid(0x10_0000_0000 | eptp::WALK_LENGTH_4 | 6, &caps, 36));
    }
}
