//! Column rules in tables inside text: markdown tables and CSV/TSV with a
//! header row. A cell under a header that a key rule names is masked whole;
//! cells are edited where they stand, so the table keeps its layout.

use std::cell::RefCell;
use std::ops::Range;

use super::detect::{Hit, Hits};
use super::entity::Entity;
use super::keys::{KeyRules, applies};
use super::simd;

/// Finds the cells of key-ruled columns. Markdown tables are looked for
/// first; CSV only when the text has none.
pub(crate) fn find(text: &str, rules: &KeyRules, out: &mut Hits) {
    // memchr, not `str::contains`: these scan the whole text, and
    // `str::contains` checks a word at a time where memchr uses SIMD.
    let b = text.as_bytes();
    if rules.is_empty() || memchr::memchr(b'\n', b).is_none() {
        return;
    }
    if memchr::memchr(b'|', b).is_some() && markdown(text, rules, out) {
        return;
    }
    csv(text, rules, out);
}

/// Lines with their byte ranges (without the line break).
fn lines(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.bytes().enumerate() {
        if c == b'\n' {
            let end = if i > start && text.as_bytes()[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            out.push(start..end);
            start = i + 1;
        }
    }
    out.push(start..text.len());
    out
}

/// The trimmed cells of a markdown row, without the outer pipes; `\|` is
/// not a separator.
fn md_cells(text: &str, line: &Range<usize>) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut seps = vec![line.start];
    let mut i = line.start;
    while i < line.end {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'|' {
            seps.push(i + 1);
        }
        i += 1;
    }
    seps.push(line.end + 1);
    let mut cells: Vec<Range<usize>> = seps.windows(2).map(|w| w[0]..w[1] - 1).collect();
    // Outer pipes leave an empty first and last cell.
    if cells
        .first()
        .is_some_and(|c| text[c.clone()].trim().is_empty())
    {
        cells.remove(0);
    }
    if cells
        .last()
        .is_some_and(|c| text[c.clone()].trim().is_empty())
    {
        cells.pop();
    }
    cells.into_iter().map(|c| trim(text, c)).collect()
}

fn trim(text: &str, r: Range<usize>) -> Range<usize> {
    // Most cells start and end with a visible ASCII character.
    let b = text.as_bytes();
    if r.is_empty() || (b[r.start].is_ascii_graphic() && b[r.end - 1].is_ascii_graphic()) {
        return r;
    }
    let s = &text[r.clone()];
    let rest = s.trim_start();
    let start = r.start + (s.len() - rest.len());
    start..start + rest.trim_end().len()
}

fn is_separator_row(text: &str, cells: &[Range<usize>]) -> bool {
    !cells.is_empty()
        && cells.iter().all(|c| {
            let s = text[c.clone()].trim_matches(':');
            s.len() >= 3 && s.bytes().all(|b| b == b'-')
        })
}

fn column_rules(text: &str, header: &[Range<usize>], rules: &KeyRules) -> Vec<Option<Entity>> {
    header
        .iter()
        .map(|c| rules.lookup(&text[c.clone()]).cloned())
        .collect()
}

fn push_cell(text: &str, cell: Range<usize>, rule: &Option<Entity>, out: &mut Hits) {
    if let Some(entity) = rule
        && !cell.is_empty()
        && applies(entity, &text[cell.clone()])
    {
        out.push(Hit::new(cell, entity.clone()));
    }
}

/// Every table in the text; true if one was found.
fn markdown(text: &str, rules: &KeyRules, out: &mut Hits) -> bool {
    let lines = lines(text);
    let mut found = false;
    let mut i = 0;
    while i + 1 < lines.len() {
        let header = md_cells(text, &lines[i]);
        if !text[lines[i].clone()].contains('|')
            || !is_separator_row(text, &md_cells(text, &lines[i + 1]))
        {
            i += 1;
            continue;
        }
        found = true;
        let cols = column_rules(text, &header, rules);
        i += 2;
        while i < lines.len() && text[lines[i].clone()].contains('|') {
            for (cell, rule) in md_cells(text, &lines[i]).into_iter().zip(&cols) {
                push_cell(text, cell, rule, out);
            }
            i += 1;
        }
    }
    found
}

/// The delimiter of a CSV/TSV/semicolon header line, if it has one.
fn delimiter(header: &str) -> Option<u8> {
    [b',', b'\t', b';']
        .into_iter()
        .map(|d| (d, header.bytes().filter(|&c| c == d).count()))
        .filter(|&(_, n)| n > 0)
        .max_by_key(|&(_, n)| n)
        .map(|(d, _)| d)
}

thread_local! {
    /// Built once per thread and delimiter (building compiles a DFA, which
    /// costs more than parsing a table) and reset before each parse.
    /// (`Reader::clone` loses part of the DFA in csv-core 0.1, so no clones.)
    static READERS: RefCell<[(u8, csv_core::Reader); 3]> =
        RefCell::new([b',', b'\t', b';'].map(|d| (d, csv_core::ReaderBuilder::new().delimiter(d).build())));
}

/// The raw byte ranges of each record's fields, as csv-core reads them,
/// from the first `max_records` records.
fn csv_records(text: &str, delim: u8, max_records: usize) -> Vec<Vec<Range<usize>>> {
    READERS.with_borrow_mut(|readers| {
        let reader = &mut readers
            .iter_mut()
            .find(|(d, _)| *d == delim)
            .expect("a known delimiter")
            .1;
        reader.reset();
        read_records(reader, text.as_bytes(), delim, max_records)
    })
}

fn read_records(
    reader: &mut csv_core::Reader,
    b: &[u8],
    delim: u8,
    max_records: usize,
) -> Vec<Vec<Range<usize>>> {
    let mut scratch = [0u8; 4096];
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut pos = 0;
    let mut field_start = 0;
    loop {
        let (result, nin, _) = reader.read_field(&b[pos..], &mut scratch);
        pos += nin;
        match result {
            // Input is all given at once: InputEmpty asks for the end of
            // input (the next call passes an empty slice); OutputFull only
            // means a long field continues.
            csv_core::ReadFieldResult::InputEmpty | csv_core::ReadFieldResult::OutputFull => {}
            csv_core::ReadFieldResult::Field { record_end } => {
                record.push(raw_field(b, field_start..pos, delim, record_end));
                field_start = pos;
                if record_end {
                    records.push(std::mem::take(&mut record));
                    if records.len() == max_records {
                        break;
                    }
                }
            }
            csv_core::ReadFieldResult::End => break,
        }
    }
    records
}

/// A field's raw range from the bytes its read consumed, which end with the
/// delimiter or line break and may start with the previous record's line
/// breaks.
fn raw_field(b: &[u8], consumed: Range<usize>, delim: u8, record_end: bool) -> Range<usize> {
    let mut raw = consumed;
    while raw.end > raw.start && matches!(b[raw.end - 1], b'\n' | b'\r') {
        raw.end -= 1;
    }
    if !record_end && raw.end > raw.start && b[raw.end - 1] == delim {
        raw.end -= 1;
    }
    while raw.start < raw.end && matches!(b[raw.start], b'\n' | b'\r') {
        raw.start += 1;
    }
    raw
}

/// Reads records as csv-core does with the dialect `READERS` use (quote
/// `"`, doubled quotes inside quotes, CR, LF or CRLF line ends, blank lines
/// skipped), but jumps with memchr from one delimiter, quote or line break
/// to the next instead of stepping a DFA byte by byte, and stops where the
/// caller stops rather than reading the whole text. Not for text that
/// starts with a byte-order mark, which csv-core skips.
struct Scanner<'a> {
    b: &'a [u8],
    delim: u8,
    /// Where the last record's consumed bytes end.
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, delim: u8) -> Scanner<'a> {
        Scanner {
            b: text.as_bytes(),
            delim,
            pos: 0,
        }
    }

    /// The raw ranges of the next record's fields into `fields`; false at
    /// the end of the text.
    fn next_record(&mut self, fields: &mut Vec<Range<usize>>) -> bool {
        fields.clear();
        let b = self.b;
        // Line breaks before a record are skipped, so a blank line is no
        // record.
        let mut at = self.pos;
        while at < b.len() && matches!(b[at], b'\n' | b'\r') {
            at += 1;
        }
        if at == b.len() {
            self.pos = at;
            return false;
        }
        // Up to its first quote (in most lines there is none) a line's
        // fields are what lies between its delimiters: split in one pass.
        let (start, stop) = split_to_stop(b, at, self.delim, fields);
        if b.get(stop) != Some(&b'"') {
            fields.push(start..stop);
            self.pos = (stop + 1).min(b.len());
            return true;
        }
        // From the field with the quote on, field by field: a quoted field
        // may hold delimiters and line breaks.
        at = start;
        loop {
            let end = self.field_end(at);
            let record_end = b.get(end) != Some(&self.delim);
            // The delimiter or line break that ends the field is consumed
            // with it.
            let consumed = (end + 1).min(b.len());
            fields.push(raw_field(b, at..consumed, self.delim, record_end));
            at = consumed;
            if record_end {
                self.pos = consumed;
                return true;
            }
        }
    }

    /// Where the field that starts at `at` ends: at its delimiter or line
    /// break, or at the end of the text.
    fn field_end(&self, mut at: usize) -> usize {
        let b = self.b;
        // Only a quote that opens a field quotes it; within it `""` is a
        // quote, and after the closing quote the field goes on unquoted.
        if b.get(at) == Some(&b'"') {
            at += 1;
            loop {
                let Some(q) = memchr::memchr(b'"', &b[at..]) else {
                    return b.len();
                };
                at += q + 1;
                if b.get(at) != Some(&b'"') {
                    break;
                }
                at += 1;
            }
        }
        memchr::memchr3(self.delim, b'\n', b'\r', &b[at..]).map_or(b.len(), |i| at + i)
    }
}

/// Pushes the fields from `at` that end at a delimiter before the first
/// quote or line break into `fields`; returns where the field after them
/// starts and where that stop is (or the end of `b`). Sixteen bytes at a
/// time: one pass over the line, whatever number of fields it has.
fn split_to_stop(
    b: &[u8],
    mut at: usize,
    delim: u8,
    fields: &mut Vec<Range<usize>>,
) -> (usize, usize) {
    let mut start = at;
    while at + 16 <= b.len() {
        let block: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
        let stops = simd::mask_of(block, [b'"', b'\n', b'\r']);
        let mut delims = simd::mask_of(block, [delim]);
        if stops != 0 {
            delims &= (1 << stops.trailing_zeros()) - 1;
        }
        while delims != 0 {
            let d = at + delims.trailing_zeros() as usize;
            fields.push(start..d);
            start = d + 1;
            delims &= delims - 1;
        }
        if stops != 0 {
            return (start, at + stops.trailing_zeros() as usize);
        }
        at += 16;
    }
    for (i, &c) in b.iter().enumerate().skip(at) {
        match c {
            b'"' | b'\n' | b'\r' => return (start, i),
            _ if c == delim => {
                fields.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    (start, b.len())
}

/// Where records come from: [`Scanner`], or csv-core all at once.
enum Records<'a> {
    Scan(Scanner<'a>),
    Parsed(std::vec::IntoIter<Vec<Range<usize>>>),
}

impl<'a> Records<'a> {
    /// csv-core reads text that starts with a byte-order mark (it skips
    /// the mark), and every text when `csv_core` is set.
    fn new(text: &'a str, delim: u8, max_records: usize, csv_core: bool) -> Records<'a> {
        if csv_core || text.starts_with('\u{feff}') {
            Records::Parsed(csv_records(text, delim, max_records).into_iter())
        } else {
            Records::Scan(Scanner::new(text, delim))
        }
    }

    fn next(&mut self, fields: &mut Vec<Range<usize>>) -> bool {
        match self {
            Records::Scan(s) => s.next_record(fields),
            Records::Parsed(records) => records.next().map(|r| *fields = r).is_some(),
        }
    }
}

/// The value inside a raw CSV field: without its quotes and outer spaces.
fn unquoted(text: &str, raw: Range<usize>) -> Range<usize> {
    let r = trim(text, raw);
    let b = text.as_bytes();
    if r.len() >= 2 && b[r.start] == b'"' && b[r.end - 1] == b'"' {
        r.start + 1..r.end - 1
    } else {
        r
    }
}

fn csv(text: &str, rules: &KeyRules, out: &mut Hits) {
    csv_with(text, rules, out, false);
}

fn csv_with(text: &str, rules: &KeyRules, out: &mut Hits, csv_core: bool) {
    let first = text.lines().next().unwrap_or("");
    let Some(delim) = delimiter(first) else {
        return;
    };
    // One buffer for every record's fields.
    let mut fields = Vec::new();
    // The header alone decides whether the rest is worth parsing.
    if !Records::new(first, delim, 1, csv_core).next(&mut fields) {
        return;
    }
    let header: Vec<Range<usize>> = fields.iter().map(|r| unquoted(first, r.clone())).collect();
    let cols = column_rules(first, &header, rules);
    if !cols.iter().any(Option::is_some) {
        return;
    }
    let mut records = Records::new(text, delim, usize::MAX, csv_core);
    if !records.next(&mut fields) {
        return;
    }
    let mut prev_end = fields.last().map_or(0, |f| f.end);
    let mut first_row = true;
    while records.next(&mut fields) {
        // Prose with a comma in its first line is not a table: the next
        // record must have as many fields as the header.
        if std::mem::take(&mut first_row) && fields.len() != header.len() {
            return;
        }
        // The table ends at a blank line: what follows (a note under the
        // rows) is prose again, left to the detectors.
        let start = fields.first().map_or(prev_end, |f| f.start);
        if blank_line_between(text, prev_end, start) {
            break;
        }
        // only the cells of ruled columns are unquoted and judged
        for (raw, rule) in fields.iter().zip(&cols).filter(|(_, r)| r.is_some()) {
            push_cell(text, unquoted(text, raw.clone()), rule, out);
        }
        prev_end = fields.last().map_or(start, |f| f.end);
    }
}

/// Whether the text between two records holds an empty line.
fn blank_line_between(text: &str, from: usize, to: usize) -> bool {
    let gap = text.as_bytes().get(from..to).unwrap_or_default();
    gap.iter().filter(|&&c| c == b'\n').count() >= 2
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn found(text: &str) -> Vec<(Entity, &str)> {
        let mut out = Hits::new();
        find(text, &KeyRules::safe_harbor(), &mut out);
        out.into_iter()
            .map(|h| (h.entity, &text[h.range]))
            .collect()
    }

    #[test]
    fn markdown_columns() {
        let t = "Results:\n\n| Patient Name | DOB | Dx |\n|---|:---:|---|\n| Jane Doe | 1980-03-14 | E11.9 |\n| Bob \\| Ray | 1975-01-02 | I10 |\n\nend";
        assert_eq!(
            found(t),
            [
                (Entity::Name, "Jane Doe"),
                (Entity::Date, "1980-03-14"),
                (Entity::Name, "Bob \\| Ray"),
                (Entity::Date, "1975-01-02")
            ]
        );
    }

    #[test]
    fn csv_columns() {
        let t = "mrn,first_name,diagnosis,phone\r\n001,\"Smith, Jo\",E11.9,617-555-0100\n002,Ann,\"I10\",\n";
        assert_eq!(
            found(t),
            [
                (Entity::Mrn, "001"),
                (Entity::Name, "Smith, Jo"),
                (Entity::Phone, "617-555-0100"),
                (Entity::Mrn, "002"),
                (Entity::Name, "Ann")
            ]
        );
        let tsv = "SSN\tNote\n123-45-6789\tok\n";
        assert_eq!(found(tsv), [(Entity::Ssn, "123-45-6789")]);
    }

    #[test]
    fn a_table_ends_at_a_blank_line() {
        let t = "patient_name,ssn,dx\nJane Doe,536-22-8741,E11.9\n\nSeen today, all well.\n";
        assert_eq!(
            found(t),
            [(Entity::Name, "Jane Doe"), (Entity::Ssn, "536-22-8741")]
        );
        let crlf = "patient_name,dx\r\nJane Doe,E11.9\r\n\r\nNote, fine.\r\n";
        assert_eq!(found(crlf), [(Entity::Name, "Jane Doe")]);
    }

    /// Claims by [`Scanner`] and by csv-core.
    fn both(text: &str) -> (Hits, Hits) {
        let rules = KeyRules::safe_harbor();
        let (mut scan, mut core) = (Hits::new(), Hits::new());
        csv_with(text, &rules, &mut scan, false);
        csv_with(text, &rules, &mut core, true);
        (scan, core)
    }

    /// Every record of the text, as [`Scanner`] reads them.
    fn scanned(text: &str, delim: u8) -> Vec<Vec<Range<usize>>> {
        let mut s = Scanner::new(text, delim);
        let mut records = Vec::new();
        let mut fields = Vec::new();
        while s.next_record(&mut fields) {
            records.push(fields.clone());
        }
        records
    }

    /// Headers, some of which name identifiers.
    const HEADERS: &[&str] = &[
        "mrn",
        "patient_name",
        "dob",
        "SSN",
        "Phone",
        "e-mail",
        "dx",
        "note",
        "age",
        "zip",
        "",
        " name ",
    ];

    /// A quote-free table: header, rows (not always as wide as the
    /// header), line ends of every kind, blank lines, prose after.
    fn quote_free_table() -> impl Strategy<Value = String> {
        let cell = "[a-zA-Z0-9 .:@/|-]{0,10}";
        (
            prop::sample::select(&[",", "\t", ";"][..]),
            prop::collection::vec(prop::sample::select(HEADERS), 1..6),
            prop::collection::vec(prop::collection::vec(cell, 1..7), 0..6),
            prop::collection::vec(
                prop::sample::select(&["\n", "\r\n", "\r", "\n\n", "\n \n"][..]),
                7,
            ),
            "[a-z ,.;]{0,20}",
        )
            .prop_map(|(delim, header, rows, ends, prose)| {
                let mut t = header.join(delim);
                for (i, row) in rows.iter().enumerate() {
                    t.push_str(ends[i]);
                    t.push_str(&row.join(delim));
                }
                t.push_str(ends[6]);
                t.push_str(&prose);
                t
            })
    }

    proptest! {
        #[test]
        fn scanner_claims_as_csv_core_on_quote_free_tables(t in quote_free_table()) {
            let (scan, core) = both(&t);
            prop_assert_eq!(scan, core);
        }

        /// Quotes, line breaks and delimiters anywhere: the scanner reads the
        /// records csv-core reads, field for field.
        #[test]
        fn scanner_reads_as_csv_core(
            head in prop::sample::select(&["", "ssn,name,x\n", "name;dob\r\n", "\"ssn\"\tdx\n"][..]),
            body in r#"[ab ,;\t"\r\n|é]{0,80}"#,
        ) {
            let t = format!("{head}{body}");
            for delim in [b',', b'\t', b';'] {
                prop_assert_eq!(scanned(&t, delim), csv_records(&t, delim, usize::MAX));
            }
            let (scan, core) = both(&t);
            prop_assert_eq!(scan, core);
        }
    }

    #[test]
    fn a_byte_order_mark_is_read_by_csv_core() {
        let t = "\u{feff}\"ssn\",dx\n123-45-6789,E11.9\n";
        assert_eq!(found(t), [(Entity::Ssn, "123-45-6789")]);
    }

    #[test]
    fn prose_is_not_a_table() {
        assert!(found("Name, address and phone were verified.\nNext visit in May.").is_empty());
        assert!(
            found("diagnosis,code\nE11.9,x\n").is_empty(),
            "no ruled column"
        );
        assert!(found("single line, name").is_empty());
        assert!(found(" \u{b},\n").is_empty(), "whitespace-only cells");
    }
}
