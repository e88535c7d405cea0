//! Build-time configuration of a turtles image: one `configs/<name>.toml` per nesting depth.
//!
//! The image's `build.rs` turns the chosen config into Rust constants ([`Config::to_rust`]);
//! the root `build.rs` validates every config so a bad file fails the build of the runner too;
//! the runner reads them to know which guest images to build and how to boot. Any unknown key
//! or bad value is an error that names the file, the key and what is allowed.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the image does at its level.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The bare-metal hypervisor: owns the real VMX.
    L0,
    /// A guest hypervisor: runs on an L0 (or another L1) and runs its own guest.
    L1,
    /// The innermost guest: runs the workload and reports.
    Leaf,
    /// Not a turtles image: Debian's Linux kernel with the runner's initramfs, which the
    /// runner fetches and builds (`src/linux.rs`) and hands to the level above as its guest.
    Linux,
    /// Not a turtles image: Debian's Linux as a KVM host: its initramfs (`src/linux_kvm.rs`)
    /// loads kvm_intel with nested=1 and runs the launcher (`launcher/`) on /dev/kvm with the
    /// `guest` config's image and its guests' images as boot modules. At depth 0 it is the
    /// top level (KVM as L0); deeper it is a guest hypervisor on the emulated VMX of the
    /// level above (`src/kvm_guest.rs`, e.g. `l0-kvm-leaf`: KVM as L1 on turtles' L0).
    LinuxKvm,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::L0 => "l0",
            Role::L1 => "l1",
            Role::Leaf => "leaf",
            Role::Linux => "linux",
            Role::LinuxKvm => "linux-kvm",
        }
    }

    /// Hypervisor roles need VMX (real or emulated by the level below).
    pub fn needs_vmx(self) -> bool {
        matches!(self, Role::L0 | Role::L1)
    }
}

/// An emulator the runner can boot an image in.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Emulator {
    /// Bochs: emulates VMX; boots the image from a GRUB ISO (multiboot2).
    Bochs,
    /// QEMU TCG: no VMX; boots the image with `-kernel` (multiboot1 or PVH).
    Qemu,
}

impl Emulator {
    pub fn as_str(self) -> &'static str {
        match self {
            Emulator::Bochs => "bochs",
            Emulator::Qemu => "qemu",
        }
    }
}

/// A device the image may use, emulate or pass through.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Device {
    Com1,
    VirtioNet,
    VirtioBlk,
    E1000,
    Ata,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Com1 => "com1",
            Device::VirtioNet => "virtio-net",
            Device::VirtioBlk => "virtio-blk",
            Device::E1000 => "e1000",
            Device::Ata => "ata",
        }
    }
}

/// A virtio device L0 offers its guest (virtio-mmio, backed by L0's own disk or NIC).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum GuestDevice {
    /// A virtio-blk disk: partition 3 of L0's disk (`storage::layout::GUEST_DISK_PARTITION`).
    VirtioBlk,
    /// A virtio-net NIC, switched with L0's own network stack on L0's NIC.
    VirtioNet,
}

/// The machine the runner boots this config on.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Emulator used when `cargo run -- run <config>` names none.
    pub emulator: Emulator,
    /// Machine memory in MiB.
    pub memory_mib: u32,
    /// Bochs CPU model (`corei7_skylake_x`, `tigerlake`, ...).
    #[serde(default = "default_bochs_cpu")]
    pub bochs_cpu: String,
}

fn default_bochs_cpu() -> String {
    "corei7_skylake_x".to_string()
}

/// One `configs/<name>.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Set from the file name, not from the file.
    #[serde(skip)]
    pub name: String,
    /// One line saying what this config is for.
    pub description: String,
    pub role: Role,
    /// Nesting depth this image runs at: 0 on bare metal, 1 as L0's guest, ...
    pub depth: u32,
    /// Kernel heap in MiB.
    pub heap_mib: u32,
    /// Name of the config whose image this level boots as its guest.
    #[serde(default)]
    pub guest: Option<String>,
    /// Memory given to the guest in MiB.
    #[serde(default)]
    pub guest_memory_mib: u32,
    /// Whether the guest sees VMX (so it can be a hypervisor itself).
    #[serde(default)]
    pub expose_vmx: bool,
    /// Devices this level uses.
    pub devices: Vec<Device>,
    /// The network set-up of the image's own NIC (needs `virtio-net` or `e1000` in `devices`).
    #[serde(default)]
    pub net: Option<Net>,
    /// What the image's own disk holds (needs `virtio-blk` or `ata` in `devices`).
    #[serde(default)]
    pub disk: Option<Disk>,
    /// virtio devices this level (L0, or turtles as L1) offers its guest, backed by its own
    /// disk (`[disk]`) and NIC (`[net]`).
    #[serde(default)]
    pub guest_devices: Vec<GuestDevice>,
    /// Physical devices from `devices` this level assigns to its guest instead of driving
    /// them (only `"e1000"`): needs `guest_memory_base_mib`, since without an IOMMU the
    /// device's DMA addresses must be host-physical ones.
    #[serde(default)]
    pub assign: Vec<Device>,
    /// With `assign`: the guest's RAM is guest-physical = host-physical
    /// `[base, base + guest_memory_mib)` MiB (1:1), its low 640 KiB a separate block, and
    /// everything between 1 MiB and `base` a hole in its memory map (where this level lives).
    #[serde(default)]
    pub guest_memory_base_mib: u32,
    /// Where the image is linked and loaded, in MiB (default 1). A guest that runs in 1:1
    /// memory at `guest_memory_base_mib` must be linked inside it.
    #[serde(default = "default_image_base_mib")]
    pub image_base_mib: u32,
    pub machine: Machine,
}

fn default_image_base_mib() -> u32 {
    1
}

/// Which virtio PCI interface the runner gives a virtio-blk disk (the image finds out itself).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VirtioInterface {
    /// virtio 1.x (`disable-legacy=on`).
    #[default]
    Modern,
    /// virtio 0.9.5 (`disable-modern=on`).
    Legacy,
}

/// `[net]`: the address of the image's NIC and its management endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Net {
    /// `"dhcp"` or a static IPv4 address with prefix, e.g. `"10.0.2.15/24"`.
    #[serde(default = "default_net_address")]
    pub address: String,
    /// IPv4 default gateway for a static address.
    #[serde(default)]
    pub gateway: Option<String>,
    /// UDP port of the management endpoint inside the image.
    #[serde(default = "default_net_port")]
    pub port: u16,
    /// Loopback port the emulator forwards to `port` (default: the same number).
    #[serde(default)]
    pub host_port: Option<u16>,
    /// How long the image answers queries before it goes on booting (0: until `quit`).
    #[serde(default = "default_serve_seconds")]
    pub serve_seconds: u32,
    /// PCI interface of a `virtio-net` NIC.
    #[serde(default)]
    pub virtio: VirtioInterface,
    /// Also forward [`Net::guest_host_port`] to the guest endpoint (10.0.2.16:7777) when a
    /// level further in, not this one, offers the switched virtio-net (e.g. an L0 that
    /// assigns its NIC to an L1 which switches it with its own guest's virtio-net).
    #[serde(default)]
    pub forward_guest: bool,
    /// The e1000 driver also enables its receive interrupt (IMS.RXT0) through the function's
    /// INTx at this level's I/O APIC and counts the interrupts it takes (it still polls):
    /// shows an assigned e1000's interrupt reaching a turtles guest (`e1000: n interrupts`).
    #[serde(default)]
    pub e1000_interrupts: bool,
}

fn default_net_address() -> String {
    "10.0.2.15/24".to_string()
}

fn default_net_port() -> u16 {
    5555
}

fn default_serve_seconds() -> u32 {
    60
}

impl Net {
    /// The static address as (octets, prefix length), or `None` for DHCP.
    pub fn static_address(&self) -> Option<([u8; 4], u8)> {
        let (ip, prefix) = self.address.split_once('/')?;
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
        Some((ip.octets(), prefix))
    }

    /// The loopback port the runner forwards.
    pub fn host_port(&self) -> u16 {
        self.host_port.unwrap_or(self.port)
    }

    /// The loopback port forwarded to the guest's endpoint on a switched virtio-net (the one
    /// after [`Net::host_port`]).
    pub fn guest_host_port(&self) -> u16 {
        self.host_port().wrapping_add(1)
    }
}

/// `[disk]`: the image's disk, made by the runner.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Config whose image the runner writes to the disk's guest partition.
    #[serde(default)]
    pub guest: Option<String>,
    /// Whether the image writes its exit-statistics report to the disk's report partition.
    #[serde(default)]
    pub report: bool,
    /// Disk size in KiB; 0 (the default) makes it just big enough. A smaller disk than the
    /// guest image is written truncated (a bad-input test).
    #[serde(default)]
    pub size_kib: u32,
    /// PCI interface of a `virtio-blk` disk.
    #[serde(default)]
    pub virtio: VirtioInterface,
}

/// A config file that cannot be used, with the file and (where known) the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Bochs' `megs` limit (DESIGN.md: more needs the `memory:` option with a host split).
pub const BOCHS_MAX_MEMORY_MIB: u32 = 2048;

impl Config {
    /// Parses and checks one config. `file` is used in error messages and gives the name.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: None,
            message: e.message().to_string() + &line_of(text, e.span()),
        })?;
        config.name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        config.check(file)?;
        Ok(config)
    }

    fn check(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: file.to_path_buf(),
            key: Some(key.to_string()),
            message,
        };
        match (self.role, self.depth) {
            (Role::L0 | Role::LinuxKvm, 0)
            | (Role::L1 | Role::Leaf | Role::Linux | Role::LinuxKvm, 1..=8)
            | (Role::Leaf, 0) => {}
            (Role::L0, d) => return Err(err("depth", format!("is {d}; role l0 runs at depth 0"))),
            (_, d) => {
                return Err(err(
                    "depth",
                    format!("is {d}; allowed: 1 to 8 for role l1, leaf, linux or linux-kvm"),
                ));
            }
        }
        if !(1..=1024).contains(&self.heap_mib) {
            return Err(err("heap_mib", format!("is {}; allowed: 1 to 1024", self.heap_mib)));
        }
        let max = match self.machine.emulator {
            Emulator::Bochs => BOCHS_MAX_MEMORY_MIB,
            Emulator::Qemu => 16384,
        };
        if !(32..=max).contains(&self.machine.memory_mib) {
            return Err(err(
                "machine.memory_mib",
                format!("is {}; allowed with {}: 32 to {max}", self.machine.memory_mib, {
                    self.machine.emulator.as_str()
                }),
            ));
        }
        if self.heap_mib + self.guest_memory_mib + 8 > self.machine.memory_mib {
            return Err(err(
                "heap_mib",
                format!(
                    "heap_mib ({}) + guest_memory_mib ({}) + 8 MiB for the image exceed \
                     machine.memory_mib ({})",
                    self.heap_mib, self.guest_memory_mib, self.machine.memory_mib
                ),
            ));
        }
        match (&self.guest, self.role) {
            (Some(_), Role::Leaf | Role::Linux) => {
                return Err(err("guest", "a leaf runs no guest; remove the key".to_string()));
            }
            (Some(_), _) if self.guest_memory_mib < 16 => {
                return Err(err(
                    "guest_memory_mib",
                    format!("is {}; a guest needs at least 16", self.guest_memory_mib),
                ));
            }
            (None, _) if self.expose_vmx => {
                return Err(err("expose_vmx", "is true but there is no `guest`".to_string()));
            }
            (None, Role::LinuxKvm) => {
                return Err(err(
                    "guest",
                    "is missing; role linux-kvm launches the `guest` config's image on KVM"
                        .to_string(),
                ));
            }
            _ => {}
        }
        if self.role == Role::LinuxKvm && self.machine.emulator != Emulator::Bochs {
            return Err(err(
                "machine.emulator",
                "is qemu; role linux-kvm needs VMX from the emulator: allowed: \"bochs\""
                    .to_string(),
            ));
        }
        if !self.devices.contains(&Device::Com1) {
            return Err(err("devices", "must include \"com1\" (the console)".to_string()));
        }
        self.check_drivers(&err)
    }

    fn check_drivers(&self, err: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        let nics = self.devices.iter().filter(|d| matches!(d, Device::VirtioNet | Device::E1000));
        let disks = self.devices.iter().filter(|d| matches!(d, Device::VirtioBlk | Device::Ata));
        let (nics, disks) = (nics.count(), disks.count());
        if nics > 1 || disks > 1 {
            return Err(err(
                "devices",
                "names more than one NIC or disk; allowed: at most one of \"virtio-net\", \
                 \"e1000\" and one of \"virtio-blk\", \"ata\""
                    .to_string(),
            ));
        }
        if let Some(net) = &self.net {
            if nics == 0 {
                return Err(err(
                    "net",
                    "needs a NIC in `devices`; allowed: \"virtio-net\" or \"e1000\"".to_string(),
                ));
            }
            if net.address != "dhcp" && net.static_address().is_none() {
                return Err(err(
                    "net.address",
                    format!(
                        "is {:?}; allowed: \"dhcp\" or an IPv4 address with prefix such as \
                         \"10.0.2.15/24\"",
                        net.address
                    ),
                ));
            }
            if let Some(gw) = &net.gateway
                && gw.parse::<std::net::Ipv4Addr>().is_err()
            {
                return Err(err(
                    "net.gateway",
                    format!("is {gw:?}; allowed: an IPv4 address such as \"10.0.2.2\""),
                ));
            }
            if net.port == 0 || net.host_port == Some(0) {
                return Err(err("net.port", "is 0; allowed: 1 to 65535".to_string()));
            }
        }
        if self.disk.is_some() && disks == 0 {
            return Err(err(
                "disk",
                "needs a disk in `devices`; allowed: \"virtio-blk\" or \"ata\"".to_string(),
            ));
        }
        if !self.guest_devices.is_empty()
            && (!matches!(self.role, Role::L0 | Role::L1) || self.guest.is_none())
        {
            return Err(err(
                "guest_devices",
                "only an l0 or l1 with a `guest` offers devices to its guest".to_string(),
            ));
        }
        if self.guest_devices.contains(&GuestDevice::VirtioBlk) && self.disk.is_none() {
            return Err(err(
                "guest_devices",
                "names \"virtio-blk\", which needs L0's own disk: a `[disk]` section".to_string(),
            ));
        }
        if self.guest_devices.contains(&GuestDevice::VirtioNet) && self.net.is_none() {
            return Err(err(
                "guest_devices",
                "names \"virtio-net\", which needs L0's own NIC: a `[net]` section".to_string(),
            ));
        }
        self.check_assign(err)
    }

    fn check_assign(&self, err: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        if !(1..=3072).contains(&self.image_base_mib) {
            return Err(err(
                "image_base_mib",
                format!(
                    "is {}; allowed: 1 to 3072 (MiB, below the MMIO hole)",
                    self.image_base_mib
                ),
            ));
        }
        if self.assign.is_empty() {
            if self.guest_memory_base_mib != 0 {
                return Err(err(
                    "guest_memory_base_mib",
                    "is only for a guest with an assigned device (`assign`)".to_string(),
                ));
            }
            return Ok(());
        }
        if self.assign.iter().any(|d| *d != Device::E1000 || !self.devices.contains(d)) {
            return Err(err(
                "assign",
                "allowed: [\"e1000\"], which `devices` must name too (the runner attaches it)"
                    .to_string(),
            ));
        }
        if !matches!(self.role, Role::L0 | Role::L1) || self.guest.is_none() {
            return Err(err(
                "assign",
                "only an l0 or l1 (turtles) with a `guest` assigns devices".to_string(),
            ));
        }
        if self.guest_devices.contains(&GuestDevice::VirtioNet) {
            return Err(err(
                "assign",
                "names the NIC the guest's virtio-net would be switched on; drop one".to_string(),
            ));
        }
        let base = self.guest_memory_base_mib;
        if base < 2
            || !base.is_multiple_of(2)
            || base + self.guest_memory_mib > self.machine.memory_mib
        {
            return Err(err(
                "guest_memory_base_mib",
                format!(
                    "is {base}; with `assign` the guest's 1:1 RAM needs a 2 MiB-aligned base of at \
                     least 2 and base + guest_memory_mib ({}) within machine.memory_mib ({})",
                    self.guest_memory_mib, self.machine.memory_mib
                ),
            ));
        }
        Ok(())
    }

    /// The Rust constants the image includes (`include!(concat!(env!("OUT_DIR"), ...))`).
    pub fn to_rust(&self) -> String {
        let mut out = String::from("// Generated by image/build.rs from configs/*.toml.\n");
        let devices: Vec<&str> = self.devices.iter().map(|d| d.as_str()).collect();
        let guest = match &self.guest {
            Some(g) => format!("Some({g:?})"),
            None => "None".to_string(),
        };
        let items = [
            ("NAME", "&str", format!("{:?}", self.name)),
            ("DESCRIPTION", "&str", format!("{:?}", self.description)),
            ("ROLE", "&str", format!("{:?}", self.role.as_str())),
            ("NEEDS_VMX", "bool", self.role.needs_vmx().to_string()),
            ("DEPTH", "u32", self.depth.to_string()),
            ("HEAP_MIB", "u64", self.heap_mib.to_string()),
            ("GUEST", "Option<&str>", guest),
            ("GUEST_MEMORY_MIB", "u64", self.guest_memory_mib.to_string()),
            ("EXPOSE_VMX", "bool", self.expose_vmx.to_string()),
            ("DEVICES", "&[&str]", format!("&{devices:?}")),
            ("ASSIGN_E1000", "bool", self.assign.contains(&Device::E1000).to_string()),
            ("GUEST_MEMORY_BASE_MIB", "u64", self.guest_memory_base_mib.to_string()),
            ("IMAGE_BASE_MIB", "u64", self.image_base_mib.to_string()),
        ];
        let net = self.net.as_ref();
        let address = net.and_then(Net::static_address);
        let gateway = net.and_then(|n| n.gateway.as_deref()?.parse::<std::net::Ipv4Addr>().ok());
        let disk = self.disk.as_ref();
        let driver_items = [
            ("NET", "bool", net.is_some().to_string()),
            ("NET_ADDRESS", "Option<([u8; 4], u8)>", format!("{address:?}")),
            ("NET_GATEWAY", "Option<[u8; 4]>", format!("{:?}", gateway.map(|g| g.octets()))),
            ("NET_PORT", "u16", net.map_or(0, |n| n.port).to_string()),
            ("NET_SERVE_SECONDS", "u32", net.map_or(0, |n| n.serve_seconds).to_string()),
            ("NET_E1000_INTERRUPTS", "bool", net.is_some_and(|n| n.e1000_interrupts).to_string()),
            ("DISK", "bool", disk.is_some().to_string()),
            ("DISK_GUEST", "Option<&str>", format!("{:?}", disk.and_then(|d| d.guest.as_deref()))),
            ("DISK_REPORT", "bool", disk.is_some_and(|d| d.report).to_string()),
            (
                "GUEST_VIRTIO_BLK",
                "bool",
                self.guest_devices.contains(&GuestDevice::VirtioBlk).to_string(),
            ),
            (
                "GUEST_VIRTIO_NET",
                "bool",
                self.guest_devices.contains(&GuestDevice::VirtioNet).to_string(),
            ),
        ];
        let items = items.into_iter().chain(driver_items);
        for (name, ty, value) in items {
            let _ = writeln!(out, "#[allow(dead_code)]\npub const {name}: {ty} = {value};");
        }
        out
    }
}

/// " (line N)" for an error span, if known.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

impl Config {
    /// The loopback UDP ports a run of this config binds (the emulator forwards them).
    pub fn host_ports(&self) -> Vec<u16> {
        let Some(net) = &self.net else { return Vec::new() };
        let mut ports = vec![net.host_port()];
        if self.forwards_guest_endpoint() {
            ports.push(net.guest_host_port());
        }
        ports
    }

    /// Whether the emulator forwards [`Net::guest_host_port`] to the guest endpoint on a
    /// switched virtio-net: this level offers one, or `[net] forward_guest` says a level
    /// further in does.
    pub fn forwards_guest_endpoint(&self) -> bool {
        self.guest_devices.contains(&GuestDevice::VirtioNet)
            || self.net.as_ref().is_some_and(|n| n.forward_guest)
    }
}

/// Every config of a directory, by name, after checking that guests name existing configs
/// and that no two configs forward the same loopback port (tests run configs side by side).
#[derive(Debug, Clone)]
pub struct ConfigSet {
    pub configs: BTreeMap<String, Config>,
}

impl ConfigSet {
    /// Loads `dir/*.toml`.
    pub fn load(dir: &Path) -> Result<ConfigSet, ConfigError> {
        let io_err = |e: std::io::Error| ConfigError {
            file: dir.to_path_buf(),
            key: None,
            message: e.to_string(),
        };
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut configs = BTreeMap::new();
        for file in files {
            let text = fs::read_to_string(&file).map_err(|e| ConfigError {
                file: file.clone(),
                key: None,
                message: e.to_string(),
            })?;
            let config = Config::parse(&file, &text)?;
            configs.insert(config.name.clone(), config);
        }
        let set = ConfigSet { configs };
        set.check_guests(dir)?;
        set.check_host_ports(dir)?;
        Ok(set)
    }

    /// Configs run as the emulator's machine bind loopback ports; a config some other config
    /// names as its `guest` runs inside that machine, where nothing forwards its ports.
    fn check_host_ports(&self, dir: &Path) -> Result<(), ConfigError> {
        let guests: Vec<&str> = self.configs.values().filter_map(|c| c.guest.as_deref()).collect();
        let mut owner: BTreeMap<u16, &str> = BTreeMap::new();
        for config in self.configs.values().filter(|c| !guests.contains(&c.name.as_str())) {
            for port in config.host_ports() {
                if let Some(first) = owner.insert(port, &config.name) {
                    return Err(ConfigError {
                        file: dir.join(format!("{}.toml", config.name)),
                        key: Some("net.host_port".into()),
                        message: format!(
                            "forwards udp 127.0.0.1:{port}, which configs/{first}.toml forwards \
                             too; two runs side by side would steal each other's packets"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_guests(&self, dir: &Path) -> Result<(), ConfigError> {
        for config in self.configs.values() {
            if let Some(guest) = config.disk.as_ref().and_then(|d| d.guest.as_ref())
                && !self.configs.contains_key(guest)
            {
                return Err(ConfigError {
                    file: dir.join(format!("{}.toml", config.name)),
                    key: Some("disk.guest".into()),
                    message: format!(
                        "names `{guest}`, but there is no configs/{guest}.toml; allowed: {}",
                        self.names().join(", ")
                    ),
                });
            }
            let mut seen = vec![config.name.as_str()];
            let mut at = config;
            while let Some(guest) = &at.guest {
                let Some(next) = self.configs.get(guest) else {
                    return Err(ConfigError {
                        file: dir.join(format!("{}.toml", at.name)),
                        key: Some("guest".into()),
                        message: format!(
                            "names `{guest}`, but there is no configs/{guest}.toml; \
                             allowed: {}",
                            self.names().join(", ")
                        ),
                    });
                };
                if seen.contains(&next.name.as_str()) {
                    return Err(ConfigError {
                        file: dir.join(format!("{}.toml", at.name)),
                        key: Some("guest".into()),
                        message: format!("guest chain loops: {} -> {guest}", seen.join(" -> ")),
                    });
                }
                seen.push(&next.name);
                at = next;
            }
        }
        Ok(())
    }

    /// Config names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.configs.keys().map(String::as_str).collect()
    }

    /// The config called `name`, or an error listing the ones that exist.
    pub fn get(&self, name: &str) -> Result<&Config, String> {
        self.configs.get(name).ok_or_else(|| {
            format!("no config `{name}`; the configs are: {}", self.names().join(", "))
        })
    }

    /// `name` and the configs of its guests, innermost first: the order to build images in.
    pub fn build_order(&self, name: &str) -> Result<Vec<&Config>, String> {
        let mut chain = vec![self.get(name)?];
        while let Some(guest) = &chain[chain.len() - 1].guest {
            chain.push(self.get(guest)?);
        }
        chain.reverse();
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "test"
role = "l0"
depth = 0
heap_mib = 8
devices = ["com1"]
[machine]
emulator = "bochs"
memory_mib = 256
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("configs/t.toml"), text)
    }

    #[test]
    fn linux_kvm_runs_at_any_depth_with_a_guest() {
        let kvm = GOOD.replace("role = \"l0\"", "role = \"linux-kvm\"");
        let with_guest =
            kvm.replace("depth = 0", "depth = 0\nguest = \"leaf\"\nguest_memory_mib = 64");
        assert_eq!(parse(&with_guest).unwrap().role, Role::LinuxKvm);
        // As a guest hypervisor (KVM as L1 on turtles' L0).
        assert_eq!(parse(&with_guest.replace("depth = 0", "depth = 1")).unwrap().depth, 1);
        let e = parse(&with_guest.replace("depth = 0", "depth = 9")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("depth"), "{e}");
        let e = parse(&kvm).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("guest"), "{e}");
        let e = parse(&with_guest.replace("\"bochs\"", "\"qemu\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("machine.emulator"), "{e}");
    }

    #[test]
    fn good_config_parses_and_generates_constants() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.name, "t");
        assert_eq!(c.role, Role::L0);
        assert_eq!(c.machine.bochs_cpu, "corei7_skylake_x");
        let rust = c.to_rust();
        assert!(rust.contains("pub const ROLE: &str = \"l0\";"), "{rust}");
        assert!(rust.contains("pub const DEVICES: &[&str] = &[\"com1\"];"), "{rust}");
        assert!(rust.contains("pub const GUEST: Option<&str> = None;"), "{rust}");
    }

    #[test]
    fn unknown_key_names_file_key_and_allowed() {
        let e = parse(&format!("speed = 3\n{GOOD}")).unwrap_err().to_string();
        assert!(e.starts_with("configs/t.toml"), "{e}");
        assert!(e.contains("speed") && e.contains("line 1"), "{e}");
        assert!(e.contains("description") && e.contains("heap_mib"), "lists allowed keys: {e}");
        // Inside [machine], the allowed keys are the machine's.
        let e = parse(&format!("{GOOD}\nspeed = 3\n")).unwrap_err().to_string();
        assert!(e.contains("speed") && e.contains("bochs_cpu"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_allowed_values() {
        let e = parse(&GOOD.replace("\"l0\"", "\"l7\"")).unwrap_err().to_string();
        assert!(e.contains("l7") && e.contains("leaf"), "{e}");
        let e = parse(&GOOD.replace("\"bochs\"", "\"vbox\"")).unwrap_err().to_string();
        assert!(e.contains("vbox") && e.contains("qemu"), "{e}");
    }

    #[test]
    fn semantic_checks_name_the_key() {
        let e = parse(&GOOD.replace("depth = 0", "depth = 2")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("depth"));
        let e = parse(&GOOD.replace("memory_mib = 256", "memory_mib = 4096")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("machine.memory_mib"));
        assert!(e.to_string().contains("2048"), "{e}");
        let e = parse(&GOOD.replace("[\"com1\"]", "[]")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("devices"));
        let e = parse(&GOOD.replace("heap_mib = 8", "heap_mib = 8\nexpose_vmx = true"));
        assert_eq!(e.unwrap_err().key.as_deref(), Some("expose_vmx"));
    }

    #[test]
    fn net_and_disk_keys_are_checked_and_generated() {
        let nic = GOOD.replace("[\"com1\"]", "[\"com1\", \"virtio-net\", \"virtio-blk\"]");
        let with = |extra: &str| nic.replace("[machine]", &format!("{extra}\n[machine]"));
        let c = parse(&with("[net]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\nport = 7\n[disk]\nreport = true"))
            .unwrap();
        let rust = c.to_rust();
        assert!(
            rust.contains("NET_ADDRESS: Option<([u8; 4], u8)> = Some(([10, 0, 2, 15], 24));"),
            "{rust}"
        );
        assert!(rust.contains("NET_GATEWAY: Option<[u8; 4]> = Some([10, 0, 2, 2]);"), "{rust}");
        assert!(
            rust.contains("NET_PORT: u16 = 7;") && rust.contains("DISK_REPORT: bool = true;"),
            "{rust}"
        );
        let dhcp = parse(&with("[net]\naddress = \"dhcp\"")).unwrap().to_rust();
        assert!(dhcp.contains("NET_ADDRESS: Option<([u8; 4], u8)> = None;"), "{dhcp}");
        assert!(
            GOOD.parse::<String>().is_ok()
                && parse(GOOD).unwrap().to_rust().contains("NET: bool = false;")
        );

        let e = parse(&with("[net]\naddress = \"10.0.2.300/24\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("net.address"));
        assert!(
            e.to_string().contains("dhcp") && e.to_string().starts_with("configs/t.toml"),
            "{e}"
        );
        let e = parse(&with("[net]\ngateway = \"x\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("net.gateway"));
        let e = parse(&GOOD.replace("[machine]", "[net]\n[machine]")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("net"));
        assert!(e.to_string().contains("e1000"), "{e}");
        let e = parse(&GOOD.replace("[machine]", "[disk]\n[machine]")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("disk"));
        assert!(e.to_string().contains("ata"), "{e}");
        let e = parse(&with("[disk]\nvirtio = \"ancient\"")).unwrap_err().to_string();
        assert!(e.contains("ancient") && e.contains("legacy") && e.contains("modern"), "{e}");
        let legacy = parse(&with("[disk]\nvirtio = \"legacy\"")).unwrap();
        assert_eq!(legacy.disk.unwrap().virtio, VirtioInterface::Legacy);
        let e = parse(&with("[disk]\nspeed = 1")).unwrap_err().to_string();
        assert!(e.contains("speed") && e.contains("size_kib"), "{e}");
    }

    #[test]
    fn repository_configs_are_valid_and_guests_resolve() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = dir.as_path();
        let set = ConfigSet::load(dir).unwrap();
        for name in ["l0", "l1", "leaf"] {
            assert!(set.get(name).is_ok(), "configs/{name}.toml missing");
        }
        let e = set.get("nope").unwrap_err();
        assert!(e.contains("l0") && e.contains("leaf"), "{e}");
    }

    #[test]
    fn two_configs_forwarding_one_port_are_refused() {
        let dir = std::env::temp_dir().join(format!("turtles-port-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let nic = GOOD.replace("[\"com1\"]", "[\"com1\", \"e1000\"]");
        let net = |port: u16| format!("{nic}\n[net]\nhost_port = {port}\n");
        fs::write(dir.join("a.toml"), net(15600)).unwrap();
        fs::write(dir.join("b.toml"), net(15601)).unwrap();
        ConfigSet::load(&dir).unwrap();
        fs::write(dir.join("b.toml"), net(15600)).unwrap();
        // b runs inside c's machine, where nothing forwards its ports.
        let c = GOOD.replace("heap_mib = 8", "heap_mib = 8\nguest = \"b\"\nguest_memory_mib = 32");
        fs::write(dir.join("c.toml"), c).unwrap();
        ConfigSet::load(&dir).unwrap();
        fs::remove_file(dir.join("c.toml")).unwrap();
        let e = ConfigSet::load(&dir).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e.key.as_deref(), Some("net.host_port"));
        assert!(e.to_string().contains("15600") && e.to_string().contains("a.toml"), "{e}");
    }

    #[test]
    fn missing_guest_is_reported() {
        let dir = std::env::temp_dir().join(format!("turtles-config-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let text =
            GOOD.replace("heap_mib = 8", "heap_mib = 8\nguest = \"ghost\"\nguest_memory_mib = 32");
        fs::write(dir.join("a.toml"), text).unwrap();
        let e = ConfigSet::load(&dir).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e.key.as_deref(), Some("guest"));
        assert!(e.to_string().contains("ghost"), "{e}");
    }

    #[test]
    fn assign_needs_the_device_a_guest_and_a_1to1_base() {
        let l0 = GOOD.replace("devices = [\"com1\"]", "devices = [\"com1\", \"e1000\"]").replace(
            "heap_mib = 8",
            "heap_mib = 8\nguest = \"leaf\"\nguest_memory_mib = 32\nassign = [\"e1000\"]",
        );
        let e = parse(&l0).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("guest_memory_base_mib"), "{e}");
        let good = l0.replace("assign =", "guest_memory_base_mib = 128\nassign =");
        let c = parse(&good).unwrap();
        let rust = c.to_rust();
        assert!(rust.contains("pub const ASSIGN_E1000: bool = true;"), "{rust}");
        assert!(rust.contains("pub const GUEST_MEMORY_BASE_MIB: u64 = 128;"), "{rust}");
        assert!(rust.contains("pub const IMAGE_BASE_MIB: u64 = 1;"), "{rust}");
        for (from, to, key) in [
            ("= 128", "= 127", "guest_memory_base_mib"),
            ("= 128", "= 240", "guest_memory_base_mib"),
            ("assign = [\"e1000\"]", "assign = [\"ata\"]", "assign"),
            ("role = \"l0\"", "role = \"leaf\"", "guest"),
        ] {
            let e = parse(&good.replace(from, to)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{from} -> {to}: {e}");
        }
        let e = parse(&good.replace("[\"com1\", \"e1000\"]", "[\"com1\"]")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("assign"), "{e}");
        let e = parse(&GOOD.replace("heap_mib = 8", "heap_mib = 8\nguest_memory_base_mib = 64"))
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("guest_memory_base_mib"), "{e}");
        let e =
            parse(&GOOD.replace("heap_mib = 8", "heap_mib = 8\nimage_base_mib = 0")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("image_base_mib"), "{e}");
    }

    #[test]
    fn guest_devices_need_a_guest_and_their_backing() {
        let with_guest = GOOD.replace(
            "heap_mib = 8",
            "heap_mib = 8\nguest = \"leaf\"\nguest_memory_mib = 32\nguest_devices = [\"virtio-blk\"]",
        );
        let e = parse(&with_guest).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("guest_devices"));
        assert!(e.to_string().contains("[disk]"), "{e}");
        let ok = with_guest.replace("[\"com1\"]", "[\"com1\", \"ata\"]\n[disk]\nreport = false");
        let c = parse(&ok).unwrap();
        assert!(c.to_rust().contains("pub const GUEST_VIRTIO_BLK: bool = true;"));
        assert!(c.to_rust().contains("pub const GUEST_VIRTIO_NET: bool = false;"));
        let net = with_guest.replace("virtio-blk", "virtio-net");
        assert!(parse(&net).unwrap_err().to_string().contains("[net]"));
        let no_guest =
            GOOD.replace("heap_mib = 8", "heap_mib = 8\nguest_devices = [\"virtio-net\"]");
        assert!(parse(&no_guest).unwrap_err().to_string().contains("only an l0"));
        let bad = GOOD.replace("heap_mib = 8", "heap_mib = 8\nguest_devices = [\"floppy\"]");
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn forward_guest_forwards_the_next_port_without_a_guest_virtio_net() {
        let nic = GOOD.replace("[\"com1\"]", "[\"com1\", \"e1000\"]\n[net]\nhost_port = 15590");
        assert_eq!(parse(&nic).unwrap().host_ports(), [15590]);
        let forward = nic.replace("15590", "15590\nforward_guest = true");
        let c = parse(&forward).unwrap();
        assert!(c.forwards_guest_endpoint());
        assert_eq!(c.host_ports(), [15590, 15591]);
    }
}
