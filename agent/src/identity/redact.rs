//! Credentials in command lines. A process's cmdline goes into the audit
//! record, and command lines carry secrets (`curl -H "Authorization: Bearer
//! …"`, `--password=…`, `https://user:token@host`, `API_KEY=… tool`): the
//! record must never hold one. Redaction works on argv, before the bound.

/// What a credential is replaced with in the record.
const REDACTED: &str = "[REDACTED]";

// Word lists, whitespace-separated.

/// Words that make an option, variable, parameter or header name secret-like
/// (`--api-key`, `DB_PASSWORD`, `accessToken`). Matched as whole words, so
/// `--keyboard-layout`, `AUTHOR` and `TOKENIZERS_PARALLELISM` are not.
const SECRET_WORDS: &str = "password passwd passphrase pass pwd secret secrets token key \
    apikey auth authorization bearer credential credentials cred creds cookie sig signature";

/// Run-together words ending like this are secret-like too (`PGPASSWORD`,
/// `authtoken`, `xapikey`); not bare "key"/"pass" (monkey, bypass).
const SECRET_SUFFIXES: &str = "password passwd passphrase secret token apikey secretkey \
    privatekey accesskey authkey credential credentials";

/// A last word that makes the value describe or locate a secret rather than
/// be one: `--password-file`, `--token-limit`, `--auth-type`, `AWS_ACCESS_KEY_ID`.
const NOT_SECRET_LAST: &str = "file files path dir directory fd stdin env var jar type kind \
    mode method scheme format id ids name url uri endpoint server host port sock socket \
    helper command cmd prompt store provider length len size limit count budget usage ttl \
    timeout expiry expires version location user username";

/// A first word that makes the option a switch (`--no-password`, `--ask-pass`).
const NOT_SECRET_FIRST: &str = "no ask skip prompt without disable enable require";

/// Header names are a narrower domain: substrings suffice (`X-Auth-Token`,
/// `Proxy-Authorization`, `PRIVATE-TOKEN`, `Mcp-Session-Id`, `Cookie`).
const SECRET_HEADER_PARTS: &str = "auth token secret key pass cookie session credential signature";

/// Clients whose `-p` glued to its value (`-psecret`) is the password. A bare
/// `-p` makes them prompt, and is a port or "parents" almost everywhere else.
const MYSQL_CLIENTS: &str = "mysql mysqldump mysqladmin mysqlimport mysqlcheck mysqlshow \
    mysqlslap mysqlpump mysqlbinlog mariadb mariadb-dump mariadb-admin mariadb-import \
    mariadb-check mariadb-show mariadb-slap mariadb-binlog";
/// Clients whose `-p <value>` is a password.
const P_IS_PASSWORD: &str = "sshpass mongo mongosh mongodump mongorestore mongoexport mongoimport";
/// Clients whose `-a <value>` is a password or token (redis-cli, HTTPie, xh).
const A_IS_PASSWORD: &str = "redis-cli http https xh xhs";

fn listed(list: &str, word: &str) -> bool {
    list.split_ascii_whitespace().any(|w| w == word)
}

/// What the argument after an option is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Any,
    /// Redacted whole.
    Secret,
    /// Redacted whole when it is a `user:password` pair: the user part is
    /// often the key itself (`curl -u sk_live_…:`), a bare name is kept.
    UserPair,
    /// `Name: value`, value redacted when the name is secret-like.
    Header,
}

/// Replaces credentials in a process's arguments with `[REDACTED]`, in place.
///
/// Why: the command line goes into the audit log, and command lines carry
/// credentials (`curl -H "Authorization: Bearer …"`, `--password=…`,
/// `https://user:token@host/`, `API_KEY=… tool`) — a legacy script calling an
/// MCP server with a leftover key is exactly what this agent records. The log
/// must show that it happened, never the key, so values go and option, header
/// and variable names stay for the auditor. Runs on the split argv, before
/// joining and the length bound, so that neither can break a rule's match;
/// `last_is_cut` says the last argument is a fragment (read bound hit).
///
/// Redacted (names case-insensitive, matched by word, see [`is_secret_name`]):
/// - the argument after an option with a secret-like name (`--password`,
///   `--token`, `--api-key`, `--client-secret`, `--auth`, `--oauth2-bearer`,
///   `--cookie`, `--github-token`, Go-style `-token`), and `--name=value`;
/// - after `-u`, `--user`, `--proxy-user` (and curl's `-U`): the whole value
///   when it is `user:password`; a bare user name is kept, since `-u` is also
///   python's unbuffered switch and `--user` a switch of systemctl and pip;
/// - `-H`/`--header`/`--proxy-header` values (also `--header=`, glued `-H…`)
///   whose header name contains auth/token/secret/key/pass/cookie/session/
///   credential/signature: `Authorization: [REDACTED]`;
/// - per program: glued `-pSECRET` of mysql/mariadb clients (bare `-p` is a
///   port, or their prompt switch, and is left alone), `-p` of sshpass and the
///   mongo tools, `-a` of redis-cli and HTTPie, `-b` (cookie) of curl;
/// - anywhere in any argument (so also in `sh -c` / `python -c` snippets):
///   URL userinfo (`scheme://[REDACTED]@host`), the credential after
///   `Bearer`/`Basic`, `name=value` with a secret-like name (environment
///   assignments, `-Ddb.password=`, `?api_key=`, `-o user=u,password=p`: to
///   the end of the argument when the name starts it or follows another `=`,
///   otherwise to `&` `,` `;`, whitespace or the closing quote), and a whole
///   argument `name:value` with a secret-like name (HTTPie `X-API-Key:abc`).
///
/// Not covered: JSON or code (`{"password": "…"}`, `api_key = "…"`); option
/// pairs inside one shell-snippet argument (`sh -c "… --token abc"`, only the
/// in-argument rules apply there); `user:pass@host` without a scheme.
pub(super) fn redact_args(args: &mut [String], last_is_cut: bool) {
    let program = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let count = args.len();
    let mut expect = Expect::Any;
    for (i, arg) in args.iter_mut().enumerate() {
        let (kept, next) = match expect {
            Expect::Secret => (redact_whole(arg), Expect::Any),
            Expect::UserPair if arg.contains(':') => (redact_whole(arg), Expect::Any),
            Expect::Header => (redact_header_line(arg, is_secret_header), Expect::Any),
            Expect::Any | Expect::UserPair => redact_option(arg, &program),
        };
        *arg = redact_in_arg(&kept, last_is_cut && i + 1 == count);
        expect = next;
    }
}

fn redact_whole(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        REDACTED.to_string()
    }
}

/// An option: its glued or `=` value redacted, and what its next argument is.
fn redact_option(arg: &str, program: &str) -> (String, Expect) {
    let plain = |expect| (arg.to_string(), expect);
    if arg.len() < 2 || !arg.starts_with('-') {
        return plain(Expect::Any);
    }
    match arg {
        "-H" => return plain(Expect::Header),
        "-u" => return plain(Expect::UserPair),
        "-U" if program == "curl" => return plain(Expect::UserPair),
        "-b" if program == "curl" => return plain(Expect::Secret),
        "-a" if listed(A_IS_PASSWORD, program) => return plain(Expect::Secret),
        "-p" if listed(P_IS_PASSWORD, program) => return plain(Expect::Secret),
        _ => {}
    }
    // Values glued to a short option.
    if let Some(header) = arg.strip_prefix("-H")
        && header.contains(':')
    {
        return (
            format!("-H{}", redact_header_line(header, is_secret_header)),
            Expect::Any,
        );
    }
    if let Some(pair) = arg.strip_prefix("-u")
        && pair.contains(':')
        && !pair.contains('=')
    {
        return (format!("-u{REDACTED}"), Expect::Any);
    }
    if let Some(password) = arg.strip_prefix("-p")
        && !password.is_empty()
        && (listed(MYSQL_CLIENTS, program) || listed(P_IS_PASSWORD, program))
    {
        return (format!("-p{REDACTED}"), Expect::Any);
    }
    // `--name value`, `--name=value`, and Go-style `-name`.
    let body = arg.trim_start_matches('-');
    let (name, value) = match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    };
    if name.is_empty() || !name.bytes().all(is_name_byte) {
        return plain(Expect::Any);
    }
    let kind = option_kind(name);
    let Some(value) = value else {
        return plain(kind);
    };
    let prefix = &arg[..arg.len() - value.len()];
    match kind {
        Expect::Header => (
            format!("{prefix}{}", redact_header_line(value, is_secret_header)),
            Expect::Any,
        ),
        Expect::Secret if !value.is_empty() => (format!("{prefix}{REDACTED}"), Expect::Any),
        Expect::UserPair if value.contains(':') => (format!("{prefix}{REDACTED}"), Expect::Any),
        _ => plain(Expect::Any),
    }
}

fn option_kind(name: &str) -> Expect {
    let lower = name.to_ascii_lowercase();
    if matches!(lower.as_str(), "header" | "headers" | "proxy-header") {
        Expect::Header
    } else if name_words(name).last().is_some_and(|w| w == "user") {
        Expect::UserPair
    } else if is_secret_name(name) {
        Expect::Secret
    } else {
        Expect::Any
    }
}

/// The rules that look inside one argument, wherever it stands.
fn redact_in_arg(arg: &str, may_be_cut: bool) -> String {
    let s = redact_header_line(arg, |name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && is_secret_name(name)
    });
    let s = redact_userinfo(&s, may_be_cut);
    let s = redact_after_scheme(&s, "bearer");
    let s = redact_after_scheme(&s, "basic");
    redact_pairs(&s)
}

/// `Name: value` keeps `Name: ` and hides a non-empty value when `secret(Name)`.
fn redact_header_line(line: &str, secret: impl Fn(&str) -> bool) -> String {
    if let Some((name, value)) = line.split_once(':') {
        let gap = value.len() - value.trim_start_matches([' ', '\t', '=']).len();
        let value_start = name.len() + 1 + gap;
        if value_start < line.len() && secret(name) {
            return format!("{}{REDACTED}", &line[..value_start]);
        }
    }
    line.to_string()
}

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADER_PARTS
        .split_ascii_whitespace()
        .any(|part| name.contains(part))
}

/// `scheme://user:pass@host` becomes `scheme://[REDACTED]@host`. When the
/// argument may have been cut, an authority running to its end is redacted
/// whole: its '@' may have been beyond the cut.
fn redact_userinfo(s: &str, may_be_cut: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '\\'));
        let authority = &tail[..end.unwrap_or(tail.len())];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str(REDACTED);
                rest = &tail[at..];
            }
            None if may_be_cut && end.is_none() && !authority.is_empty() => {
                out.push_str(REDACTED);
                rest = "";
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The credential after an authorization scheme word (`Bearer eyJ…`,
/// `basic dXNlcjpwYXNz`), up to whitespace, a quote or punctuation that
/// cannot be part of it.
fn redact_after_scheme(s: &str, scheme: &str) -> String {
    // ASCII lowercasing keeps every byte offset (and char boundary) of `s`.
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (at, _) in lower.match_indices(scheme) {
        if at < copied || (at > 0 && lower.as_bytes()[at - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let after = at + scheme.len();
        let gap = lower[after..].len() - lower[after..].trim_start_matches([' ', '\t']).len();
        if gap == 0 {
            continue;
        }
        let start = after + gap;
        let end = s[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ',' | ';' | ')' | '}' | ']')
            })
            .map_or(s.len(), |i| start + i);
        if end > start {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// `name=value` with a secret-like name, anywhere in the argument.
fn redact_pairs(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(off) = s[from..].find('=') {
        let eq = from + off;
        from = eq + 1;
        let mut start = eq;
        while start > copied && is_name_byte(b[start - 1]) {
            start -= 1;
        }
        let name = s[start..eq].trim_start_matches('-');
        if name.is_empty() || !is_secret_name(name) {
            continue;
        }
        let mut value_start = eq + 1;
        let value_end = if start == 0 || b[start - 1] == b'=' {
            // An assignment or option value: everything after it is the value.
            s.len()
        } else if let Some(&quote @ (b'"' | b'\'')) = b.get(value_start) {
            value_start += 1;
            s[value_start..]
                .find(quote as char)
                .map_or(s.len(), |i| value_start + i)
        } else {
            s[value_start..]
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | ',' | ';' | '"' | '\''))
                .map_or(s.len(), |i| value_start + i)
        };
        if value_end > value_start {
            out.push_str(&s[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
            from = value_end;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// Bytes of an option, variable or parameter name.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Does a name say its value is a credential? Split into words at
/// punctuation and camelCase (`X-Auth-Token`, `db.password`, `apiKey`,
/// `AWS_SECRET_ACCESS_KEY`), trailing digits dropped (`password2`): secret-like
/// when a word is in [`SECRET_WORDS`] or ends with a [`SECRET_SUFFIXES`]
/// entry, unless the first word makes it a switch or the last word says the
/// value only describes the secret (file, type, id, limit…).
fn is_secret_name(name: &str) -> bool {
    if name == "PWD" {
        return false; // the shell's working directory
    }
    let words = name_words(name);
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return false;
    };
    let secret_id = last == "id" && words.len() > 1 && words[words.len() - 2] == "secret";
    if listed(NOT_SECRET_FIRST, first) || (listed(NOT_SECRET_LAST, last) && !secret_id) {
        return false;
    }
    words.iter().any(|w| {
        listed(SECRET_WORDS, w)
            || SECRET_SUFFIXES
                .split_ascii_whitespace()
                .any(|s| w.ends_with(s))
    })
}

/// Lowercase ASCII words of a name: split at anything not alphanumeric and at
/// camelCase humps ("XAuthToken" → x, auth, token), trailing digits dropped.
fn name_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut word));
            continue;
        }
        if c.is_ascii_uppercase() && !word.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase() || prev.is_ascii_digit() || next_lower {
                words.push(std::mem::take(&mut word));
            }
        }
        word.push(c.to_ascii_lowercase());
    }
    words.push(word);
    words
        .into_iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::format_cmdline;

    /// The arguments after redaction.
    fn redact(args: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        redact_args(&mut args, false);
        args
    }

    #[track_caller]
    fn assert_kept(args: &[&str]) {
        assert_eq!(redact(args), args, "must stay unchanged");
    }

    #[test]
    fn redacts_the_value_after_secret_options() {
        for flag in [
            "--password",
            "--passwd",
            "--pass",
            "--token",
            "--access-token",
            "--api-key",
            "--apikey",
            "--secret",
            "--client-secret",
            "--auth",
            "--oauth2-bearer",
            "--cookie",
            "--github-token",
            "--db_password",
            "--PASSWORD",
            "--Api-Key",
            "-token",
            "--tlspassword",
        ] {
            assert_eq!(
                redact(&["tool", flag, "hunter2", "next"]),
                ["tool", flag, REDACTED, "next"],
                "{flag}"
            );
        }
        // The value goes even when it looks like an option.
        assert_eq!(redact(&["t", "--token", "-x"]), ["t", "--token", REDACTED]);
        assert_kept(&["tool", "--token"]);
        assert_kept(&["tool", "--token", ""]);
    }

    #[test]
    fn keeps_options_that_only_look_secret() {
        assert_kept(&["server", "--port", "8080"]);
        assert_kept(&["llm", "--max-tokens", "1000", "--token-limit", "50"]);
        assert_kept(&["docker", "login", "--password-stdin", "registry.local"]);
        assert_kept(&[
            "tool",
            "--token-file",
            "/run/secrets/t",
            "--auth-type",
            "basic",
        ]);
        assert_kept(&["psql", "--no-password", "emr"]);
        assert_kept(&["ansible-playbook", "--ask-pass", "site.yml"]);
        assert_kept(&["tool", "--key-id", "k1", "--secret-name", "db-creds"]);
        assert_kept(&["git", "commit", "--author", "Bob <b@x>"]);
        assert_kept(&["hf", "--tokenizer", "gpt2", "--keyboard-layout", "us"]);
        assert_kept(&["curl", "--anyauth", "--basic", "https://h/"]);
    }

    #[test]
    fn redacts_equals_forms_of_secret_options() {
        for (arg, expected) in [
            ("--password=hunter2", "--password=[REDACTED]"),
            ("--API-KEY=k", "--API-KEY=[REDACTED]"),
            ("--access-token=t", "--access-token=[REDACTED]"),
            ("--db_password=p", "--db_password=[REDACTED]"),
            ("--ssh_key=k", "--ssh_key=[REDACTED]"),
            ("--vault-secret=s", "--vault-secret=[REDACTED]"),
            ("--clientSecret=s", "--clientSecret=[REDACTED]"),
            (
                "-Dspring.datasource.password=p",
                "-Dspring.datasource.password=[REDACTED]",
            ),
            ("--secret-id=s", "--secret-id=[REDACTED]"),
            ("--password=a b&c", "--password=[REDACTED]"),
        ] {
            assert_eq!(redact(&["tool", arg]), ["tool", expected], "{arg}");
        }
        assert_kept(&[
            "tool",
            "--keyboard-layout=us",
            "--auth-type=basic",
            "--author=bob",
            "--tokenizer=gpt2",
            "--password=",
            "--max-tokens=10",
            "--password-file=/run/secrets/db",
            "--role-id=r",
        ]);
    }

    #[test]
    fn user_password_pairs_are_redacted_whole() {
        assert_eq!(
            redact(&["curl", "-u", "alice:s3cret", "https://h/"]),
            ["curl", "-u", REDACTED, "https://h/"]
        );
        // The key may be the user part (Stripe style).
        assert_eq!(
            redact(&["curl", "-u", "sk_live_abc:"]),
            ["curl", "-u", REDACTED]
        );
        assert_eq!(redact(&["curl", "-ualice:pw"]), ["curl", "-u[REDACTED]"]);
        assert_eq!(
            redact(&["curl", "--user", "a:b", "--proxy-user", "c:d", "-U", "e:f"]),
            [
                "curl",
                "--user",
                REDACTED,
                "--proxy-user",
                REDACTED,
                "-U",
                REDACTED
            ]
        );
        assert_eq!(
            redact(&["wget", "--user=a:b", "--http-user=bob"]),
            ["wget", "--user=[REDACTED]", "--http-user=bob"]
        );
        // A bare user name is not a credential; -u and --user are also switches.
        assert_kept(&["mysql", "-u", "root", "emr"]);
        assert_kept(&["python3", "-u", "server.py"]);
        assert_kept(&["systemctl", "--user", "start", "mcp.service"]);
        assert_kept(&["pip", "install", "--user", "requests"]);
        assert_kept(&["tool", "-url=http://h/"]);
    }

    #[test]
    fn mysql_glued_password_but_not_ports() {
        assert_eq!(
            redact(&["/usr/bin/mysql", "-u", "root", "-ps3cret", "emr"]),
            ["/usr/bin/mysql", "-u", "root", "-p[REDACTED]", "emr"]
        );
        assert_eq!(
            redact(&["mariadb-dump", "-pX"]),
            ["mariadb-dump", "-p[REDACTED]"]
        );
        // Bare -p: mysql prompts; elsewhere a port or a switch.
        assert_kept(&["mysql", "-p", "emr"]);
        assert_kept(&["ssh", "-p", "2222", "host"]);
        assert_kept(&["server", "-p", "8080"]);
        assert_kept(&["docker", "run", "-p", "8080:80", "-p8443:443", "img"]);
        assert_kept(&["find", ".", "-print", "-perm", "600"]);
        assert_kept(&["mkdir", "-p", "/tmp/x"]);
    }

    #[test]
    fn program_specific_password_options() {
        assert_eq!(
            redact(&["sshpass", "-p", "pw", "ssh", "h"]),
            ["sshpass", "-p", REDACTED, "ssh", "h"]
        );
        assert_eq!(
            redact(&["redis-cli", "-a", "pw", "PING"]),
            ["redis-cli", "-a", REDACTED, "PING"]
        );
        assert_eq!(
            redact(&["http", "-a", "u:p", "https://h/"]),
            ["http", "-a", REDACTED, "https://h/"]
        );
        assert_eq!(
            redact(&["curl", "-b", "session=abc", "https://h/"]),
            ["curl", "-b", REDACTED, "https://h/"]
        );
        assert_kept(&["gunicorn", "-b", "0.0.0.0:8000", "app:app"]);
        assert_kept(&["ls", "-a", "/tmp"]);
        assert_kept(&["git", "checkout", "-b", "topic"]);
    }

    #[test]
    fn redacts_values_of_secret_headers_only() {
        for header in [
            "Authorization: Bearer abc",
            "Proxy-Authorization: Basic dTpw",
            "Cookie: sid=abc",
            "X-Api-Key: k",
            "api-key:k",
            "X-Auth-Token: t",
            "PRIVATE-TOKEN: glpat-x",
            "Mcp-Session-Id: 1868a90c",
            "x-goog-api-key: k",
        ] {
            let (name, _) = header.split_once(':').unwrap();
            let r = redact(&["curl", "-H", header, "--header", header]);
            assert!(
                r[2].starts_with(name) && r[2].ends_with(REDACTED) && r[2] == r[4],
                "{header} → {r:?}"
            );
        }
        assert_eq!(
            redact(&["curl", "-H", "Authorization: Bearer abc"])[2],
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            redact(&["wget", "--header=X-Api-Key: k", "-HCookie: a=b"]),
            [
                "wget",
                "--header=X-Api-Key: [REDACTED]",
                "-HCookie: [REDACTED]"
            ]
        );
        assert_kept(&[
            "curl",
            "-H",
            "Accept: application/json",
            "-H",
            "Content-Type: application/json",
            "--header=User-Agent: mcp/1.0",
            "-H",
            "X-Empty-Token;",
        ]);
        // Not a secret header, but a URL with userinfo in it still goes.
        assert_eq!(
            redact(&["curl", "-H", "Referer: https://u:p@h/"])[2],
            "Referer: https://[REDACTED]@h/"
        );
    }

    #[test]
    fn redacts_credentials_after_bearer_and_basic() {
        assert_eq!(
            redact(&[
                "python3",
                "-c",
                "requests.get(u, headers={'Authorization': 'Bearer eyJ.abc-_~+/='})"
            ])[2],
            "requests.get(u, headers={'Authorization': 'Bearer [REDACTED]'})"
        );
        assert_eq!(
            redact(&[
                "git",
                "-c",
                "http.extraheader=AUTHORIZATION: basic dXNlcjpwYXNz",
                "fetch"
            ])[2],
            "http.extraheader=AUTHORIZATION: basic [REDACTED]"
        );
        assert_eq!(
            redact(&["printf", "GET / HTTP/1.1\r\nWith: Bearer\tabc\r\n"])[1],
            "GET / HTTP/1.1\r\nWith: Bearer\t[REDACTED]\r\n"
        );
        assert_kept(&["http", "--auth-type", "bearer", "--oauth2-bearer"]);
        assert_kept(&["tool", "Bearer", "basically", "--basic-auth-file=/f"]);
    }

    #[test]
    fn redacts_url_userinfo() {
        for (arg, expected) in [
            ("https://user:pass@host/x", "https://[REDACTED]@host/x"),
            (
                "https://ghp_tok@github.com/o/r.git",
                "https://[REDACTED]@github.com/o/r.git",
            ),
            (
                "redis://:pw@cache:6379/0",
                "redis://[REDACTED]@cache:6379/0",
            ),
            (
                "--url=postgres://u:p@db/emr",
                "--url=postgres://[REDACTED]@db/emr",
            ),
            (
                "DATABASE_URL=mysql://u:p@db/emr",
                "DATABASE_URL=mysql://[REDACTED]@db/emr",
            ),
            (
                "a https://u:p@h1 b ftp://x@h2?q",
                "a https://[REDACTED]@h1 b ftp://[REDACTED]@h2?q",
            ),
            ("https://u:p@ss@h/", "https://[REDACTED]@h/"),
        ] {
            assert_eq!(redact(&["tool", arg]), ["tool", expected], "{arg}");
        }
        assert_kept(&[
            "tool",
            "http://host/path",
            "https://host:8443/@user",
            "https://h/?email=a@b.org",
            "git@github.com:o/r.git",
            "npx",
            "@modelcontextprotocol/server-github",
            "https://@h/",
        ]);
    }

    #[test]
    fn url_cut_before_its_at_is_redacted() {
        let mut args = vec!["git".to_string(), "https://deploy:ghp_SEC".to_string()];
        redact_args(&mut args, true);
        assert_eq!(args, ["git", "https://[REDACTED]"]);
        // Complete authority, or a complete argument: as usual.
        let mut args = vec!["https://h".to_string(), "https://h/a".to_string()];
        redact_args(&mut args, true);
        assert_eq!(args, ["https://h", "https://h/a"]);
    }

    #[test]
    fn redacts_secret_assignments() {
        for (arg, expected) in [
            ("API_KEY=abc", "API_KEY=[REDACTED]"),
            ("PGPASSWORD=pw", "PGPASSWORD=[REDACTED]"),
            ("GITHUB_TOKEN=ghp_x", "GITHUB_TOKEN=[REDACTED]"),
            (
                "AWS_SECRET_ACCESS_KEY=k",
                "AWS_SECRET_ACCESS_KEY=[REDACTED]",
            ),
            ("MYSQL_PWD=pw", "MYSQL_PWD=[REDACTED]"),
            ("db_credentials=x y", "db_credentials=[REDACTED]"),
            ("apiKey=k", "apiKey=[REDACTED]"),
            ("X_AUTH=k", "X_AUTH=[REDACTED]"),
            ("password2=k", "password2=[REDACTED]"),
            ("-eGITHUB_TOKEN=t", "-eGITHUB_TOKEN=[REDACTED]"),
            ("--env=API_KEY=a,b", "--env=API_KEY=[REDACTED]"),
        ] {
            assert_eq!(redact(&["env", arg, "tool"]), ["env", expected, "tool"]);
        }
        assert_eq!(
            redact(&[
                "docker",
                "run",
                "-e",
                "GITHUB_PERSONAL_ACCESS_TOKEN=ghp_x",
                "-e",
                "GITHUB_TOOLSETS"
            ]),
            [
                "docker",
                "run",
                "-e",
                "GITHUB_PERSONAL_ACCESS_TOKEN=[REDACTED]",
                "-e",
                "GITHUB_TOOLSETS"
            ]
        );
        assert_kept(&[
            "env",
            "KEYBOARD_LAYOUT=us",
            "TOKENIZERS_PARALLELISM=false",
            "AUTHOR=bob",
            "PWD=/home/x",
            "AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
            "SSH_AUTH_SOCK=/run/agent.sock",
            "MONKEY=1",
            "PATH=/usr/bin",
            "LANG=C.UTF-8",
            "tool",
        ]);
    }

    #[test]
    fn redacts_secret_parameters_inside_arguments() {
        for (arg, expected) in [
            (
                "https://h/v1?api_key=abc&page=2",
                "https://h/v1?api_key=[REDACTED]&page=2",
            ),
            (
                "https://b.blob/c?sv=2022&sig=abc%2F&se=1",
                "https://b.blob/c?sv=2022&sig=[REDACTED]&se=1",
            ),
            (
                "username=u,password=p,vers=3.0",
                "username=u,password=[REDACTED],vers=3.0",
            ),
            (
                "grant_type=client_credentials&client_id=c&client_secret=xyz",
                "grant_type=client_credentials&client_id=c&client_secret=[REDACTED]",
            ),
            (
                "import m; m.run(api_key='abc def', x=1)",
                "import m; m.run(api_key='[REDACTED]', x=1)",
            ),
            ("run --token=\"t\" now", "run --token=\"[REDACTED]\" now"),
            ("X-API-Key:abc", "X-API-Key:[REDACTED]"),
            ("token:=\"abc\"", "token:=[REDACTED]"),
            ("pass:hunter2", "pass:[REDACTED]"),
        ] {
            assert_eq!(redact(&["tool", arg]), ["tool", expected], "{arg}");
        }
        assert_kept(&[
            "tool",
            "https://h/v1?page=2&sort=asc",
            "localhost:8080",
            "ghcr.io/acme/mcp:latest",
            "a=b=c",
            "x==y",
        ]);
    }

    #[test]
    fn secret_name_words() {
        for name in [
            "password",
            "DB_PASSWORD",
            "PGPASSWORD",
            "XAuthToken",
            "x-api-key",
            "APIKey",
            "db.password",
            "oauth2-bearer",
            "SECRET_KEY_BASE",
            "secret_id",
            "authorization",
            "é-token-é",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "",
            "-",
            "port",
            "keyboard-layout",
            "author",
            "monkey",
            "bypass",
            "tokenizer",
            "max_tokens",
            "password-file",
            "auth-type",
            "no-auth",
            "AWS_ACCESS_KEY_ID",
            "PWD",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
        assert_eq!(name_words("XAuthToken2"), ["x", "auth", "token"]);
        assert_eq!(name_words("é-token-é"), ["token"]);
    }

    #[test]
    fn realistic_curl_command_line() {
        let args = [
            "curl",
            "-sS",
            "-X",
            "POST",
            "-H",
            "Authorization: Bearer sk-ant-SECRET1",
            "-H",
            "Content-Type: application/json",
            "-u",
            "svc:SECRET2",
            "--cookie",
            "sid=SECRET3",
            "-d",
            "{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\",\"id\":1}",
            "https://mcp:SECRET4@mcp.internal:8443/mcp?access_token=SECRET5&v=1",
        ];
        let expected = "curl -sS -X POST -H Authorization: [REDACTED] \
            -H Content-Type: application/json -u [REDACTED] --cookie [REDACTED] \
            -d {\"jsonrpc\":\"2.0\",\"method\":\"tools/list\",\"id\":1} \
            https://[REDACTED]@mcp.internal:8443/mcp?access_token=[REDACTED]&v=1";
        assert_eq!(redact(&args).join(" "), expected);
        let raw = args.join("\0") + "\0";
        assert_eq!(format_cmdline(raw.as_bytes(), false).unwrap(), expected);
    }
}
