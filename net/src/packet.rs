//! Checks a received Ethernet frame before the stack sees it, so a malformed packet gets a
//! logged reason (smoltcp drops such frames silently). Pure: tested on the host.

use core::fmt;

use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket,
};

/// What a well-formed frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Arp,
    Udp {
        dst_port: u16,
    },
    /// Other IPv4 traffic (ICMP, TCP, ...): passed on, the stack decides.
    OtherIpv4,
    /// Other EtherTypes (IPv6, ...): passed on, the stack ignores them.
    Other,
}

/// Why a frame is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than an Ethernet header.
    ShortEthernet(usize),
    /// ARP packet truncated or with unexpected lengths.
    BadArp,
    /// IPv4 header truncated, with a bad version/length field, or a length beyond the frame.
    BadIpv4,
    /// IPv4 header checksum wrong.
    Ipv4Checksum,
    /// UDP header truncated or its length field disagrees with the IP payload.
    BadUdp,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::ShortEthernet(n) => write!(f, "{n}-byte frame is shorter than 14"),
            PacketError::BadArp => write!(f, "truncated or malformed ARP packet"),
            PacketError::BadIpv4 => write!(f, "truncated or malformed IPv4 header"),
            PacketError::Ipv4Checksum => write!(f, "IPv4 header checksum mismatch"),
            PacketError::BadUdp => write!(f, "UDP length does not match the IPv4 payload"),
        }
    }
}

/// Classifies `frame` or says why it is malformed.
pub fn check_frame(frame: &[u8]) -> Result<FrameKind, PacketError> {
    let eth =
        EthernetFrame::new_checked(frame).map_err(|_| PacketError::ShortEthernet(frame.len()))?;
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| PacketError::BadArp)?;
            if arp.hardware_len() != 6 || arp.protocol_len() != 4 {
                return Err(PacketError::BadArp);
            }
            Ok(FrameKind::Arp)
        }
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| PacketError::BadIpv4)?;
            if ip.version() != 4 {
                return Err(PacketError::BadIpv4);
            }
            if !ip.verify_checksum() {
                return Err(PacketError::Ipv4Checksum);
            }
            if ip.next_header() != IpProtocol::Udp {
                return Ok(FrameKind::OtherIpv4);
            }
            // Fragments after the first carry no UDP header.
            if ip.frag_offset() != 0 || ip.more_frags() {
                return Ok(FrameKind::OtherIpv4);
            }
            let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| PacketError::BadUdp)?;
            if usize::from(udp.len()) != ip.payload().len() {
                return Err(PacketError::BadUdp);
            }
            Ok(FrameKind::Udp { dst_port: udp.dst_port() })
        }
        _ => Ok(FrameKind::Other),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, UdpRepr};

    /// A well-formed Ethernet/IPv4/UDP frame carrying `payload` to `port`.
    pub fn udp_frame(payload: &[u8], port: u16) -> Vec<u8> {
        let src = Ipv4Address::new(10, 0, 2, 2);
        let dst = Ipv4Address::new(10, 0, 2, 15);
        let udp = UdpRepr { src_port: 40000, dst_port: port };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
        udp.emit(
            &mut datagram,
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        buf
    }

    #[test]
    fn good_udp_frame_is_classified() {
        let frame = udp_frame(b"status\n", 5555);
        assert_eq!(check_frame(&frame), Ok(FrameKind::Udp { dst_port: 5555 }));
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let frame = udp_frame(b"status\n", 5555);
        assert_eq!(check_frame(&frame[..10]), Err(PacketError::ShortEthernet(10)));
        assert_eq!(check_frame(&frame[..14 + 12]), Err(PacketError::BadIpv4));
        // Every truncation of a good frame is an error or a different kind, never a panic.
        for n in 0..frame.len() {
            assert_ne!(check_frame(&frame[..n]), Ok(FrameKind::Udp { dst_port: 5555 }), "{n}");
        }
    }

    #[test]
    fn corrupted_fields_are_rejected() {
        let good = udp_frame(b"ping 1\n", 5555);
        let mut bad = good.clone();
        bad[14 + 8] ^= 0xff; // TTL: breaks the header checksum
        assert_eq!(check_frame(&bad), Err(PacketError::Ipv4Checksum));
        let mut bad = good.clone();
        bad[14] = 0x65; // version 6 in an IPv4 EtherType
        assert_eq!(check_frame(&bad), Err(PacketError::BadIpv4));
        let mut bad = good.clone();
        bad[14 + 20 + 5] = 3; // UDP length 3 (< 8)
        assert_eq!(check_frame(&bad), Err(PacketError::BadUdp));
        let mut arp = vec![0u8; 14 + 28];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(check_frame(&arp[..20]), Err(PacketError::BadArp));
        assert_eq!(check_frame(&arp), Err(PacketError::BadArp), "hardware length 0");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = check_frame(&bytes);
        }
    }
}
