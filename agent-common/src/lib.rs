//! The kernel<->userspace ABI of mcp-warden.
//!
//! `#[repr(C)]` mirrors of the structs in `agent-ebpf/src/bpf/warden.h`. The
//! test `agent-ebpf/tests/abi_layout.rs` compares these layouts with the BTF
//! of the compiled eBPF object, so a change on one side alone fails the build's
//! tests. Conventions (as in the header): addresses are 16 network-order bytes
//! with IPv4 as IPv4-mapped IPv6; ports are host byte order except in
//! [`CidrKey`], where the LPM trie needs big-endian bytes.
#![no_std]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const COMM_LEN: usize = 16;
pub const MAX_ENDPOINTS: u32 = 4096;
pub const MAX_SOCKS: u32 = 65536;
pub const MAX_FLOWS: u32 = 65536;

/// `warden_config.flags`: an IPv6 listener exists.
pub const CFG_LISTEN6: u32 = 1 << 0;
/// `warden_config.flags`: also redirect sockets of other network namespaces.
pub const CFG_ALL_NETNS: u32 = 1 << 1;

/// Indexes of the per-CPU counters in `warden_stats`.
pub mod stat {
    pub const REDIRECTED: u32 = 0;
    pub const SKIPPED_MARK: u32 = 1;
    pub const SKIPPED_NETNS: u32 = 2;
    pub const RECORD_FAILED: u32 = 3;
    pub const REKEYED: u32 = 4;
    pub const REKEY_FAILED: u32 = 5;
    pub const NO_LISTENER6: u32 = 6;
    pub const MAX: u32 = 8;
    /// Names for display, indexed like the counters.
    pub const NAMES: [&str; 7] = [
        "redirected",
        "skipped_mark",
        "skipped_netns",
        "record_failed",
        "rekeyed",
        "rekey_failed",
        "no_listener6",
    ];
}

/// Prefix bits that the port occupies at the front of a [`CidrKey`].
pub const CIDR_PORT_BITS: u32 = 16;
/// Prefix bits of the `::ffff:0:0/96` part in front of an IPv4 address.
pub const MAPPED_V4_BITS: u32 = 96;

/// `struct warden_config`: the single entry of the config array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub listen_ip4: [u8; 4],
    pub listen_ip6: [u8; 16],
    pub listen_port4: u16,
    pub listen_port6: u16,
    pub self_mark: u32,
    pub flags: u32,
    pub netns_cookie: u64,
}

/// `struct warden_ep_key`: an exact `ip:port` endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub ip6: [u8; 16],
    pub port: u16,
    pub pad: u16,
}

/// `struct warden_cidr_data`: what the LPM trie compares, port first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CidrData {
    pub port_be: [u8; 2],
    pub ip6: [u8; 16],
    pub pad: [u8; 2],
}

/// `struct warden_cidr_key`: a `cidr:port` endpoint in the LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CidrKey {
    pub prefixlen: u32,
    pub data: CidrData,
}

/// `struct warden_ep_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointVal {
    pub endpoint_id: u32,
    pub flags: u32,
}

/// `struct warden_flow`: who dialled what, recorded at connect().
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub orig_ip6: [u8; 16],
    pub orig_port: u16,
    pub orig_family: u16,
    pub endpoint_id: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub netns_cookie: u64,
    pub socket_cookie: u64,
    pub ktime_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// `struct warden_tuple`: the client's socket as the agent sees it on accept().
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src_ip6: [u8; 16],
    pub dst_ip6: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub pad: u32,
}

/// The 16-byte form used in every key: IPv4 becomes `::ffff:a.b.c.d`.
pub fn ip6_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`ip6_bytes`]: a mapped address comes back as IPv4.
pub fn ip_from_bytes(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl EndpointKey {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self {
            ip6: ip6_bytes(ip),
            port,
            pad: 0,
        }
    }
}

impl CidrKey {
    /// `bits` is the prefix length in the address's own family (≤ 32 for IPv4).
    pub fn new(ip: IpAddr, bits: u8, port: u16) -> Self {
        let addr_bits = match ip {
            IpAddr::V4(_) => MAPPED_V4_BITS + u32::from(bits.min(32)),
            IpAddr::V6(_) => u32::from(bits.min(128)),
        };
        Self {
            prefixlen: CIDR_PORT_BITS + addr_bits,
            data: CidrData {
                port_be: port.to_be_bytes(),
                ip6: ip6_bytes(ip),
                pad: [0; 2],
            },
        }
    }
}

impl Tuple {
    /// The key the sockops program wrote for a connection from `src` to `dst`.
    pub fn new(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self {
            src_ip6: ip6_bytes(src),
            dst_ip6: ip6_bytes(dst),
            src_port,
            dst_port,
            pad: 0,
        }
    }
}

impl Flow {
    /// The destination the client dialled.
    pub fn orig_ip(&self) -> IpAddr {
        ip_from_bytes(self.orig_ip6)
    }

    /// The thread's command name, up to its NUL.
    pub fn comm(&self) -> &str {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        core::str::from_utf8(&self.comm[..end]).unwrap_or("?")
    }
}

impl Config {
    pub fn listen_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.listen_ip4)
    }
}

#[cfg(feature = "aya")]
mod pod {
    // SAFETY: all of these are #[repr(C)] with explicit padding fields and only
    // integer or byte-array members, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::CidrKey {}
    unsafe impl aya::Pod for super::CidrData {}
    unsafe impl aya::Pod for super::EndpointVal {}
    unsafe impl aya::Pod for super::Flow {}
    unsafe impl aya::Pod for super::Tuple {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_through_mapped_form() {
        let ip: IpAddr = "10.20.30.40".parse().unwrap();
        let b = ip6_bytes(ip);
        assert_eq!(&b[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(ip_from_bytes(b), ip);
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(ip_from_bytes(ip6_bytes(v6)), v6);
    }

    #[test]
    fn cidr_prefix_covers_port_and_address_bits() {
        let k = CidrKey::new("10.20.0.0".parse().unwrap(), 16, 8443);
        assert_eq!(k.prefixlen, 16 + 96 + 16);
        assert_eq!(k.data.port_be, [0x20, 0xfb]);
        let k6 = CidrKey::new("fd00::".parse().unwrap(), 64, 443);
        assert_eq!(k6.prefixlen, 16 + 64);
    }
}
