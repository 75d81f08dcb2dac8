//! Masking in the pipeline: synthetic patient records in JSON results, SSE
//! events, text bodies and bodies that are not JSON-RPC reach neither the
//! client nor the audit; what the agent cannot mask is refused.

use serde_json::{Value, json};

use super::{Harness, one, post};
use crate::mask::{Masker, Profile};

const NAME: &str = "Maria Lopez";
const SSN: &str = "536-22-8741";
const DOB: &str = "1984-03-12";
const PHONE: &str = "(617) 432-1187";
const MRN: &str = "MRN-0042117";
const EMAIL: &str = "maria.lopez@example.org";

/// What must never come out, in any form the records might hold it.
const NEVER: [&str; 9] = [
    "Maria",
    "Lopez",
    SSN,
    "536228741",
    "432-1187",
    MRN,
    "0042117",
    "03-12",
    "example.org",
];

fn patients() -> Value {
    json!({"patients": [{
        "patient_name": NAME, "ssn": SSN, "dob": DOB, "phone": PHONE,
        "mrn": MRN, "email": EMAIL, "diagnosis": "E11.9"
    }]})
}

fn result(id: &Value) -> Value {
    let rows = patients();
    let csv = format!("patient_name,ssn,dob,diagnosis\n{NAME},{SSN},{DOB},E11.9\n");
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [
            {"type": "text", "text": serde_json::to_string_pretty(&rows).unwrap()},
            {"type": "text", "text": csv},
            {"type": "text", "text": format!("Hello from the EHR. Patient {NAME} (SSN {SSN}) called from {PHONE}.")}
        ],
        "structuredContent": rows
    }})
}

fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The scripted upstream's answers for this module's paths.
pub(super) fn respond(line: &str, body: &[u8]) -> Option<Vec<u8>> {
    let id = || -> Value {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(Value::Null)
    };
    let json_ct = "content-type: application/json\r\n";
    Some(match line {
        "POST /phi" => http(
            "200 OK",
            json_ct,
            &serde_json::to_vec(&result(&id())).unwrap(),
        ),
        "POST /phi-sse" => {
            let log = json!({"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": format!("paged {NAME} at {PHONE}")}});
            let events = format!(
                ": keep-alive for {NAME}\n\nevent: message\ndata: {log}\n\nevent: message\ndata: not json: {SSN}\n\nevent: message\ndata: {}\n\n",
                result(&id())
            );
            http(
                "200 OK",
                "content-type: text/event-stream\r\n",
                events.as_bytes(),
            )
        }
        "GET /phi-text" => http(
            "200 OK",
            "content-type: text/plain\r\n",
            format!("{NAME} {SSN}\n").as_bytes(),
        ),
        "POST /not-rpc" => http(
            "200 OK",
            json_ct,
            &serde_json::to_vec(&json!({"patient_name": NAME})).unwrap(),
        ),
        "POST /broken" => http(
            "200 OK",
            json_ct,
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"text":"SSN {SSN} for {NAME}"#,
                id()
            )
            .as_bytes(),
        ),
        "POST /gzip" => http(
            "200 OK",
            "content-type: application/json\r\ncontent-encoding: gzip\r\n",
            b"\x1f\x8b\x08\x00 not really",
        ),
        "GET /png" => http(
            "200 OK",
            "content-type: image/png\r\n",
            b"\x89PNG\r\n\x1a\n",
        ),
        "POST /deep" => {
            let depth = 10_000;
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}"SSN {SSN} for {NAME}"{}}}"#,
                id(),
                "[".repeat(depth),
                "]".repeat(depth)
            );
            http("200 OK", json_ct, body.as_bytes())
        }
        "POST /bad-utf8" => {
            let mut body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"text":"SSN {SSN} "#,
                id()
            )
            .into_bytes();
            body.extend_from_slice(b"\xff\xfe for Maria Lopez\"}}");
            http("200 OK", json_ct, &body)
        }
        "POST /huge" => {
            let text = format!("{NAME} {SSN} ").repeat((50 << 20) / 24);
            let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id(),
                "result": {"content": [{"type": "text", "text": text}]}}))
            .unwrap();
            http("200 OK", json_ct, &body)
        }
        "POST /bad-big" => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result": oops {}"#,
                id(),
                " ".repeat(2000)
            );
            http("200 OK", json_ct, body.as_bytes())
        }
        "POST /broken-big" => {
            let text = format!("{NAME} {SSN}\n").repeat(120_000);
            let mut body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"text":"{}"#,
                id(),
                text.replace('\n', "\\n")
            )
            .into_bytes();
            body.extend_from_slice(b"\"}, oops");
            http("200 OK", json_ct, &body)
        }
        "GET /phi-text-big" => http(
            "200 OK",
            "content-type: text/plain\r\n",
            format!("Hello. {NAME} {SSN}, {PHONE}\n")
                .repeat(200)
                .as_bytes(),
        ),
        "POST /phi-sse-cut" => {
            // the stream ends inside the event: no empty line after its data
            let events = format!("event: message\ndata: {}", result(&id()));
            http(
                "200 OK",
                "content-type: text/event-stream\r\n",
                events.as_bytes(),
            )
        }
        "POST /bad-sse-big" => {
            let events = format!(
                "event: message\ndata: not json: {}\n\n",
                format!("{NAME} {SSN} ").repeat(100)
            );
            http(
                "200 OK",
                "content-type: text/event-stream\r\n",
                events.as_bytes(),
            )
        }
        _ => return None,
    })
}

fn masker() -> Masker {
    Masker::new(Profile::safe_harbor(), b"pipeline test key".to_vec())
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.is_empty(), "nothing reached {what}");
    for phi in NEVER {
        assert!(!text.contains(phi), "{phi:?} reached {what}: {text}");
    }
}

/// Safe harbor, masking what is over 600 bytes as it streams.
fn streaming_masker() -> Masker {
    let mut profile = Profile::safe_harbor();
    profile.max_bytes = 600;
    profile.oversize = crate::mask::Oversize::Stream;
    Masker::new(profile, b"k".to_vec())
}

/// The body of the agent's 200 answer to `path`, checked clean.
async fn clean_answer(h: &Harness, path: &str) -> String {
    let resp = one(h.front, &post(path, LOOKUP, "")).await;
    assert_eq!(resp.head.status(), 200, "{path}");
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert_clean("the client", &text);
    text
}

/// The records of messages masked as they streamed: the first a patient
/// result matched to its request and masked, then one per `errors` (`None`:
/// whole; else a fragment of its error); nothing unmasked in the audit.
async fn assert_streamed(h: &mut Harness, errors: &[Option<&str>]) {
    let records = h.records().await;
    let streamed = streamed(&records);
    assert_eq!(streamed.len(), errors.len(), "{records:#?}");
    assert_eq!(
        streamed[0]["tool"], "lookup_patient",
        "matched to its request"
    );
    assert!(streamed[0]["masked"]["ssn"].as_u64() > Some(0));
    for (r, error) in streamed.iter().zip(errors) {
        match error {
            None => assert!(r["error"].is_null(), "{r:?}"),
            Some(cut) => assert!(
                r["error"].as_str().is_some_and(|e| e.contains(cut)),
                "{r:?}"
            ),
        }
    }
    assert_clean("the audit", &audit_files(h));
}

/// What the agent sends for `path` before it closes the connection (a cut
/// stream has no end for the response decoder to find).
async fn raw_exchange(h: &Harness, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(h.front).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &post(path, LOOKUP, ""))
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// The records of messages masked as they streamed, in order.
fn streamed(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            r["payload_omitted"]
                .as_str()
                .is_some_and(|p| p.starts_with("streamed"))
        })
        .collect()
}

/// Every byte the audit store wrote, as text.
fn audit_files(h: &Harness) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(h.audit_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all += &String::from_utf8_lossy(&std::fs::read(&path).unwrap());
        }
    }
    assert!(
        all.contains("\"kind\":\"request\""),
        "no records in the audit files"
    );
    all
}

const LOOKUP: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"lookup_patient","arguments":{"patient_name":"Maria Lopez","mrn":"MRN-0042117"}}}"#;

#[tokio::test]
async fn patient_records_reach_neither_the_client_nor_the_audit() {
    let mut h = Harness::masking(masker()).await;
    let resp = one(h.front, &post("/phi", LOOKUP, "")).await;
    assert_eq!(resp.head.status(), 200);
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert_clean("the client", &text);
    let v: Value = serde_json::from_str(&text).expect("still JSON");
    let r = &v["result"];
    // non-identifying content passes unchanged; dates keep their year
    assert_eq!(r["structuredContent"]["patients"][0]["diagnosis"], "E11.9");
    assert!(
        r["content"][2]["text"]
            .as_str()
            .unwrap()
            .starts_with("Hello from the EHR.")
    );
    assert!(text.contains("1984"), "{text}");
    // both copies of the rows come out masked alike
    let pretty: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(pretty, r["structuredContent"]);

    // the server got the arguments as the client sent them
    assert!(h.seen()[0].body == LOOKUP.as_bytes());

    let records = h.records().await;
    let request = records.iter().find(|r| r["kind"] == "request").unwrap();
    let args = &request["payload"]["params"]["arguments"];
    assert_eq!(args.as_object().unwrap().len(), 2, "{request}");
    assert_ne!(args["mrn"], MRN);
    assert_eq!(request["size"], LOOKUP.len());
    let response = records.iter().find(|r| r["kind"] == "response").unwrap();
    assert_eq!(
        response["payload"], v,
        "the record keeps what the client got"
    );
    let masked = response["masked"].as_object().unwrap();
    for kind in ["name", "ssn", "date", "phone", "mrn", "email"] {
        assert!(
            masked.get(kind).and_then(Value::as_u64) > Some(0),
            "{kind}: {masked:?}"
        );
    }
    assert_clean("the audit", &audit_files(&h));
}

#[tokio::test]
async fn every_event_of_a_stream_is_masked() {
    let mut h = Harness::masking(masker()).await;
    let resp = one(h.front, &post("/phi-sse", LOOKUP, "")).await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert_clean("the client", &text);
    assert!(text.contains("E11.9") && text.contains("paged "), "{text}");
    let records = h.records().await;
    let log = records
        .iter()
        .find(|r| r["method"] == "notifications/message")
        .expect("the log notification is recorded");
    assert!(log["masked"]["phone"].as_u64() > Some(0), "{log}");
    assert_clean("the audit", &audit_files(&h));
}

#[tokio::test]
async fn bodies_that_are_not_json_rpc_are_masked_as_text() {
    let mut h = Harness::masking(masker()).await;
    let plain = one(h.front, b"GET /phi-text HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(plain.head.status(), 200);
    assert_clean("the client", &String::from_utf8_lossy(&plain.body));
    for path in ["/not-rpc", "/broken"] {
        let resp = one(h.front, &post(path, LOOKUP, "")).await;
        assert_clean("the client", &String::from_utf8_lossy(&resp.body));
    }
    let records = h.records().await;
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "http" && r["masked"]["ssn"] == 1),
        "{records:?}"
    );
    assert_clean("the audit", &audit_files(&h));
}

#[tokio::test]
async fn what_cannot_be_masked_is_refused() {
    let mut profile = Profile::safe_harbor();
    profile.max_bytes = 600;
    let mut h = Harness::masking(Masker::new(profile, b"k".to_vec())).await;

    for (request, why) in [
        (post("/gzip", LOOKUP, ""), "\"gzip\"-encoded"),
        (
            b"GET /png HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            "\"image/png\" response cannot be masked",
        ),
        // the patient result is over 600 bytes
        (post("/phi", LOOKUP, ""), "larger than the 600 bytes"),
    ] {
        let resp = one(h.front, &request).await;
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_clean("the client", &text);
        let v: Value = serde_json::from_str(&text).expect("a JSON-RPC error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
        if why.starts_with("larger") {
            assert_eq!(v["id"], 3, "the error answers the request");
            assert_eq!(resp.head.status(), 200);
        } else {
            assert_eq!(resp.head.status(), 502);
        }
    }
    let records = h.records().await;
    let refused = records
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("not forwarded"))
        })
        .count();
    assert_eq!(refused, 3, "{records:#?}");
    assert_clean("the audit", &audit_files(&h));
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_outcome_and_nothing_unmasked() {
    let mut h = Harness::masking(masker()).await;
    // 10k-deep nesting and invalid UTF-8: not JSON-RPC to the decoder, masked as text
    for path in ["/deep", "/bad-utf8"] {
        let resp = one(h.front, &post(path, LOOKUP, "")).await;
        assert_eq!(resp.head.status(), 200, "{path}");
        assert_clean(path, &String::from_utf8_lossy(&resp.body));
    }
    // a 50 MB string: over the profile's 16 MiB, refused with a JSON-RPC error
    let resp = one(h.front, &post("/huge", LOOKUP, "")).await;
    let v: Value = serde_json::from_slice(&resp.body).expect("a JSON-RPC error");
    assert_eq!(v["id"], 3);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was not forwarded"),
        "{v}"
    );
    let records = h.records().await;
    assert!(
        records.iter().any(|r| r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not JSON-RPC"))),
        "{records:?}"
    );
    assert_clean("the audit", &audit_files(&h));
}

#[tokio::test]
async fn oversize_stream_masks_a_large_body_as_it_streams() {
    let mut h = Harness::masking(streaming_masker()).await;
    let text = clean_answer(&h, "/phi").await;
    let v: Value = serde_json::from_str(&text).expect("the same JSON document");
    assert_eq!(v["id"], 3);
    assert_eq!(
        v["result"]["structuredContent"]["patients"][0]["diagnosis"],
        "E11.9"
    );

    // not JSON from the start: refused before anything is sent
    let resp = one(h.front, &post("/bad-big", LOOKUP, "")).await;
    assert_eq!(resp.head.status(), 502);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["id"], 3, "{v}");

    // bad JSON after megabytes: the stream ends without its last chunk
    let raw = raw_exchange(&h, "/broken-big").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.len() > 1 << 20,
        "pieces went out as they were masked: {} {}",
        raw.len(),
        &raw[..raw.len().min(300)]
    );
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "a cut body must not look whole"
    );
    assert_clean("the client", &raw);

    assert_streamed(&mut h, &[None, Some("streamed masking")]).await;
}

#[tokio::test]
async fn oversize_stream_masks_a_large_sse_event_as_it_arrives() {
    use crate::http::{SseItem, SseParser};
    let mut h = Harness::masking(streaming_masker()).await;
    let text = clean_answer(&h, "/phi-sse").await;
    // the stream reads as the same events; the result is one whole response
    let items = SseParser::new().feed(text.as_bytes()).unwrap();
    let results: Vec<Value> = items
        .iter()
        .filter_map(|item| match item {
            SseItem::Event(e) => serde_json::from_str::<Value>(e.data.as_deref()?).ok(),
            _ => None,
        })
        .filter(|v| v.get("result").is_some())
        .collect();
    assert_eq!(results.len(), 1, "{text}");
    assert_eq!(results[0]["id"], 3);
    assert_eq!(
        results[0]["result"]["structuredContent"]["patients"][0]["diagnosis"],
        "E11.9"
    );
    // the events under the limit are masked whole, as without streaming
    assert!(text.contains("paged "), "{text}");

    // a large event that is not JSON: the stream is cut, nothing unmasked sent
    // a stream that ends inside a large event: the event is recorded as cut
    let cut = clean_answer(&h, "/phi-sse-cut").await;
    let items = SseParser::new().feed(cut.as_bytes()).unwrap();
    assert!(
        !items.iter().any(|i| matches!(i, SseItem::Event(_))),
        "{items:?}"
    );

    let raw = raw_exchange(&h, "/bad-sse-big").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "a cut stream must not look whole"
    );
    for phi in NEVER {
        assert!(!raw.contains(phi), "{phi:?} reached the client: {raw}");
    }

    assert_streamed(
        &mut h,
        &[
            None,
            Some("ended inside a streamed event"),
            Some("streamed masking of an event"),
        ],
    )
    .await;
}

#[tokio::test]
async fn oversize_stream_masks_a_large_text_body_as_it_streams() {
    let mut h = Harness::masking(streaming_masker()).await;
    clean_answer(&h, "/phi").await;
    let resp = one(h.front, b"GET /phi-text-big HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(resp.head.status(), 200);
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert_clean("the client", &text);
    assert_eq!(text.matches("Hello.").count(), 200, "{text}");
    let records = h.records().await;
    let streamed = streamed(&records);
    assert_eq!(streamed.len(), 2, "{records:#?}");
    assert_eq!(streamed[1]["kind"], "http");
    assert_eq!(streamed[1]["http"], "GET /phi-text-big");
    assert_eq!(streamed[1]["masked"]["ssn"], 200);
    assert!(streamed[1]["error"].is_null());
    assert_clean("the audit", &audit_files(&h));
}
