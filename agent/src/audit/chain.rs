//! The line format and the hash chain: how a record becomes bytes on disk and
//! how those bytes are checked. AUDIT.md ("Canonical form") is the auditor's
//! version of this module; keep the two in step.
//!
//! A line is one JSON object followed by `\n`:
//!
//! ```text
//! {"seq":N,"prev":"<64 hex>","ts":"<UTC, 9 fraction digits>Z","kind":"…",<members>,"hash":"<64 hex>"}
//! ```
//!
//! and a checkpoint or seal line ends `…,"hash":"<64 hex>","sig":"<128 hex>"}`.
//! The hashed ("canonical") bytes are the line without its `\n` and without
//! the `,"hash":…` member and what follows it, closed with `}`: the record as a
//! JSON object exactly as written, minus hash and signature. Hashing the bytes
//! as stored (instead of re-serialising parsed JSON) lets a verifier hash each
//! record once, without a JSON parser, and lets an auditor check a line with
//! nothing but `sha256sum`.

use aws_lc_rs::digest;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// A SHA-256 value.
pub type Hash = [u8; 32];
/// An Ed25519 signature.
pub type Sig = [u8; 64];

/// `prev` of the very first record of a store.
pub const GENESIS: Hash = [0; 32];

const SEQ_OPEN: &[u8] = b"{\"seq\":";
const PREV_MEMBER: &[u8] = b",\"prev\":\"";
const TS_MEMBER: &[u8] = b"\",\"ts\":\"";
const KIND_MEMBER: &[u8] = b",\"kind\":\"";
const HASH_MEMBER: &[u8] = b",\"hash\":\"";
const SIG_MEMBER: &[u8] = b"\",\"sig\":\"";
/// `,"hash":"<64>"}`
const HASH_TAIL_LEN: usize = HASH_MEMBER.len() + 64 + 2;
/// `,"hash":"<64>","sig":"<128>"}`
const SIGNED_TAIL_LEN: usize = HASH_MEMBER.len() + 64 + SIG_MEMBER.len() + 128 + 2;

/// Always nine fraction digits and `Z`: fixed width, so timestamps of the
/// store sort as strings in time order.
const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// The `ts` text of an instant.
pub fn format_ts(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TS_FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Appends the line for one record to `out` and returns its hash.
///
/// `body` is the record's own JSON object (from `serde_json`, starting with its
/// `kind` member); `seq`, `prev` and `ts` are put in front of its members.
/// `sign` is given for checkpoints and seals: it signs the line's hash.
pub fn encode_line(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &Hash,
    ts: &str,
    body: &[u8],
    sign: Option<&dyn Fn(&Hash) -> Sig>,
) -> Hash {
    debug_assert!(body.starts_with(b"{\"kind\":\"") && body.ends_with(b"}"));
    let start = out.len();
    out.extend_from_slice(SEQ_OPEN);
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(PREV_MEMBER);
    push_hex(out, prev);
    out.extend_from_slice(TS_MEMBER);
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(&body[1..body.len() - 1]);
    let hash = canonical_hash(&out[start..]);
    out.extend_from_slice(HASH_MEMBER);
    push_hex(out, &hash);
    if let Some(sign) = sign {
        out.extend_from_slice(SIG_MEMBER);
        push_hex(out, &sign(&hash));
    }
    out.extend_from_slice(b"\"}\n");
    hash
}

/// SHA-256 of the canonical bytes: `open` (the line up to its hash member)
/// followed by the closing `}`.
fn canonical_hash(open: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(open);
    ctx.update(b"}");
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// One line taken apart; nothing is checked but the layout.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub seq: u64,
    pub prev: Hash,
    pub ts: &'a str,
    pub kind: &'a str,
    /// The hash the line claims.
    pub hash: Hash,
    pub sig: Option<Sig>,
    /// The line up to (not including) its hash member.
    open: &'a [u8],
}

impl Line<'_> {
    /// Whether the stored hash is the hash of the canonical bytes.
    pub fn hash_matches(&self) -> bool {
        canonical_hash(self.open) == self.hash
    }
}

/// Why a line is not a record line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Splits a line (without its `\n`) into its parts.
pub fn parse_line(line: &[u8]) -> Result<Line<'_>, Malformed> {
    let (open, hash, sig) = split_tail(line)?;
    let rest = open
        .strip_prefix(SEQ_OPEN)
        .ok_or(Malformed("does not start with {\"seq\":"))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&rest[..digits])
        .ok()
        .filter(|d| !d.is_empty() && (d.len() == 1 || !d.starts_with('0')))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or(Malformed("seq is not a number"))?;
    let rest = rest[digits..]
        .strip_prefix(PREV_MEMBER)
        .ok_or(Malformed("prev does not follow seq"))?;
    let prev = rest
        .get(..64)
        .and_then(unhex::<32>)
        .ok_or(Malformed("prev is not 64 hex digits"))?;
    let rest = rest[64..]
        .strip_prefix(TS_MEMBER)
        .ok_or(Malformed("ts does not follow prev"))?;
    let (ts, rest) = string_value(rest).ok_or(Malformed("ts is not a plain string"))?;
    let rest = rest
        .strip_prefix(KIND_MEMBER)
        .ok_or(Malformed("kind does not follow ts"))?;
    let (kind, _) = string_value(rest).ok_or(Malformed("kind is not a plain string"))?;
    Ok(Line {
        seq,
        prev,
        ts,
        kind,
        hash,
        sig,
        open,
    })
}

/// Finds the trailing hash (and signature) members.
fn split_tail(line: &[u8]) -> Result<(&[u8], Hash, Option<Sig>), Malformed> {
    if !line.ends_with(b"\"}") {
        return Err(Malformed("does not end with the hash member"));
    }
    // A signed tail is taken only when all of it fits; otherwise the line is
    // read as unsigned, so that record content can never pass for a signature.
    let signed = line.len().checked_sub(SIGNED_TAIL_LEN).and_then(|open| {
        let hash_at = open + HASH_MEMBER.len();
        let sig_at = hash_at + 64 + SIG_MEMBER.len();
        if !line[open..].starts_with(HASH_MEMBER) || !line[hash_at + 64..].starts_with(SIG_MEMBER) {
            return None;
        }
        let hash = unhex::<32>(&line[hash_at..hash_at + 64])?;
        let sig = unhex::<64>(&line[sig_at..sig_at + 128])?;
        Some((&line[..open], hash, Some(sig)))
    });
    if let Some(parts) = signed {
        return Ok(parts);
    }
    let open = line
        .len()
        .checked_sub(HASH_TAIL_LEN)
        .filter(|&o| line[o..].starts_with(HASH_MEMBER))
        .ok_or(Malformed("does not end with the hash member"))?;
    let hash_at = open + HASH_MEMBER.len();
    let hash = unhex::<32>(&line[hash_at..hash_at + 64]).ok_or(Malformed("bad hash hex"))?;
    Ok((&line[..open], hash, None))
}

/// A JSON string without escapes at the start of `s` (after its opening
/// quote has been consumed); returns it and what follows its closing quote.
fn string_value(s: &[u8]) -> Option<(&str, &[u8])> {
    let end = s.iter().position(|&b| b == b'"')?;
    let value = std::str::from_utf8(&s[..end]).ok()?;
    if value.bytes().any(|b| b == b'\\' || b < 0x20) {
        return None;
    }
    Some((value, &s[end + 1..]))
}

/// The last record accepted by a reader or writer of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub hash: Hash,
}

impl Link {
    /// The `seq` and `prev` of the record that follows.
    pub fn next(last: Option<&Link>) -> (u64, Hash) {
        last.map_or((1, GENESIS), |l| (l.seq + 1, l.hash))
    }
}

/// Why a line does not continue the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    Malformed(&'static str),
    /// The stored hash is not the hash of the line's content.
    HashMismatch,
    /// Records `expected..found` are missing (or were moved elsewhere).
    Gap {
        expected: u64,
        found: u64,
    },
    /// The sequence went back or repeated: records reordered or duplicated.
    Backwards {
        expected: u64,
        found: u64,
    },
    /// The sequence follows but `prev` is not the previous record's hash.
    PrevMismatch,
}

/// Checks the line `bytes` (without `\n`) against the record before it;
/// `last` is None for the first line read, which can only be checked
/// against the genesis hash when it is record 1.
pub fn follow<'a>(last: Option<&Link>, bytes: &'a [u8]) -> Result<(Line<'a>, Link), Break> {
    let line = parse_line(bytes);
    let hash_matches = line.as_ref().is_ok_and(Line::hash_matches);
    follow_parsed(last, line, hash_matches)
}

/// [`follow`] for a line already parsed and hashed: `verify` does both on
/// several threads ahead of the walk that checks the chain in order.
pub fn follow_parsed<'a>(
    last: Option<&Link>,
    line: Result<Line<'a>, Malformed>,
    hash_matches: bool,
) -> Result<(Line<'a>, Link), Break> {
    let line = line.map_err(|Malformed(why)| Break::Malformed(why))?;
    if !hash_matches {
        return Err(Break::HashMismatch);
    }
    match last {
        Some(last) => {
            let expected = last.seq + 1;
            if line.seq > expected {
                return Err(Break::Gap {
                    expected,
                    found: line.seq,
                });
            }
            if line.seq < expected {
                return Err(Break::Backwards {
                    expected,
                    found: line.seq,
                });
            }
            if line.prev != last.hash {
                return Err(Break::PrevMismatch);
            }
        }
        None if line.seq == 1 && line.prev != GENESIS => return Err(Break::PrevMismatch),
        None => {}
    }
    let link = Link {
        seq: line.seq,
        hash: line.hash,
    };
    Ok((line, link))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

/// Exactly `2 * N` lowercase hex digits; uppercase is refused so that every
/// value has one spelling (a case flip is a change the hash must catch).
pub fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    // A table, not a match: hex digits are random, so branches mispredict
    // and this runs twice per record in `verify`.
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= (hi | lo) & 0xf0;
        *o = hi << 4 | lo;
    }
    (bad == 0).then_some(out)
}

/// Value of each lowercase hex digit; 0xff for every other byte.
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX[i] as usize] = i as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sign: bool) -> (Vec<u8>, Hash) {
        let mut out = Vec::new();
        let signer = |_: &Hash| [7u8; 64];
        let h = encode_line(
            &mut out,
            42,
            &GENESIS,
            "2026-01-02T03:04:05.000000006Z",
            br#"{"kind":"connect","session":"s\"1"}"#,
            if sign { Some(&signer) } else { None },
        );
        (out, h)
    }

    #[test]
    fn a_line_is_json_and_parses_back() {
        for sign in [false, true] {
            let (bytes, hash) = line(sign);
            assert!(bytes.ends_with(b"}\n"));
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["seq"], 42);
            assert_eq!(v["session"], "s\"1");
            assert_eq!(v["hash"], hex(&hash));
            let l = parse_line(&bytes[..bytes.len() - 1]).unwrap();
            assert_eq!((l.seq, l.kind, l.hash), (42, "connect", hash));
            assert_eq!(l.ts, "2026-01-02T03:04:05.000000006Z");
            assert_eq!(l.sig.is_some(), sign);
            assert!(l.hash_matches());
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_line_without_hash_and_sig() {
        let (bytes, hash) = line(true);
        let text = std::str::from_utf8(&bytes).unwrap();
        let cut = text.find(",\"hash\":").unwrap();
        let canonical = format!("{}}}", &text[..cut]);
        let want = digest::digest(&digest::SHA256, canonical.as_bytes());
        assert_eq!(want.as_ref(), hash);
        assert!(canonical.starts_with(r#"{"seq":42,"prev":"0000"#));
    }

    #[test]
    fn timestamps_have_nanoseconds_in_utc() {
        let t = time::macros::datetime!(2026-03-04 05:06:07.5 +02:00);
        assert_eq!(format_ts(t), "2026-03-04T03:06:07.500000000Z");
    }

    #[test]
    fn hex_is_lowercase_only() {
        assert_eq!(unhex::<2>(b"0aff"), Some([10, 255]));
        assert_eq!(unhex::<2>(b"0AFF"), None);
        assert_eq!(hex(&[10, 255]), "0aff");
    }
}
