"""End to end: `ecgproto explain` on real PTB-XL sample records with a tiny checkpoint."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.config import load_config
from ecgproto.explain.report import explain_arrays, explain_records
from ecgproto.data.preprocess import Preprocessing
from tests.checks import resolved_config
from tests.explain.helpers import tiny_checkpoint


def _records(ptbxl_sample, n=2):
    return [str(ptbxl_sample / "records100" / "00000" / f"0000{i}_lr") for i in range(1, n + 1)]


def test_explain_arrays_maps_windows_and_provenance(ptbxl_sample, tmp_path):
    model, meta = tiny_checkpoint(tmp_path / "m.pt", str(ptbxl_sample), "model.branches.morphology.lead_aware=true",
                                  "model.branches.morphology.proto_lead_len=2")
    prep = Preprocessing.from_meta(meta)
    signals = np.stack([prep.read(r).signal for r in _records(ptbxl_sample, 3)])
    table, probs = explain_arrays(model, meta, signals, k=2)
    assert probs.shape == (3, 71) and len(table)
    out = model(__import__("torch").from_numpy(signals))
    for row in table.itertuples():
        branch = model.branches[row.branch]
        w = int(out.branch[row.branch].window_similarities[row.record_index, row.local_index].argmax())
        assert (row.window_start, row.window_end) == branch.window_samples(w)
        assert (row.rf_start, row.rf_end) == branch.receptive_field(w)
        src = meta["prototypes"][row.prototype]
        assert row.source_ecg_id == src["ecg_id"] and row.source_window_start == src["window_start"]
        if row.branch == "morphology":
            assert len(row.leads) == 2 and len(row.source_leads) == 2  # lead-aware: two leads named
        else:
            assert row.leads == ()


def test_explain_records_writes_self_contained_pages(ptbxl_sample, tmp_path):
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    records = _records(ptbxl_sample) + [str(tmp_path / "missing_record")]
    pages = explain_records(ckpt, records, tmp_path / "out", top_k=2)
    assert [p.status for p in pages] == ["ok", "ok", "missing_file"]
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv")
    for page in pages[:2]:
        text = page.html_path.read_text()
        assert "http://" not in text and "https://" not in text and "<script" not in text
        n_rows = int((rows["record"].str.endswith(page.name)).sum())
        assert n_rows > 0 and len(page.png_paths) == n_rows
        assert all(p.is_file() and p.read_bytes()[:4] == b"\x89PNG" for p in page.png_paths)
        assert all(p.parent == tmp_path / "out" / page.name for p in page.png_paths)
        assert any(p.name.startswith("LAO_LAE_rank1") for p in page.png_paths)
        # the input ECG once, one waterfall per explained label, one aligned comparison per explanation
        n_labels = rows.loc[rows["record"].str.endswith(page.name), "label"].nunique()
        assert len(re.findall(r"src=\"data:image/png;base64,", text)) == 1 + n_labels + n_rows
        assert "source ECG unavailable" not in text and "source ECGs unavailable" not in text
        # the record is in a PTB-XL archive: its reference labels are on the page, checked against the predictions
        assert f"PTB-XL ecg_id {int(page.name[:5])}" in text and "in reference" in text
        assert page.html_path.stat().st_size < 2_000_000
    assert "missing_file" in pages[2].html_path.read_text()
    assert "00001_lr.html" in (tmp_path / "out" / "index.html").read_text()


def test_unavailable_source_archive_is_stated(ptbxl_sample, tmp_path):
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(tmp_path / "moved_away"))
    pages = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out", top_k=1)
    text = pages[0].html_path.read_text()
    assert "Prototype source ECGs unavailable" in text and "--source-data" in text
    # --source-data repairs it
    pages = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out2", top_k=1, source_data=ptbxl_sample)
    assert "source ECGs unavailable" not in pages[0].html_path.read_text()


def test_cli_explain(ptbxl_sample, cinc_sample, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    # a CinC 2021 record: .mat, 500 Hz, other lead naming, given with its .hea suffix
    records = [*_records(ptbxl_sample, 1), str(cinc_sample / "E07500.hea")]
    assert main(["explain", str(ckpt), *records, "--out", str(tmp_path / "o"), "--top-k", "1"]) == 0
    assert "data:image/png;base64," in (tmp_path / "o" / "00001_lr.html").read_text()
    assert "not explained" not in capsys.readouterr().out
    assert list((tmp_path / "o" / "E07500").glob("*.png"))
    assert resolved_config(tmp_path / "o").hash == load_config(None).hash  # the defaults the run used
    # every record failing is a failed run (exit 1), one line naming it
    assert main(["explain", str(ckpt), str(tmp_path / "gone1"), str(tmp_path / "gone2"), "--out", str(tmp_path / "f")]) == 1
    captured = capsys.readouterr()
    assert "none of the 2 record(s) could be explained" in captured.err and "gone1" in captured.out
    assert main(["explain", str(tmp_path / "nope.pt"), *_records(ptbxl_sample, 1), "--out", str(tmp_path / "o")]) == 1
    assert "nope.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", str(ckpt), "--out", str(tmp_path / "o")])  # no record given


def test_cli_explain_refuses_black_box_twin(ptbxl_sample, tmp_path, capsys):
    ckpt = tmp_path / "twin.pt"
    model, meta = tiny_checkpoint(ckpt, str(ptbxl_sample), kind="blackbox")
    assert main(["explain", str(ckpt), *_records(ptbxl_sample, 1), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "black-box twin" in err[0] and "twin.pt" in err[0]
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="no prototypes"):
        explain_arrays(model, meta, np.zeros((1, 12, 1000), np.float32))


def test_prototype_gallery(ptbxl_sample, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    _, meta = tiny_checkpoint(ckpt, str(ptbxl_sample))
    assert main(["prototypes", str(ckpt), "--out", str(tmp_path / "g"), "--branch", "global", "--dpi", "30"]) == 0
    pngs = sorted((tmp_path / "g").glob("prototype_*.png"))
    chosen = [p for p in meta["prototypes"] if p["branch"] == "global"]
    assert [f.name for f in pngs] == [f"prototype_{p['index']:04d}.png" for p in chosen]
    index = (tmp_path / "g" / "index.html").read_text()
    assert index.count("<img ") == len(chosen) and "global branch" in index and "rhythm branch" not in index
    assert f"{len({p['ecg_id'] for p in chosen})} unique source ECGs" in index


def test_html_table_escapes_and_formats():
    from ecgproto.explain import html

    frame = pd.DataFrame({"a": [np.int64(3)], "b": [np.float64(0.12345)], "c": ["<b>x</b>"], "d": [float("nan")]})
    text = html.table(frame)
    assert '<td class="num">3</td>' in text and '<td class="num">0.123</td>' in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text and "–" in text


def test_page_shows_logit_decomposition(ptbxl_sample, tmp_path):
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    pages = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out", top_k=1)
    text = pages[0].html_path.read_text()
    assert "bias + supporting + opposing" in text and "<th>opposing</th>" in text
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv")
    np.testing.assert_allclose(rows["bias"] + rows["supporting_total"] + rows["opposing_total"], rows["logit"], atol=1e-4)


def _meta_with(ckpt, **changes):
    import torch

    from ecgproto.model.checkpoint import save_checkpoint

    model, meta = __import__("ecgproto.model.checkpoint", fromlist=["load_checkpoint"]).load_checkpoint(ckpt)
    meta.update(changes)
    save_checkpoint(ckpt, model, meta)
    return model, meta


def test_latent_prototypes_are_flagged_never_cases(ptbxl_sample, tmp_path):
    ckpt = tmp_path / "m.pt"
    _, meta = tiny_checkpoint(ckpt, str(ptbxl_sample))
    latent = {p["index"] for p in meta["prototypes"] if p["class_code"] in ("IMI", "NORM")}
    prototypes = [{**p, "ecg_id": None, "window_start": None, "window_end": None, "rf_start": None, "rf_end": None}
                  if p["index"] in latent else p for p in meta["prototypes"]]
    _meta_with(ckpt, prototypes=prototypes)
    pages = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out", top_k=1)
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv")
    shown = rows[rows["prototype"].isin(latent)]
    assert len(shown) and not shown["prototype_projected"].any() and shown["source_ecg_id"].isna().all()
    text = pages[0].html_path.read_text()
    assert text.count("latent prototype, no source ECG") >= len(shown)
    # the gallery never draws them, and counts them
    from ecgproto.explain.gallery import render_prototype_gallery

    res = render_prototype_gallery(ckpt, tmp_path / "g", dpi=20)
    drawn = {int(p.stem.split("_")[1]) for p in (tmp_path / "g").glob("prototype_*.png")}
    assert not drawn & latent and res.n_unprojected == len(latent)
    assert f"{len(latent)} latent" in res.index_path.read_text()


def test_untrained_labels_are_never_explained_and_say_so(ptbxl_sample, tmp_path):
    from ecgproto.data.labels import all_labels

    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    rules = ["not_trained" if c == "IMI" else "f1" for c in all_labels()]
    _meta_with(ckpt, threshold_rules=rules, thresholds=[1.01 if c == "IMI" else (0.0 if c == "NORM" else 1.01)
                                                       for c in all_labels()])
    pages = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out", top_k=3)
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv")
    assert "IMI" not in set(rows["label"]) and "NORM" in set(rows["label"])
    assert "not trained (no positive in the training labels)" in pages[0].html_path.read_text()


def test_unusual_label_pairs_are_flagged(ptbxl_sample, tmp_path):
    from ecgproto.data.labels import all_labels, label_statistics
    from ecgproto.explain.reference import unusual_pairs

    codes = list(all_labels())
    y = np.zeros((1000, len(codes)), np.uint8)
    y[:400, codes.index("NORM")] = 1
    y[600:700, codes.index("AFIB")] = 1  # never with NORM, 40 expected
    y[:30, codes.index("SR")] = 1  # with NORM more than expected (12); with AFIB 3 expected: too few to judge
    stats = label_statistics(y)
    flags = unusual_pairs(["NORM", "AFIB", "SR"], codes, stats)
    assert len(flags) == 1 and flags[0].startswith("NORM and AFIB") and "0 of 1000" in flags[0]
    assert unusual_pairs(["NORM", "AFIB"], codes, None) == []
    # and on a page: the tiny checkpoint predicts NORM, IMI, SR, LAO/LAE together
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    y = np.zeros((1000, len(codes)), np.uint8)
    y[:500, codes.index("NORM")] = 1
    y[500:, codes.index("IMI")] = 1
    _meta_with(ckpt, label_stats=label_statistics(y))
    text = explain_records(ckpt, _records(ptbxl_sample, 1), tmp_path / "out", top_k=1)[0].html_path.read_text()
    assert "NORM and IMI are predicted together but appear together in 0 of 1000" in text


def test_opposing_driven_labels_are_flagged(ptbxl_sample, tmp_path):
    ckpt = tmp_path / "m.pt"
    tiny_checkpoint(ckpt, str(ptbxl_sample))
    pages = explain_records(ckpt, _records(ptbxl_sample, 2), tmp_path / "out", top_k=1)
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv")
    rule = np.where(rows["opposing_total"] > np.maximum(rows["supporting_total"], 0), "opposing", "supporting")
    assert (rows["driven_by"] == rule).all()
    for page in pages:
        text = page.html_path.read_text()
        mine = rows[rows["record"].str.endswith(page.name)]
        for label in mine.loc[mine["driven_by"] == "opposing", "label"].unique():
            assert f"{label}: predicted mainly by opposing terms" in text
