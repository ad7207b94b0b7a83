"""Per-record wave parameters: how each simulated statement changes the beat, lead by lead.

Normal beat: P (left-inferior), septal q (right-anterior), R (frontal axis −25..100°),
S (posterior), T (concordant with QRS). Findings modify it clinically:

- 1AVB: PR 240–340 ms. LAO/LAE: wide P with a second, posterior hump (bifid in II,
  negative terminal P in V1). AFIB/AFLT: no P.
- CRBBB: terminal right-anterior R' (rSR' in V1–V2, broad S in I/V5/V6), QRS >= 120 ms,
  secondary T inversion V1–V3. IRBBB: smaller, earlier R' (QRS 100–115 ms).
- CLBBB: no septal q, broad notched left-posterior R (I, aVL, V5, V6), QS in V1–V3,
  QRS 140–170 ms, discordant ST-T. LAFB: axis −45..−75°, qR in I/aVL, rS inferior.
  LPFB: axis 100..150°. WPW: PR 80–115 ms to a slurred delta wave.
- RVH: axis 100..140°, anterior forces (tall R in V1), S in I/V5/V6, V1–V3 strain in half.
  RAO/RAE: tall (x1.8–2.4) rightward P (II, III, aVF). SVTAC: no visible P.
- 2AVB / 3AVB: P waves on their own schedule (rhythm.py); 3AVB escape QRS wide in half.
- IMI: wide Q in II, III, aVF. ASMI: QS in V1–V3. QWAVE: Q in I, aVL, V5, V6.
  ABQRS without Q waves: a notch in the QRS.
- LVH: large left-posterior R, deep S in V1–V2, lateral strain in half of the cases.
  HVOLT: all QRS x1.7–2.2. LVOLT: all QRS x0.3–0.45.
- ISC_: lateral ST depression + flat T. STD_: inferolateral ST depression. STE_: inferior
  ST elevation. INJAS: ST elevation V1–V4. NDT: flat T (I, aVL, V4–V6). INVT: inverted T
  V1–V4. LNGQT: QTc 480–570 ms (normal 370–440).
- PVC: wide (>= 140 ms) beat with its own axis, no P, discordant T. PAC: ectopic P
  (inverted inferiorly), normal QRS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgproto.synth.beats import COMPONENTS, C, frontal, precordial, project
from ecgproto.synth.labels_sampler import LabelSample

QRS_ONSET_S = -0.045  # QRS onset relative to the R peak (normal conduction)
WPW_ONSET_S = -0.08  # onset of the delta wave (pre-excitation)


@dataclass
class Morphology:
    """Per-record templates. center/width (N, K) s, amp (N, K, 8) mV for normal beats;
    pvc_* the same for premature ventricular beats; pac_p_amp (N, 8) the ectopic P;
    p_amp (N, 8) the sinus P (drawn on its own schedule for 2AVB/3AVB);
    qtc (N,) s, t_width (N,) s, qrs_end (N,) s after R, qrs_onset (N,) s, pr (N,) s,
    axis (N,) degrees (frontal QRS axis, from the drawn vectors)."""

    center: np.ndarray
    width: np.ndarray
    amp: np.ndarray
    pvc_center: np.ndarray
    pvc_width: np.ndarray
    pvc_amp: np.ndarray
    pac_p_amp: np.ndarray
    p_amp: np.ndarray
    qtc: np.ndarray
    t_width: np.ndarray
    qrs_end: np.ndarray
    qrs_onset: np.ndarray
    pr: np.ndarray
    axis: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _vec(x: np.ndarray | float, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    return np.stack(np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)), -1)


def _col(b: np.ndarray) -> np.ndarray:
    return b[:, None]


@dataclass
class _Draw:
    """The random source and statements of N records, and the normal-beat templates being built:
    center/width (N, K) s and amp (N, K, 8) mV per wave component. Every section below draws from
    ``rng`` in a fixed order, so a seed gives the same records."""

    rng: np.random.Generator
    lab: LabelSample
    center: np.ndarray
    width: np.ndarray
    amp: np.ndarray

    @classmethod
    def start(cls, rng: np.random.Generator, lab: LabelSample) -> _Draw:
        n, k = lab.labels.shape[0], len(COMPONENTS)
        return cls(rng, lab, np.zeros((n, k)), np.full((n, k), 0.01), np.zeros((n, k, 8)))

    @property
    def n(self) -> int:
        return self.lab.labels.shape[0]

    def u(self, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, self.n)

    def set(self, comp: str, center: np.ndarray | float, width: np.ndarray | float) -> None:
        self.center[:, C[comp]] = center
        self.width[:, C[comp]] = width


def _main_vectors(d: _Draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frontal QRS axis θ (N,) degrees, the R vector (N, 3) and the S magnitude (N,)
    (fascicular blocks, RVH and LVH move the axis and the forces)."""
    h, sev, u, n = d.lab.has, d.lab.sev, d.u, d.n
    theta = np.clip(d.rng.normal(45.0, 22.0, n), -25.0, 100.0)
    theta = np.where(h("LAFB"), u(-75.0, -45.0), theta)
    theta = np.where(h("LPFB"), u(100.0, 150.0), theta)
    theta = np.where(h("RVH"), u(100.0, 140.0), theta)
    r_mag = np.exp(d.rng.normal(np.log(1.2), 0.2, n))
    r_z = d.rng.normal(0.05, 0.12, n)
    s_mag = u(0.45, 0.85)
    lvh = h("LVH")
    r_mag = np.where(lvh, r_mag * u(1.7, 2.3) * sev("LVH"), r_mag)
    r_z = np.where(lvh, r_z - 0.25, r_z)
    rvh = h("RVH")
    r_z = np.where(rvh, u(0.6, 0.9), r_z)  # anterior forces: tall R in V1
    r_mag = np.where(rvh, r_mag * u(1.1, 1.4), r_mag)
    s_mag = np.where(lvh, s_mag * u(1.6, 2.0), s_mag)
    r_vec = _vec(np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta)), r_z) * _col(r_mag)
    r_vec[:, 1] *= np.where(h("IMI"), 0.6, 1.0)
    return theta, r_vec, s_mag


def _p_wave(d: _Draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sinus P (and the second, posterior hump of LAE): returns PR (N,) s, QRS onset (N,) s and
    the P amplitudes (N, 8) (also for AV block, whose P waves are drawn on their own schedule)."""
    h, u, n = d.lab.has, d.u, d.n
    has_p = ~(h("AFIB") | h("AFLT") | h("SVTAC") | h("2AVB") | h("3AVB"))  # AV block: P drawn apart
    wpw = h("WPW")
    pr = np.where(h("1AVB"), u(0.24, 0.34), u(0.12, 0.20))
    pr = np.where(wpw, u(0.08, 0.115), pr)
    qrs_onset = np.where(wpw, WPW_ONSET_S, QRS_ONSET_S)
    p_sigma = u(0.017, 0.023) * np.where(h("LAO/LAE"), 1.3, 1.0)
    rae = h("RAO/RAE")
    p_theta = np.where(rae, u(65.0, 80.0), d.rng.normal(55.0, 12.0, n))
    p_mag = u(0.10, 0.18) * np.where(rae, u(1.8, 2.4), 1.0)
    p_vec = _vec(np.cos(np.deg2rad(p_theta)), np.sin(np.deg2rad(p_theta)), 0.25) * _col(p_mag)
    d.set("P", qrs_onset - pr + 2.2 * p_sigma, p_sigma)
    p_amp = project(p_vec)
    d.amp[:, C["P"]] = p_amp * _col(has_p)
    lae = h("LAO/LAE") & has_p
    d.set("P2", d.center[:, C["P"]] + 0.035, 0.016)
    d.amp[:, C["P2"]] = project(_vec(0.8, 0.3, -0.9) * _col(u(0.07, 0.11))) * _col(lae)
    return pr, qrs_onset, p_amp


def _septal_q(d: _Draw) -> None:
    """Small right-anterior septal q (in some records inferior too; LAFB: qR in I/aVL)."""
    u = d.u
    q_vec = _unit(_vec(-0.35, d.rng.normal(0.25, 0.35, d.n), 0.9)) * _col(u(0.12, 0.25))  # small inferior q in some
    q_vec = np.where(_col(d.lab.has("LAFB")), _unit(_vec(-0.3, 0.9, 0.2)) * _col(u(0.12, 0.2)), q_vec)
    d.set("QSEP", -0.024, 0.007)
    d.amp[:, C["QSEP"]] = project(q_vec)


def _r_s_delta(d: _Draw, r_vec: np.ndarray, s_mag: np.ndarray) -> np.ndarray:
    """R, S and the WPW delta wave; returns the QRS end (N,) s after R."""
    h, u = d.lab.has, d.u
    d.set("R", 0.0, u(0.0092, 0.0108))
    d.amp[:, C["R"]] = project(r_vec)
    d.set("S", 0.024, 0.008)
    s_dir = np.where(_col(h("RVH")), _unit(_vec(-1.0, -0.2, -0.1)), _unit(_vec(-0.2, -0.2, -1.0)))
    d.amp[:, C["S"]] = project(s_dir * _col(s_mag))
    # pre-excitation (WPW): slurred delta wave in the direction of the QRS, starting early
    d.set("DELTA", -0.035, 0.018)
    d.amp[:, C["DELTA"]] = project(r_vec * _col(u(0.25, 0.4))) * _col(h("WPW"))
    return np.full(d.n, 0.045)


def _right_bundle_branch_block(d: _Draw, qrs_end: np.ndarray) -> np.ndarray:
    """Complete / incomplete RBBB: terminal right-anterior R'; returns the new QRS end."""
    h, sev, u = d.lab.has, d.lab.sev, d.u
    rbbb_dir = _unit(_vec(-0.55, 0.05, 0.85))
    crbbb, irbbb = h("CRBBB"), h("IRBBB")
    r2_mag = np.where(crbbb, u(0.55, 0.9) * sev("CRBBB"), u(0.3, 0.45) * sev("IRBBB"))
    d.center[:, C["R2"]] = np.where(crbbb, u(0.060, 0.070), u(0.042, 0.048))
    d.width[:, C["R2"]] = np.where(crbbb, u(0.015, 0.019), u(0.009, 0.011))
    d.amp[:, C["R2"]] = project(rbbb_dir * _col(r2_mag)) * _col(crbbb | irbbb)
    d.width[:, C["S"]] = np.where(crbbb, 0.012, d.width[:, C["S"]])
    return np.where(crbbb | irbbb, d.center[:, C["R2"]] + 2.5 * d.width[:, C["R2"]], qrs_end)


def _left_bundle_branch_block(d: _Draw, qrs_end: np.ndarray, qrs_onset: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CLBBB (broad notched left-posterior R, no septal q, no S) and the wide escape QRS of half
    the complete heart blocks; returns QRS end, QRS onset and the LBBB direction (N, 3)."""
    h, sev, u, center, width, amp = d.lab.has, d.lab.sev, d.u, d.center, d.width, d.amp
    lbbb = h("CLBBB")
    lb_dir = _unit(_vec(0.85, 0.3, -0.6))
    lb_mag = u(1.3, 1.9) * sev("CLBBB")
    center[:, C["R"]] = np.where(lbbb, 0.012, center[:, C["R"]])
    width[:, C["R"]] = np.where(lbbb, u(0.022, 0.027), width[:, C["R"]])
    amp[:, C["R"]] = np.where(_col(lbbb), project(lb_dir * _col(lb_mag)), amp[:, C["R"]])
    amp[:, C["QSEP"]] *= _col(~lbbb)
    amp[:, C["S"]] *= _col(~lbbb)
    center[:, C["R2"]] = np.where(lbbb, 0.06, center[:, C["R2"]])
    width[:, C["R2"]] = np.where(lbbb, 0.018, width[:, C["R2"]])
    amp[:, C["R2"]] = np.where(_col(lbbb), project(lb_dir * _col(0.7 * lb_mag)), amp[:, C["R2"]])
    qrs_end = np.where(lbbb, 0.06 + 2.5 * 0.018, qrs_end)
    # complete heart block: half the escape rhythms are ventricular (wide QRS)
    wide_escape = h("3AVB") & ~lbbb & ~h("CRBBB") & (d.rng.random(d.n) < 0.5)
    width[:, C["R"]] = np.where(wide_escape, u(0.02, 0.026), width[:, C["R"]])
    width[:, C["S"]] = np.where(wide_escape, 0.016, width[:, C["S"]])
    center[:, C["S"]] = np.where(wide_escape, 0.05, center[:, C["S"]])
    qrs_end = np.where(wide_escape, 0.09, qrs_end)
    qrs_onset = np.where(lbbb, 0.012 - 2.5 * width[:, C["R"]], qrs_onset)
    return qrs_end, qrs_onset, lb_dir


def _notch_and_q_waves(d: _Draw) -> None:
    """ABQRS without Q waves: a small notch; pathological Q waves of IMI, ASMI (QS in V1-V3), QWAVE."""
    h, sev, u, n = d.lab.has, d.lab.sev, d.u, d.n
    notch = h("ABQRS") & ~(h("IMI") | h("ASMI") | h("QWAVE") | h("CRBBB") | h("IRBBB") | h("CLBBB"))
    d.center[:, C["R2"]] = np.where(notch, 0.032, d.center[:, C["R2"]])
    d.width[:, C["R2"]] = np.where(notch, 0.007, d.width[:, C["R2"]])
    d.amp[:, C["R2"]] = np.where(_col(notch), project(_unit(d.rng.normal(size=(n, 3))) * _col(u(0.25, 0.4))),
                                 d.amp[:, C["R2"]])
    d.set("QPATH", -0.026, u(0.011, 0.014))
    qpath = frontal(-90.0, u(0.3, 0.55) * sev("IMI")) * _col(h("IMI"))
    asmi = h("ASMI")
    qpath += precordial((0.9, 1.0, 0.7, 0.25, 0.0, 0.0), -u(0.4, 0.8) * sev("ASMI")) * _col(asmi)
    qw = u(0.2, 0.4)
    qpath += (frontal(180.0, qw) + precordial((0.0, 0.0, 0.0, 0.3, 0.8, 1.0), -qw)) * _col(h("QWAVE"))
    d.amp[:, C["QPATH"]] = qpath
    for comp in ("QSEP", "R"):  # anteroseptal infarct: loss of R in V1-V3 (QS complexes)
        d.amp[:, C[comp], 2:5] *= np.where(_col(asmi), 0.15, 1.0)


QRS_COMPONENTS = ("QSEP", "QPATH", "R", "S", "R2", "DELTA")


def _voltage(d: _Draw) -> np.ndarray:
    """HVOLT / LVOLT scale every QRS component; returns the factor (N,)."""
    h, u = d.lab.has, d.u
    qrs = [C[c] for c in QRS_COMPONENTS]
    volt = np.where(h("HVOLT"), u(1.7, 2.2), 1.0) * np.where(h("LVOLT"), u(0.3, 0.45), 1.0)
    d.amp[:, qrs] *= volt[:, None, None]
    return volt


def _t_wave(d: _Draw, theta: np.ndarray, lb_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concordant T and its changes (LBBB/RBBB/RV strain, NDT, ISC_, INVT, LVH strain, INJAS, IMI,
    LVOLT); returns the LVH strain flag (N,), QTc (N,) s and T width (N,) s."""
    h, u, n, col = d.lab.has, d.u, d.n, _col
    lbbb, crbbb, rvh, lvh = h("CLBBB"), h("CRBBB"), h("RVH"), h("LVH")
    t_theta = np.clip(theta + d.rng.normal(0.0, 12.0, n), -10.0, 90.0)
    t_vec = _vec(np.cos(np.deg2rad(t_theta)), np.sin(np.deg2rad(t_theta)), 0.45) * col(u(0.22, 0.4))
    t_amp = project(t_vec)
    t_amp = np.where(col(lbbb), project(-lb_dir * col(u(0.3, 0.5))), t_amp)
    t_amp[:, 2:5] = np.where(col(crbbb), -np.abs(t_amp[:, 2:5]) * 0.7, t_amp[:, 2:5])
    rv_strain = rvh & (d.rng.random(n) < 0.5)
    t_amp[:, 2:5] = np.where(col(rv_strain), -np.abs(t_amp[:, 2:5]) * 0.8 - 0.05, t_amp[:, 2:5])
    flat = np.where(h("NDT"), u(0.05, 0.2), 1.0) * np.where(h("ISC_"), u(0.2, 0.4), 1.0)
    t_amp[:, :2] *= flat[:, None]
    t_amp[:, 5:8] *= flat[:, None]
    invt = h("INVT")
    t_amp[:, 2:6] = np.where(col(invt), -(np.abs(t_amp[:, 2:6]) * 0.8 + col(u(0.15, 0.3))), t_amp[:, 2:6])
    strain = lvh & (d.rng.random(n) < 0.5)
    t_amp[:, :2] = np.where(col(strain), -0.6 * t_amp[:, :2], t_amp[:, :2])
    t_amp[:, 6:8] = np.where(col(strain), -np.abs(t_amp[:, 6:8]), t_amp[:, 6:8])
    t_amp[:, 2:6] *= np.where(col(h("INJAS")), 1.5, 1.0)
    t_amp += frontal(-90.0, 0.15) * col(h("IMI") & (d.rng.random(n) < 0.4))
    t_amp *= np.where(col(h("LVOLT")), 0.6, 1.0)
    d.amp[:, C["T"]] = t_amp
    qtc = np.where(h("LNGQT"), u(0.49, 0.57), np.clip(d.rng.normal(0.41, 0.015, n), 0.37, 0.44))
    t_width = u(0.045, 0.058) * np.where(h("LNGQT"), 1.15, 1.0)
    return strain, qtc, t_width


def _st_deviation(d: _Draw, lb_dir: np.ndarray, strain: np.ndarray) -> None:
    """Flat ST plateau between J point and T: ISC_, STD_, STE_, INJAS, LVH strain, LBBB."""
    h, sev, u, col = d.lab.has, d.lab.sev, d.u, _col
    m = u(0.08, 0.16) * sev("ISC_")
    st = (frontal(180.0, m) + precordial((0.0, 0.0, 0.2, 0.6, 1.0, 1.0), -m)) * col(h("ISC_"))
    m = u(0.10, 0.2)
    st += (frontal(-90.0, m) + precordial((0.0, 0.0, 0.3, 0.6, 0.8, 0.6), -m)) * col(h("STD_"))
    m = u(0.12, 0.25)
    st += (frontal(90.0, m) + precordial((0.0, 0.0, 0.0, 0.0, 0.2, 0.3), m)) * col(h("STE_"))
    st += precordial((0.7, 1.0, 1.0, 0.6, 0.1, 0.0), u(0.15, 0.3) * sev("INJAS")) * col(h("INJAS"))
    st += (frontal(200.0, 0.08) + precordial((0.0, 0.0, 0.0, 0.3, 0.8, 1.0), -0.1)) * col(strain)
    st += project(-lb_dir * col(u(0.1, 0.18))) * col(h("CLBBB"))
    d.amp[:, C["ST"]] = st


def _ectopic_templates(d: _Draw, volt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PVC template (wide, own axis, discordant T): center, width, amp; and the ectopic P of PACs (N, 8)."""
    u, n, col = d.u, d.n, _col
    pvc_dir = _unit(d.rng.normal(size=(n, 3)) + np.array([0.3, 0.3, 0.0]))
    pvc_mag = u(1.2, 2.0)
    k = len(COMPONENTS)
    pvc_center = np.zeros((n, k))
    pvc_width = np.full((n, k), 0.01)
    pvc_amp = np.zeros((n, k, 8))
    pvc_center[:, C["R"]] = 0.02
    pvc_width[:, C["R"]] = u(0.03, 0.038)
    pvc_amp[:, C["R"]] = project(pvc_dir * col(pvc_mag))
    pvc_center[:, C["S"]] = 0.085
    pvc_width[:, C["S"]] = 0.022
    pvc_amp[:, C["S"]] = project(-pvc_dir * col(0.35 * pvc_mag))
    pvc_center[:, C["T"]] = u(0.3, 0.36)
    pvc_width[:, C["T"]] = u(0.06, 0.075)
    pvc_amp[:, C["T"]] = project(-pvc_dir * col(u(0.35, 0.6)))
    pvc_amp[:, [C[c] for c in QRS_COMPONENTS] + [C["T"]]] *= volt[:, None, None]
    pac_theta = u(-100.0, -40.0)
    pac_p_amp = project(_vec(np.cos(np.deg2rad(pac_theta)), np.sin(np.deg2rad(pac_theta)), 0.1) * col(u(0.09, 0.15)))
    return pvc_center, pvc_width, pvc_amp, pac_p_amp


def _frontal_axis(d: _Draw) -> np.ndarray:
    """Frontal QRS axis (N,) degrees from the net QRS area of the drawn templates in I and II."""
    qrs = [C[c] for c in QRS_COMPONENTS]
    net = (d.amp[:, qrs, :2] * d.width[:, qrs, None]).sum(axis=1)  # (N, 2): net QRS area in I, II
    x, y = net[:, 0], (net[:, 1] - 0.5 * net[:, 0]) / (np.sqrt(3) / 2)
    return np.rad2deg(np.arctan2(y, x))


def draw_morphology(rng: np.random.Generator, lab: LabelSample) -> Morphology:
    """Draw per-record wave parameters for N records from their statements (one section per finding
    family, in a fixed order of random draws)."""
    d = _Draw.start(rng, lab)
    theta, r_vec, s_mag = _main_vectors(d)
    pr, qrs_onset, p_amp = _p_wave(d)
    _septal_q(d)
    qrs_end = _r_s_delta(d, r_vec, s_mag)
    qrs_end = _right_bundle_branch_block(d, qrs_end)
    qrs_end, qrs_onset, lb_dir = _left_bundle_branch_block(d, qrs_end, qrs_onset)
    _notch_and_q_waves(d)
    volt = _voltage(d)
    strain, qtc, t_width = _t_wave(d, theta, lb_dir)
    _st_deviation(d, lb_dir, strain)
    pvc_center, pvc_width, pvc_amp, pac_p_amp = _ectopic_templates(d, volt)
    # body habitus / electrode placement: per-record gains (limb leads share one, keeping Einthoven)
    n = d.n
    gain = np.concatenate([np.repeat(rng.lognormal(0.0, 0.1, (n, 1)), 2, axis=1), rng.lognormal(0.0, 0.15, (n, 6))], axis=1)
    d.amp *= gain[:, None, :]
    pvc_amp *= gain[:, None, :]
    pac_p_amp *= gain
    return Morphology(
        center=d.center, width=d.width, amp=d.amp, pvc_center=pvc_center, pvc_width=pvc_width,
        pvc_amp=pvc_amp, pac_p_amp=pac_p_amp, p_amp=p_amp * gain, qtc=qtc, t_width=t_width, qrs_end=qrs_end,
        qrs_onset=qrs_onset, pr=pr, axis=_frontal_axis(d),
    )
