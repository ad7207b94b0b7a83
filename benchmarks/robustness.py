"""Adversarial inputs against the reader and ``ecgproto score``: every case, expected, observed.

1. Reader: each case of ``tests/robustness/corpus.py`` (real PTB-XL records with one defect) is
   read with ``read_record`` in a fresh process; status, peak resident memory (VmHWM, the
   interpreter and its imports included) and wall time of the read.
2. A genuine long record: 10^7 samples x 12 leads at 500 Hz (a 240 MB format-16 file): peak
   memory and time (before the fix: 1.67 GB, 13.5 s, because the whole file was read).
3. ``ecgproto score`` over the corpus with an untrained tiny checkpoint: one row per record with
   its status, and the ok rows identical to a run on the ok records alone.
4. A scoring worker SIGKILLed on one record (as the out-of-memory killer does): the run goes on,
   the record is ``worker_crashed``, every other row equals the uninterrupted run's.
5. A second run on a locked ``--out``; inconsistent checkpoints; user errors through the CLI
   (one line, exit 1), including a full disk.

Writes ``reports/benchmarks/robustness.md``.

    python benchmarks/robustness.py            # needs ../shared/data/ptbxl-sample
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

import ecgproto.score.worker as worker  # noqa: E402
from ecgproto import cli  # noqa: E402
from ecgproto.score.scorer import ScoreOptions, score_archive  # noqa: E402
from tests.conftest import shared_data_dir  # noqa: E402
from tests.robustness.corpus import CASES, HR, build_corpus  # noqa: E402
from tests.score.helpers import tiny_checkpoint  # noqa: E402

READ = ("import json, re, sys, time\n"
        "from ecgproto.data.wfdb_io import read_record\n"
        "t = time.perf_counter(); r = read_record(sys.argv[1], 100, 1000); t = time.perf_counter() - t\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(json.dumps({'status': r.status, 'message': r.message, 'peak_mb': hwm / 1024, 'read_s': t}))")


def read_in_fresh_process(stem: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, str(stem)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_mb() -> float:
    code = ("import re, ecgproto.data.wfdb_io\n"
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def long_record(sample: Path, folder: Path, n: int = 10**7) -> Path:
    """A format-16 record of ``n`` samples (the 10-s record repeated) at 500 Hz."""
    src = sample / HR
    raw = src.with_suffix(".dat").read_bytes()
    reps = -(-n // 5000)
    with (folder / "huge.dat").open("wb") as fh:
        for _ in range(reps):
            fh.write(raw)
    lines = src.with_suffix(".hea").read_text().replace(src.name, "huge").splitlines()
    lines[0] = f"huge 12 500 {reps * 5000}"
    (folder / "huge.hea").write_text("\n".join(lines) + "\n")
    return folder / "huge"


def cli_line(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, err.getvalue().strip()


def main() -> None:
    sample = shared_data_dir() / "ptbxl-sample"
    if not sample.is_dir():
        sys.exit(f"{sample} not found; this benchmark needs the real PTB-XL sample")
    os.environ["ECGPROTO_NO_PROGRESS"] = "1"
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ecgproto-robustness-"))
    report: dict = {"baseline_mb": round(baseline_mb(), 1)}
    try:
        corpus = tmp / "corpus"
        expected = build_corpus(sample, corpus)
        what = {c.name: c.what for c in CASES}
        rows = []
        for name, status in expected.items():
            got = read_in_fresh_process(corpus / name)
            rows.append({"case": name, "defect": what.get(name, "untouched PTB-XL record"), "expected": status,
                         "observed": got["status"], "peak_mb": round(got["peak_mb"], 1),
                         "read_ms": round(1000 * got["read_s"], 1), "message": got["message"]})
        report["reader"] = rows

        (tmp / "long").mkdir()
        huge = long_record(sample, tmp / "long")
        got = read_in_fresh_process(huge)
        report["long_record"] = {"samples": 10**7, "file_mb": round(huge.with_suffix(".dat").stat().st_size / 2**20, 1),
                                 "status": got["status"], "peak_mb": round(got["peak_mb"], 1),
                                 "read_s": round(got["read_s"], 4), "before_fix": {"peak_mb": 1670, "read_s": 13.5}}
        shutil.rmtree(tmp / "long")

        ckpt = tiny_checkpoint(tmp / "tiny.pt")
        options = ScoreOptions(batch_size=64, workers=2, threads=1)
        score_archive(ckpt, corpus, tmp / "out", options)
        good = tmp / "good"
        good.mkdir()
        for name in (n for n, s in expected.items() if s == "ok"):
            for ext in (".hea", ".dat"):
                shutil.copy(corpus / f"{name}{ext}", good / f"{name}{ext}")
        score_archive(ckpt, good, tmp / "ref", options)
        scores = pd.read_parquet(tmp / "out" / "scores.parquet").set_index("record_id")
        ref = pd.read_parquet(tmp / "ref" / "scores.parquet").set_index("record_id")
        same = scores.loc[ref.index].drop(columns="path").astype(object).equals(ref.drop(columns="path").astype(object))
        report["score_corpus"] = {"rows": len(scores), "records": len(expected),
                                  "statuses_as_expected": scores["status"].to_dict() == expected,
                                  "ok_rows_identical_to_run_without_bad_records": bool(same)}

        real = worker.read_records

        def deadly(paths, fs, n):
            if any(Path(path).name == "gain_x10" for path in paths):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(paths, fs, n)

        small = ScoreOptions(batch_size=4, chunk_size=8, workers=2, threads=1)
        score_archive(ckpt, corpus, tmp / "unkilled", small)  # the same batches, nobody killed
        worker.read_records = deadly
        try:
            t = time.perf_counter()
            summary = score_archive(ckpt, corpus, tmp / "killed", small)
            killed_s = time.perf_counter() - t
        finally:
            worker.read_records = real
        killed = pd.read_parquet(tmp / "killed" / "scores.parquet").set_index("record_id")
        unkilled = pd.read_parquet(tmp / "unkilled" / "scores.parquet").set_index("record_id")
        others = [n for n in killed.index if n != "gain_x10"]
        report["worker_kill"] = {
            "killed_record_status": killed.loc["gain_x10", "status"],
            "other_statuses_unchanged": killed.loc[others, "status"].to_dict() == {n: expected[n] for n in others},
            "other_rows_identical": bool(killed.loc[others].astype(object).equals(unkilled.loc[others].astype(object))),
            "elapsed_s": round(killed_s, 2), "notes": summary.notes}

        holder = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                                   "from ecgproto.score.store import lock_folder; lock_folder(Path(sys.argv[1])); "
                                   "print('locked', flush=True); sys.stdin.read()", str(tmp / "out")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()
        code, line = cli_line(["score", ckpt, corpus, "--out", tmp / "out", "--resume", "--workers", "0"])
        holder.kill()
        holder.wait()
        cases = [{"case": "concurrent --resume on a locked --out", "exit": code, "stderr": line}]

        def edited(name, edit):
            payload = torch.load(ckpt, map_location="cpu", weights_only=True)
            edit(payload["meta"])
            torch.save(payload, tmp / f"{name}.pt")
            return tmp / f"{name}.pt"

        for name, edit in [("labels_5", lambda m: m.update(labels=m["labels"][:5])),
                           ("thresholds_70", lambda m: m.update(thresholds=m["thresholds"][:70])),
                           ("sampling_rate_0", lambda m: m.update(sampling_rate=0))]:
            for command in ("score", "explain"):
                target = [corpus] if command == "score" else [corpus / "good0"]
                code, line = cli_line([command, edited(name, edit), *target, "--out", tmp / f"{name}_{command}"])
                cases.append({"case": f"checkpoint {name}, {command}", "exit": code, "stderr": line})
        (tmp / "afile").write_text("x")
        for label, extra in [("--out is an existing file", ["--out", tmp / "afile"]),
                             ("--workers -1", ["--out", tmp / "w", "--workers", "-1"]),
                             ("--workers 100000", ["--out", tmp / "w", "--workers", "100000"]),
                             ("--threads -3", ["--out", tmp / "w", "--threads", "-3"])]:
            code, line = cli_line(["score", ckpt, corpus, *extra])
            cases.append({"case": label, "exit": code, "stderr": line})
        write_table = pq.write_table
        calls = {"n": 0}

        def full_disk(table, where, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                write_table(table.slice(0, 1), where)
                raise OSError(errno.ENOSPC, "No space left on device", str(where))
            return write_table(table, where, *args, **kwargs)

        pq.write_table = full_disk
        try:
            code, line = cli_line(["score", ckpt, corpus, "--out", tmp / "full", "--workers", "0", "--chunk-size", "4"])
        finally:
            pq.write_table = write_table
        left = sorted(p.name for p in (tmp / "full").rglob("*.tmp"))
        cases.append({"case": "disk full during the 2nd chunk", "exit": code,
                      "stderr": f"{line} [temp files left: {len(left)}; committed parts: "
                                f"{len(list((tmp / 'full' / 'parts').glob('scores-*.parquet')))}]"})
        code2, _ = cli_line(["score", ckpt, corpus, "--out", tmp / "full", "--workers", "0", "--chunk-size", "4",
                             "--resume"])
        cases[-1]["stderr"] += f" then --resume: exit {code2}"
        report["errors"] = cases
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(report)


def write_report(report: dict) -> None:
    out = REPO / "reports" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    base = report["baseline_mb"]
    lines = ["# Robustness: adversarial inputs, expected vs observed", "",
             "`python benchmarks/robustness.py` (cases from `tests/robustness/corpus.py`, real PTB-XL records with one "
             "defect each; model at 100 Hz, 1000 samples). Peak memory is VmHWM of a fresh process that imports the "
             f"reader and reads one record; importing alone costs {base} MB.", "",
             "## Reader (`read_record`), one fresh process per case", "",
             "| case | defect | expected | observed | peak MB | read ms |", "| --- | --- | --- | --- | ---: | ---: |"]
    for r in report["reader"]:
        mark = "" if r["expected"] == r["observed"] else " **MISMATCH**"
        lines.append(f"| `{r['case']}` | {r['defect']} | `{r['expected']}` | `{r['observed']}`{mark} | {r['peak_mb']} | "
                     f"{r['read_ms']} |")
    lines += ["", "Messages (each names the record):", ""]
    lines += [f"- `{r['case']}`: {re.sub(r'/tmp/[^ ]*/corpus/', '…/', r['message'])}" for r in report["reader"]
              if r["message"]]
    lr = report["long_record"]
    lines += ["", "## A genuine long record", "",
              f"{lr['samples']:,} samples × 12 leads at 500 Hz ({lr['file_mb']} MB file): status `{lr['status']}`, "
              f"peak {lr['peak_mb']} MB (import {base} MB), read {lr['read_s']} s "
              f"(before: {lr['before_fix']['peak_mb']} MB, {lr['before_fix']['read_s']} s: the whole file was read to "
              "keep 10 s).", ""]
    sc, wk = report["score_corpus"], report["worker_kill"]
    lines += ["## `ecgproto score` over the corpus", "",
              f"- {sc['rows']} rows for {sc['records']} records; every status as expected: **{sc['statuses_as_expected']}**; "
              f"ok rows identical to a run on the ok records alone: **{sc['ok_rows_identical_to_run_without_bad_records']}**.",
              f"- Worker SIGKILLed on `gain_x10`: that row is `{wk['killed_record_status']}`, every other status unchanged: "
              f"**{wk['other_statuses_unchanged']}**, every other row identical to the same run without the kill: "
              f"**{wk['other_rows_identical']}**; "
              f"run {wk['elapsed_s']} s. Notes: {'; '.join(wk['notes'])}", "",
              "## Errors through the console script (exit code, stderr)", "", "| case | exit | stderr |", "| --- | ---: | --- |"]
    for c in report["errors"]:
        text = re.sub(r"/tmp/ecgproto-robustness-[^/ ]*/", "…/", c["stderr"]).replace("|", "\\|").replace("\n", " ⏎ ")
        lines.append(f"| {c['case']} | {c['exit']} | {text} |")
    (out / "robustness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
