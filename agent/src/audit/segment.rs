//! Segment files: their names, reading them line by line, and appending to
//! the live one so that a failed write never leaves part of a line behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SUFFIX: &str = ".seg";
/// Read size of the line scanner; lines longer than this grow the buffer.
const READ_CHUNK: usize = 1 << 20;

/// A segment file of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// 1, 2, …; the file name is this number, zero-padded to 8 digits, `.seg`.
    pub number: u64,
    pub name: String,
    pub path: PathBuf,
}

impl Segment {
    pub fn new(dir: &Path, number: u64) -> Self {
        let name = format!("{number:08}{SUFFIX}");
        Self {
            number,
            path: dir.join(&name),
            name,
        }
    }
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first; none if `dir` does not exist.
pub fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(parse_name) {
            out.push(Segment::new(dir, number));
        }
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// One complete line of a segment, without its `\n`.
#[derive(Debug, Clone, Copy)]
pub struct LineAt<'a> {
    pub bytes: &'a [u8],
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// 1-based line number in the file.
    pub number: u64,
}

/// Where a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last complete line seen (or of the line the
    /// callback stopped at).
    pub offset: u64,
    /// Complete lines seen, including the one stopped at.
    pub lines: u64,
    /// Bytes after the last `\n` (an incomplete line); 0 when stopped.
    pub partial: u64,
    pub stopped: bool,
}

/// Calls `f` for every complete line from `start` (an offset at a line
/// start, counted as line `first_number`) to the end of `file`.
pub fn scan_lines(
    file: &mut impl Read,
    start: u64,
    first_number: u64,
    mut f: impl FnMut(LineAt<'_>) -> ControlFlow<()>,
) -> io::Result<ScanEnd> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut filled = 0;
    let mut offset = start;
    let mut number = first_number;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(ScanEnd {
                offset,
                lines: number - first_number,
                partial: filled as u64,
                stopped: false,
            });
        }
        let searched_from = filled;
        filled += n;
        let mut line_start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[searched_from..filled]) {
            let end = searched_from + nl;
            let line = LineAt {
                bytes: &buf[line_start..end],
                offset,
                number,
            };
            offset += (end + 1 - line_start) as u64;
            number += 1;
            line_start = end + 1;
            if f(line).is_break() {
                return Ok(ScanEnd {
                    offset,
                    lines: number - first_number,
                    partial: 0,
                    stopped: true,
                });
            }
        }
        buf.copy_within(line_start..filled, 0);
        filled -= line_start;
    }
}

/// The file operations of the live segment; replaceable so that tests can
/// make the disk fail (a full tmpfs needs root).
pub trait FileOps: Send + Sync {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
}

/// The real file system.
pub struct OsFileOps;
impl FileOps for OsFileOps {}

/// The live segment, open for appending.
pub struct Appender {
    pub segment: Segment,
    file: File,
    /// Bytes known to be complete lines on disk.
    len: u64,
    /// A write failed and cutting back did too: bytes past `len` may exist.
    dirty: bool,
    ops: Arc<dyn FileOps>,
}

impl Appender {
    /// Opens `segment` (created if missing) to append after its first `len`
    /// bytes, which recovery has checked.
    pub fn open(segment: Segment, len: u64, ops: Arc<dyn FileOps>) -> io::Result<Self> {
        let created = !segment.path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&segment.path)?;
        if created {
            // The new name must survive a power loss with the records in it.
            sync_dir(segment.path.parent().unwrap_or(Path::new(".")))?;
        }
        let on_disk = file.metadata()?.len();
        Ok(Self {
            segment,
            file,
            len,
            dirty: on_disk != len,
            ops,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `buf` (whole lines) at the end and syncs it. On failure the
    /// file is cut back to its previous length, so no partial line stays.
    pub fn append_synced(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.ops.set_len(&self.file, self.len)?;
            self.dirty = false;
        }
        let written = self
            .ops
            .write_at(&self.file, buf, self.len)
            .and_then(|()| self.ops.sync_data(&self.file));
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.dirty = self
                    .ops
                    .set_len(&self.file, self.len)
                    .and_then(|()| self.ops.sync_data(&self.file))
                    .is_err();
                Err(e)
            }
        }
    }
}

/// fsync of a directory, so that names created or removed in it persist.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_number() {
        let dir = tempfile::tempdir().unwrap();
        for n in [10, 2, 1] {
            fs::write(Segment::new(dir.path(), n).path, b"").unwrap();
        }
        fs::write(dir.path().join("signing.key"), b"").unwrap();
        fs::write(dir.path().join("1.seg"), b"").unwrap();
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["00000001.seg", "00000002.seg", "00000010.seg"]);
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn scan_reports_lines_offsets_and_the_partial_tail() {
        let long = "x".repeat(READ_CHUNK + 10);
        let text = format!("a\n{long}\nbc\ntail");
        let mut seen = Vec::new();
        let end = scan_lines(&mut text.as_bytes(), 0, 1, |l| {
            seen.push((l.bytes.len(), l.offset, l.number));
            ControlFlow::Continue(())
        })
        .unwrap();
        let second = 2 + long.len() as u64 + 1;
        assert_eq!(seen, [(1, 0, 1), (long.len(), 2, 2), (2, second, 3)]);
        assert_eq!(end.offset, second + 3);
        assert_eq!((end.lines, end.partial, end.stopped), (3, 4, false));
    }

    struct FailingWrites;
    impl FileOps for FailingWrites {
        fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
            // Half the batch reaches the file before the disk fills.
            file.write_all_at(&buf[..buf.len() / 2], offset)?;
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_failed_append_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::new(dir.path(), 1);
        let mut ok = Appender::open(seg.clone(), 0, Arc::new(OsFileOps)).unwrap();
        ok.append_synced(b"one\n").unwrap();
        let mut failing = Appender::open(seg.clone(), 4, Arc::new(FailingWrites)).unwrap();
        assert!(failing.append_synced(b"two two two\n").is_err());
        assert_eq!(fs::read(&seg.path).unwrap(), b"one\n");
        assert_eq!(failing.len(), 4);
    }
}
