"""The PII peer: presidio-analyzer's pattern recognizers, offline (no spaCy model needed).

Runs in its own environment, because presidio pulls in spaCy and we keep it out of tunewise's lock:

    python3.11 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install presidio-analyzer==2.2.366

Reads rows {id, input} as JSON lines on stdin; writes one JSON object: findings per row in
tunewise's type names, and the seconds spent analysing (recognizer construction excluded).
Each recognizer is called directly (``recognizer.analyze(text, entities, nlp_artifacts=None)``),
which is what presidio's AnalyzerEngine does for pattern recognizers, minus the NLP engine that
would need a downloaded spaCy model.
"""

import json
import sys
import time

import tldextract

# presidio's email check asks tldextract, which fetches the public suffix list from the network;
# use the snapshot bundled with tldextract instead, so the peer runs offline like tunewise.
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

NAMES = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "credit_card", "IBAN_CODE": "iban",
         "US_SSN": "ssn", "IP_ADDRESS": "ip_address"}


def main() -> None:
    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer(),
                   IpRecognizer()]
    found = []
    start, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        spans = []
        for rec in recognizers:
            for r in rec.analyze(row["input"], rec.supported_entities, None):
                if r.entity_type in NAMES and r.score > 0:
                    spans.append([NAMES[r.entity_type], r.start, r.end])
        found.append(spans)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    from importlib.metadata import version

    json.dump({"found": found, "seconds": seconds, "cpu_seconds": cpu_seconds, "version": version("presidio-analyzer")}, sys.stdout)


if __name__ == "__main__":
    main()
