//! The AML that announces virtio-mmio devices to a Linux guest: an SSDT whose
//! `Scope (\_SB) { Device (VRnn) { ... } }` entries have `_HID "LNRO0005"` (the ID Linux's
//! `virtio_mmio` driver matches in its ACPI table), a `_UID`, and a `_CRS` with the register
//! window (Memory32Fixed) and the interrupt (Extended Interrupt: level-triggered, active high,
//! on an I/O APIC GSI). ACPI 6.5: 19.6.{31,65,84,129} (Device, Memory32Fixed, Interrupt,
//! Scope), 20.2 (AML encoding), 6.4.3.{4,6} (the resource descriptors).

/// One virtio-mmio device as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Guest-physical base of its register window.
    pub base: u32,
    /// Window size in bytes.
    pub size: u32,
    /// Its interrupt: an I/O APIC input (GSI), level-triggered, active high.
    pub gsi: u32,
}

/// Devices an SSDT can hold.
pub const MAX_DEVICES: usize = 4;
/// AML bytes of one `Device` (see [`device`]).
const DEVICE_LEN: usize = 61;
/// `Scope (\_SB) {` : ScopeOp, a 2-byte PkgLength, `\_SB_`.
const SCOPE_HEAD: usize = 1 + 2 + 5;
/// Largest AML [`aml`] writes.
pub const AML_MAX: usize = SCOPE_HEAD + MAX_DEVICES * DEVICE_LEN;

/// `_CRS` resource template bytes: Memory32Fixed (12), Extended Interrupt (9), End Tag (2).
const CRS_LEN: usize = 23;

/// Writes `Device (VRnn) { Name (_HID, "LNRO0005") Name (_UID, n) Name (_CRS, ...) }`.
fn device(out: &mut [u8; DEVICE_LEN], n: u8, d: &VirtioMmio) {
    let mut crs = [0u8; CRS_LEN];
    // Memory32Fixed (ReadWrite, base, size).
    crs[0] = 0x86;
    crs[1] = 9;
    crs[3] = 1;
    crs[4..8].copy_from_slice(&d.base.to_le_bytes());
    crs[8..12].copy_from_slice(&d.size.to_le_bytes());
    // Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { gsi }.
    crs[12] = 0x89;
    crs[13] = 6;
    crs[15] = 0x01;
    crs[16] = 1;
    crs[17..21].copy_from_slice(&d.gsi.to_le_bytes());
    // End Tag, checksum 0 ("treated as correct").
    crs[21] = 0x79;

    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    // DeviceOp, PkgLength (everything after the opcode), NameSeg.
    put(&[0x5b, 0x82, (DEVICE_LEN - 2) as u8, b'V', b'R', b'0' + n / 10, b'0' + n % 10]);
    // Name (_HID, "LNRO0005"): NameOp, NameSeg, StringPrefix, ASCIIZ.
    put(&[0x08, b'_', b'H', b'I', b'D', 0x0d]);
    put(b"LNRO0005\0");
    // Name (_UID, n): BytePrefix.
    put(&[0x08, b'_', b'U', b'I', b'D', 0x0a, n]);
    // Name (_CRS, Buffer (23) {...}): BufferOp, PkgLength, BytePrefix size, the bytes.
    put(&[0x08, b'_', b'C', b'R', b'S', 0x11, (1 + 2 + CRS_LEN) as u8, 0x0a, CRS_LEN as u8]);
    put(&crs);
    debug_assert_eq!(at, DEVICE_LEN);
}

/// Writes `Scope (\_SB) { Device ... }` for `devices` (at most [`MAX_DEVICES`]; more are
/// left out) into `out`; returns the bytes written.
pub fn aml(devices: &[VirtioMmio], out: &mut [u8; AML_MAX]) -> usize {
    let devices = &devices[..devices.len().min(MAX_DEVICES)];
    let len = SCOPE_HEAD + devices.len() * DEVICE_LEN;
    // PkgLength counts itself and what follows the ScopeOp: two-byte encoding (ACPI 20.2.4).
    let pkg = len - 1;
    out[0] = 0x10;
    out[1] = 0x40 | (pkg & 0xf) as u8;
    out[2] = (pkg >> 4) as u8;
    out[3..8].copy_from_slice(b"\\_SB_");
    for (i, d) in devices.iter().enumerate() {
        let mut dev = [0u8; DEVICE_LEN];
        device(&mut dev, i as u8, d);
        let at = SCOPE_HEAD + i * DEVICE_LEN;
        out[at..at + DEVICE_LEN].copy_from_slice(&dev);
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PkgLength at `b[0..]`: (value, bytes it takes).
    fn pkg_length(b: &[u8]) -> (usize, usize) {
        let follow = usize::from(b[0] >> 6);
        if follow == 0 {
            return (usize::from(b[0] & 0x3f), 1);
        }
        let mut v = usize::from(b[0] & 0xf);
        for i in 0..follow {
            v |= usize::from(b[1 + i]) << (4 + 8 * i);
        }
        (v, 1 + follow)
    }

    #[test]
    fn scope_and_devices_have_consistent_lengths() {
        let devs = [
            VirtioMmio { base: 0xfeb0_0000, size: 0x200, gsi: 16 },
            VirtioMmio { base: 0xfeb0_1000, size: 0x200, gsi: 17 },
        ];
        let mut out = [0u8; AML_MAX];
        let len = aml(&devs, &mut out);
        assert_eq!(len, SCOPE_HEAD + 2 * DEVICE_LEN);
        assert_eq!(out[0], 0x10);
        let (pkg, n) = pkg_length(&out[1..]);
        assert_eq!(1 + pkg, len);
        assert_eq!(&out[1 + n..1 + n + 5], b"\\_SB_");
        for (i, d) in devs.iter().enumerate() {
            let dev = &out[SCOPE_HEAD + i * DEVICE_LEN..][..DEVICE_LEN];
            assert_eq!(&dev[..2], &[0x5b, 0x82]);
            let (pkg, n) = pkg_length(&dev[2..]);
            assert_eq!(2 + pkg, DEVICE_LEN);
            assert_eq!(&dev[2 + n..2 + n + 4], format!("VR0{i}").as_bytes());
            let hid = dev.windows(8).position(|w| w == b"LNRO0005").expect("_HID");
            assert_eq!(dev[hid + 8], 0);
            let crs = dev.len() - CRS_LEN;
            assert_eq!(dev[crs], 0x86);
            assert_eq!(u32::from_le_bytes(dev[crs + 4..crs + 8].try_into().unwrap()), d.base);
            assert_eq!(u32::from_le_bytes(dev[crs + 8..crs + 12].try_into().unwrap()), d.size);
            assert_eq!(dev[crs + 12], 0x89);
            assert_eq!(u32::from_le_bytes(dev[crs + 17..crs + 21].try_into().unwrap()), d.gsi);
            assert_eq!(&dev[crs + 21..], &[0x79, 0]);
        }
    }

    #[test]
    fn more_devices_than_fit_are_left_out() {
        let d = VirtioMmio { base: 0, size: 0x200, gsi: 16 };
        let mut out = [0u8; AML_MAX];
        assert_eq!(aml(&[d; MAX_DEVICES + 3], &mut out), AML_MAX);
        assert_eq!(aml(&[], &mut out), SCOPE_HEAD);
    }
}
