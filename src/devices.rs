//! Emulator devices for a config: the NICs and disks its `devices` list names, as QEMU
//! arguments or bochsrc lines. Network traffic stays on loopback: the emulator's user network
//! forwards only the endpoint's port, bound to 127.0.0.1, and the image only answers requests.
//! (QEMU 7.2's `restrict=on` would also drop those answers, so it is not used.)

use std::path::PathBuf;

use turtles_config::{Config, Device, GuestDevice, VirtioInterface};

use crate::workspace_root;

/// The address and UDP port the Linux guest's `/init` gives its virtio-net and answers on
/// (`src/linux_init.sh`); the emulator forwards the endpoint's host port plus one to it.
pub const GUEST_ADDRESS: &str = "10.0.2.16";
pub const GUEST_UDP_PORT: u16 = 7777;
/// Bytes of run-time data the runner writes to the guest's own disk (partition 3).
pub const GUEST_DISK_BYTES: usize = 64 * 1024;

/// Bochs guesses a flat disk's geometry from its size: keep it whole cylinders of 16 heads
/// and 63 sectors.
const BOCHS_CYLINDER: usize = 16 * 63 * storage::SECTOR;

/// Extra QEMU arguments for the config's devices.
pub fn qemu_args(config: &Config) -> Vec<String> {
    let mut args = Vec::new();
    let mut push = |a: &str, b: String| {
        args.push(a.to_string());
        args.push(b);
    };
    for device in &config.devices {
        match device {
            Device::VirtioNet | Device::E1000 => {
                let legacy =
                    config.net.as_ref().is_some_and(|n| n.virtio == VirtioInterface::Legacy);
                let model = match (*device == Device::VirtioNet, legacy) {
                    (true, false) => "virtio-net-pci,disable-legacy=on",
                    (true, true) => "virtio-net-pci,disable-modern=on",
                    (false, _) => "e1000",
                };
                push("-netdev", format!("user,id=net0{}", forward(config)));
                push("-device", format!("{model},netdev=net0"));
            }
            Device::VirtioBlk => match make_disk(config) {
                Ok(path) => {
                    push("-drive", format!("file={},format=raw,if=none,id=disk0", path.display()));
                    let legacy =
                        config.disk.as_ref().is_some_and(|d| d.virtio == VirtioInterface::Legacy);
                    // `virtio-drivers` uses 16-entry queues, which a legacy device must fix.
                    let interface = if legacy {
                        "disable-modern=on,queue-size=16"
                    } else {
                        "disable-legacy=on"
                    };
                    push("-device", format!("virtio-blk-pci,drive=disk0,{interface}"));
                }
                Err(e) => eprintln!("turtles: no disk attached: {e}"),
            },
            Device::Com1 | Device::Ata => {}
        }
    }
    args
}

/// Where this run's disk image is: one per config and runner process.
pub fn disk_path(config: &Config) -> PathBuf {
    workspace_root().join("target/run/disks").join(format!(
        "{}-{}.img",
        config.name,
        std::process::id()
    ))
}

/// Writes the config's disk: the guest image it names (built first) and an empty report
/// partition (`storage::layout`).
fn make_disk(config: &Config) -> Result<PathBuf, String> {
    let disk = config.disk.as_ref().ok_or("the config has no [disk] section")?;
    let image = match &disk.guest {
        Some(name) => {
            let set = crate::images::configs()?;
            let (path, _) = crate::images::build(&set, set.get(name)?)?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some((name.as_str(), bytes))
        }
        None => None,
    };
    let size = (disk.size_kib > 0).then_some(disk.size_kib as usize * 1024);
    let mut bytes =
        storage::layout::build_disk(image.as_ref().map(|(n, b)| (*n, b.as_slice())), size);
    if config.guest_devices.contains(&GuestDevice::VirtioBlk) && size.is_none() {
        let data = run_time_data(GUEST_DISK_BYTES);
        storage::layout::add_guest_disk(&mut bytes, &data).map_err(|e| e.to_string())?;
        println!(
            "turtles: guest disk: {} bytes written at run time, crc32 {:08x}",
            data.len(),
            crc32(&data)
        );
    }
    if size.is_none() {
        bytes.resize(bytes.len().div_ceil(BOCHS_CYLINDER) * BOCHS_CYLINDER, 0);
    }
    let path = disk_path(config);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `len` bytes that differ from run to run (xorshift seeded from the clock and the pid).
fn run_time_data(len: usize) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x = (nanos ^ (u64::from(std::process::id()) << 32) ^ call.rotate_left(48)) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: zlib's), as busybox's `crc32` in
/// the guest prints it.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(
            crc ^ u32::from(b),
            |c, _| if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 },
        )
    })
}

/// After a run: prints the report the image wrote to its disk, one `turtles: disk report:`
/// line per JSON line.
pub fn after_run(config: &Config) {
    if !config.disk.as_ref().is_some_and(|d| d.report) {
        return;
    }
    let path = disk_path(config);
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("turtles: disk report: cannot read {}", path.display());
        return;
    };
    match storage::layout::report_of_disk(&bytes) {
        Some(report) => {
            for line in String::from_utf8_lossy(report).lines() {
                println!("turtles: disk report: {line}");
            }
        }
        None => println!("turtles: disk report: none written ({})", path.display()),
    }
}

/// `,hostfwd=udp:127.0.0.1:HOST-:PORT` for the endpoint, if the config has one.
fn forward(config: &Config) -> String {
    match &config.net {
        Some(net) => format!(",hostfwd=udp:127.0.0.1:{}-:{}", net.host_port(), net.port),
        None => String::new(),
    }
}

/// Extra bochsrc lines for the config's devices: the e1000 in PCI slot 1 on Bochs' slirp
/// backend (its config file forwards the endpoint's port from 127.0.0.1) and the disk as
/// ata0-slave (the boot CD-ROM is ata0-master).
pub fn bochs_lines(config: &Config) -> String {
    let mut lines = String::new();
    for device in &config.devices {
        match device {
            Device::E1000 => match slirp_config(config) {
                Ok(path) => {
                    lines.push_str("pci: enabled=1, chipset=i440fx, slot1=e1000\n");
                    lines.push_str(&format!(
                        "e1000: enabled=1, mac=52:54:00:12:34:56, ethmod=slirp, script={}\n",
                        path.display()
                    ));
                }
                Err(e) => eprintln!("turtles: no NIC attached: {e}"),
            },
            Device::Ata => match make_disk(config) {
                Ok(path) => {
                    lines.push_str(&format!(
                        "ata0-slave: type=disk, path={}, mode=flat\n",
                        path.display()
                    ));
                }
                Err(e) => eprintln!("turtles: no disk attached: {e}"),
            },
            Device::VirtioNet | Device::VirtioBlk => {
                eprintln!("turtles: Bochs has no {}; not attached", device.as_str());
            }
            Device::Com1 => {}
        }
    }
    lines
}

/// Bochs' slirp configuration: forward the endpoint's UDP port from loopback.
fn slirp_config(config: &Config) -> Result<PathBuf, String> {
    let path = disk_path(config).with_extension("slirp.conf");
    // Bochs requires this first line.
    let mut text = String::from("# slirp config\n# turtles: the e1000's network (ethmod=slirp)\n");
    if let Some(net) = &config.net {
        text.push_str(&format!("hostfwd = udp:127.0.0.1:{}-:{}\n", net.host_port(), net.port));
        if config.forwards_guest_endpoint() {
            text.push_str(&format!(
                "hostfwd = udp:127.0.0.1:{}-{GUEST_ADDRESS}:{GUEST_UDP_PORT}\n",
                net.guest_host_port()
            ));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // `printf 123456789 | busybox crc32`, and of nothing.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn run_time_data_differs_between_calls() {
        let (a, b) = (run_time_data(64), run_time_data(64));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
