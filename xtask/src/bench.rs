//! TODO
use anyhow::Result;
use std::path::Path;
pub fn run(_bin: &Path) -> Result<()> { anyhow::bail!("todo") }
