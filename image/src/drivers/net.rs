//! The image's NIC and management endpoint: finds the NIC the config names on PCI, brings up
//! smoltcp with the config's address and answers status queries over UDP until `quit`, the
//! config's `serve_seconds`, or the NIC stops answering. Then the image goes on booting.

use alloc::boxed::Box;
use vdev::announce::Window;
use virtio_drivers::transport::DeviceType;

use hermit_sync::SpinMutex;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::{PciTransport, virtio_device_type};

use net::nic::Nic;
use net::stack::{NetConfig, Stack};
use net::virtio::{LEGACY_QUEUE_SIZE, VirtioNic};

use super::hal::TurtlesHal;
use super::pci::{self, PciFunction, PortCam};
use super::virtio_legacy::LegacyPciTransport;
use super::{status, time};
use crate::config;

/// Milliseconds to wait for a DHCP lease before giving up.
const DHCP_TIMEOUT_MS: i64 = 10_000;

/// The stack after the boot-time serving, whatever the NIC: polled by [`poll`].
trait Endpoint: Send {
    fn poll_once(&mut self) -> net::stack::Polled;
}

impl<N: Nic + Send> Endpoint for Stack<N> {
    fn poll_once(&mut self) -> net::stack::Polled {
        self.poll(time::now_ms(), &mut status::snapshot)
    }
}

static ENDPOINT: SpinMutex<Option<Box<dyn Endpoint>>> = SpinMutex::new(None);

/// One non-blocking turn of the endpoint (for a run loop that wants to keep answering while
/// a guest runs). Does nothing if there is no endpoint or it is in use.
pub fn poll() {
    if let Some(mut guard) = ENDPOINT.try_lock()
        && let Some(endpoint) = guard.as_mut()
    {
        let _ = endpoint.poll_once();
    }
}

/// Brings up the configured NIC and serves the endpoint. Errors are logged; the image goes on.
pub fn serve(root: &mut PciRoot<PortCam>, functions: &[PciFunction], windows: &[Option<Window>]) {
    let has = |d: &str| config::DEVICES.contains(&d);
    if has("virtio-net")
        && let Some(transport) = super::mmio::find(windows, DeviceType::Network)
    {
        match VirtioNic::<TurtlesHal, _>::new(transport) {
            Ok(nic) => run(nic),
            Err(e) => log::error!("net: virtio-net on virtio-mmio: {e}"),
        }
    } else if has("virtio-net") {
        let Some(f) =
            functions.iter().find(|f| virtio_device_type(&f.info) == Some(DeviceType::Network))
        else {
            log::error!(
                "net: the config names virtio-net but there is no virtio network device on PCI"
            );
            return;
        };
        if !pci::describe(root, f) {
            return;
        }
        pci::enable(root, f.df);
        match PciTransport::new::<TurtlesHal, _>(root, f.df) {
            Ok(transport) => match VirtioNic::<TurtlesHal, _>::new(transport) {
                Ok(nic) => run(nic),
                Err(e) => log::error!("net: virtio-net at {}: {e}", f.df),
            },
            Err(_) => legacy(root, f),
        }
    } else if has("e1000") {
        if let Some(nic) = super::e1000::find(root, functions) {
            run(nic);
        }
    } else {
        log::error!("net: [net] is configured but `devices` names no NIC");
    }
}

/// A virtio-net device without the modern interface: the legacy (0.9.5) transport, whose
/// queues the device fixes at [`LEGACY_QUEUE_SIZE`] entries.
fn legacy(root: &mut PciRoot<PortCam>, f: &PciFunction) {
    let mut transport = match LegacyPciTransport::new(root, f.df, f.info.device_id) {
        Ok(t) => t,
        Err(e) => {
            log::error!("net: virtio-net at {}: neither modern nor legacy interface: {e}", f.df);
            return;
        }
    };
    let size = usize::from(transport.queue_size(0));
    if size != LEGACY_QUEUE_SIZE {
        log::error!(
            "net: legacy virtio-net at {} has {size}-entry queues; supported: {LEGACY_QUEUE_SIZE}",
            f.df
        );
        return;
    }
    log::info!("net: virtio-net at {} through the legacy interface", f.df);
    match VirtioNic::<TurtlesHal, _, LEGACY_QUEUE_SIZE>::new(transport) {
        Ok(nic) => run(nic),
        Err(e) => log::error!("net: legacy virtio-net at {}: {e}", f.df),
    }
}

/// Runs the endpoint on `nic` until it is told to stop, then keeps it for [`poll`]. With a
/// guest virtio-net in the config, the NIC is shared with the guest through the switch.
pub fn run<N: Nic + Send + 'static>(nic: N) {
    if config::GUEST_VIRTIO_NET {
        serve_on(super::switched::Switched::new(nic));
    } else {
        serve_on(nic);
    }
}

fn serve_on<N: Nic + Send + 'static>(nic: N) {
    let mac = nic.mac();
    let kind = nic.kind();
    let config = NetConfig {
        address: config::NET_ADDRESS,
        gateway: config::NET_GATEWAY,
        port: config::NET_PORT,
    };
    let start = time::now_ms();
    let mut stack = match Stack::new(nic, &config, start) {
        Ok(s) => s,
        Err(e) => {
            log::error!("net: cannot bind UDP port {}: {e}", config.port);
            return;
        }
    };
    log::info!(
        "net: {kind} mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} address={}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        match config.address {
            Some(_) => "static",
            None => "dhcp",
        }
    );
    let serve_ms = i64::from(config::NET_SERVE_SECONDS) * 1000;
    let mut announced = false;
    let (mut requests, mut refused) = (0u64, 0u64);
    let why = loop {
        let now = time::now_ms();
        let polled = stack.poll(now, &mut status::snapshot);
        super::e1000_intx::window();
        requests += u64::from(polled.requests);
        refused += u64::from(polled.refused);
        if !announced && let Some(addr) = stack.address() {
            announced = true;
            log::info!("net: endpoint listening on udp {}:{}", addr.address(), config.port);
        }
        if !announced && now - start > DHCP_TIMEOUT_MS {
            break "no DHCP lease";
        }
        if polled.quit {
            break "quit requested";
        }
        if serve_ms > 0 && now - start > serve_ms {
            break "serve_seconds elapsed";
        }
        if let Some(e) = stack.device.last_error()
            && e == net::nic::NicError::Dead
        {
            break "the NIC stopped answering";
        }
        if crate::console::depth() > 0 {
            // A guest level exits to the level below on every turn (CPUID always exits), so
            // that level's watchdog sees it alive and its periodic NIC polls move frames to
            // this level's virtio-net while it waits.
            let _ = crate::arch::cpu::cpuid(0, 0);
        }
        core::hint::spin_loop();
    };
    let c = stack.device.counters;
    log::info!(
        "net: endpoint stopped ({why}): {requests} requests, {refused} refused, rx {} frames \
         ({} malformed), tx {} frames, {} device errors",
        c.rx_frames,
        c.rx_malformed,
        c.tx_frames,
        c.errors
    );
    if let Some(n) = super::e1000_intx::count() {
        log::info!("e1000: {n} interrupts");
    }
    if stack.device.last_error() != Some(net::nic::NicError::Dead) {
        *ENDPOINT.lock() = Some(Box::new(stack));
    }
}
