//! Loads mcp-warden's eBPF programs, attaches them to the configured cgroup,
//! keeps the endpoint maps in step with the config, and answers the accept
//! path's question "who opened this connection?".
//!
//! Fail-closed (the default) pins every map and link under
//! `<bpffs>/mcp-warden/<instance>/`: the redirect outlives the agent, so while
//! it is down matching connections land on a closed port and are refused.
//! A restart attaches the new programs next to the pinned ones (they share the
//! pinned maps) before it unpins the old links, so there is no moment without
//! a redirect. Fail-open keeps links only as file descriptors of this process:
//! they go away with it, whatever way it exits.

use std::collections::HashMap as StdHashMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, Program};
use aya::{Ebpf, EbpfLoader};
use mcp_warden_common::{self as abi, CidrData, CidrKey, EndpointKey, EndpointVal, Flow, Tuple};
use mcp_warden_ebpf::{maps, programs};
use tracing::{debug, info, warn};

use crate::config::{Config, FailMode};

/// bpffs superblock magic (statfs f_type).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Programs in attach order. The redirect (connect) goes last so that the
/// helpers it relies on (sockops re-keying, getpeername) are in place first.
const PROGRAMS: [&str; 6] = [
    programs::SOCKOPS,
    programs::GETPEERNAME4,
    programs::GETPEERNAME6,
    programs::SOCK_RELEASE,
    programs::CONNECT4,
    programs::CONNECT6,
];

/// The endpoint maps' desired content, built from config and DNS.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EndpointTable {
    pub exact: StdHashMap<EndpointKey, EndpointVal>,
    pub cidr: StdHashMap<CidrKey, EndpointVal>,
}

/// Where an instance keeps its pins.
#[derive(Debug, Clone)]
pub struct PinDir {
    pub root: PathBuf,
}

impl PinDir {
    pub fn new(config: &Config) -> Self {
        Self {
            root: config.pin_dir(),
        }
    }
    fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }
    fn links(&self) -> PathBuf {
        self.root.join("links")
    }
    fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }
    fn link(&self, name: &str) -> PathBuf {
        self.links().join(name)
    }
    /// True when a previous run left links attached.
    pub fn has_links(&self) -> bool {
        PROGRAMS.iter().any(|p| self.link(p).exists())
    }
}

/// Lookups of the sockops-keyed flow records, shared by the accept loops.
pub struct FlowTable {
    map: Mutex<HashMap<MapData, Tuple, Flow>>,
}

impl FlowTable {
    /// Takes the record of the connection accepted from `client` on `local`.
    /// The entry is deleted: it has served its purpose, and the map is bounded.
    pub fn take(&self, client: SocketAddr, local: SocketAddr) -> Option<Flow> {
        let key = Tuple::new(client.ip(), client.port(), local.ip(), local.port());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let flow = map.get(&key, 0).ok()?;
        if let Err(e) = map.remove(&key) {
            debug!(error = %e, "flow record already gone");
        }
        Some(flow)
    }
}

/// The loaded programs and the maps the agent writes.
pub struct Kernel {
    _ebpf: Ebpf,
    config_map: Array<MapData, abi::Config>,
    ep_exact: HashMap<MapData, EndpointKey, EndpointVal>,
    ep_cidr: LpmTrie<MapData, CidrData, EndpointVal>,
    stats: PerCpuArray<MapData, u64>,
    /// Fail-open: the links live only as long as these descriptors.
    owned_links: Vec<FdLink>,
    pins: Option<PinDir>,
}

impl Kernel {
    /// Loads the object; with fail-closed, maps are pinned (or the pinned ones
    /// of a previous run reused, so old and new programs share state).
    pub fn load(config: &Config) -> Result<Self> {
        let pins = match config.agent.fail_mode {
            FailMode::Closed => Some(PinDir::new(config)),
            FailMode::Open => None,
        };
        let mut loader = EbpfLoader::new();
        let map_paths: Vec<(&str, PathBuf)>;
        if let Some(pins) = &pins {
            ensure_bpffs(&config.agent.bpffs)?;
            fs::create_dir_all(pins.maps())
                .with_context(|| format!("creating {}", pins.maps().display()))?;
            fs::create_dir_all(pins.links())
                .with_context(|| format!("creating {}", pins.links().display()))?;
            map_paths = maps::ALL.iter().map(|m| (*m, pins.map(m))).collect();
            for (name, path) in &map_paths {
                loader.map_pin_path(name, path.as_path());
            }
        }
        let mut ebpf = loader.load(mcp_warden_ebpf::object()).context(
            "loading the eBPF object (is this kernel built with BPF, BTF and cgroup BPF?)",
        )?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("map {name} missing from the object"))
        };
        let config_map = Array::try_from(take(maps::CONFIG)?)?;
        let ep_exact = HashMap::try_from(take(maps::EP_EXACT)?)?;
        let ep_cidr = LpmTrie::try_from(take(maps::EP_CIDR)?)?;
        let stats = PerCpuArray::try_from(take(maps::STATS)?)?;
        Ok(Self {
            _ebpf: ebpf,
            config_map,
            ep_exact,
            ep_cidr,
            stats,
            owned_links: Vec::new(),
            pins,
        })
    }

    /// The flow table; taken once, by the accept path.
    pub fn take_flow_table(&mut self) -> Result<FlowTable> {
        let map = self
            ._ebpf
            .take_map(maps::FLOWS)
            .ok_or_else(|| anyhow!("flow map already taken"))?;
        Ok(FlowTable {
            map: Mutex::new(HashMap::try_from(map)?),
        })
    }

    /// Tells the programs where the listener is and which sockets are ours.
    pub fn write_config(&mut self, value: abi::Config) -> Result<()> {
        self.config_map
            .set(0, value, 0)
            .context("writing the config map")
    }

    /// Makes the endpoint maps equal to `table`: inserts what is new or changed,
    /// deletes what is no longer wanted (including leftovers of an earlier run).
    pub fn sync_endpoints(&mut self, table: &EndpointTable) -> Result<SyncStats> {
        let mut st = SyncStats::default();
        let stale: Vec<EndpointKey> = self
            .ep_exact
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !table.exact.contains_key(k))
            .collect();
        for k in stale {
            self.ep_exact.remove(&k).context("deleting an endpoint")?;
            st.removed += 1;
        }
        for (k, v) in &table.exact {
            if self.ep_exact.get(k, 0).ok().as_ref() != Some(v) {
                self.ep_exact
                    .insert(k, v, 0)
                    .context("inserting an endpoint (more than the map holds?)")?;
                st.added += 1;
            }
        }
        let wanted: StdHashMap<(u32, CidrData), EndpointVal> = table
            .cidr
            .iter()
            .map(|(k, v)| ((k.prefixlen, k.data), *v))
            .collect();
        let present: Vec<(u32, CidrData)> = self
            .ep_cidr
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for k in present.iter().filter(|k| !wanted.contains_key(k)) {
            self.ep_cidr
                .remove(&LpmKey::new(k.0, k.1))
                .context("deleting a CIDR endpoint")?;
            st.removed += 1;
        }
        for (k, v) in &wanted {
            let key = LpmKey::new(k.0, k.1);
            // A trie lookup answers with the longest match, which is this very
            // prefix only when it is present: check presence first.
            if !present.contains(k) || self.ep_cidr.get(&key, 0).ok().as_ref() != Some(v) {
                self.ep_cidr
                    .insert(&key, v, 0)
                    .context("inserting a CIDR endpoint")?;
                st.added += 1;
            }
        }
        Ok(st)
    }

    /// Attaches every program to `cgroup`. With pins, each new link is pinned
    /// before the previous run's link for the same program is released.
    pub fn attach(&mut self, cgroup: &Path) -> Result<()> {
        let cg =
            File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
        for name in PROGRAMS {
            let link = attach_program(&mut self._ebpf, name, &cg)
                .with_context(|| format!("attaching {name} to {}", cgroup.display()))?;
            match &self.pins {
                Some(pins) => replace_pinned_link(pins, name, link)?,
                None => self.owned_links.push(link),
            }
        }
        info!(cgroup = %cgroup.display(), pinned = self.pins.is_some(), "programs attached");
        Ok(())
    }

    /// Sum of each per-CPU counter, named.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        read_stats(&self.stats)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SyncStats {
    pub added: usize,
    pub removed: usize,
}

fn read_stats(map: &PerCpuArray<MapData, u64>) -> Vec<(&'static str, u64)> {
    abi::stat::NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                *name,
                map.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0),
            )
        })
        .collect()
}

fn attach_program(ebpf: &mut Ebpf, name: &str, cgroup: &File) -> Result<FdLink> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    // bpf_link_create takes no attach flags for cgroups (EINVAL otherwise): cgroup
    // links always behave as BPF_F_ALLOW_MULTI, which lets ours sit beside others'.
    let mode = CgroupAttachMode::Single;
    let link = match program {
        Program::CgroupSockAddr(p) => {
            p.load()?;
            let id = p.attach(cgroup, mode)?;
            FdLink::try_from(p.take_link(id)?)?
        }
        Program::CgroupSock(p) => {
            p.load()?;
            let id = p.attach(cgroup, mode)?;
            FdLink::try_from(p.take_link(id)?)?
        }
        Program::SockOps(p) => {
            p.load()?;
            let id = p.attach(cgroup, mode)?;
            FdLink::try_from(p.take_link(id)?)?
        }
        other => bail!("program {name} has unexpected type {:?}", other.prog_type()),
    };
    Ok(link)
}

/// Pins `link` as the instance's link for `name`, then releases the one a
/// previous run pinned. Both are attached for a moment; they share maps and the
/// second redirect is a no-op on an already redirected address.
fn replace_pinned_link(pins: &PinDir, name: &str, link: FdLink) -> Result<()> {
    let path = pins.link(name);
    // bpffs refuses names with a dot
    let staged = pins.links().join(format!("{name}_new"));
    if staged.exists() {
        // left by a run that died mid-swap; unpinning it detaches it
        fs::remove_file(&staged).with_context(|| format!("removing stale {}", staged.display()))?;
    }
    let pinned = link
        .pin(&staged)
        .with_context(|| format!("pinning {}", staged.display()))?;
    drop(pinned); // the pin keeps the link; our descriptor is not needed
    if path.exists() {
        let old =
            PinnedLink::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        drop(
            old.unpin()
                .with_context(|| format!("unpinning {}", path.display()))?,
        );
    }
    fs::rename(&staged, &path)
        .with_context(|| format!("renaming {} to {}", staged.display(), path.display()))?;
    Ok(())
}

/// Removes every link and map the instance pinned. Returns what was removed.
pub fn detach(pins: &PinDir) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !pins.root.exists() {
        return Ok(removed);
    }
    for dir in [pins.links(), pins.maps()] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            // Unpinning drops the last reference to a link (detaching it) or a map.
            fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            removed.push(path);
        }
        fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::remove_dir(&pins.root).with_context(|| format!("removing {}", pins.root.display()))?;
    if let Some(parent) = pins.root.parent() {
        let _ = fs::remove_dir(parent); // only succeeds once no instance is left
    }
    Ok(removed)
}

/// What `status` reports about the kernel side of an instance.
#[derive(Debug, serde::Serialize)]
pub struct PinStatus {
    pub pin_dir: PathBuf,
    pub links: Vec<String>,
    pub counters: Vec<(&'static str, u64)>,
}

/// Reads the instance's pins without loading anything.
pub fn pin_status(pins: &PinDir) -> Result<PinStatus> {
    let links = PROGRAMS
        .iter()
        .filter(|p| pins.link(p).exists())
        .map(|p| p.to_string())
        .collect();
    let counters = match aya::maps::MapData::from_pin(pins.map(maps::STATS)) {
        Ok(data) => read_stats(&PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))?),
        Err(_) => Vec::new(),
    };
    Ok(PinStatus {
        pin_dir: pins.root.clone(),
        links,
        counters,
    })
}

/// Mounts bpffs at `path` unless one is there already (systemd normally mounts it).
pub fn ensure_bpffs(path: &Path) -> Result<()> {
    let st =
        nix::sys::statfs::statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    if st.filesystem_type().0 as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    warn!(path = %path.display(), "no bpffs mounted; mounting one");
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {}", path.display()))
}

/// The network namespace cookie of the calling thread's namespace.
pub fn own_netns_cookie() -> Result<u64> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_NETNS_COOKIE (needs Linux 5.14+)");
    }
    Ok(cookie)
}
