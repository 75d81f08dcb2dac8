//! Proves that agent-common's #[repr(C)] mirrors match the C structs in
//! warden.h as clang actually laid them out for the BPF target: the layouts
//! are read from the BTF of the embedded object, not from the header text.

use std::mem::{offset_of, size_of};

use btf_rs::{Btf, Type};
use mcp_warden_common as abi;
use object::{Object, ObjectSection};

fn btf() -> Btf {
    let elf = object::File::parse(mcp_warden_ebpf::object()).expect("embedded object is ELF");
    let section = elf
        .section_by_name(".BTF")
        .expect("object carries BTF (compiled with -g)");
    Btf::from_bytes(section.data().expect(".BTF data")).expect("BTF parses")
}

/// (size, [(field, byte offset)]) of a C struct as BTF describes it.
fn c_layout(btf: &Btf, name: &str) -> (usize, Vec<(String, usize)>) {
    let types = btf
        .resolve_types_by_name(name)
        .unwrap_or_else(|e| panic!("struct {name} not in BTF: {e}"));
    let s = types
        .iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} is not a struct in BTF"));
    let fields = s
        .members
        .iter()
        .map(|m| {
            assert!(
                m.bitfield_size().is_none_or(|b| b == 0),
                "{name}: bitfields are not part of the ABI"
            );
            (
                btf.resolve_name(m).expect("member name"),
                (m.bit_offset() / 8) as usize,
            )
        })
        .collect();
    (s.size(), fields)
}

macro_rules! assert_layout {
    ($btf:expr, $c:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
        let (size, fields) = c_layout($btf, $c);
        assert_eq!(size, size_of::<$rust>(), "sizeof(struct {}) != size_of::<{}>()", $c, stringify!($rust));
        let rust_fields: Vec<(String, usize)> = vec![$((stringify!($field).to_string(), offset_of!($rust, $field))),*];
        assert_eq!(fields, rust_fields, "field names/offsets of struct {} vs {}", $c, stringify!($rust));
    }};
}

#[test]
fn c_and_rust_layouts_agree() {
    let btf = btf();
    assert_layout!(
        &btf,
        "warden_config",
        abi::Config,
        [
            listen_ip4,
            listen_ip6,
            listen_port4,
            listen_port6,
            self_mark,
            flags,
            netns_cookie
        ]
    );
    assert_layout!(&btf, "warden_ep_key", abi::EndpointKey, [ip6, port, pad]);
    assert_layout!(&btf, "warden_cidr_data", abi::CidrData, [port_be, ip6, pad]);
    assert_layout!(&btf, "warden_cidr_key", abi::CidrKey, [prefixlen, data]);
    assert_layout!(
        &btf,
        "warden_ep_val",
        abi::EndpointVal,
        [endpoint_id, flags]
    );
    assert_layout!(
        &btf,
        "warden_flow",
        abi::Flow,
        [
            orig_ip6,
            orig_port,
            orig_family,
            endpoint_id,
            pid,
            tid,
            uid,
            gid,
            cgroup_id,
            netns_cookie,
            socket_cookie,
            ktime_ns,
            comm
        ]
    );
    assert_layout!(
        &btf,
        "warden_tuple",
        abi::Tuple,
        [src_ip6, dst_ip6, src_port, dst_port, pad]
    );
}

/// The constants that size maps and index counters must agree too.
#[test]
fn c_and_rust_constants_agree() {
    let header = include_str!("../src/bpf/warden.h");
    let define = |name: &str| -> u64 {
        let line = header
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
            .unwrap_or_else(|| panic!("#define {name} missing in warden.h"));
        let value = line
            .split("/*")
            .next()
            .unwrap()
            .split_whitespace()
            .skip(2)
            .collect::<String>();
        let value = value.trim_start_matches('(').trim_end_matches(')');
        match value.split_once("<<") {
            Some((base, shift)) => {
                base.trim_end_matches('u').parse::<u64>().unwrap() << shift.parse::<u64>().unwrap()
            }
            None => value.trim_end_matches('u').parse().unwrap(),
        }
    };
    assert_eq!(define("WARDEN_COMM_LEN"), abi::COMM_LEN as u64);
    assert_eq!(
        define("WARDEN_MAX_ENDPOINTS"),
        u64::from(abi::MAX_ENDPOINTS)
    );
    assert_eq!(define("WARDEN_MAX_SOCKS"), u64::from(abi::MAX_SOCKS));
    assert_eq!(define("WARDEN_MAX_FLOWS"), u64::from(abi::MAX_FLOWS));
    assert_eq!(define("WARDEN_CFG_LISTEN6"), u64::from(abi::CFG_LISTEN6));
    assert_eq!(
        define("WARDEN_CFG_ALL_NETNS"),
        u64::from(abi::CFG_ALL_NETNS)
    );
    assert_eq!(
        define("WARDEN_STAT_REDIRECTED"),
        u64::from(abi::stat::REDIRECTED)
    );
    assert_eq!(
        define("WARDEN_STAT_SKIPPED_MARK"),
        u64::from(abi::stat::SKIPPED_MARK)
    );
    assert_eq!(
        define("WARDEN_STAT_SKIPPED_NETNS"),
        u64::from(abi::stat::SKIPPED_NETNS)
    );
    assert_eq!(
        define("WARDEN_STAT_RECORD_FAILED"),
        u64::from(abi::stat::RECORD_FAILED)
    );
    assert_eq!(define("WARDEN_STAT_REKEYED"), u64::from(abi::stat::REKEYED));
    assert_eq!(
        define("WARDEN_STAT_REKEY_FAILED"),
        u64::from(abi::stat::REKEY_FAILED)
    );
    assert_eq!(
        define("WARDEN_STAT_NO_LISTENER6"),
        u64::from(abi::stat::NO_LISTENER6)
    );
    assert_eq!(define("WARDEN_STAT_MAX"), u64::from(abi::stat::MAX));
}
