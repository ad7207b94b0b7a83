"""Findings change the signal on the right leads, by the right amount (clean 500 Hz renders)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ecgproto.synth.beats import LEADS, C
from ecgproto.synth.rhythm import KIND_NORMAL
from ecgproto.synth.simulator import simulate
from ecgproto.synth.summary_features import _r_peaks

from .conftest import rows_with

FS = 500
L = {name: i for i, name in enumerate(LEADS)}


def median_beats(plan, rows: np.ndarray, lo_s: float = -0.15, hi_s: float = 0.25) -> np.ndarray:
    """(len(rows), 12, W) median over normal beats of clean signals, aligned on the R time."""
    x = simulate(plan, rows, FS, noise=False)
    lo, hi = int(lo_s * FS), int(hi_s * FS)
    out = []
    for k, i in enumerate(rows):
        s = plan.schedule
        ok = s.valid[i] & (s.kind[i] == KIND_NORMAL) & (s.r_time[i] > 0.5) & (s.r_time[i] < 9.0)
        idx = np.round(s.r_time[i, ok] * FS).astype(int)
        out.append(np.median(np.stack([x[k, :, j + lo : j + hi] for j in idx]), axis=0))
    return np.stack(out)


def q_depth(beats: np.ndarray, lead: str) -> np.ndarray:
    """Depth (mV, positive) of the initial negative deflection 50..5 ms before R."""
    lo = int(0.15 * FS) - int(0.05 * FS)
    hi = int(0.15 * FS) - int(0.005 * FS)
    return -beats[:, L[lead], lo:hi].min(axis=1)


def qrs_only(plan):
    """The same plan with P, ST, T and atrial waves removed (only the QRS components left)."""
    amp = plan.morph.amp.copy()
    amp[:, [C["P"], C["P2"], C["ST"], C["T"]]] = 0.0
    morph = dataclasses.replace(plan.morph, amp=amp)
    schedule = dataclasses.replace(plan.schedule, f_amp=0 * plan.schedule.f_amp, flutter_amp=0 * plan.schedule.flutter_amp)
    return dataclasses.replace(plan, morph=morph, schedule=schedule)


def qrs_width(beats: np.ndarray, thr: float = 0.04) -> np.ndarray:
    """Contiguous time (s) around R where some lead deviates > thr mV from zero
    (use on renders of ``qrs_only`` plans)."""
    act = np.abs(beats).max(axis=1) > thr
    r = int(0.15 * FS)
    widths = []
    for a in act:
        left = r
        while left > 0 and a[left - 1]:
            left -= 1
        right = r
        while right < len(a) - 1 and a[right + 1]:
            right += 1
        widths.append((right - left + 1) / FS)
    return np.array(widths)


def test_imi_q_waves_inferior_not_anterior(plan_400):
    _, plan, _ = plan_400
    imi = median_beats(plan, rows_with(plan, "IMI", ("LAFB", "CLBBB"))[:12])
    ctrl = median_beats(plan, rows_with(plan, "NORM")[:12])
    inferior = (q_depth(imi, "III") + q_depth(imi, "aVF")) / 2
    assert np.median(inferior) > 2 * np.median(q_depth(imi, "V2")) + 0.05
    assert np.median(inferior) > np.median((q_depth(ctrl, "III") + q_depth(ctrl, "aVF")) / 2) + 0.15


def test_asmi_loses_r_in_v1_v3(plan_400):
    _, plan, _ = plan_400
    asmi = median_beats(plan, rows_with(plan, "ASMI", ("CRBBB", "IRBBB"))[:12])
    ctrl = median_beats(plan, rows_with(plan, "NORM")[:12])
    r_v2 = lambda b: b[:, L["V2"], int(0.1 * FS) : int(0.2 * FS)].max(axis=1)  # noqa: E731
    assert np.median(r_v2(asmi)) < 0.5 * np.median(r_v2(ctrl))
    assert np.median(q_depth(asmi, "V2")) > np.median(q_depth(asmi, "II")) + 0.1


def test_bundle_branch_blocks_are_wide_and_lead_specific(plan_400):
    _, plan, _ = plan_400
    st = ("ISC_", "STD_", "STE_", "INJAS")
    rbbb = median_beats(plan, rows_with(plan, "CRBBB", st)[:10])
    lbbb = median_beats(plan, rows_with(plan, "CLBBB")[:10])
    qrs = qrs_only(plan)
    assert np.all(qrs_width(median_beats(qrs, rows_with(plan, "CRBBB")[:10])) > 0.12)
    assert np.all(qrs_width(median_beats(qrs, rows_with(plan, "CLBBB")[:10])) > 0.12)
    assert np.all(qrs_width(median_beats(qrs, rows_with(plan, "NORM")[:15])) < 0.11)
    term = slice(int((0.15 + 0.05) * FS), int((0.15 + 0.09) * FS))  # 50-90 ms after R: R' of RBBB
    assert np.all(rbbb[:, L["V1"], term].max(axis=1) > 0.2)  # terminal R' in V1
    s_in_i = rbbb[:, L["I"], term].min(axis=1)  # broad terminal S in I
    assert np.all(s_in_i < -0.05) and np.median(s_in_i) < -0.15
    assert np.all(lbbb[:, L["V1"], int(0.15 * FS) : int(0.25 * FS)].min(axis=1) < -0.5)  # QS in V1
    assert np.all(lbbb[:, L["V6"], int(0.15 * FS) : int(0.25 * FS)].max(axis=1) > 0.5)  # broad R in V6


def test_st_and_t_changes_on_their_leads(plan_400):
    _, plan, _ = plan_400
    st_lvl = lambda b, lead: b[:, L[lead], int((0.15 + 0.075) * FS)].mean()  # noqa: E731  75 ms after R
    wide = ("CRBBB", "IRBBB", "RVH", "WPW", "LVH")  # QRS changes that reach 75 ms after R
    injas = median_beats(plan, rows_with(plan, "INJAS", wide)[:8], hi_s=0.6)
    ste = median_beats(plan, rows_with(plan, "STE_", wide)[:8], hi_s=0.6)
    isc = median_beats(plan, rows_with(plan, "ISC_", wide)[:8], hi_s=0.6)
    invt = median_beats(plan, rows_with(plan, "INVT")[:8], hi_s=0.6)
    assert st_lvl(injas, "V2") > 0.1 and st_lvl(injas, "V2") > 2 * abs(st_lvl(injas, "II"))
    assert st_lvl(ste, "III") > 0.08 and st_lvl(ste, "III") > 2 * abs(st_lvl(ste, "V2"))
    assert st_lvl(isc, "V5") < -0.05 and -st_lvl(isc, "V5") > 2 * abs(st_lvl(isc, "V1"))
    t_min_v2 = invt[:, L["V2"], int(0.3 * FS) :].min(axis=1)
    assert np.all(t_min_v2 < -0.15)


def test_long_qt_and_first_degree_block(plan_400):
    _, plan, _ = plan_400
    from ecgproto.synth.simulator import qt_timing

    lqt, norm = rows_with(plan, "LNGQT"), rows_with(plan, "NORM")
    tc_l, _ = qt_timing(plan, lqt)
    tc_n, _ = qt_timing(plan, norm)
    qtc = lambda rows, tc: (tc[:, 1] / np.sqrt(plan.schedule.rr_prev[rows, 1])).mean()  # noqa: E731
    assert qtc(lqt, tc_l) > qtc(norm, tc_n) + 0.05
    assert plan.morph.pr[rows_with(plan, "1AVB")].min() > 0.2 >= plan.morph.pr[norm].max()


def test_voltage_findings(plan_400):
    _, plan, _ = plan_400
    amp = lambda rows: np.abs(median_beats(plan, rows[:8])).max(axis=2).max(axis=1)  # noqa: E731
    norm = np.median(amp(rows_with(plan, "NORM")))
    assert np.median(amp(rows_with(plan, "LVOLT"))) < 0.6 * norm
    assert np.median(amp(rows_with(plan, "HVOLT"))) > 1.4 * norm
    assert np.median(amp(rows_with(plan, "LVH"))) > 1.4 * norm


def test_afib_rr_irregular_and_without_p(plan_400):
    _, plan, _ = plan_400
    def rr_cv(rows):
        x = simulate(plan, rows, 100)
        cvs = []
        for rec in x:
            rr = np.diff(_r_peaks(rec, 100)) / 100
            cvs.append(rr.std() / rr.mean())
        return np.array(cvs)
    af = rr_cv(rows_with(plan, "AFIB", ("PVC",))[:10])
    sr = rr_cv(rows_with(plan, "SR", ("PVC", "PAC"))[:10])
    assert np.median(af) > 3 * np.median(sr)
    assert np.all(plan.morph.amp[rows_with(plan, "AFIB"), 0] == 0)  # no P wave
    assert np.all(plan.schedule.f_amp[rows_with(plan, "AFIB")] > 0)


def test_new_axis_atrial_and_preexcitation_findings(plan_400):
    _, plan, _ = plan_400
    norm = median_beats(plan, rows_with(plan, "NORM")[:10])
    rvh = median_beats(plan, rows_with(plan, "RVH", ("CRBBB", "IRBBB", "ASMI"))[:8])
    qrs = slice(int(0.1 * FS), int(0.2 * FS))
    assert np.median(rvh[:, L["V1"], qrs].max(axis=1)) > 2 * np.median(norm[:, L["V1"], qrs].max(axis=1))
    lpfb_axis = plan.morph.axis[rows_with(plan, "LPFB")] % 360  # right axis deviation (can pass 180)
    assert np.all((lpfb_axis > 80) & (lpfb_axis < 240))
    assert np.all(plan.morph.axis[rows_with(plan, "LAFB", ("IMI",))] < -20)
    rae = median_beats(plan, rows_with(plan, "RAO/RAE")[:8], lo_s=-0.35)
    ctrl = median_beats(plan, rows_with(plan, "NORM")[:10], lo_s=-0.35)
    p_win = slice(0, int(0.25 * FS))  # before the QRS
    assert np.median(rae[:, L["II"], p_win].max(axis=1)) > 1.5 * np.median(ctrl[:, L["II"], p_win].max(axis=1))
    wpw = rows_with(plan, "WPW")
    assert np.all(plan.morph.pr[wpw] < 0.12) and np.all(plan.morph.qrs_onset[wpw] < -0.07)
    svt = rows_with(plan, "SVTAC")
    assert np.all(plan.schedule.heart_rate[svt] > 140) and np.all(plan.morph.amp[svt, 0] == 0)
    bigu = rows_with(plan, "BIGU")
    s = plan.schedule
    inside = s.valid[bigu] & (s.r_time[bigu] > 0) & (s.r_time[bigu] < 10)
    frac_pvc = ((s.kind[bigu] == 1) & inside).sum(axis=1) / inside.sum(axis=1)
    assert np.all((frac_pvc > 0.35) & (frac_pvc < 0.65))


def test_ectopic_beats_are_premature(plan_400):
    _, plan, _ = plan_400
    s = plan.schedule
    for code, kind in (("PVC", 1), ("PAC", 2)):
        rows = rows_with(plan, code, ("BIGU", "AFIB", "SVTAC"))
        hits = s.kind[rows] == kind
        assert hits.any(axis=1).mean() > 0.9
        ratio = s.rr_prev[rows][hits] / np.median(s.rr_prev[rows], axis=1, keepdims=True).repeat(s.kind.shape[1], 1)[hits]
        assert np.median(ratio) < 0.8 and np.all(ratio < 0.95)
    assert np.all(plan.morph.pvc_width[:, C["R"]] >= 0.03)  # wide ectopic QRS (sigma >= 30 ms)


def test_limb_leads_follow_einthoven(plan_400):
    _, plan, _ = plan_400
    x = simulate(plan, np.arange(5), 100)
    np.testing.assert_allclose(x[:, L["III"]], x[:, L["II"]] - x[:, L["I"]], atol=1e-5)
    np.testing.assert_allclose(x[:, L["aVF"]], x[:, L["II"]] - x[:, L["I"]] / 2, atol=1e-5)


def test_noise_flags_match_the_noise(plan_400):
    table, plan, _ = plan_400
    x = simulate(plan, np.arange(plan.n), 100)
    clean = simulate(plan, np.arange(plan.n), 100, noise=False)
    noise = x - clean
    drift = table["baseline_drift"].fillna("").to_numpy() != ""
    lf = np.abs(noise).max(axis=(1, 2))
    assert np.median(lf[drift]) > 2 * np.median(lf[~drift])
    static = table["static_noise"].fillna("").to_numpy() != ""
    hf = np.abs(np.diff(noise, axis=2)).mean(axis=(1, 2))
    assert np.median(hf[static]) > 1.5 * np.median(hf[~static])


def test_noise_scale_zero_gives_clean_signals_and_no_flags():
    from ecgproto.synth.simulator import plan_records

    rng = np.random.default_rng(0)
    plan = plan_records(rng, np.full(300, 60.0), seed=0, noise_scale=0.0)
    rows = np.arange(300)
    np.testing.assert_array_equal(simulate(plan, rows, 100), simulate(plan, rows, 100, noise=False))
    assert all(v == "" for flags in plan.noise.flags.values() for v in flags)


def test_av_blocks_dissociate_p_waves_from_qrs(plan_400):
    _, plan, _ = plan_400
    s = plan.schedule
    for code in ("2AVB", "3AVB"):
        rows = rows_with(plan, code)
        assert len(rows) > 0
        n_p = (s.p_valid[rows] & (s.p_time[rows] > 0) & (s.p_time[rows] < 10)).sum(axis=1)
        n_r = (s.valid[rows] & (s.r_time[rows] > 0) & (s.r_time[rows] < 10)).sum(axis=1)
        assert np.all(n_p > n_r)  # blocked P waves
    assert np.all(s.heart_rate[rows_with(plan, "3AVB")] < 50)
    assert not s.p_valid[rows_with(plan, "NORM")].any()
    # the P waves are really drawn: removing the beats leaves P-sized bumps at the P times
    rows = rows_with(plan, "3AVB")[:3]
    clean = simulate(plan, rows, FS, noise=False)
    for k, i in enumerate(rows):
        t = s.p_time[i][s.p_valid[i] & (s.p_time[i] > 0.1) & (s.p_time[i] < 9.9)]
        amp = np.abs(clean[k, L["II"], np.round(t * FS).astype(int)])
        assert np.median(amp) > 0.05
