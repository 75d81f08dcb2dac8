//! Network identifiers: email addresses, URLs, MAC addresses and IPv6
//! addresses (IPv4 is a digit-group format, in `numbers`).

use std::net::Ipv6Addr;

use memchr::{memchr_iter, memchr2_iter};

use super::scan::occurrences;
use super::{AT, ByteClasses, COLON, DASH, DOT, Hit, Hits};
use crate::mask::entity::Entity;

/// `seen` says which of the bytes these formats need the text holds, so
/// that a phone number or a date is not searched for `@`, `://` or `::`.
pub(crate) fn find(text: &str, seen: &ByteClasses, out: &mut Hits) {
    let b = text.as_bytes();
    if seen.has(AT) {
        emails(b, out);
    }
    if seen.has(COLON | DOT) {
        urls(b, out);
    }
    if seen.has(COLON | DASH) {
        macs(b, out);
    }
    if seen.has(COLON) {
        ipv6(text, out);
    }
}

fn local_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn domain_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

fn emails(b: &[u8], out: &mut Hits) {
    let mut done = 0;
    for at in memchr_iter(b'@', b) {
        if at < done {
            continue;
        }
        let mut start = at;
        while start > done && local_part(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain_part(b[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &b[at + 1..end];
        let tld_ok = domain.iter().rposition(|&c| c == b'.').is_some_and(|dot| {
            let tld = &domain[dot + 1..];
            tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && dot > 0
        });
        if start < at && tld_ok {
            out.push(Hit::new(start..end, Entity::Email));
            done = end;
        }
    }
}

/// Characters that end a URL in running text.
fn url_stop(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b'<' | b'>' | b'"' | b'`' | b'|' | b'\\' | b'{' | b'}' | b'^'
        )
}

fn urls(b: &[u8], out: &mut Hits) {
    let first = out.len();
    let mut done = 0;
    let schemes = occurrences(b, b"://", 0).map(|p| (p, true));
    let www = occurrences(b, b"www.", 0).map(|p| (p, false));
    let mut starts: Vec<(usize, bool)> = schemes.chain(www).collect();
    starts.sort_unstable();
    for (p, scheme) in starts {
        if p < done {
            continue;
        }
        let start = if scheme {
            let mut s = p;
            while s > 0
                && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-'))
            {
                s -= 1;
            }
            if !(2..=10).contains(&(p - s)) || !b[s].is_ascii_alphabetic() {
                continue;
            }
            s
        } else {
            if p > 0 && (b[p - 1].is_ascii_alphanumeric() || b[p - 1] == b'/') {
                continue;
            }
            p
        };
        let mut end = p + if scheme { 3 } else { 4 };
        while end < b.len() && !url_stop(b[end]) {
            end += 1;
        }
        if !scheme && !has_domain(&b[p + 4..end]) {
            continue; // `www.a` is no address
        }
        let end = url_end(b, start, end);
        if end > p + 4 {
            out.push(Hit::new(start..end, Entity::Url));
            done = end;
        }
    }
    host_paths(b, first, out);
}

/// Where a URL from `start` that runs to `end` really ends: trailing
/// punctuation belongs to the sentence, as does a closing bracket that the
/// URL did not open.
fn url_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while let Some(&last) = b[..end].last() {
        let unbalanced = |open: u8, close: u8| {
            last == close
                && b[start..end].iter().filter(|&&c| c == open).count()
                    < b[start..end].iter().filter(|&&c| c == close).count()
        };
        if matches!(last, b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'*')
            || unbalanced(b'(', b')')
            || unbalanced(b'[', b']')
        {
            end -= 1;
        } else {
            break;
        }
    }
    end
}

/// Top-level domains after which a host with a path is an address even
/// without a scheme or `www.` (`mychart.example.org/pt/88123`).
const PATH_TLDS: &[&[u8]] = &[
    b".com", b".org", b".net", b".edu", b".gov", b".us", b".io", b".health", b".care",
];

/// `facebook.com/jane.doe.5`: a host ending in one of [`PATH_TLDS`] right
/// before a `/`, found from each slash; not inside a URL already found (the
/// hits of `out` from `first` on) nor after `@`, `/` or `:` (an email, a
/// path).
fn host_paths(b: &[u8], first: usize, out: &mut Hits) {
    let host_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let found = first..out.len();
    let mut done = 0;
    for slash in memchr_iter(b'/', b) {
        if slash < done || out[found.clone()].iter().any(|h| h.range.contains(&slash)) {
            continue;
        }
        let Some(tld) = PATH_TLDS
            .iter()
            .find(|t| slash > t.len() && b[slash - t.len()..slash].eq_ignore_ascii_case(t))
        else {
            continue;
        };
        let dot = slash - tld.len();
        let mut start = dot;
        while start > 0 && host_byte(b[start - 1]) {
            start -= 1;
        }
        let before_ok = start == 0 || !matches!(b[start - 1], b'@' | b'/' | b':');
        if start == dot || !b[start].is_ascii_alphanumeric() || !before_ok {
            continue;
        }
        let mut end = slash;
        while end < b.len() && !url_stop(b[end]) {
            end += 1;
        }
        let end = url_end(b, start, end);
        if end > slash + 1 {
            out.push(Hit::new(start..end, Entity::Url));
            done = end;
        }
    }
}

/// After `www.`: a host with a dot and a top-level domain of two letters or
/// more (`example.org`).
fn has_domain(rest: &[u8]) -> bool {
    let host_len = rest
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#' | b':'))
        .unwrap_or(rest.len());
    let host = &rest[..host_len];
    let host = host.strip_suffix(b".").unwrap_or(host);
    host.iter().rposition(|&c| c == b'.').is_some_and(|dot| {
        let tld = &host[dot + 1..];
        dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)
    })
}

/// `00:1A:2B:3C:4D:5E` or `00-1A-2B-3C-4D-5E`.
fn macs(b: &[u8], out: &mut Hits) {
    let mut done = 0;
    for p in memchr2_iter(b':', b'-', b) {
        let Some(start) = p.checked_sub(2) else {
            continue;
        };
        if start < done || start + 17 > b.len() {
            continue;
        }
        let w = &b[start..start + 17];
        let sep = w[2];
        let shaped = (0..17).all(|k| {
            if k % 3 == 2 {
                w[k] == sep
            } else {
                w[k].is_ascii_hexdigit()
            }
        });
        let clear = (start == 0 || !b[start - 1].is_ascii_alphanumeric() && b[start - 1] != sep)
            && b.get(start + 17)
                .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != sep);
        if shaped && clear {
            out.push(Hit::new(start..start + 17, Entity::Mac));
            done = start + 17;
        }
    }
}

fn ipv6_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

fn ipv6(text: &str, out: &mut Hits) {
    let b = text.as_bytes();
    let mut done = 0;
    for p in memchr_iter(b':', b) {
        if p < done {
            continue;
        }
        let mut start = p;
        while start > 0 && ipv6_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = p;
        while end < b.len() && ipv6_char(b[end]) {
            end += 1;
        }
        done = end;
        // A sentence's full stop or colon is not part of the address.
        while end > start && matches!(b[end - 1], b'.') {
            end -= 1;
        }
        let cand = &text[start..end];
        let colons = cand.bytes().filter(|&c| c == b':').count();
        let groups = cand.split(':').filter(|g| !g.is_empty()).count();
        let clear = (start == 0 || !b[start - 1].is_ascii_alphanumeric())
            && b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
        if colons >= 2 && groups >= 2 && clear && cand.parse::<Ipv6Addr>().is_ok() {
            let end = prefix_len_end(b, end);
            out.push(Hit::new(start..end, Entity::Ip));
        }
    }
}

/// Past a `/64` prefix length right after an address.
fn prefix_len_end(b: &[u8], end: usize) -> usize {
    if b.get(end) != Some(&b'/') {
        return end;
    }
    let digits = b[end + 1..]
        .iter()
        .take(3)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits > 0 { end + 1 + digits } else { end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, entity: Entity) -> Vec<&str> {
        let mut out = Hits::new();
        find(text, &ByteClasses::of(text.as_bytes()), &mut out);
        out.into_iter()
            .filter(|h| h.entity == entity)
            .map(|h| &text[h.range])
            .collect()
    }

    #[test]
    fn emails() {
        assert_eq!(
            found("mail john.smith+x@mail.example.org.", Entity::Email),
            ["john.smith+x@mail.example.org"]
        );
        assert_eq!(
            found("<a@b.co>, c_d@e-f.com", Entity::Email),
            ["a@b.co", "c_d@e-f.com"]
        );
        assert!(found("user@localhost", Entity::Email).is_empty(), "no TLD");
        assert!(found("@handle and x@.com and a@b.c1", Entity::Email).is_empty());
    }

    #[test]
    fn urls() {
        assert_eq!(
            found(
                "see https://portal.example.org/p/123?id=9#x. Then",
                Entity::Url
            ),
            ["https://portal.example.org/p/123?id=9#x"]
        );
        assert_eq!(
            found("(www.example.com/a)", Entity::Url),
            ["www.example.com/a"]
        );
        assert_eq!(
            found("https://en.wikipedia.org/wiki/A_(b)", Entity::Url),
            ["https://en.wikipedia.org/wiki/A_(b)"]
        );
        assert!(found("the ://x and awww.x and www.a and www.com", Entity::Url).is_empty());
    }

    #[test]
    fn hosts_with_a_path_and_no_scheme() {
        assert_eq!(
            found("See photos at mychart.example.org/pt/88123.", Entity::Url),
            ["mychart.example.org/pt/88123"]
        );
        assert_eq!(
            found("posted on facebook.com/jane.doe.5 about it", Entity::Url),
            ["facebook.com/jane.doe.5"]
        );
        assert_eq!(
            found("b.example.com/y and https://a.example.org/x", Entity::Url),
            ["https://a.example.org/x", "b.example.com/y"],
            "a scheme's URL once, and one before it"
        );
        for not_one in [
            "jane@example.com/x",
            "and/or",
            "1.5 mg/kg",
            "example.com/ alone",
            "x.org",
        ] {
            assert!(found(not_one, Entity::Url).is_empty(), "{not_one}");
        }
    }

    #[test]
    fn macs() {
        assert_eq!(
            found("mac 00:1A:2B:3C:4D:5E;", Entity::Mac),
            ["00:1A:2B:3C:4D:5E"]
        );
        assert_eq!(
            found("00-1a-2b-3c-4d-5e", Entity::Mac),
            ["00-1a-2b-3c-4d-5e"]
        );
        assert!(
            found("00:1A:2B:3C:4D:5E:6F", Entity::Mac).is_empty(),
            "eight-byte EUI is longer"
        );
        assert!(
            found("00:1A-2B:3C:4D:5E", Entity::Mac).is_empty(),
            "mixed separators"
        );
        assert!(
            found("00:1G:2B:3C:4D:5E", Entity::Mac).is_empty(),
            "not hex"
        );
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            found("from 2001:db8::8a2e:370:7334.", Entity::Ip),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(found("fe80::1/64 up", Entity::Ip), ["fe80::1/64"]);
        assert_eq!(found("::ffff:192.0.2.1", Entity::Ip), ["::ffff:192.0.2.1"]);
        assert!(found("at 10:30:00 and std::vector", Entity::Ip).is_empty());
        assert!(found("Note:: x", Entity::Ip).is_empty());
    }
}
