//! The tamper-evident audit store: append-only segment files under
//! `<state_dir>/audit/`, one hash-chained JSON record per line, with signed
//! checkpoints and a seal when the store closes. docs/AUDIT.md is the
//! auditor's description of the format and of what `verify` proves.
//!
//! - [`record`]: what a record holds (the caller's and the store's own).
//! - [`chain`]: the line format, its canonical bytes and the hash chain.
//! - [`checkpoint`]: the signing key and what a checkpoint signs.
//! - [`segment`]: segment files: names, line scanning, safe appending.
//! - [`store`]: the writer thread (group commit, durability, rotation, retention).
//! - `recover`: cutting a torn tail at open.
//! - [`verify`], [`export`], [`sessions`], [`replay`], [`report`]: the auditor's tools.
//! - [`bench`]: numbers for `cargo xtask bench`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

pub mod bench;
pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod record;
mod recover;
pub mod replay;
pub mod report;
mod sample;
pub mod segment;
pub mod sessions;
pub mod store;
pub mod verify;

pub use checkpoint::{KEY_FILE, PublicKey, pubkey_text};
pub use export::{ExportFilter, Follow, parse_time, write_records};
pub use record::{Kind, Record};
pub use replay::replay;
pub use report::{AccessReview, access_review, write_report};
pub use sessions::{SessionSummary, list_sessions, rebuild_index, render_table, show_session};
pub use store::{Ack, AuditLog, AuditWriter, PendingAck, RetentionPolicy, StoreConfig, StoreError};
pub use verify::{Problem, Report, verify};

/// Copies every traffic record to `out`, one JSON object per line, as stored
/// (the store's own checkpoints, seals, retention and recovery records are
/// left out: [`write_records`] with `store_records` includes them).
pub fn export(dir: &Path, out: &mut dyn Write) -> Result<()> {
    write_records(dir, &ExportFilter::default(), out, None).map(|_| ())
}
