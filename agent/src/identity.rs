//! STUB: replaced by the real identity module.
use serde::Serialize;
use std::path::PathBuf;
use mcp_warden_common::Flow;
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Identity { pub uid: u32, pub user: Option<String>, pub gid: u32, pub group: Option<String>, pub pid: u32, pub tid: u32, pub exe: Option<String>, pub comm: String, pub cmdline: Option<String>, pub cgroup: Option<String>, pub cgroup_id: u64, pub unit: Option<String>, pub ci: Option<CiJob> }
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CiJob { pub provider: String }
pub struct Identifier;
impl Identifier {
    pub fn new(_m: PathBuf) -> Self { Identifier }
    pub fn identify(&self, flow: &Flow) -> Identity { Identity { uid: flow.uid, user: None, gid: flow.gid, group: None, pid: flow.pid, tid: flow.tid, exe: None, comm: flow.comm().into(), cmdline: None, cgroup: None, cgroup_id: flow.cgroup_id, unit: None, ci: None } }
}
pub fn cgroup2_mount() -> std::io::Result<PathBuf> { Ok("/sys/fs/cgroup/unified".into()) }
