//! The compiled eBPF object of mcp-warden, embedded at build time.
//!
//! The C sources live in `src/bpf/`; `build.rs` compiles them with clang.

/// Wrapper that gives the embedded ELF the 8-byte alignment its parser expects.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/warden.bpf.o")));

/// The ELF object holding every program and map definition.
pub fn object() -> &'static [u8] {
    &OBJECT_ALIGNED.0
}

/// ELF section / program names, as `aya::Ebpf::program_mut` knows them.
pub mod programs {
    pub const CONNECT4: &str = "warden_connect4";
    pub const CONNECT6: &str = "warden_connect6";
    pub const GETPEERNAME4: &str = "warden_getpeername4";
    pub const GETPEERNAME6: &str = "warden_getpeername6";
    pub const SOCK_RELEASE: &str = "warden_sock_release";
    pub const SOCKOPS: &str = "warden_sockops";
}

/// Map names as declared in `warden.bpf.c`.
pub mod maps {
    pub const CONFIG: &str = "warden_config";
    pub const EP_EXACT: &str = "warden_ep_exact";
    pub const EP_CIDR: &str = "warden_ep_cidr";
    pub const SOCKS: &str = "warden_socks";
    pub const FLOWS: &str = "warden_flows";
    pub const STATS: &str = "warden_stats";
    /// Every map, in the order they are pinned.
    pub const ALL: [&str; 6] = [CONFIG, EP_EXACT, EP_CIDR, SOCKS, FLOWS, STATS];
}
