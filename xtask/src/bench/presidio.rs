//! Microsoft Presidio as a side-by-side baseline for the masking engine: the
//! same labelled corpus, the same scoring rules, the same bytes for MB/s, in
//! the same run. Bench only: the Presidio venv is opt-in (`bash
//! tests/peers/setup.sh presidio`); without it this part prints how to get it
//! and is skipped.
//!
//! Presidio analyses text, so xtask/presidio_bench.py walks each document's
//! JSON and hands Presidio every decoded string value with its key as
//! context (what Presidio's own `BatchAnalyzerEngine.analyze_dict` does),
//! maps its spans back to bytes of the document, and scores both engines on
//! those bytes alike. Its MB/s is the documents' JSON bytes over Presidio's
//! analysis time (model loaded and warmed up first).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mcp_warden::mask::corpus::{self, Doc};
use serde_json::Value;

/// Documents per kind Presidio sees by default (a prefix of the corpus
/// `bench_report` scores): Presidio runs at well under 1 MB/s, so the full
/// corpus would take many minutes.
const PER_KIND: usize = 100;

fn python() -> PathBuf {
    let root =
        std::env::var_os("MCP_WARDEN_PEERS").unwrap_or_else(|| "/opt/mcp-warden-peers".into());
    PathBuf::from(root).join("presidio/bin/python")
}

/// Prints the side-by-side table, or why there is none.
pub fn report() -> Result<()> {
    let py = python();
    println!("\nbaseline: Microsoft Presidio on the same corpus");
    if !py.exists() {
        println!(
            "skipped: no Presidio venv at {} (install it with `bash tests/peers/setup.sh presidio`)",
            py.display()
        );
        return Ok(());
    }
    let per_kind = match std::env::var("MCP_WARDEN_PRESIDIO_DOCS") {
        Ok(n) => n.parse().context("MCP_WARDEN_PRESIDIO_DOCS")?,
        Err(_) => PER_KIND,
    };
    let docs = corpus::generate(corpus::BENCH_SEED, per_kind);
    let mut file = tempfile::NamedTempFile::new()?;
    corpus::write_corpus_jsonl(&docs, &mut std::io::BufWriter::new(file.as_file_mut()))?;
    let script = crate::workspace_root().join("xtask/presidio_bench.py");
    eprintln!(
        "+ {} {} ({} documents)",
        py.display(),
        script.display(),
        docs.len()
    );
    let out = Command::new(&py)
        .arg(&script)
        .arg(file.path())
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peer: Value = serde_json::from_slice(&out.stdout).context("presidio_bench.py output")?;
    print!("{}", table(&docs, &peer));
    Ok(())
}

fn ratio(n: u64, d: u64) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.3}", n as f64 / d as f64)
    }
}

fn count(v: &Value, side: &str, field: &str) -> u64 {
    v[side][field].as_u64().unwrap_or(0)
}

fn table(docs: &[Doc], peer: &Value) -> String {
    use std::fmt::Write as _;
    let mut r = String::new();
    let bytes: usize = docs.iter().map(|d| d.bytes.len()).sum();
    let _ = writeln!(
        r,
        "{}; seed {:#x}, first {} documents ({:.2} MB); Presidio sees each decoded JSON string value, its key as context; score threshold {}",
        peer["engine"].as_str().unwrap_or("presidio"),
        corpus::BENCH_SEED,
        docs.len(),
        bytes as f64 / 1e6,
        peer["threshold"],
    );
    let _ = writeln!(
        r,
        "recall: labelled identifiers fully covered; precision: spans that overlap an identifier (n/a: Presidio has no recognizer for it)"
    );
    let _ = writeln!(
        r,
        "{:<10} {:<12} {:>6} | {:>7} {:>9} {:>6} | {:>7} {:>9} {:>6}",
        "kind", "entity", "labels", "recall", "precision", "spans", "recall", "precision", "spans"
    );
    let _ = writeln!(r, "{:<30} | {:^24} | {:^24}", "", "mcp-warden", "Presidio");
    let mut incidental = Vec::new();
    for row in peer["rows"].as_array().into_iter().flatten() {
        let supported = row["supported"].as_bool().unwrap_or(false);
        let labels = row["labels"].as_u64().unwrap_or(0);
        let (kind, entity) = (
            row["kind"].as_str().unwrap_or(""),
            row["entity"].as_str().unwrap_or(""),
        );
        let p_recall = ratio(count(row, "presidio", "masked"), labels);
        if !supported && labels > 0 {
            incidental.push(format!("{kind} {entity} {p_recall}"));
        }
        let _ = writeln!(
            r,
            "{:<10} {:<12} {:>6} | {:>7} {:>9} {:>6} | {:>7} {:>9} {:>6}",
            kind,
            entity,
            labels,
            ratio(count(row, "ours", "masked"), labels),
            ratio(
                count(row, "ours", "correct"),
                count(row, "ours", "predicted")
            ),
            count(row, "ours", "predicted"),
            if supported { p_recall } else { "n/a".into() },
            ratio(
                count(row, "presidio", "correct"),
                count(row, "presidio", "predicted")
            ),
            count(row, "presidio", "predicted"),
        );
    }
    if !incidental.is_empty() {
        let _ = writeln!(
            r,
            "n/a entities covered anyway by other Presidio types: {}",
            incidental.join(", ")
        );
    }
    let _ = writeln!(
        r,
        "\nthroughput, one core, same bytes: mcp-warden mask_json_bytes (safe-harbor) vs Presidio analyze (spans only, no anonymizer)"
    );
    let _ = writeln!(
        r,
        "{:<10} {:>8} {:>14} {:>13} {:>8}",
        "kind", "MB", "mcp-warden MB/s", "Presidio MB/s", "ratio"
    );
    for (kind, of_kind, mb) in corpus::by_kind(docs) {
        let ours = corpus::mask_rate(&of_kind, Duration::from_millis(1500));
        let theirs = peer["mb_per_s"][kind.name()].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            r,
            "{:<10} {:>8.2} {:>14.1} {:>13.3} {:>7.0}x",
            kind.name(),
            mb,
            ours,
            theirs,
            ours / theirs
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_corpus_carries_each_document_and_its_labels() {
        let docs = corpus::generate(corpus::BENCH_SEED, 2);
        let mut out = Vec::new();
        corpus::write_corpus_jsonl(&docs, &mut out).unwrap();
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), docs.len());
        for (doc, line) in docs.iter().zip(&lines) {
            assert_eq!(line["kind"], doc.kind.name());
            assert_eq!(line["text"].as_str().unwrap().as_bytes(), &doc.bytes[..]);
            let labels = line["labels"].as_array().unwrap();
            assert_eq!(labels.len(), doc.labels.len());
            for (l, v) in doc.labels.iter().zip(labels) {
                assert_eq!(v[0].as_u64().unwrap() as usize, l.range.start);
                assert_eq!(v[1].as_u64().unwrap() as usize, l.range.end);
                assert_eq!(v[2], l.entity.name());
            }
            assert!(!line["ours"].as_array().unwrap().is_empty());
        }
    }
}
