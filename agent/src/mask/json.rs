//! Masking JSON text where it stands: a strict RFC 8259 reader walks the
//! bytes once, decodes each string (escapes resolved, so `\u002d` hides
//! nothing), masks it by its scope and key, and plans edits over the
//! original bytes. Formatting, key order and untouched bytes stay exactly
//! as they were; an edit that keeps the length of the encoded span lets the
//! caller write the result in place.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr2;

use super::Masker;
use super::action::{Action, plan_number};
use super::edit::{Edit, Fill, lift};
use super::entity::{Counts, Entity};
use super::key_cache::{KeyCache, MediaField};
use super::keys::applies;
use super::media::{Media, MediaPolicy};
use super::memo;
use super::scope::{Mode, Scope};
use super::text::{MAX_EMBEDDED, StrCtx, looks_like_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (or truncated) at this byte offset.
    Syntax(usize),
    /// Nested deeper than the profile allows.
    TooDeep,
}

/// Plans the edits that mask the JSON document `s`. A document whose top
/// level mentions `"jsonrpc"` is read as a JSON-RPC message (or batch),
/// anything else as content throughout. `nesting` counts the documents
/// enclosing this one.
pub(crate) fn plan(m: &Masker, s: &str, nesting: usize) -> Result<(Vec<Edit>, Counts), JsonError> {
    let b = s.as_bytes();
    let rpc = nesting == 0 && memchr::memmem::find(b, b"\"jsonrpc\"").is_some();
    let mut w = Walker {
        m,
        s,
        b,
        pos: 0,
        depth: 0,
        nesting,
        escaped: false,
        edits: Vec::with_capacity(edit_estimate(b.len())),
        counts: Counts::default(),
        keys: KeyCache::default(),
        // one memo of string plans for the message and the documents in it
        memo: memo::checkout(),
        planned: Vec::new(),
    };
    w.ws();
    w.value(
        if rpc { Scope::Message } else { Scope::Content },
        None,
        false,
    )?;
    w.ws();
    if w.pos != b.len() {
        return Err(JsonError::Syntax(w.pos));
    }
    // Deferred media fields are planned when their object closes, after the
    // edits inside it.
    w.edits.sort_by_key(|e| e.range.start);
    Ok((w.edits, w.counts))
}

/// Room for the edits of `len` bytes of JSON, made up front: structured
/// rows hold about one masked value per 32 bytes, and growing the list
/// edit by edit copies it over and over. Capped, so a large document with
/// little to mask does not reserve much.
fn edit_estimate(len: usize) -> usize {
    (len / 32).min(4096)
}

/// A string token: where it is, and its decoded text.
struct StrTok<'a> {
    /// The whole token, quotes included.
    range: Range<usize>,
    /// Where its content starts: after `"`, or after `\"` for a string of
    /// a document walked inside a string (see `Walker::escaped`).
    content_start: usize,
    decoded: Cow<'a, str>,
    /// Where decoded and encoded offsets part, when the token has escapes.
    escapes: Option<Escapes>,
    /// In an escaped walk, a string with escapes of its own has two layers:
    /// `escapes` maps decoded offsets to the document's text, and this
    /// maps that text to the bytes of the string holding the document.
    outer: Option<Escapes>,
}

impl StrTok<'_> {
    fn content_start(&self) -> usize {
        self.content_start
    }

    fn content_end(&self) -> usize {
        self.range.end - (self.content_start - self.range.start)
    }

    /// The offset in the message of decoded byte `i` (on a character
    /// boundary, or the end). `cursor` remembers where the last lookup
    /// stopped in each layer's escapes, so that offsets asked in order (the
    /// edits of a string) cost no search; start it at `(0, 0)`.
    #[inline]
    fn encoded(&self, i: usize, cursor: &mut (usize, usize)) -> usize {
        let inner = self
            .escapes
            .as_ref()
            .map_or(i, |e| e.encoded(i, &mut cursor.0));
        let outer = self
            .outer
            .as_ref()
            .map_or(inner, |o| o.encoded(inner, &mut cursor.1));
        self.content_start() + outer
    }
}

/// The escapes of one string: decoded start, encoded start, decoded and
/// encoded lengths of each, in order. Offsets are from the content start.
#[derive(Default)]
struct Escapes(Vec<(u32, u32, u8, u8)>);

impl Escapes {
    /// Appends `c`, decoded from the `len`-byte escape at `encoded_at`, to
    /// `out`, and notes where it came from.
    fn decode(&mut self, out: &mut String, encoded_at: usize, c: char, len: usize) {
        self.0.push((
            out.len() as u32,
            encoded_at as u32,
            c.len_utf8() as u8,
            len as u8,
        ));
        out.push(c);
    }

    /// The encoded offset of decoded byte `i`. `cursor` is how many escapes
    /// start at or before the offset last asked: moved forward from there,
    /// or searched for when `i` lies before it.
    fn encoded(&self, i: usize, cursor: &mut usize) -> usize {
        let i = i as u32;
        let mut at = (*cursor).min(self.0.len());
        if at > 0 && self.0[at - 1].0 > i {
            at = self.0.partition_point(|e| e.0 <= i);
        } else {
            while at < self.0.len() && self.0[at].0 <= i {
                at += 1;
            }
        }
        *cursor = at;
        match at.checked_sub(1).map(|k| self.0[k]) {
            None => i as usize,
            // Character boundaries inside an escape's output are its start.
            Some((dec, enc, dec_len, _)) if i < dec + u32::from(dec_len) => enc as usize,
            Some((dec, enc, dec_len, enc_len)) => {
                (enc + u32::from(enc_len) + (i - dec - u32::from(dec_len))) as usize
            }
        }
    }
}

/// What an object asks of the array holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Drop,
}

/// The fields of a content object that decide how its `data`/`blob`
/// strings are treated; those strings wait until the object closes.
#[derive(Default)]
struct MediaFields<'a> {
    item_type: Option<String>,
    mime: Option<String>,
    /// `data`/`blob` strings: whether a blob, the token, its key rule.
    deferred: Vec<(bool, StrTok<'a>, Option<&'a Entity>)>,
}

struct Walker<'m, 'a> {
    m: &'m Masker,
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: usize,
    nesting: usize,
    /// Walking a document inside a JSON string over its encoded bytes:
    /// quotes are `\"` and `\n`, `\r`, `\t` are whitespace.
    escaped: bool,
    edits: Vec<Edit>,
    counts: Counts,
    /// What each key read so far means: rows repeat the same keys.
    keys: KeyCache<'a>,
    /// The plans of strings read so far: rows repeat their values.
    memo: memo::MemoGuard,
    /// Scratch for one string's edits.
    planned: Vec<Edit>,
}

impl<'m: 'a, 'a> Walker<'m, 'a> {
    fn err<T>(&self) -> Result<T, JsonError> {
        Err(JsonError::Syntax(self.pos))
    }

    fn ws(&mut self) {
        let b = self.b;
        loop {
            match b.get(self.pos) {
                Some(b' ' | b'\t' | b'\n' | b'\r') if !self.escaped => self.pos += 1,
                // pretty copies indent with runs of spaces: 8 at a time
                Some(b' ') => self.pos += spaces(b, self.pos),
                Some(b'\\')
                    if self.escaped && matches!(b.get(self.pos + 1), Some(b'n' | b'r' | b't')) =>
                {
                    self.pos += 2;
                }
                _ => return,
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > self.m.profile.max_depth {
            Err(JsonError::TooDeep)
        } else {
            Ok(())
        }
    }

    /// The scope and rule of the value under `key` in an object of `scope`
    /// whose own rule is `inherited` (see `Masker::rule`), and which media
    /// field the key names; each key is worked out once per walk.
    fn under_key(
        &mut self,
        scope: Scope,
        key: &str,
        inherited: Option<&'a Entity>,
    ) -> (Scope, Option<&'a Entity>, Option<MediaField>) {
        let m: &'a Masker = self.m;
        let info = self.keys.get(m, key);
        let child = match scope {
            Scope::Content => info.in_content,
            _ => scope.child(key),
        };
        let rule = child
            .is_content()
            .then(|| {
                info.own_rule
                    .or(inherited.filter(|e| m.profile.is_enabled(e)))
            })
            .flatten();
        (child, rule, info.media)
    }

    /// A value whose key rule is `rule`. Only the choice of reader is
    /// inlined into the object or array loop: objects and arrays recurse,
    /// and most values are strings.
    #[inline(always)]
    fn value(
        &mut self,
        scope: Scope,
        rule: Option<&'a Entity>,
        in_array: bool,
    ) -> Result<Verdict, JsonError> {
        match self.b.get(self.pos) {
            Some(b'{') => self.object(scope, rule, in_array),
            Some(b'[') => {
                self.array(scope, rule)?;
                Ok(Verdict::Keep)
            }
            Some(b'"' | b'\\') if self.at_string() => {
                self.string_value(scope, rule)?;
                Ok(Verdict::Keep)
            }
            Some(b'-' | b'0'..=b'9') => {
                let r = self.number()?;
                self.mask_number(r, scope, rule);
                Ok(Verdict::Keep)
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.err(),
        }
    }

    /// A string value, at its opening quote.
    #[inline(never)]
    fn string_value(&mut self, scope: Scope, rule: Option<&'a Entity>) -> Result<(), JsonError> {
        if let Some(entity) = rule
            && scope.mode().is_some()
            && self.m.profile.action(entity) == Action::Redact
            && self.redact_plain(entity)
        {
            return Ok(());
        }
        if !self.escaped && rule.is_none() && self.embedded(scope) {
            return Ok(());
        }
        let tok = self.string()?;
        self.mask_string(&tok, scope, rule);
        Ok(())
    }

    fn literal(&mut self, lit: &[u8]) -> Result<Verdict, JsonError> {
        if self.b[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(Verdict::Keep)
        } else {
            self.err()
        }
    }

    fn number(&mut self) -> Result<Range<usize>, JsonError> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i > s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(JsonError::Syntax(i)),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err(JsonError::Syntax(i));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(JsonError::Syntax(i));
            }
        }
        self.pos = i;
        Ok(start..i)
    }

    /// A string under a key rule that redacts, when it holds no escapes: one
    /// run of stars over its bytes, planned without reading it as a token
    /// (most values of structured rows). False, having read nothing, for any
    /// other string; the general path then reads it.
    fn redact_plain(&mut self, entity: &Entity) -> bool {
        let Some(content) = self.plain_string() else {
            return false;
        };
        let end = content.end + self.quote_len();
        let s = self.s;
        if !self.star_whole(entity, content.clone(), &s[content]) {
            return false;
        }
        self.pos = end;
        true
    }

    /// A value under a key rule that redacts: one run of stars over its
    /// encoded `content`, when the rule applies to its `decoded` text.
    fn star_whole(&mut self, entity: &Entity, content: Range<usize>, decoded: &str) -> bool {
        if !applies(entity, decoded) {
            return false;
        }
        self.counts.add(entity, 1);
        self.edits.push(Edit::stars(content));
        true
    }

    /// An object key: its text, borrowed when it holds no escapes.
    fn key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        match self.plain_string() {
            Some(content) => {
                self.pos = content.end + self.quote_len();
                Ok(Cow::Borrowed(&self.s[content]))
            }
            None => Ok(self.string()?.decoded),
        }
    }

    /// The content of the string token at `pos` when it holds no escapes
    /// (its decoded text is its bytes), without moving.
    #[inline(always)]
    fn plain_string(&self) -> Option<Range<usize>> {
        let b = self.b;
        let start = self.pos + self.quote_len();
        let end = start + plain_run(b, start)?;
        let closed = if self.escaped {
            b[end] == b'\\' && b.get(end + 1) == Some(&b'"')
        } else {
            b[end] == b'"'
        };
        closed.then_some(start..end)
    }

    /// The bytes of a string token's quote: `"`, or `\"` in an escaped walk.
    fn quote_len(&self) -> usize {
        if self.escaped { 2 } else { 1 }
    }

    /// At the start of a string token: `"`, or `\"` in an escaped walk.
    fn at_string(&self) -> bool {
        match self.b.get(self.pos) {
            Some(b'"') => !self.escaped,
            Some(b'\\') => self.escaped && self.b.get(self.pos + 1) == Some(&b'"'),
            _ => false,
        }
    }

    /// A string token. One without escapes (most) is read where it is
    /// asked; decoding escapes is out of line.
    #[inline(always)]
    fn string(&mut self) -> Result<StrTok<'a>, JsonError> {
        let start = self.pos;
        if let Some(content) = self.plain_string() {
            // No escapes: the decoded text is the raw content.
            self.pos = content.end + self.quote_len();
            return Ok(StrTok {
                range: start..self.pos,
                content_start: content.start,
                decoded: Cow::Borrowed(&self.s[content]),
                escapes: None,
                outer: None,
            });
        }
        if self.escaped {
            return self.escaped_string();
        }
        self.decoded_string()
    }

    /// [`Self::string`] for a token with escapes, outside an escaped walk.
    #[inline(never)]
    fn decoded_string(&mut self) -> Result<StrTok<'a>, JsonError> {
        let start = self.pos;
        // A backslash or a control byte (an error) ends the plain run.
        let b = self.b;
        let i = start + 1;
        let k = plain_run(b, i).ok_or(JsonError::Syntax(b.len()))?;
        if b[i + k] < 0x20 {
            return Err(JsonError::Syntax(i));
        }
        match decode_token(self.s, start, i + k) {
            Some((end, decoded, escapes)) => {
                self.pos = end;
                Ok(StrTok {
                    range: start..end,
                    content_start: i,
                    decoded: Cow::Owned(decoded),
                    escapes: Some(escapes),
                    outer: None,
                })
            }
            // Rare: the exact error comes from the validating reader.
            None => Err(string_error(b, start)),
        }
    }

    /// A string of a document inside a string, `\"…\"`, that is not plain
    /// (see `string`): with escapes of its own (Python's `json.dumps` writes
    /// `é` as `\u00e9`, which the outer string holds as `\\u00e9`) both
    /// layers are decoded. A bare `"` (which would end the outer string), a
    /// control byte or a bad escape fails the escaped walk, and the slow path
    /// takes over.
    fn escaped_string(&mut self) -> Result<StrTok<'a>, JsonError> {
        let b = self.b;
        let start = self.pos;
        let i = start + 2;
        let k = plain_run(b, i).ok_or(JsonError::Syntax(b.len()))?;
        if b[i + k] != b'\\' {
            return Err(JsonError::Syntax(i + k));
        }
        self.two_layer_string(start)
    }

    /// [`Self::escaped_string`] for a string with escapes: the outer
    /// string's escapes are resolved up to the inner string's closing quote
    /// (a `"` the inner text does not escape), then the inner string's own.
    fn two_layer_string(&mut self, start: usize) -> Result<StrTok<'a>, JsonError> {
        let b = self.b;
        let i = start + 2;
        let fail = |at: usize| Err(JsonError::Syntax(at));
        // The inner string's content as the document writes it.
        let mut text = String::new();
        let mut outer = Escapes::default();
        let mut escaping = false;
        let mut j = i;
        let end = loop {
            let run = plain_run(b, j).ok_or(JsonError::Syntax(b.len()))?;
            if run > 0 {
                text.push_str(&self.s[j..j + run]);
                escaping = false;
                j += run;
            }
            if b[j] != b'\\' {
                return fail(j);
            }
            let Some((c, len)) = unescape(b, j) else {
                return fail(j);
            };
            if c == '"' && !escaping {
                // closed by `\"` (not `\u0022`): two bytes, as for any token
                // of the walk (see `StrTok::content_end`)
                if len != 2 {
                    return fail(j);
                }
                break j + len;
            }
            if c < ' ' {
                // a raw control character in the inner string: not JSON
                return fail(j);
            }
            outer.decode(&mut text, j - i, c, len);
            escaping = c == '\\' && !escaping;
            j += len;
        };
        let (decoded, escapes) = match text.find('\\') {
            None => (text, None),
            Some(first) => {
                let token = format!("\"{text}\"");
                match decode_token(&token, 0, first + 1) {
                    Some((token_end, decoded, escapes)) if token_end == token.len() => {
                        (decoded, Some(escapes))
                    }
                    _ => return fail(i),
                }
            }
        };
        self.pos = end;
        Ok(StrTok {
            range: start..end,
            content_start: i,
            decoded: Cow::Owned(decoded),
            escapes,
            outer: Some(outer),
        })
    }

    /// A string holding one whole JSON document (SDKs put a pretty copy of
    /// `structuredContent` into `content[0].text`), walked over its encoded
    /// bytes: no decoded copy of the document, and edits land where they
    /// stand (see `escaped_string` for its strings). When the string is not
    /// one whole document the walk can read, it returns false having planned
    /// nothing, and the string is decoded and planned as usual, which
    /// reaches the same result.
    fn embedded(&mut self, scope: Scope) -> bool {
        if scope.mode() != Some(Mode::Full) || self.nesting >= MAX_EMBEDDED {
            return false;
        }
        let start = self.pos;
        // Most strings are not documents: their first byte says so.
        if !matches!(self.b.get(start + 1), Some(b'{' | b'[' | b' ' | b'\\')) {
            return false;
        }
        let mut inner = Walker {
            m: self.m,
            s: self.s,
            b: self.b,
            pos: start + 1,
            depth: 0,
            nesting: self.nesting + 1,
            escaped: true,
            edits: Vec::with_capacity(edit_estimate(self.b.len() - start)),
            counts: Counts::default(),
            keys: std::mem::take(&mut self.keys),
            memo: std::mem::take(&mut self.memo),
            planned: std::mem::take(&mut self.planned),
        };
        inner.ws();
        let whole = matches!(inner.b.get(inner.pos), Some(b'{' | b'['))
            && inner.value(Scope::Content, None, false).is_ok()
            && {
                inner.ws();
                inner.b.get(inner.pos) == Some(&b'"')
            };
        self.keys = std::mem::take(&mut inner.keys);
        self.memo = std::mem::take(&mut inner.memo);
        self.planned = std::mem::take(&mut inner.planned);
        if !whole {
            return false;
        }
        inner.edits.sort_by_key(|e| e.range.start);
        // Offsets are already the message's; fills holding quotes get them
        // escaped, as for any document inside a string.
        lift(inner.edits, |i| i, &mut self.edits);
        self.counts.merge(&inner.counts);
        self.pos = inner.pos + 1;
        true
    }

    #[inline(never)]
    fn object(
        &mut self,
        scope: Scope,
        rule: Option<&'a Entity>,
        in_array: bool,
    ) -> Result<Verdict, JsonError> {
        let start = self.pos;
        self.pos += 1;
        self.enter()?;
        let edits_before = self.edits.len();
        let mut media = MediaFields::default();
        self.ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Verdict::Keep);
        }
        loop {
            self.ws();
            if !self.at_string() {
                return self.err();
            }
            let key = self.key()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let (child, child_rule, field) = self.under_key(scope, &key, rule);
            let field = field.filter(|_| scope.is_content() && self.at_string());
            match field {
                Some(f @ (MediaField::Data | MediaField::Blob)) => {
                    let tok = self.string()?;
                    media
                        .deferred
                        .push((f == MediaField::Blob, tok, child_rule));
                }
                Some(f @ (MediaField::Type | MediaField::MimeType)) => {
                    let tok = self.string()?;
                    let value = tok.decoded.to_string();
                    self.mask_string(&tok, child, child_rule);
                    if f == MediaField::Type {
                        media.item_type = Some(value);
                    } else {
                        media.mime = Some(value);
                    }
                }
                None => {
                    self.value(child, child_rule, false)?;
                }
            }
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return self.err(),
            }
        }
        self.depth -= 1;
        Ok(self.finish_object(start..self.pos, scope, media, edits_before, in_array))
    }

    /// Plans the deferred `data`/`blob` strings of a closed object, and
    /// applies the media policy to image and audio items.
    fn finish_object(
        &mut self,
        span: Range<usize>,
        scope: Scope,
        media: MediaFields<'a>,
        edits_before: usize,
        in_array: bool,
    ) -> Verdict {
        for (is_blob, tok, rule) in media.deferred {
            let kind = Media::classify(media.item_type.as_deref(), media.mime.as_deref(), is_blob);
            let policy = match kind {
                Media::Image => self.m.profile.images,
                Media::Audio => self.m.profile.audio,
                Media::TextBlob => {
                    if let Some(b64) =
                        self.m
                            .mask_blob(&tok.decoded, self.nesting, &mut self.counts)
                    {
                        self.edits
                            .push(Edit::text(tok.content_start()..tok.content_end(), b64));
                    }
                    continue;
                }
                Media::OpaqueBlob => continue,
                Media::None => {
                    self.mask_string(
                        &tok,
                        scope.child(if is_blob { "blob" } else { "data" }),
                        rule,
                    );
                    continue;
                }
            };
            if policy == MediaPolicy::Keep {
                continue;
            }
            self.counts.add(&kind.entity().expect("image or audio"), 1);
            // Nothing planned inside the item survives its removal.
            self.edits.truncate(edits_before);
            if policy == MediaPolicy::Drop && in_array {
                return Verdict::Drop;
            }
            self.edits.push(Edit::text(span, kind.placeholder()));
            return Verdict::Keep;
        }
        Verdict::Keep
    }

    /// Every element gets the array's own rule (`"phones": [...]`).
    #[inline(never)]
    fn array(&mut self, scope: Scope, rule: Option<&'a Entity>) -> Result<(), JsonError> {
        self.pos += 1;
        self.enter()?;
        let element = scope.element();
        // Element spans, kept only once an element asks to be dropped.
        let mut spans: Vec<(Range<usize>, bool)> = Vec::new();
        let mut any_drop = false;
        self.ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            let start = self.pos;
            let verdict = self.value(element, rule, true)?;
            let dropped = verdict == Verdict::Drop;
            any_drop |= dropped;
            spans.push((start..self.pos, dropped));
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return self.err(),
            }
        }
        self.depth -= 1;
        if any_drop {
            self.drop_elements(&spans);
        }
        Ok(())
    }

    /// Removes dropped elements with their commas: each run of dropped
    /// elements goes up to the next kept one, or back to the previous kept
    /// one when it ends the array.
    fn drop_elements(&mut self, spans: &[(Range<usize>, bool)]) {
        let mut i = 0;
        while i < spans.len() {
            if !spans[i].1 {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < spans.len() && spans[j + 1].1 {
                j += 1;
            }
            let cut = if j + 1 < spans.len() {
                spans[i].0.start..spans[j + 1].0.start
            } else if i > 0 {
                spans[i - 1].0.end..spans[j].0.end
            } else {
                spans[i].0.start..spans[j].0.end
            };
            self.edits
                .retain(|e| e.range.end <= cut.start || e.range.start >= cut.end);
            self.edits.push(Edit::text(cut, ""));
            i = j + 1;
        }
    }

    fn mask_string(&mut self, tok: &StrTok<'_>, scope: Scope, rule: Option<&Entity>) {
        let Some(mode) = scope.mode() else { return };
        // Most values under a key rule are redacted whole: one run of stars
        // over the encoded bytes, which is what the general path plans.
        if let Some(entity) = rule
            && self.m.profile.action(entity) == Action::Redact
            && self.star_whole(entity, tok.content_start()..tok.content_end(), &tok.decoded)
        {
            return;
        }
        let ctx = StrCtx {
            rule,
            mode,
            null_ok: true,
            nesting: self.nesting,
        };
        // Planned into a buffer kept across strings, then moved into place.
        let mut planned = std::mem::take(&mut self.planned);
        let m = self.m;
        let s: &str = &tok.decoded;
        // Strings for the detectors are worth remembering; a key rule or an
        // embedded document is planned directly.
        let null = if rule.is_some() || looks_like_json(s) {
            m.plan_string(s, &ctx, &mut planned, &mut self.counts)
        } else {
            let key = memo::Context {
                mode,
                null_ok: ctx.null_ok,
            };
            self.memo
                .plan_once(s, key, &mut planned, &mut self.counts, |e, c| {
                    m.plan_string(s, &ctx, e, c)
                })
        };
        if null {
            self.edits.push(Edit {
                range: tok.range.clone(),
                fill: Fill::Null,
            });
        } else if !planned.is_empty() {
            let mut cursor = (0, 0);
            lift(
                planned.drain(..),
                |i| tok.encoded(i, &mut cursor),
                &mut self.edits,
            );
        }
        planned.clear();
        self.planned = planned;
    }

    /// Numbers are masked only under key rules (`"ssn": 123456789`).
    fn mask_number(&mut self, r: Range<usize>, scope: Scope, rule: Option<&'a Entity>) {
        let token = &self.s[r.clone()];
        if let Some(entity) = rule.filter(|_| scope.is_content())
            && applies(entity, token)
        {
            self.counts.add(entity, 1);
            let action = self.m.profile.action(entity);
            self.edits
                .push(plan_number(action, entity, token, r, &self.m.pseudonyms));
        }
    }
}

/// Reads the rest of the string token starting at `start` (its opening
/// quote) whose first escape is at `first`, decoding as it goes: one pass,
/// however many escapes (pretty JSON inside a string has one every few
/// bytes). Returns the end of the token, its decoded text and its escapes;
/// `None` for any error (see `string_error`).
fn decode_token(s: &str, start: usize, first: usize) -> Option<(usize, String, Escapes)> {
    let b = s.as_bytes();
    let content = start + 1;
    // At most the rest of the input; the first 64 KiB of it ahead of time.
    let mut out = String::with_capacity((b.len() - content).min(1 << 16));
    out.push_str(&s[content..first]);
    let mut escapes = Escapes(Vec::with_capacity(16));
    let mut i = first;
    loop {
        let (c, len) = unescape(b, i)?;
        escapes.decode(&mut out, i - content, c, len);
        i += len;
        // The plain run up to the next quote, backslash or control byte.
        let run = i;
        i += plain_run(b, i)?;
        out.push_str(s.get(run..i)?);
        match b.get(i)? {
            b'"' => return Some((i + 1, out, escapes)),
            b'\\' => {}
            _ => return None,
        }
    }
}

/// The character the escape at `i` (a backslash) stands for, and the
/// escape's length; `None` for a bad escape or a lone surrogate.
fn unescape(b: &[u8], i: usize) -> Option<(char, usize)> {
    let hex4 = |at: usize| {
        let h = b.get(at..at + 4)?;
        h.iter()
            .all(u8::is_ascii_hexdigit)
            .then(|| u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            .flatten()
    };
    Some(match *b.get(i + 1)? {
        b'"' => ('"', 2),
        b'\\' => ('\\', 2),
        b'/' => ('/', 2),
        b'b' => ('\u{8}', 2),
        b'f' => ('\u{c}', 2),
        b'n' => ('\n', 2),
        b'r' => ('\r', 2),
        b't' => ('\t', 2),
        b'u' => {
            let hi = hex4(i + 2)?;
            if (0xD800..0xDC00).contains(&hi) {
                if b.get(i + 6..i + 8) != Some(b"\\u") {
                    return None;
                }
                let lo = hex4(i + 8)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return None;
                }
                (
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?,
                    12,
                )
            } else {
                (char::from_u32(hi)?, 6)
            }
        }
        _ => return None,
    })
}

/// Where the string token at `start` is not valid JSON (truncated, a
/// control byte, a bad escape, a lone surrogate).
fn string_error(b: &[u8], start: usize) -> JsonError {
    let mut i = start + 1;
    loop {
        let Some(k) = memchr2(b'"', b'\\', &b[i..]) else {
            return JsonError::Syntax(b.len());
        };
        if has_control(&b[i..i + k]) {
            return JsonError::Syntax(i);
        }
        i += k;
        if b[i] == b'"' {
            // Every escape was well formed: a surrogate was not paired.
            return JsonError::Syntax(start);
        }
        i += match b.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            Some(b'u')
                if b.get(i + 2..i + 6)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                6
            }
            _ => return JsonError::Syntax(i),
        };
    }
}

/// The length of the run from `i` up to the first `"`, `\\` or control
/// byte (which ends or breaks a JSON string); `None` when there is none.
/// 16 bytes at a time over the first 64 (most keys and values), by memchr
/// after. The first block is read where it is called: most keys and values
/// end in it.
#[inline(always)]
fn plain_run(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i..).and_then(<[u8]>::first_chunk) {
        Some(block) => match first_stop(block) {
            Some(k) => Some(k),
            None => later_run(b, i, i + 16),
        },
        None => later_run(b, i, i),
    }
}

/// [`plain_run`] from `j`, knowing `b[i..j]` holds no stop.
#[inline(never)]
fn later_run(b: &[u8], i: usize, mut j: usize) -> Option<usize> {
    let short = b.len().min(i + 64);
    while j + 16 <= short {
        let block: &[u8; 16] = b[j..j + 16].try_into().expect("16 bytes");
        if let Some(k) = first_stop(block) {
            return Some(j - i + k);
        }
        j += 16;
    }
    long_run(b, i, j, short)
}

/// How many spaces start `b[i..]` (at least one is there): up to 8.
fn spaces(b: &[u8], i: usize) -> usize {
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    match b.get(i..).and_then(<[u8]>::first_chunk) {
        Some(w) => {
            let x = u64::from_le_bytes(*w) ^ SPACES;
            if x == 0 {
                8
            } else {
                (x.trailing_zeros() / 8) as usize
            }
        }
        None => 1,
    }
}

/// [`plain_run`] past its first 16-byte blocks: a string's last bytes, or
/// a long string.
fn long_run(b: &[u8], i: usize, mut j: usize, short: usize) -> Option<usize> {
    while j < short {
        if matches!(b[j], b'"' | b'\\' | 0..0x20) {
            return Some(j - i);
        }
        j += 1;
    }
    let k = memchr2(b'"', b'\\', &b[j..]).unwrap_or(b.len() - j);
    let seg = &b[j..j + k];
    if has_control(seg) {
        return seg.iter().position(|&c| c < 0x20).map(|c| j - i + c);
    }
    (j + k < b.len()).then_some(j - i + k)
}

/// Where in `block` the first byte that ends or breaks a plain run (a
/// quote, a backslash or a control byte) is.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn first_stop(block: &[u8; 16]) -> Option<usize> {
    let mask = super::simd::string_stops(block);
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn first_stop(block: &[u8; 16]) -> Option<usize> {
    first_stop_by_words(block)
}

/// [`first_stop`] without vector instructions: eight bytes at a time. The
/// high bit of each byte that is zero after the xor (a quote or backslash)
/// or below 0x20 is set: exact for the lowest such byte, which is all that
/// is read.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn first_stop_by_words(block: &[u8; 16]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    block.chunks_exact(8).enumerate().find_map(|(half, w)| {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let slash = w ^ (ONES * u64::from(b'\\'));
        let stop = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        (stop != 0).then(|| half * 8 + (stop.trailing_zeros() / 8) as usize)
    })
}

/// A control character (which JSON strings must escape) in `seg`; a fold
/// rather than `any` so the compiler vectorises it.
fn has_control(seg: &[u8]) -> bool {
    seg.chunks(64)
        .any(|c| c.iter().fold(false, |acc, &b| acc | (b < 0x20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the content of a JSON string that has an escape.
    fn decode(raw: &str) -> Option<(String, Escapes)> {
        let token = format!("\"{raw}\"");
        let (end, decoded, escapes) = decode_token(&token, 0, token.find('\\')?)?;
        assert_eq!(end, token.len());
        Some((decoded, escapes))
    }

    #[test]
    fn decode_maps_escapes() {
        let (d, m) = decode(r"a\u002db\n\ud83d\ude00é").unwrap();
        assert_eq!(d, "a-b\n😀é");
        let fresh = |i: usize| m.encoded(i, &mut 0);
        assert_eq!(fresh(0), 0);
        assert_eq!(fresh(1), 1); // '-' comes from the \u002d at 1
        assert_eq!(fresh(2), 7); // 'b'
        assert_eq!(fresh(3), 8); // '\n'
        assert_eq!(fresh(4), 10); // the emoji's escape pair starts at 10
        assert_eq!(fresh(8), 22); // 'é' after the 12-byte pair
        assert_eq!(fresh(d.len()), 24);
        // A cursor kept across lookups gives the same offsets in any order.
        let bounds: Vec<usize> = (0..=d.len()).filter(|&i| d.is_char_boundary(i)).collect();
        let orders = [
            bounds.clone(),
            bounds.iter().rev().copied().collect(),
            bounds
                .iter()
                .map(|&i| bounds[(i * 7) % bounds.len()])
                .collect::<Vec<_>>(),
        ];
        for order in orders {
            let mut cursor = 0;
            for i in order {
                assert_eq!(m.encoded(i, &mut cursor), fresh(i), "{i}");
            }
        }
        assert!(decode(r"\ud83d").is_none(), "lone surrogate");
        assert!(decode(r"\udc00x").is_none());
    }

    /// The 16-byte-block scan stops where a byte-by-byte one does, at every
    /// offset and length (stops placed around the blocks and the 64-byte
    /// window before memchr takes over).
    #[test]
    fn plain_run_stops_at_the_first_stop_byte() {
        let naive = |b: &[u8], i: usize| {
            b[i..]
                .iter()
                .position(|c| matches!(c, b'"' | b'\\' | 0..0x20))
        };
        for len in 0..70 {
            for stop_at in 0..=len {
                for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut b: Vec<u8> = (0..len).map(|k| b"a\x80~ !#[]\xff"[k % 9]).collect();
                    if stop_at < len {
                        b[stop_at] = stop;
                    }
                    for i in 0..len.min(9) {
                        assert_eq!(plain_run(&b, i), naive(&b, i), "{b:?} from {i}");
                    }
                    // the scan without vector instructions (other targets)
                    if len >= 16 {
                        let block: &[u8; 16] = b[..16].try_into().unwrap();
                        let first = naive(block, 0);
                        assert_eq!(first_stop_by_words(block), first, "{b:?}");
                        assert_eq!(first_stop(block), first, "{b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn string_errors_say_where() {
        let m = Masker::new(crate::mask::Profile::safe_harbor(), b"k".to_vec());
        let at = |s: &str| plan(&m, s, 0).err();
        assert_eq!(at(r#"["a\n\q"]"#), Some(JsonError::Syntax(5)), "bad escape");
        assert_eq!(at("[\"a\\n\u{1}\"]"), Some(JsonError::Syntax(5)), "control");
        assert_eq!(
            at(r#"["\ud800x"]"#),
            Some(JsonError::Syntax(1)),
            "surrogate"
        );
        assert_eq!(at(r#"["a\n"#), Some(JsonError::Syntax(5)), "truncated");
        assert!(at(r#"["a\u00e9\"b"]"#).is_none());
    }
}
