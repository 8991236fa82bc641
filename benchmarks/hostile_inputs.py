"""Hostile inputs: how long each refusal takes and how much memory the process peaks at.

Prints ONE JSON object. Each case runs in its own Python process (so its peak RSS is its own,
interpreter and imports included; the seconds cover the refusal, not the imports and the
writing of the file) and must come back refused with a reason; the targets are
<= 2 s and <= 300 MB per case (docs/threat-model.md). Cases: a YAML alias bomb and 100,000
nested lists in a config, a 20000x20000 PNG and a JPEG header claiming 65000x65000 given to
``analyze`` (followed by a good frame that must still be measured), a 30 Mpx RGBA PNG given
as ``analyze --white`` (the size limit alone let it be decoded), slide names escaping the
slide folder, and MQTT payloads nested 100,000 deep, with duplicate keys (also one among
26,000), an integer of 200,000 digits, from the future, with a subject id holding U+202E
and an age band that ends before it starts (49-40), or no result a kiosk can measure
(pore_count 2^62, a density of 1e300, melanin index -1e300, a label not among its
probabilities, probabilities summing to 3, a subject without consent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CASE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    folder = Path(sys.argv[1])
    prepare(folder)  # imports and files: not part of the refusal
    started = time.perf_counter()
    outcome = run(folder)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    outcome += after(folder)
    print(json.dumps({"seconds": round(elapsed, 4), "peak_mb": round(peak_mb, 1),
                      "outcome": outcome[:320]}))
    """
)

CASES = {
    "yaml_alias_bomb": """
def run(folder):
    from appliance.config import ConfigError, load_config
    from appliance.hostile import yaml_alias_bomb
    (folder / "c.yaml").write_text(yaml_alias_bomb())
    try:
        load_config(folder / "c.yaml")
    except ConfigError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "yaml_100k_nesting": """
def run(folder):
    from appliance.config import ConfigError, load_config
    from appliance.hostile import yaml_deep_nesting
    (folder / "c.yaml").write_text(yaml_deep_nesting())
    try:
        load_config(folder / "c.yaml")
    except ConfigError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "png_20000px_then_good_frame": """
from appliance.config import Config
from appliance.skin.analyze_run import AnalyzeRun
RUN = AnalyzeRun(Config(), None)

def prepare(folder):
    from appliance.hostile import huge_png
    from appliance.synthetic.skin import synthetic_frame
    (folder / "bomb.png").write_bytes(huge_png())
    (folder / "good.jpg").write_bytes(synthetic_frame(3, 0, "normal").jpeg)

def run(folder):
    return f"refused: {RUN.measure(folder / 'bomb.png').get('error')}"

def after(folder):
    return f" | next file measured: {'features' in RUN.measure(folder / 'good.jpg')}"
""",
    "white_reference_png_30mpx_rgba": """
from appliance.skin.analyze_run import AnalyzeRun

def prepare(folder):
    from appliance.hostile import blank_png
    (folder / "white.png").write_bytes(blank_png(6000, 5000))

def run(folder):
    try:
        AnalyzeRun.from_config(None, None, str(folder / "white.png"))
    except ValueError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "jpeg_header_65000px": """
from appliance.config import Config
from appliance.hostile import lying_jpeg
from appliance.skin.analyze_run import AnalyzeRun

def prepare(folder):
    (folder / "liar.jpg").write_bytes(lying_jpeg())

def run(folder):
    record = AnalyzeRun(Config(), None).measure(folder / "liar.jpg")
    return f"refused: {record.get('error')}"
""",
    "labels_csv_escape": """
def run(folder):
    from appliance.pathology.labels import jobs_from_folder
    (folder / "labels.csv").write_text(
        "slide,patient,label,material\\n../../etc/x,P1,MSI,biopsy\\n/etc/passwd,P2,MSS,biopsy\\n")
    jobs = jobs_from_folder(folder, 0.5)
    return "refused: " + " | ".join(job.refused for job in jobs)
""",
    "payload_100k_nesting": """
def run(folder):
    from appliance.transport.payloads import PayloadError, Result, parse_payload
    try:
        parse_payload(b"[" * 100_000 + b"]" * 100_000, Result)
    except PayloadError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "payload_duplicate_keys_and_future_status": """
def run(folder):
    from appliance.synthetic import fleet as fleetsim
    from appliance.backoffice.triage import Inbound, Triage
    good = fleetsim.sample_result(__import__("random").Random(1), "lab", "k1", 0).to_json()
    twice = good[:-1] + b', "device_id": "k2"}'
    status = fleetsim.online_status("lab", "k1").to_json().replace(b'"at":"20', b'"at":"29')
    batch, _ = Triage("p", 1000).sort(
        [Inbound("p/lab/k1/result", twice, 1, 1), Inbound("p/lab/k1/status", status, 2, 1)])
    return "refused: " + " | ".join(d.reason for d in batch.dead_letters)
""",
    "payload_26000_keys_one_twice": """
def run(folder):
    from appliance.transport.payloads import PayloadError, Result, parse_payload
    keys = [f'"{i:x}":0' for i in range(26_000)]
    try:
        parse_payload(("{" + ",".join(keys + keys[:1]) + "}").encode(), Result)
    except PayloadError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "payload_integer_of_200000_digits": """
def run(folder):
    from appliance.transport.payloads import PayloadError, Result, parse_payload
    try:
        parse_payload(b'{"pore_count": ' + b"9" * 200_000 + b"}", Result)
    except PayloadError as exc:
        return f"refused: {exc}"
    return "ACCEPTED"
""",
    "payload_subject_hidden_id_and_inverted_band": """
def run(folder):
    import json, random
    from appliance.synthetic import fleet as fleetsim
    from appliance.backoffice.triage import Inbound, Triage
    good = json.loads(fleetsim.sample_result(random.Random(1), "lab", "k1", 0).to_json())
    hidden = dict(good, subject={"subject_id": "ab\\u202ecd", "consent": True})
    inverted = dict(good, subject={"age_band": "49-40", "consent": True})
    batch, _ = Triage("p", 1000).sort(
        [Inbound("p/lab/k1/result", json.dumps(hidden).encode(), 1, 1),
         Inbound("p/lab/k1/result", json.dumps(inverted).encode(), 2, 1)])
    reasons = [d.reason for d in batch.dead_letters]
    return ("refused: " if len(reasons) == 2 else "ACCEPTED: ") + " | ".join(reasons)
""",
    "payload_impossible_features_grade_and_subject": """
def run(folder):
    import json, random
    from appliance.synthetic import fleet as fleetsim
    from appliance.backoffice.triage import Inbound, Triage
    good = json.loads(fleetsim.sample_result(random.Random(1), "lab", "k1", 0).to_json())
    grade = good["classification"]
    hostile = [
        dict(good, features=dict(good["features"], pore_count=2**62)),
        dict(good, features=dict(good["features"], pore_density_per_cm2=1e300)),
        dict(good, features=dict(good["features"], melanin_index=-1e300)),
        dict(good, classification=dict(grade, label="excellent")),
        dict(good, classification=dict(grade, probabilities=dict.fromkeys(
            grade["probabilities"], 1.0))),
        dict(good, subject={"age_band": "40-49"}),
    ]
    batch, _ = Triage("p", 1000).sort([Inbound("p/lab/k1/result", json.dumps(one).encode(),
                                               i, 1) for i, one in enumerate(hostile)])
    reasons = [d.reason.replace("Input should be ", "").split(";")[0][:52]
               for d in batch.dead_letters]
    return ("refused: " if len(reasons) == 6 else "ACCEPTED: ") + " | ".join(reasons)
""",
}


DEFAULTS = "def prepare(folder):\n    pass\n\ndef after(folder):\n    return ''\n"


def run_case(name: str, body: str) -> dict[str, object]:
    """Run one case in a fresh interpreter; its JSON line, or the failure."""
    with tempfile.TemporaryDirectory(prefix=f"hostile-{name}-") as folder:
        done = subprocess.run(
            [sys.executable, "-c", DEFAULTS + body + CASE, folder],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    if done.returncode != 0:
        return {"error": done.stderr[-300:]}
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["within_target"] = (
        float(figures["seconds"]) <= 2.0  # type: ignore[arg-type]
        and float(figures["peak_mb"]) <= 300.0  # type: ignore[arg-type]
        and str(figures["outcome"]).startswith("refused")
    )
    return figures


def main() -> None:
    """Print one JSON object: per case seconds, peak MB, outcome, within target."""
    load = os.getloadavg()[0]
    results = {name: run_case(name, body) for name, body in CASES.items()}
    print(json.dumps({"machine_load_1min": round(load, 2), "cases": results}, indent=1))


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help only
    main()
