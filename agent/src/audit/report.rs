//! `audit report`: the access review HIPAA asks to be done periodically
//! (164.308(a)(1)(ii)(D), information system activity review) as one
//! self-contained HTML file: who (user, executable, unit, CI job) reached
//! which endpoints and tools, how often, what was denied, refused or
//! approved, how many entities were masked, and whether the store verified.
//! No script, no external resource; every string taken from a record is
//! escaped. The records are read with export's reader and filter, and the
//! integrity line is `verify`'s.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::chain::format_ts;
use super::checkpoint::PublicKey;
use super::export::{ExportFilter, visit_records};
use super::record::{CiJobView, Masked, RecordView};
use super::verify::{Report as Integrity, verify};

/// Events listed one by one per table; beyond this the table says how many
/// more there are (`audit export` has them all).
pub const MAX_LISTED: usize = 500;
/// Bars per chart; the rest are summed into one "other" bar.
const MAX_BARS: usize = 15;
/// Methods that read data: the accesses an access review is about.
const DATA_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];
/// Where a plain count of masked entities goes in the per-entity chart.
const ENTITY_NOT_RECORDED: &str = "(entity not recorded)";

/// Who made a request: the identity the interception core attributed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Principal {
    pub user: Option<String>,
    pub exe: Option<String>,
    pub unit: Option<String>,
    pub ci_job: Option<String>,
}

/// What one principal did in the period.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Connections (record `session`) it made, by [`connection_key`].
    pub connections: HashSet<u64>,
    /// Requests from the client (notifications and server requests excluded).
    pub requests: u64,
    /// Of them, tools/call, resources/read and prompts/get.
    pub data_accesses: u64,
    pub denials: u64,
    pub refusals: u64,
    pub approvals: u64,
    pub masked: u64,
    /// Requests per endpoint.
    pub endpoints: BTreeMap<String, u64>,
    pub first: String,
    pub last: String,
}

/// A method and what it named (tool, resource URI or prompt) on an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub endpoint: String,
    pub method: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TargetUse {
    pub requests: u64,
    pub users: BTreeSet<String>,
    pub denials: u64,
    /// Responses that were JSON-RPC errors.
    pub errors: u64,
    pub masked: u64,
}

/// One denial, refusal or approval, as listed in the report.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub seq: u64,
    pub ts: String,
    pub user: String,
    pub endpoint: String,
    pub method: String,
    pub target: String,
    pub session: String,
    /// Policies and reason (denials), reason (refusals), outcome and
    /// approver (approvals).
    pub detail: String,
}

/// The events of one kind: the first [`MAX_LISTED`] and how many in all.
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub listed: Vec<Event>,
    pub total: u64,
}

impl Events {
    fn push(&mut self, e: Event) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(e);
        }
    }
}

/// Everything the report shows, summed over the records of the period.
#[derive(Debug, Clone, Default)]
pub struct AccessReview {
    /// The period asked for (store `ts` form), if bounded.
    pub since: Option<String>,
    pub until: Option<String>,
    /// The first and last record found in it.
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub records: u64,
    /// Connections (record `session`, by [`connection_key`]); `sessions
    /// list` groups them by MCP session.
    pub connections: HashSet<u64>,
    pub principals: BTreeMap<Principal, Activity>,
    pub targets: BTreeMap<Target, TargetUse>,
    /// Requests per UTC day (YYYY-MM-DD).
    pub per_day: BTreeMap<String, u64>,
    pub masked_by_entity: BTreeMap<String, u64>,
    pub denials: Events,
    pub refusals: Events,
    pub approvals: Events,
    /// Records that could not be read as JSON (counted, not hidden).
    pub unreadable: u64,
}

impl AccessReview {
    pub fn requests(&self) -> u64 {
        self.principals.values().map(|a| a.requests).sum()
    }

    pub fn data_accesses(&self) -> u64 {
        self.principals.values().map(|a| a.data_accesses).sum()
    }

    pub fn masked(&self) -> u64 {
        self.masked_by_entity.values().sum()
    }

    pub fn users(&self) -> BTreeSet<String> {
        self.principals
            .keys()
            .map(|p| user_label(&p.user))
            .collect()
    }

    /// Adds one record line to the sums.
    pub fn add(&mut self, line: &[u8]) {
        self.records += 1;
        let Some(r) = RecordView::parse(line) else {
            self.unreadable += 1;
            return;
        };
        if self.first_ts.is_none() {
            self.first_ts = Some(r.ts.clone());
        }
        self.last_ts = Some(r.ts.clone());
        if let Some(s) = &r.session {
            self.connections.insert(connection_key(s));
        }
        let principal = Principal {
            user: r.user(),
            exe: r.identity.as_ref().and_then(|i| i.exe.clone()),
            unit: r.identity.as_ref().and_then(|i| i.unit.clone()),
            ci_job: r
                .identity
                .as_ref()
                .and_then(|i| i.ci.as_ref())
                .map(CiJobView::describe),
        };
        let user = user_label(&principal.user);
        let target = r.method.as_ref().map(|method| Target {
            endpoint: r.endpoint.clone().unwrap_or_else(|| "-".into()),
            method: method.clone(),
            name: r.tool.clone().or(r.uri.clone()).or(r.prompt.clone()),
        });
        let is_request = r.kind == "request"
            && r.direction.as_deref() != Some("server_to_client")
            && r.message.as_deref() != Some("notification");
        let masked = r.masked.total();
        match &r.masked {
            Masked::None | Masked::Count(0) => {}
            Masked::Count(n) => {
                *self
                    .masked_by_entity
                    .entry(ENTITY_NOT_RECORDED.into())
                    .or_default() += n
            }
            Masked::ByEntity(v) => {
                for (entity, n) in v.iter().filter(|(_, n)| *n > 0) {
                    *self.masked_by_entity.entry(entity.clone()).or_default() += n;
                }
            }
        }

        let activity = self
            .principals
            .entry(principal)
            .or_insert_with(|| Activity {
                first: r.ts.clone(),
                ..Default::default()
            });
        activity.last = r.ts.clone();
        if let Some(s) = &r.session {
            activity.connections.insert(connection_key(s));
        }
        activity.masked += masked;
        let data = r
            .method
            .as_deref()
            .is_some_and(|m| DATA_METHODS.contains(&m));
        if is_request {
            activity.requests += 1;
            activity.data_accesses += u64::from(data);
            *activity
                .endpoints
                .entry(r.endpoint.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
            *self
                .per_day
                .entry(r.ts.chars().take(10).collect())
                .or_default() += 1;
        }
        let denied = r.kind == "decision" && r.decision.as_deref() == Some("deny");
        if let Some(t) = target {
            let used = self.targets.entry(t).or_default();
            if is_request {
                used.requests += 1;
                used.users.insert(user.clone());
            }
            used.denials += u64::from(denied);
            used.errors += u64::from(r.kind == "response" && r.message.as_deref() == Some("error"));
            used.masked += masked;
        }

        let event = |detail: String| Event {
            seq: r.seq,
            ts: r.ts.clone(),
            user: user.clone(),
            endpoint: r.endpoint.clone().unwrap_or_default(),
            method: r.method.clone().unwrap_or_default(),
            target: r
                .tool
                .clone()
                .or(r.uri.clone())
                .or(r.prompt.clone())
                .unwrap_or_default(),
            session: r.session.clone().unwrap_or_default(),
            detail,
        };
        match r.kind.as_str() {
            "decision" if denied => {
                activity.denials += 1;
                let mut detail = r.policies.clone().unwrap_or_default().join(", ");
                if let Some(reason) = &r.reason {
                    if !detail.is_empty() {
                        detail.push_str(": ");
                    }
                    detail.push_str(reason);
                }
                self.denials.push(event(detail));
            }
            "reject" => {
                activity.refusals += 1;
                self.refusals.push(event(
                    r.reason.clone().or(r.error.clone()).unwrap_or_default(),
                ));
            }
            "approval" => {
                activity.approvals += 1;
                let detail = format!(
                    "{} by {}",
                    r.decision.as_deref().unwrap_or("decided"),
                    r.approver.as_deref().unwrap_or("an unnamed approver")
                );
                self.approvals.push(event(detail));
            }
            _ => {}
        }
    }
}

/// Connections are counted, not listed: a 64-bit digest of the id keeps
/// the sets small over millions of them (a collision would undercount by
/// one in 2^64).
fn connection_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

fn user_label(user: &Option<String>) -> String {
    user.clone().unwrap_or_else(|| "(unattributed)".into())
}

/// Reads the traffic records of the period (`filter`'s since/until; its
/// other members narrow it further) into an [`AccessReview`].
pub fn access_review(dir: &Path, filter: &ExportFilter) -> Result<AccessReview> {
    let mut review = AccessReview {
        since: filter.since.clone(),
        until: filter.until.clone(),
        ..Default::default()
    };
    visit_records(dir, filter, &mut |line| {
        review.add(line);
        Ok(())
    })?;
    Ok(review)
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // control characters other than tab/newline are not text
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A record time to the second, for the summary tables (events keep theirs whole).
fn short_ts(ts: &str) -> String {
    match ts.get(..19) {
        Some(s) if ts.len() > 19 => format!("{}Z", s.replacen('T', " ", 1)),
        _ => ts.to_string(),
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "-".into(), esc)
}

/// The `n` largest bars (ties in name order), the rest summed as "other".
fn top(mut bars: Vec<(String, u64)>, n: usize) -> Vec<(String, u64)> {
    bars.retain(|(_, v)| *v > 0);
    bars.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if bars.len() > n {
        let rest: u64 = bars[n - 1..].iter().map(|(_, v)| v).sum();
        let others = bars.len() - (n - 1);
        bars.truncate(n - 1);
        bars.push((format!("({others} others)"), rest));
    }
    bars
}

/// A horizontal bar chart as inline SVG; labels longer than the label
/// column are cut, with the whole label in a tooltip (`<title>`).
fn bar_chart(out: &mut String, title: &str, bars: &[(String, u64)], class: &str) {
    let _ = write!(out, "<figure><figcaption>{}</figcaption>", esc(title));
    if bars.is_empty() {
        out.push_str("<p class=\"empty\">none in this period</p></figure>\n");
        return;
    }
    const ROW: usize = 22;
    const LABEL: usize = 230;
    const BAR: f64 = 380.0;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1) as f64;
    let height = bars.len() * ROW + 8;
    let _ = write!(
        out,
        "<svg class=\"chart {class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"700\" height=\"{height}\" \
         viewBox=\"0 0 700 {height}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i * ROW + 4;
        let w = (*value as f64 / max * BAR).max(1.0);
        let short: String = if label.chars().count() > 32 {
            label.chars().take(31).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            out,
            "<g><title>{label}: {value}</title>\
             <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{short}</text>\
             <rect x=\"{bx}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bh}\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\" class=\"v\">{value}</text></g>",
            label = esc(label),
            short = esc(&short),
            lx = LABEL - 6,
            ty = y + 14,
            bx = LABEL,
            bh = ROW - 6,
            vx = LABEL as f64 + w + 5.0,
        );
    }
    out.push_str("</svg></figure>\n");
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1a1a1a;max-width:1400px}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td.t{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#0a6b2b;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #ccc;border-radius:4px;padding:.5em .9em;min-width:8em}\
.card b{display:block;font-size:1.5em}figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}\
.charts{display:flex;flex-wrap:wrap;gap:1em 3em}svg.chart text{font-size:12px;fill:#1a1a1a}\
svg.chart rect{fill:#3b6ea8}svg.chart.warn rect{fill:#c0392b}svg.chart.mask rect{fill:#7d5ba6}\
.empty,.note{color:#666}pre{white-space:pre-wrap}";

/// Renders the report. `store` and `generated_at` (RFC 3339) are shown as
/// given; `integrity` is `audit verify`'s result for the whole store.
pub fn render_html(
    review: &AccessReview,
    integrity: &Integrity,
    store: &Path,
    generated_at: &str,
) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">");
    h.push_str("<title>mcp-warden access review</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>MCP access review</h1>\n");
    let period = |bound: &Option<String>, found: &Option<String>, open: &str| match (bound, found) {
        (Some(b), _) => esc(b),
        (None, Some(f)) => format!("{} ({open} record)", esc(f)),
        (None, None) => "-".into(),
    };
    let _ = writeln!(
        h,
        "<p>Period: <b id=\"since\">{}</b> to <b id=\"until\">{}</b><br>\
         Generated {} by mcp-warden {} from <code>{}</code><br>\
         For the information system activity review of HIPAA 164.308(a)(1)(ii)(D). \
         This is a summary; the records in the store are the evidence (each event below names its <code>seq</code>).</p>",
        period(&review.since, &review.first_ts, "first"),
        period(&review.until, &review.last_ts, "last"),
        esc(generated_at),
        env!("CARGO_PKG_VERSION"),
        esc(&store.display().to_string()),
    );

    // Integrity first: a summary of records that do not verify proves nothing.
    let verdict = if integrity.ok() {
        "<span class=\"ok\" id=\"integrity\">Integrity verified</span>"
    } else {
        "<span class=\"bad\" id=\"integrity\">INTEGRITY CHECK FAILED: the records below may have been altered</span>"
    };
    let _ = writeln!(
        h,
        "<h2>Integrity</h2><p>{verdict}</p><pre>{}</pre>",
        esc(integrity.to_string().trim_end())
    );

    let requests = review.requests();
    let cards = [
        ("records", review.records),
        ("connections", review.connections.len() as u64),
        ("users", review.users().len() as u64),
        ("requests", requests),
        ("data accesses", review.data_accesses()),
        ("denials", review.denials.total),
        ("refusals", review.refusals.total),
        ("approvals", review.approvals.total),
        ("entities masked", review.masked()),
    ];
    h.push_str("<h2>Summary</h2><div class=\"cards\">");
    for (name, n) in cards {
        let _ = write!(
            h,
            "<div class=\"card\" id=\"total-{}\"><b>{n}</b>{name}</div>",
            name.replace(' ', "-")
        );
    }
    h.push_str("</div>\n");
    if review.unreadable > 0 {
        let _ = write!(
            h,
            "<p class=\"bad\">{} records could not be read and are not in the sums.</p>",
            review.unreadable
        );
    }

    let mut by_user: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (p, a) in &review.principals {
        let e = by_user.entry(user_label(&p.user)).or_default();
        e.0 += a.requests;
        e.1 += a.denials + a.refusals;
    }
    let mut by_data_target: BTreeMap<String, u64> = BTreeMap::new();
    for (t, u) in &review.targets {
        if DATA_METHODS.contains(&t.method.as_str()) {
            let name = format!("{} {}", t.endpoint, t.name.as_deref().unwrap_or(&t.method));
            *by_data_target.entry(name).or_default() += u.requests;
        }
    }
    h.push_str("<h2>Charts</h2><div class=\"charts\">\n");
    bar_chart(
        &mut h,
        "Requests per user",
        &top(
            by_user.iter().map(|(u, v)| (u.clone(), v.0)).collect(),
            MAX_BARS,
        ),
        "",
    );
    bar_chart(
        &mut h,
        "Data accesses per tool, resource or prompt",
        &top(by_data_target.into_iter().collect(), MAX_BARS),
        "",
    );
    bar_chart(
        &mut h,
        "Denials and refusals per user",
        &top(
            by_user.iter().map(|(u, v)| (u.clone(), v.1)).collect(),
            MAX_BARS,
        ),
        "warn",
    );
    bar_chart(
        &mut h,
        "Entities masked, by type",
        &top(
            review
                .masked_by_entity
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            MAX_BARS,
        ),
        "mask",
    );
    // Days in order, the latest ones when there are many.
    let days: Vec<(String, u64)> = review
        .per_day
        .iter()
        .rev()
        .take(31)
        .rev()
        .map(|(d, n)| (d.clone(), *n))
        .collect();
    bar_chart(
        &mut h,
        "Requests per day (UTC, last 31 days with any)",
        &days,
        "",
    );
    h.push_str("</div>\n");

    h.push_str(
        "<h2>Who accessed what</h2><table id=\"principals\"><thead><tr><th>user</th><th>executable</th>\
         <th>unit</th><th>CI job</th><th>endpoints (requests)</th><th>connections</th><th>requests</th>\
         <th>data accesses</th><th>denials</th><th>refusals</th><th>approvals</th><th>masked</th>\
         <th>first</th><th>last</th></tr></thead><tbody>\n",
    );
    for (p, a) in &review.principals {
        let endpoints = a
            .endpoints
            .iter()
            .map(|(e, n)| format!("{} ({n})", esc(e)))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>",
            esc(&user_label(&p.user)),
            opt(&p.exe),
            opt(&p.unit),
            opt(&p.ci_job),
            if endpoints.is_empty() {
                "-".into()
            } else {
                endpoints
            },
            a.connections.len(),
            a.requests,
            a.data_accesses,
            a.denials,
            a.refusals,
            a.approvals,
            a.masked,
            esc(&short_ts(&a.first)),
            esc(&short_ts(&a.last)),
        );
    }
    h.push_str("</tbody></table>\n");

    h.push_str(
        "<h2>Endpoints, methods and tools</h2><table id=\"targets\"><thead><tr><th>endpoint</th>\
         <th>method</th><th>tool / resource / prompt</th><th>requests</th><th>users</th><th>denials</th>\
         <th>error responses</th><th>masked</th></tr></thead><tbody>\n",
    );
    for (t, u) in &review.targets {
        let users = u
            .users
            .iter()
            .map(|s| esc(s))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&t.endpoint),
            esc(&t.method),
            opt(&t.name),
            u.requests,
            if users.is_empty() { "-".into() } else { users },
            u.denials,
            u.errors,
            u.masked,
        );
    }
    h.push_str("</tbody></table>\n");

    for (id, title, what, events) in [
        ("denials", "Denials", "policies and reason", &review.denials),
        (
            "refusals",
            "Refusals by the agent",
            "reason",
            &review.refusals,
        ),
        ("approvals", "Approvals", "outcome", &review.approvals),
    ] {
        event_table(&mut h, id, title, what, events);
    }
    h.push_str("<p class=\"note\">Denials are policy decisions that refused a request; refusals are \
                requests or connections the agent itself refused (unattributed caller, ambiguous framing, \
                an audit record that could not be written). Export every record of the period with \
                <code>mcp-warden audit export --since … --until …</code>.</p>\n</body></html>\n");
    h
}

fn event_table(h: &mut String, id: &str, title: &str, what: &str, events: &Events) {
    let _ = write!(h, "<h2>{title} ({})</h2>", events.total);
    if events.total == 0 {
        h.push_str("<p class=\"empty\">none in this period</p>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<table id=\"{id}\"><thead><tr><th>seq</th><th>time</th><th>user</th><th>endpoint</th>\
         <th>method</th><th>target</th><th>session</th><th>{what}</th></tr></thead><tbody>"
    );
    for e in &events.listed {
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            esc(&e.ts),
            esc(&e.user),
            esc(&e.endpoint),
            esc(&e.method),
            esc(&e.target),
            esc(&e.session),
            esc(&e.detail),
        );
    }
    h.push_str("</tbody></table>\n");
    if events.total > events.listed.len() as u64 {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} more not listed; see <code>audit export</code>.</p>",
            events.total - events.listed.len() as u64
        );
    }
}

/// `audit report --html FILE`: verifies the store, sums the period and
/// writes the report to `html` (via a temporary file beside it, so that a
/// reader never sees half a report). Returns the sums and the verification.
pub fn write_report(
    dir: &Path,
    filter: &ExportFilter,
    pubkey: Option<&PublicKey>,
    html: &Path,
) -> Result<(AccessReview, Integrity)> {
    let integrity = verify(dir, pubkey)?;
    let review = access_review(dir, filter)?;
    let page = render_html(
        &review,
        &integrity,
        dir,
        &format_ts(time::OffsetDateTime::now_utc()),
    );
    let name = html
        .file_name()
        .with_context(|| format!("{} is not a file name", html.display()))?;
    let tmp = html.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let written = std::fs::write(&tmp, page).and_then(|()| std::fs::rename(&tmp, html));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| {
        format!(
            "cannot write the report to {} (through {})",
            html.display(),
            tmp.display()
        )
    })?;
    Ok((review, integrity))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::audit::sample::{client, identity, small_config, write_store};
    use crate::audit::{AuditLog, Kind, Record};

    const HOSTILE_USER: &str = "<b>mallory</b>&co";
    const HOSTILE_TOOL: &str = "<script>alert(\"x\")</script>";

    /// The sample conversation (30 records: 6 requests, 4 by alice and 2 by
    /// bob, 2 denials, 12 entities masked), then an approval, a refusal and
    /// a request whose user and tool names are markup.
    fn sample_store(dir: &Path) {
        write_store(dir, 30, small_config());
        let (log, writer) = AuditLog::open_with(dir, small_config()).unwrap();
        let mut approval = Record::new(Kind::Approval, "s9", client());
        approval.identity = Some(identity("carol"));
        approval.endpoint = Some("ehr".into());
        approval.method = Some("tools/call".into());
        approval.tool = Some("export_cohort".into());
        approval.decision = Some("approve".into());
        approval.approver = Some("dr.house".into());
        log.record(approval);
        let mut reject = Record::new(Kind::Reject, "s9", client());
        reject.identity = Some(identity("carol"));
        reject.endpoint = Some("ehr".into());
        reject.reason = Some("audit record not durable: disk full".into());
        log.record(reject);
        let mut hostile = Record::new(Kind::Request, "s10", client());
        hostile.identity = Some(identity(HOSTILE_USER));
        hostile.endpoint = Some("billing".into());
        hostile.method = Some("tools/call".into());
        hostile.tool = Some(HOSTILE_TOOL.into());
        log.record_durable(hostile).wait().unwrap();
        drop(log);
        writer.finish();
    }

    fn principal_of<'a>(review: &'a AccessReview, user: &str) -> &'a Activity {
        review
            .principals
            .iter()
            .find(|(p, _)| p.user.as_deref() == Some(user))
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("no principal {user}"))
    }

    #[test]
    fn sums_who_accessed_what_with_denials_refusals_approvals_and_masking() {
        let dir = tempfile::tempdir().unwrap();
        sample_store(dir.path());
        let review = access_review(dir.path(), &ExportFilter::default()).unwrap();
        assert_eq!(review.records, 33, "store records are left out");
        assert_eq!(review.requests(), 7);
        assert_eq!(review.data_accesses(), 7);
        let (alice, bob) = (principal_of(&review, "alice"), principal_of(&review, "bob"));
        assert_eq!((alice.requests, bob.requests), (4, 2));
        assert_eq!((alice.masked, bob.masked), (8, 4));
        assert_eq!((alice.denials, bob.denials), (1, 1));
        assert_eq!(alice.connections.len(), 2, "s0 and s2");
        assert_eq!(
            alice.endpoints,
            BTreeMap::from([("billing".into(), 2), ("ehr".into(), 2)])
        );
        let carol = principal_of(&review, "carol");
        assert_eq!((carol.approvals, carol.refusals), (1, 1));
        assert_eq!(review.denials.total, 2);
        assert_eq!(review.denials.listed[0].target, "get_patient");
        assert_eq!(review.approvals.listed[0].detail, "approve by dr.house");
        assert_eq!(
            review.refusals.listed[0].detail,
            "audit record not durable: disk full"
        );
        assert_eq!(review.masked(), 12);
        assert_eq!(review.masked_by_entity["name"], 12);
        let get_patient = review
            .targets
            .iter()
            .find(|(t, _)| t.endpoint == "ehr" && t.name.as_deref() == Some("get_patient"))
            .unwrap()
            .1;
        assert_eq!(get_patient.requests, 2);
        assert_eq!(get_patient.denials, 1);
        assert_eq!(review.users().len(), 4);
        assert_eq!(review.per_day.values().sum::<u64>(), 7);
    }

    #[test]
    fn masked_counts_per_entity_are_summed_and_plain_counts_kept() {
        let mut review = AccessReview::default();
        let line = |masked: &str| {
            format!(
                r#"{{"seq":1,"prev":"x","ts":"2026-11-30T10:00:00.000000000Z","kind":"response","session":"a","endpoint":"ehr","identity":{{"uid":5,"user":"dana"}},"method":"tools/call","tool":"q","masked":{masked},"hash":"y"}}"#
            )
        };
        review.add(line(r#"{"ssn":2,"name":3}"#).as_bytes());
        review.add(line(r#"{"ssn":1,"odd":"x"}"#).as_bytes());
        review.add(line("4").as_bytes());
        review.add(line(r#""garbage""#).as_bytes());
        review.add(b"not json");
        assert_eq!(review.masked(), 10);
        assert_eq!(review.masked_by_entity["ssn"], 3);
        assert_eq!(review.masked_by_entity["name"], 3);
        assert_eq!(review.masked_by_entity[ENTITY_NOT_RECORDED], 4);
        assert_eq!(principal_of(&review, "dana").masked, 10);
        assert_eq!(review.unreadable, 1);
        assert_eq!(
            (review.records, review.requests()),
            (5, 0),
            "responses are not requests"
        );
    }

    #[test]
    fn since_and_until_bound_the_period() {
        let dir = tempfile::tempdir().unwrap();
        sample_store(dir.path());
        let mut all = Vec::new();
        visit_records(dir.path(), &ExportFilter::default(), &mut |l| {
            all.push(RecordView::parse(l).unwrap().ts);
            Ok(())
        })
        .unwrap();
        let filter = ExportFilter {
            since: Some(all[10].clone()),
            until: Some(all[20].clone()),
            ..Default::default()
        };
        let review = access_review(dir.path(), &filter).unwrap();
        assert!(
            review.records <= 10 && review.records > 0,
            "{}",
            review.records
        );
        assert!(review.first_ts.as_deref() >= Some(all[10].as_str()));
        assert!(review.last_ts.as_deref() < Some(all[20].as_str()));
        let html = render_html(
            &review,
            &verify(dir.path(), None).unwrap(),
            dir.path(),
            "now",
        );
        assert!(html.contains(&format!("<b id=\"since\">{}</b>", all[10])));
    }

    fn sample_html(dir: &Path) -> String {
        sample_store(dir);
        let out = dir.join("report.html");
        let (_, integrity) = write_report(dir, &ExportFilter::default(), None, &out).unwrap();
        assert!(integrity.ok(), "{integrity}");
        std::fs::read_to_string(out).unwrap()
    }

    #[test]
    fn the_html_is_self_contained_and_escapes_every_record_string() {
        let dir = tempfile::tempdir().unwrap();
        let html = sample_html(dir.path());
        for absent in [
            "<script",
            "<b>mallory",
            "src=",
            "href=",
            "http://",
            "https://",
        ] {
            // the SVG namespace is a name, not a fetch
            let hits = html.matches(absent).count()
                - if absent == "http://" {
                    html.matches("http://www.w3.org/2000/svg").count()
                } else {
                    0
                };
            assert_eq!(hits, 0, "{absent} in the report");
        }
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;mallory&lt;/b&gt;&amp;co"));
        assert!(html.contains("Integrity verified"));
        assert!(html.contains("<div class=\"card\" id=\"total-requests\"><b>7</b>"));
        assert_eq!(html.matches("<svg").count(), 5);
        assert_eq!(esc("a\u{0}b'"), "a\u{fffd}b&#39;");
    }

    #[test]
    fn a_store_that_does_not_verify_says_so_at_the_top() {
        let dir = tempfile::tempdir().unwrap();
        sample_store(dir.path());
        let seg = &crate::audit::segment::list(dir.path()).unwrap()[0].path;
        let text = std::fs::read_to_string(seg)
            .unwrap()
            .replacen("alice", "alicf", 1);
        std::fs::write(seg, text).unwrap();
        let out = dir.path().join("r.html");
        let (_, integrity) =
            write_report(dir.path(), &ExportFilter::default(), None, &out).unwrap();
        assert!(!integrity.ok());
        let html = std::fs::read_to_string(out).unwrap();
        assert!(html.contains("INTEGRITY CHECK FAILED"));
        assert!(html.contains("hash does not match") || html.contains("FAILED: "));
    }

    fn chromium() -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("chromium"))
            .find(|p| p.is_file())
    }

    /// Opens the report in headless Chromium and reads the DOM it built: the
    /// page parses, the charts are SVG elements, and the content is there as
    /// text (markup from records stays text).
    #[test]
    fn the_report_renders_in_headless_chromium() {
        let Some(chromium) = chromium() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium is not installed, and CI=true: .ci/run installs it (apt-get install chromium)"
            );
            eprintln!(
                "SKIPPED the_report_renders_in_headless_chromium: chromium is not installed (apt-get install chromium)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        sample_html(dir.path());
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!(
                "file://{}",
                dir.path().join("report.html").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && dom.contains("</html>"),
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dom.contains("<h1>MCP access review</h1>"), "{dom}");
        for text in [
            "alice",
            "bob",
            "carol",
            "get_patient",
            "list_claims",
            "export_cohort",
            "approve by dr.house",
            "audit record not durable: disk full",
            "Integrity verified",
            "&lt;script&gt;alert(\"x\")&lt;/script&gt;",
        ] {
            assert!(dom.contains(text), "{text:?} not in the rendered DOM");
        }
        assert!(
            !dom.contains("<script"),
            "markup from a record became an element"
        );
        assert!(dom.contains("<div class=\"card\" id=\"total-requests\"><b>7</b>"));
        assert!(dom.contains("<div class=\"card\" id=\"total-denials\"><b>2</b>"));
        assert!(dom.contains("<div class=\"card\" id=\"total-entities-masked\"><b>12</b>"));
        // the charts were parsed as SVG: one bar per user in the first one
        assert_eq!(dom.matches("<svg").count(), 5);
        assert!(dom.contains("<title>alice: 4</title>") && dom.contains("<title>bob: 2</title>"));
    }
}
