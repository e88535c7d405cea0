//! The image's smoltcp stack: one interface over a [`NicDevice`], a static or DHCP address,
//! and the management endpoint's UDP socket ([`crate::endpoint`]).

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::endpoint::{self, MAX_DATAGRAM, Request, Status};
use crate::nic::Nic;
use crate::phy::NicDevice;

/// Datagrams the endpoint's socket buffers in each direction.
const RX_PACKETS: usize = 32;
const TX_PACKETS: usize = 64;

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Static address and prefix, or `None` for DHCP.
    pub address: Option<([u8; 4], u8)>,
    pub gateway: Option<[u8; 4]>,
    /// The endpoint's UDP port.
    pub port: u16,
}

/// What one [`Stack::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub requests: u32,
    pub refused: u32,
    /// A `quit` request arrived.
    pub quit: bool,
}

/// A bulk answer still being sent.
struct Bulk {
    to: IpEndpoint,
    next: u32,
    total: u32,
}

/// Interface, sockets and device.
pub struct Stack<N: Nic> {
    pub device: NicDevice<N>,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    dhcp: Option<SocketHandle>,
    bulk: Option<Bulk>,
    address: Option<Ipv4Cidr>,
}

impl<N: Nic> Stack<N> {
    /// Brings the interface up on `nic` and binds the endpoint's port.
    pub fn new(nic: N, config: &NetConfig, now_ms: i64) -> Result<Self, udp::BindError> {
        let mut device = NicDevice::new(nic);
        let mac = EthernetAddress(device.nic().mac());
        let now = Instant::from_millis(now_ms);
        let iface_config = Config::new(HardwareAddress::Ethernet(mac));
        let mut iface = Interface::new(iface_config, &mut device, now);
        let mut sockets = SocketSet::new(Vec::new());
        let mut address = None;
        let dhcp = match config.address {
            Some((ip, prefix)) => {
                let cidr = Ipv4Cidr::new(Ipv4Address::from(ip), prefix);
                set_address(&mut iface, cidr, config.gateway.map(Ipv4Address::from));
                address = Some(cidr);
                None
            }
            None => Some(sockets.add(dhcpv4::Socket::new())),
        };
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; RX_PACKETS],
            vec![0; RX_PACKETS * MAX_DATAGRAM],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; TX_PACKETS],
            vec![0; TX_PACKETS * MAX_DATAGRAM],
        );
        let mut socket = udp::Socket::new(rx, tx);
        socket.bind(config.port)?;
        let udp = sockets.add(socket);
        Ok(Stack { device, iface, sockets, udp, dhcp, bulk: None, address })
    }

    /// The interface's IPv4 address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        self.address
    }

    /// Milliseconds until the stack next needs a poll (for idle waiting), if known.
    pub fn poll_delay_ms(&mut self, now_ms: i64) -> Option<u64> {
        let now = Instant::from_millis(now_ms);
        self.iface.poll_delay(now, &self.sockets).map(|d| d.total_millis())
    }

    /// Moves frames, handles DHCP and answers requests; `status` is asked for only when a
    /// `status` request arrives.
    pub fn poll(&mut self, now_ms: i64, status: &mut dyn FnMut() -> Status) -> Polled {
        let now = Instant::from_millis(now_ms);
        let mut polled = Polled::default();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.poll_dhcp();
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        while let Ok((data, meta)) = socket.recv() {
            let to = meta.endpoint;
            let answer: Vec<Vec<u8>> = match endpoint::parse_request(data) {
                Ok(request) => {
                    polled.requests += 1;
                    match request {
                        Request::Status => endpoint::pack(&status().lines(), MAX_DATAGRAM),
                        Request::Ping(seq) => {
                            vec![
                                alloc::format!("{{\"type\":\"pong\",\"seq\":{seq}}}\n")
                                    .into_bytes(),
                            ]
                        }
                        Request::Bulk(total) => {
                            self.bulk = Some(Bulk { to, next: 0, total });
                            Vec::new()
                        }
                        Request::Quit => {
                            polled.quit = true;
                            vec![b"{\"type\":\"bye\"}\n".to_vec()]
                        }
                    }
                }
                Err(e) => {
                    polled.refused += 1;
                    log::warn!("endpoint: refused a request from {to}: {e}");
                    let mut line = endpoint::error_line(&e).into_bytes();
                    line.push(b'\n');
                    vec![line]
                }
            };
            for datagram in answer {
                if let Err(e) = socket.send_slice(&datagram, to) {
                    log::warn!("endpoint: answer to {to} dropped: {e}");
                }
            }
        }
        if let Some(bulk) = &mut self.bulk {
            while bulk.next < bulk.total && socket.can_send() {
                let datagram = endpoint::bulk_datagram(bulk.next);
                if socket.send_slice(&datagram, bulk.to).is_err() {
                    break;
                }
                bulk.next += 1;
            }
            if bulk.next == bulk.total && socket.can_send() {
                let end = alloc::format!("{{\"type\":\"end\",\"bulk\":{}}}\n", bulk.total);
                let _ = socket.send_slice(end.as_bytes(), bulk.to);
                self.bulk = None;
            }
        }
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        polled
    }

    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            Some(dhcpv4::Event::Configured(config)) => {
                match config.router {
                    Some(router) => {
                        log::info!("net: DHCP address {} router {router}", config.address)
                    }
                    None => log::info!("net: DHCP address {} (no router)", config.address),
                }
                set_address(&mut self.iface, config.address, config.router);
                self.address = Some(config.address);
            }
            Some(dhcpv4::Event::Deconfigured) => {
                log::warn!("net: DHCP lease lost");
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.address = None;
            }
            None => {}
        }
    }
}

fn set_address(iface: &mut Interface, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        if addrs.push(IpCidr::Ipv4(cidr)).is_err() {
            log::error!("net: cannot add address {cidr}");
        }
    });
    match gateway {
        Some(gw) => {
            if let Err(e) = iface.routes_mut().add_default_ipv4_route(gw) {
                log::error!("net: cannot add route via {gw}: {e}");
            }
        }
        None => {
            iface.routes_mut().remove_default_ipv4_route();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::udp_frame;
    use crate::phy::tests::FakeNic;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr,
        Ipv4Packet, UdpPacket,
    };

    fn status() -> Status {
        Status {
            config: "t".into(),
            role: "l0".into(),
            depth: 0,
            uptime_tsc: 1,
            tsc_hz: 0,
            guests: Vec::new(),
            exits: Vec::new(),
        }
    }

    fn stack() -> Stack<FakeNic> {
        let config = NetConfig { address: Some(([10, 0, 2, 15], 24)), gateway: None, port: 5555 };
        Stack::new(FakeNic::default(), &config, 0).unwrap()
    }

    /// Answers the stack's ARP requests for the peer, as a router would.
    fn answer_arp(s: &mut Stack<FakeNic>) {
        let sent = core::mem::take(&mut s.device.nic_mut().sent);
        for frame in sent {
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            if eth.ethertype() != EthernetProtocol::Arp {
                s.device.nic_mut().sent.push(frame.clone());
                continue;
            }
            let ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap()
            else {
                continue;
            };
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
                source_protocol_addr: target_protocol_addr,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            let eth = EthernetRepr {
                src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
                dst_addr: source_hardware_addr,
                ethertype: EthernetProtocol::Arp,
            };
            let mut buf = vec![0u8; eth.buffer_len() + reply.buffer_len()];
            let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.emit(&mut f);
            reply.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
            s.device.nic_mut().inbox.push_back(buf);
        }
    }

    /// UDP payloads the stack sent.
    fn udp_payloads(s: &Stack<FakeNic>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for frame in &s.device.nic().sent {
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            if eth.ethertype() != EthernetProtocol::Ipv4 {
                continue;
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(udp.src_port(), 5555);
            out.push(udp.payload().to_vec());
        }
        out
    }

    fn exchange(s: &mut Stack<FakeNic>, request: &[u8]) -> (Vec<Vec<u8>>, Polled) {
        s.device.nic_mut().inbox.push_back(udp_frame(request, 5555));
        let mut total = Polled::default();
        for t in 0..20 {
            let p = s.poll(t, &mut status);
            total.requests += p.requests;
            total.refused += p.refused;
            total.quit |= p.quit;
            answer_arp(s);
        }
        let payloads = udp_payloads(s);
        s.device.nic_mut().sent.clear();
        (payloads, total)
    }

    #[test]
    fn endpoint_answers_status_ping_errors_and_quit() {
        let mut s = stack();
        let (answers, polled) = exchange(&mut s, b"status");
        assert_eq!(polled.requests, 1);
        let text = String::from_utf8(answers.concat()).unwrap();
        assert!(text.starts_with("{\"type\":\"status\",\"config\":\"t\""), "{text}");
        assert!(text.ends_with("{\"type\":\"end\",\"lines\":2}\n"), "{text}");
        let (answers, _) = exchange(&mut s, b"ping 9");
        assert_eq!(answers, vec![b"{\"type\":\"pong\",\"seq\":9}\n".to_vec()]);
        let (answers, polled) = exchange(&mut s, &[0xff, 0x00, 0x41]);
        assert_eq!(polled.refused, 1);
        assert!(answers[0].starts_with(b"{\"type\":\"error\""));
        let (answers, polled) = exchange(&mut s, b"quit");
        assert!(polled.quit);
        assert_eq!(answers, vec![b"{\"type\":\"bye\"}\n".to_vec()]);
    }

    #[test]
    fn bulk_sends_every_datagram_then_end() {
        let mut s = stack();
        let (answers, _) = exchange(&mut s, b"bulk 100");
        assert_eq!(answers.len(), 101);
        assert!(answers[..100].iter().all(|a| a.len() == endpoint::BULK_BYTES));
        assert_eq!(answers[100], b"{\"type\":\"end\",\"bulk\":100}\n".to_vec());
    }

    #[test]
    fn malformed_frames_do_not_stop_the_endpoint() {
        let mut s = stack();
        let mut bad = udp_frame(b"ping 1", 5555);
        bad[14 + 8] ^= 0xff;
        s.device.nic_mut().inbox.push_back(bad);
        s.device.nic_mut().inbox.push_back(vec![0; 3]);
        let (answers, _) = exchange(&mut s, b"ping 2");
        assert_eq!(answers, vec![b"{\"type\":\"pong\",\"seq\":2}\n".to_vec()]);
        assert_eq!(s.device.counters.rx_malformed, 2);
    }
}
