//! The engine end to end on messages: scopes, key rules in JSON, CSV and
//! markdown, escapes, embedded documents, actions, media, in-place writes
//! and bad input.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::*;

fn masker() -> Masker {
    Masker::new(Profile::safe_harbor(), b"test-key".to_vec())
}

fn masker_with(f: impl FnOnce(&mut Profile)) -> Masker {
    let mut p = Profile::safe_harbor();
    f(&mut p);
    Masker::new(p, b"test-key".to_vec())
}

fn mask_str(m: &Masker, s: &str) -> (String, Masked<'static>) {
    let owned: &'static [u8] = Box::leak(s.as_bytes().to_vec().into_boxed_slice());
    let out = m.mask_json_bytes(owned);
    (String::from_utf8(out.bytes.to_vec()).unwrap(), out)
}

fn tool_result(structured: Value) -> String {
    let text = serde_json::to_string_pretty(&structured).unwrap();
    json!({"jsonrpc": "2.0", "id": 7, "result": {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": false
    }})
    .to_string()
}

/// Python's `json.dumps` (the SDK's text copy) writes non-ASCII as `\u`
/// escapes, which the message then holds doubled: `Jos\\u00e9`.
#[test]
fn ascii_escaped_text_copies_are_masked_like_the_structured_one() {
    let m = masker();
    let structured = json!({"rows": [{"patient_name": "José García", "note": "Seen by Dr. Núñez, call 617-555-0123"}]});
    let pretty = serde_json::to_string_pretty(&structured).unwrap();
    let ascii: String = pretty
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{:04x}", c as u32)
            }
        })
        .collect();
    assert!(ascii.contains("Jos\\u00e9"));
    let message = json!({"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": ascii}],
        "structuredContent": structured,
    }})
    .to_string();
    let (out, masked) = mask_str(&m, &message);
    let v: Value = serde_json::from_str(&out).unwrap();
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    let copy: Value = serde_json::from_str(text).unwrap();
    let sc = &v["result"]["structuredContent"]["rows"][0];
    let stars = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|c| c == b'*'))
    };
    assert!(stars(&sc["patient_name"]), "{sc}");
    // one star per byte of the doubled escapes the message holds
    assert_eq!(
        copy["rows"][0]["patient_name"].as_str().map(str::len),
        Some(23),
        "{copy}"
    );
    assert!(stars(&copy["rows"][0]["patient_name"]), "{copy}");
    assert!(
        !text.contains("Garc") && !text.contains("617-555"),
        "{text}"
    );
    assert_eq!(masked.counts.get(&Entity::Name), 4);
    assert_eq!(masked.counts.get(&Entity::Phone), 2);
}

#[test]
fn tool_result_structured_and_embedded_copies_mask_alike() {
    let m = masker();
    let patient = json!({"patients": [{
        "patient_name": "Jane Q. Doe", "ssn": "123-45-6789", "dob": "1980-03-14",
        "diagnosis": "E11.9", "note": "Call 617-555-0123 re: follow-up", "zip": "02139"
    }]});
    let (out, masked) = mask_str(&m, &tool_result(patient));
    assert_eq!(masked.outcome, Outcome::Json);
    assert!(
        masked.same_length,
        "every action in safe-harbor keeps the length"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let sc = &v["result"]["structuredContent"]["patients"][0];
    assert_eq!(sc["patient_name"], "***********");
    assert_eq!(sc["ssn"], "***********");
    assert_eq!(sc["dob"], "1980-**-**");
    assert_eq!(sc["diagnosis"], "E11.9");
    assert_eq!(sc["note"], "Call ************ re: follow-up");
    assert_eq!(sc["zip"], "021**");
    let embedded: Value =
        serde_json::from_str(v["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        &embedded["patients"][0], sc,
        "the text copy is masked like the structured one"
    );
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\n  "),
        "pretty style kept"
    );
    assert_eq!(masked.counts.get(&Entity::Ssn), 2);
    assert_eq!(masked.counts.get(&Entity::Name), 2);
    assert_eq!(masked.counts.get(&Entity::Phone), 2);
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
}

#[test]
fn protocol_fields_and_descriptors_are_not_masked() {
    let m = masker();
    let req = json!({"jsonrpc": "2.0", "id": "123-45-6789", "method": "tools/call",
        "params": {"name": "lookup_patient", "arguments": {"name": "John Smith", "mrn": "A1234"},
                   "_meta": {"progressToken": "617-555-0123"}}})
    .to_string();
    let (out, _) = mask_str(&m, &req);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], "123-45-6789", "ids are protocol");
    assert_eq!(v["params"]["name"], "lookup_patient");
    assert_eq!(v["params"]["_meta"]["progressToken"], "617-555-0123");
    assert_eq!(v["params"]["arguments"]["name"], "**********");
    assert_eq!(v["params"]["arguments"]["mrn"], "*****");

    let list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{
        "name": "get_ssn", "description": "Looks up a patient",
        "inputSchema": {"type": "object", "properties": {"ssn": {"type": "string"}, "name": {"type": "string"}}}
    }]}})
    .to_string();
    let (out, masked) = mask_str(&m, &list);
    assert_eq!(
        out, list,
        "tool lists and schemas keep their names and types"
    );
    assert!(masked.counts.is_empty());
}

#[test]
fn errors_notifications_and_elicitation() {
    let m = masker();
    let cases = [
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "No record for SSN 123-45-6789",
            "data": {"email": "jane@example.org"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "logger": "db",
            "data": "fetched Jane Doe, DOB 03/14/1980"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 5, "progress": 1,
            "message": "exporting jane@example.org"}}),
        json!({"jsonrpc": "2.0", "id": 9, "method": "elicitation/create", "params": {
            "message": "Confirm phone (617) 555-0123?", "requestedSchema": {"type": "object",
            "properties": {"phone": {"type": "string"}}}}}),
    ];
    for msg in cases {
        let text = msg.to_string();
        let (out, masked) = mask_str(&m, &text);
        for secret in [
            "123-45-6789",
            "jane@example.org",
            "Jane Doe",
            "03/14",
            "555-0123",
        ] {
            assert!(!out.contains(secret), "{secret} leaked in {out}");
        }
        assert!(!masked.counts.is_empty());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
    }
    let (out, _) = mask_str(
        &m,
        &json!({"jsonrpc": "2.0", "method": "notifications/message",
        "params": {"level": "info", "data": "ok"}})
        .to_string(),
    );
    assert!(out.contains(r#""level":"info""#));
}

#[test]
fn escapes_do_not_hide_identifiers() {
    let m = masker();
    let raw = r#"{"jsonrpc":"2.0","id":1,"result":{"text":"SSN 123\u002d45\u002D6789 and caf\u00e9 Jane Doe"}}"#;
    let (out, masked) = mask_str(&m, raw);
    assert!(masked.same_length, "stars fill each escape's encoded bytes");
    assert_eq!(out.len(), raw.len());
    let v: Value = serde_json::from_str(&out).unwrap();
    let text = v["result"]["text"].as_str().unwrap();
    assert!(text.starts_with("SSN ") && !text.contains("6789"), "{text}");
    assert!(
        text.contains("café"),
        "untouched escapes decode as before: {text}"
    );
    assert_eq!(masked.counts.get(&Entity::Ssn), 1);
}

#[test]
fn multibyte_values_keep_valid_utf8_and_length() {
    let m = masker();
    let raw = r#"{"patient_name":"José Ñúñez 山田太郎","note":"Dr. Ólafur Þórsson saw her"}"#;
    let (out, masked) = mask_str(&m, raw);
    assert!(masked.same_length);
    assert_eq!(out.len(), raw.len());
    let v: Value = serde_json::from_str(&out).unwrap();
    let name = v["patient_name"].as_str().unwrap();
    assert_eq!(name.len(), "José Ñúñez 山田太郎".len());
    assert!(name.bytes().all(|b| b == b'*'));
    assert!(v["note"].as_str().unwrap().starts_with("Dr. ***"));
}

#[test]
fn csv_and_markdown_in_text_content() {
    let m = masker();
    let csv = "mrn,first_name,last_name,dob,diagnosis\n00123,Ann,Lee,1950-01-02,I10\n00124,\"Bo, Jr\",Ng,1961-12-31,E11.9\n";
    let md = "| Name | Phone | Dx |\n|------|-------|----|\n| Zed Quorin | 555-0100 | J45 |\n";
    for (text, kept, gone) in [
        (
            csv,
            vec!["I10", "E11.9", "mrn,first_name"],
            vec!["00123", "Ann", "Bo, Jr", "1950-01", "Ng,"],
        ),
        (
            md,
            vec!["J45", "| Name | Phone | Dx |"],
            vec!["Zed", "Quorin", "555-0100"],
        ),
    ] {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}}).to_string();
        let (out, masked) = mask_str(&m, &msg);
        let v: Value = serde_json::from_str(&out).unwrap();
        let t = v["result"]["content"][0]["text"].as_str().unwrap();
        assert_eq!(t.len(), text.len());
        assert_eq!(t.lines().count(), text.lines().count());
        for k in kept {
            assert!(t.contains(k), "{k} should stay in {t}");
        }
        for g in gone {
            assert!(!t.contains(g), "{g} should be masked in {t}");
        }
        assert!(masked.same_length);
    }
}

#[test]
fn textual_blobs_are_masked_and_binary_ones_left() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let m = masker();
    let csv = "ssn,dx\n123-45-6789,I10\n";
    let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"contents": [
        {"uri": "file:///r.csv", "mimeType": "text/csv", "blob": b64.encode(csv)},
        {"uri": "file:///r.bin", "mimeType": "application/octet-stream", "blob": b64.encode("123-45-6789")}
    ]}})
    .to_string();
    let (out, masked) = mask_str(&m, &msg);
    let v: Value = serde_json::from_str(&out).unwrap();
    let blob = b64
        .decode(v["result"]["contents"][0]["blob"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(blob).unwrap(),
        "ssn,dx\n***********,I10\n"
    );
    assert_eq!(
        v["result"]["contents"][1]["blob"],
        b64.encode("123-45-6789")
    );
    assert!(masked.same_length);
}

#[test]
fn images_and_audio_follow_the_policy() {
    let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [
        {"type": "text", "text": "before"},
        {"type": "image", "mimeType": "image/png", "data": "iVBORw0KGgo123-45-6789"},
        {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
        {"type": "text", "text": "after"}
    ]}})
    .to_string();
    let content = |m: &Masker| {
        let (out, masked) = mask_str(m, &msg);
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["result"]["content"].as_array().unwrap().clone(), masked)
    };
    let (items, masked) = content(&masker());
    assert_eq!(items.len(), 4);
    assert_eq!(items[1], json!({"type": "text", "text": "[image removed]"}));
    assert_eq!(items[2], json!({"type": "text", "text": "[audio removed]"}));
    assert_eq!(masked.counts.get(&Entity::Image), 1);
    assert!(!masked.same_length);

    let (items, _) = content(&masker_with(|p| {
        p.images = MediaPolicy::Drop;
        p.audio = MediaPolicy::Drop;
    }));
    assert_eq!(
        items,
        vec![
            json!({"type": "text", "text": "before"}),
            json!({"type": "text", "text": "after"})
        ]
    );

    let (items, masked) = content(&masker_with(|p| p.images = MediaPolicy::Keep));
    assert_eq!(
        items[1]["data"], "iVBORw0KGgo123-45-6789",
        "kept images are not scanned as text"
    );
    assert_eq!(masked.counts.get(&Entity::Image), 0);

    // Dropping the last items removes the comma before them.
    let tail = json!({"content": [{"type": "text", "text": "a"}, {"type": "image", "data": "x"}, {"type": "audio", "data": "y"}]});
    let m = masker_with(|p| {
        p.images = MediaPolicy::Drop;
        p.audio = MediaPolicy::Drop;
    });
    let (out, _) = mask_str(&m, &tail.to_string());
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"content": [{"type": "text", "text": "a"}]})
    );
}

#[test]
fn each_action_on_the_wire() {
    let msg = r#"{"ssn":"123-45-6789","name":"Jane Doe","dob":"03/14/1980","zip":"02139","phone":"617-555-0123","mrn":12345678}"#;
    let run = |entity: Entity, action: Action| {
        let m = masker_with(|p| p.set_action(&entity, action));
        let (out, masked) = mask_str(&m, msg);
        (
            serde_json::from_str::<Value>(&out).unwrap(),
            masked.same_length,
        )
    };
    let (v, same) = run(Entity::Ssn, Action::Partial { keep: 4 });
    assert_eq!(v["ssn"], "*******6789");
    assert!(same);
    let (v, same) = run(Entity::Ssn, Action::Tag);
    assert_eq!(v["ssn"], "[SSN]");
    assert!(!same);
    let (v, _) = run(Entity::Name, Action::Hash);
    let h = v["name"].as_str().unwrap().to_owned();
    assert!(h.starts_with("[NAME:") && h.len() == 15, "{h}");
    let (v2, _) = run(Entity::Name, Action::Hash);
    assert_eq!(v2["name"], h.as_str(), "stable for the same value and key");
    let (v, same) = run(Entity::Phone, Action::Null);
    assert_eq!(v["phone"], Value::Null);
    assert!(same, "null is padded with spaces to the string's length");
    let (v, _) = run(Entity::Date, Action::Year);
    assert_eq!(v["dob"], "**/**/1980");
    let (v, _) = run(Entity::Zip, Action::Zip3);
    assert_eq!(v["zip"], "021**");
    let (v, same) = run(Entity::Mrn, Action::Redact);
    assert_eq!(v["mrn"], Value::Null, "numbers cannot hold stars");
    assert!(same);
    let (v, _) = run(Entity::Mrn, Action::Tag);
    assert_eq!(v["mrn"], "[MRN]");
}

#[test]
fn null_inside_free_text_falls_back_to_stars() {
    let m = masker_with(|p| p.set_action(&Entity::Ssn, Action::Null));
    let (out, _) = mask_str(&m, r#"{"note":"ssn 123-45-6789"}"#);
    assert_eq!(out, r#"{"note":"ssn ***********"}"#);
}

#[test]
fn custom_patterns_and_disabled_kinds() {
    let m = masker_with(|p| {
        p.add_pattern("acme", r"ACME-\d{5}", None, Some(Action::Tag))
            .unwrap();
        p.disable(&Entity::Email);
    });
    let (out, masked) = mask_str(&m, r#"{"note":"chart ACME-12345, mail a@b.co"}"#);
    assert_eq!(out, r#"{"note":"chart [ACME], mail a@b.co"}"#);
    assert_eq!(masked.counts.get(&Entity::Custom("acme".into())), 1);
}

#[test]
fn key_rule_objects_and_arrays_mask_everything_below() {
    let m = masker();
    let (out, masked) = mask_str(
        &m,
        r#"{"address":{"line":"12 Elm St","zip":"02139"},"phones":["617-555-0123","n/a"],"age":93,"other_age":40}"#,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["address"]["line"], "*********");
    assert_eq!(
        v["address"]["zip"], "021**",
        "a nested rule of its own wins"
    );
    assert_eq!(v["phones"], json!(["************", "***"]));
    assert_eq!(
        v["age"], "",
        "a two-digit number keeps its length as an empty string"
    );
    assert_eq!(v["other_age"], 40);
    assert_eq!(masked.counts.get(&Entity::Age), 1);
}

#[test]
fn in_place_writes_into_the_buffer() {
    let m = masker();
    let raw = br#"{"jsonrpc":"2.0","id":1,"result":{"ssn":"123-45-6789"}}"#;
    let mut buf = raw.to_vec();
    let ptr = buf.as_ptr();
    let report = m.mask_json_in_place(&mut buf);
    assert!(report.same_length);
    assert_eq!(buf.as_ptr(), ptr, "no reallocation");
    assert_eq!(
        buf,
        br#"{"jsonrpc":"2.0","id":1,"result":{"ssn":"***********"}}"#.to_vec()
    );

    let m = masker_with(|p| p.set_action(&Entity::Ssn, Action::Tag));
    let mut buf = raw.to_vec();
    let report = m.mask_json_in_place(&mut buf);
    assert!(!report.same_length);
    assert_eq!(
        buf,
        br#"{"jsonrpc":"2.0","id":1,"result":{"ssn":"[SSN]"}}"#.to_vec()
    );
}

#[test]
fn unchanged_input_is_borrowed() {
    let m = masker();
    let raw = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Hello! Diagnosis code E11.9."}]}}"#;
    let out = m.mask_json_bytes(raw);
    assert!(matches!(out.bytes, Cow::Borrowed(_)));
    assert!(out.counts.is_empty());
}

#[test]
fn mask_value_matches_mask_json_bytes() {
    let m = masker();
    let msg = tool_result(
        json!({"name": "Jane Doe", "dob": "1980-03-14", "note": "SSN 123-45-6789, Dx E11.9",
        "image": {"type": "image", "data": "AAAA", "mimeType": "image/png"}}),
    );
    let (out, masked) = mask_str(&m, &msg);
    let mut v: Value = serde_json::from_str(&msg).unwrap();
    let report = m.mask_value(&mut v);
    assert_eq!(v, serde_json::from_str::<Value>(&out).unwrap());
    assert_eq!(report.counts, masked.counts);
    assert_eq!(report.outcome, Outcome::Json);
}

#[test]
fn mask_text_free_text() {
    let m = masker();
    let note = "Pt Jane Doe (DOB 03/14/1980) seen by Dr. Okafor. MRN: 00123456. Email jane@x.org, 92-year-old.";
    let out = m.mask_text(note);
    for secret in [
        "Jane",
        "Doe",
        "03/14",
        "Okafor",
        "00123456",
        "jane@x.org",
        "92-",
    ] {
        assert!(!out.text.contains(secret), "{secret} leaked: {}", out.text);
    }
    assert!(out.text.contains("1980") && out.text.contains("Dr. "));
    assert_eq!(out.text.len(), note.len());
}

#[test]
fn invalid_utf8_is_masked_as_text() {
    let m = masker();
    let mut raw = br#"{"ssn":"123-45-6789","x":""#.to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(br#""}"#);
    let out = m.mask_json_bytes(&raw);
    assert_eq!(out.outcome, Outcome::Text(TextReason::InvalidUtf8));
    let s = std::str::from_utf8(&out.bytes).unwrap();
    assert!(!s.contains("6789"), "{s}");
    assert!(s.contains("??"));
    assert_eq!(out.bytes.len(), raw.len());
}

#[test]
fn truncated_json_is_masked_as_text() {
    let m = masker();
    let raw = br#"{"jsonrpc":"2.0","id":1,"result":{"patient_name":"Jane Doe","note":"SSN 123-45-6789 and call 617-555-0123"#;
    let out = m.mask_json_bytes(raw);
    assert!(matches!(
        out.outcome,
        Outcome::Text(TextReason::NotJson { .. })
    ));
    let s = std::str::from_utf8(&out.bytes).unwrap();
    for secret in ["Jane", "6789", "0123"] {
        assert!(!s.contains(secret), "{secret} leaked: {s}");
    }
}

#[test]
fn ten_thousand_deep_nesting_has_a_clear_outcome() {
    let m = masker();
    let mut raw = "[".repeat(10_000);
    raw.push_str(r#""ssn 123-45-6789""#);
    raw.push_str(&"]".repeat(10_000));
    let out = m.mask_json_bytes(raw.as_bytes());
    assert_eq!(out.outcome, Outcome::Text(TextReason::TooDeep));
    assert!(!std::str::from_utf8(&out.bytes).unwrap().contains("6789"));
    assert_eq!(out.bytes.len(), raw.len());

    let mut v = json!("x");
    for _ in 0..200 {
        v = json!([v]);
    }
    let report = m.mask_value(&mut v);
    assert_eq!(report.outcome, Outcome::DeepSubtreesNulled);
}

#[test]
fn fifty_megabyte_string_is_refused_or_masked_in_bounded_memory() {
    let mut raw = Vec::with_capacity(50 << 20);
    raw.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"result":{"text":""#);
    let filler = b"lorem ipsum dolor sit amet ";
    while raw.len() < 50 << 20 {
        raw.extend_from_slice(filler);
    }
    raw.extend_from_slice(b"SSN 123-45-6789\"}}");
    let out = masker().mask_json_bytes(&raw);
    assert_eq!(
        out.outcome,
        Outcome::TooLarge {
            len: raw.len(),
            limit: DEFAULT_MAX_BYTES
        }
    );
    assert!(out.bytes.is_empty());

    let big = masker_with(|p| p.max_bytes = 64 << 20);
    let out = big.mask_json_bytes(&raw);
    assert_eq!(out.outcome, Outcome::Json);
    assert!(out.same_length);
    assert!(out.bytes.ends_with(b"SSN ***********\"}}"));
    assert_eq!(out.counts.get(&Entity::Ssn), 1);
}

#[test]
fn outcomes_print() {
    assert_eq!(
        Outcome::TooLarge { len: 5, limit: 4 }.to_string(),
        "too large (5 bytes, limit 4)"
    );
    assert_eq!(
        Outcome::Text(TextReason::NotJson { at: 3 }).to_string(),
        "text (not JSON at byte 3)"
    );
}
