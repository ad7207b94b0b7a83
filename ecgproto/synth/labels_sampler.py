"""Draw realistic multi-label SCP statement sets for synthetic ECGs.

Prevalences follow PTB-XL v1.0.3 (Wagner et al. 2020) for the 37 simulated
statements (``SYNTH_CODES``), with rare statements raised to a floor (``SynthConfig.rare_label_floor``)
so that every simulated label has enough positives to learn from. Co-occurrence is
structured the clinical way: one rhythm per record (SR, STACH, SBRAD, SARRH, AFIB,
AFLT, SVTAC, 3AVB), one bundle-branch state, one axis state, one voltage state, one ST state; incompatible
combinations (e.g. LBBB with LVH or infarct Q waves, AFIB with P-wave findings)
are never drawn; ABQRS mostly accompanies infarct Q waves; NORM means "no abnormal
statement"; age raises the chronic findings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgproto.data.labels import all_labels, label_table

RHYTHMS: tuple[str, ...] = ("SR", "STACH", "SBRAD", "SARRH", "AFIB", "AFLT", "SVTAC", "3AVB")
SYNTH_CODES: tuple[str, ...] = RHYTHMS + (
    "1AVB", "2AVB", "PVC", "PAC", "BIGU", "CLBBB", "CRBBB", "IRBBB", "LAFB", "LPFB", "WPW", "IMI", "ASMI", "QWAVE",
    "ABQRS", "LVH", "RVH", "HVOLT", "LVOLT", "LAO/LAE", "RAO/RAE", "ISC_", "STD_", "STE_", "INJAS", "NDT",
    "INVT", "LNGQT", "NORM",
)

# PTB-XL prevalence (fraction of 21,799 records) of each simulated statement.
PTBXL_PREVALENCE: dict[str, float] = {
    "STACH": 0.038, "SBRAD": 0.029, "SARRH": 0.035, "AFIB": 0.069, "AFLT": 0.003,
    "1AVB": 0.037, "PVC": 0.053, "PAC": 0.018, "CLBBB": 0.025, "CRBBB": 0.025, "IRBBB": 0.051,
    "LAFB": 0.075, "IMI": 0.123, "ASMI": 0.108, "QWAVE": 0.025, "LVH": 0.098, "HVOLT": 0.003,
    "LVOLT": 0.008, "LAO/LAE": 0.020, "ISC_": 0.058, "STD_": 0.046, "STE_": 0.001, "INJAS": 0.010,
    "NDT": 0.084, "INVT": 0.013, "LNGQT": 0.005, "SVTAC": 0.001, "BIGU": 0.004, "LPFB": 0.008,
    "WPW": 0.004, "RVH": 0.006, "RAO/RAE": 0.005, "2AVB": 0.001, "3AVB": 0.001,
}
AGE_DEPENDENT = ("AFIB", "AFLT", "CLBBB", "CRBBB", "LAFB", "IMI", "ASMI", "LVH", "1AVB", "PVC", "LVOLT")
LIKELIHOODS = np.array([100.0, 80.0, 50.0, 35.0, 15.0])
LIKELIHOOD_P = np.array([0.55, 0.15, 0.15, 0.10, 0.05])


@dataclass(frozen=True)
class LabelSample:
    """Drawn statements: ``labels`` (N, 71) uint8 in ``all_labels()`` order, ``likelihood``
    (N, 71) float32 (PTB-XL scp_codes value; 0 for form/rhythm statements and absent codes)
    and ``severity`` (N, 71) float32 in [0.75, 1] scaling how strongly a finding is drawn."""

    labels: np.ndarray
    likelihood: np.ndarray
    severity: np.ndarray

    def has(self, code: str) -> np.ndarray:
        """(N,) bool: records carrying ``code``."""
        return self.labels[:, CODE_INDEX[code]].astype(bool)

    def sev(self, code: str) -> np.ndarray:
        """(N,) float32 severity of ``code`` (1 where absent)."""
        return np.where(self.has(code), self.severity[:, CODE_INDEX[code]], 1.0).astype(np.float32)


CODE_INDEX: dict[str, int] = {c: i for i, c in enumerate(all_labels())}


def _prevalence(code: str, floor: float) -> float:
    return max(PTBXL_PREVALENCE[code], floor)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """probs (N, C) per-record category probabilities (row sums <= 1) -> (N,) index, -1 = none."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0])[:, None]
    hit = u < cum
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def age_multiplier(age: np.ndarray) -> np.ndarray:
    """(N,) factor on the prevalence of age-dependent findings (mean about 1 over PTB-XL ages)."""
    return np.clip(np.exp(0.03 * (np.asarray(age, dtype=float) - 60.0)) / 1.12, 0.25, 3.0)


def sample_labels(rng: np.random.Generator, age: np.ndarray, floor: float = 0.02) -> LabelSample:
    """Draw a consistent statement set for each of N records of the given ages (years)."""
    n = len(age)
    m = age_multiplier(age)
    p = {c: np.full(n, _prevalence(c, floor)) for c in PTBXL_PREVALENCE}
    for c in AGE_DEPENDENT:
        p[c] = np.clip(p[c] * m, 0.0, 0.4)
    p["SARRH"] = np.clip(p["SARRH"] / m, 0.0, 0.15)
    chosen: dict[str, np.ndarray] = {}

    def pick(codes: tuple[str, ...], allowed: np.ndarray | None = None) -> None:
        probs = np.stack([p[c] for c in codes], axis=1)
        if allowed is not None:
            probs = probs * allowed[:, None]
        idx = _categorical(rng, probs)
        for i, c in enumerate(codes):
            chosen[c] = idx == i

    def bern(code: str, allowed: np.ndarray | bool = True, prob: np.ndarray | None = None) -> None:
        q = p[code] if prob is None else prob
        chosen[code] = (rng.random(n) < q) & allowed

    pick(("AFIB", "AFLT", "STACH", "SBRAD", "SARRH", "SVTAC", "3AVB"))
    atrial = chosen["AFIB"] | chosen["AFLT"] | chosen["SVTAC"] | chosen["3AVB"]
    chosen["SR"] = ~(atrial | chosen["STACH"] | chosen["SBRAD"] | chosen["SARRH"])
    pick(("CLBBB", "CRBBB", "IRBBB"))
    lbbb = chosen["CLBBB"]
    pick(("LAFB", "LPFB", "RVH"), (~lbbb).astype(float))
    bern("WPW", ~(atrial | lbbb | chosen["CRBBB"]))
    bern("IMI", ~lbbb)
    bern("ASMI", ~lbbb)
    bern("QWAVE", ~(lbbb | chosen["IMI"] | chosen["ASMI"]))
    q_waves = chosen["IMI"] | chosen["ASMI"] | chosen["QWAVE"]
    bern("ABQRS", True, np.where(q_waves, 0.55, 0.02))
    pick(("LVH", "HVOLT", "LVOLT"), (~lbbb).astype(float))
    bern("2AVB", ~(atrial | chosen["STACH"] | chosen["SARRH"]))
    bern("LAO/LAE", ~atrial)
    bern("RAO/RAE", ~atrial)
    bern("1AVB", ~atrial)
    bern("BIGU", ~atrial)
    bern("PVC")
    chosen["PVC"] |= chosen["BIGU"]
    bern("PAC", ~atrial)
    pick(("ISC_", "STD_", "STE_", "INJAS"), (~lbbb).astype(float))
    pick(("NDT", "INVT"), (~(lbbb | chosen["ISC_"])).astype(float))
    chosen["INVT"] &= ~chosen["CRBBB"]
    bern("LNGQT")
    labels = np.zeros((n, len(CODE_INDEX)), dtype=np.uint8)
    for c, v in chosen.items():
        labels[:, CODE_INDEX[c]] = v
    return _attach_likelihood(rng, harmonise(labels))


def _attach_likelihood(rng: np.random.Generator, labels: np.ndarray) -> LabelSample:
    """PTB-XL likelihoods: diagnostic statements get 15..100, form/rhythm statements 0."""
    diagnostic = label_table().frame["diagnostic"].to_numpy() == 1
    lik = LIKELIHOODS[rng.choice(len(LIKELIHOODS), size=labels.shape, p=LIKELIHOOD_P)]
    lik = np.where(diagnostic[None, :], lik, 0.0)
    norm = CODE_INDEX["NORM"]
    lik[:, norm] = np.where(rng.random(len(labels)) < 0.8, 100.0, 80.0)
    lik = np.where(labels == 1, lik, 0.0).astype(np.float32)
    severity = np.where(diagnostic[None, :], 0.75 + 0.25 * lik / 100.0, 1.0).astype(np.float32)
    return LabelSample(labels=labels, likelihood=lik, severity=severity)


def scp_codes_strings(sample: LabelSample) -> list[str]:
    """PTB-XL ``scp_codes`` column: dict strings like ``"{'NORM': 100.0, 'SR': 0.0}"``.

    Diagnostic statements come first (by decreasing likelihood), then form/rhythm, as in PTB-XL.
    """
    codes = all_labels()
    diagnostic = label_table().frame["diagnostic"].to_numpy() == 1
    out = []
    for row, lik in zip(sample.labels, sample.likelihood):
        present = np.flatnonzero(row)
        order = sorted(present, key=lambda j: (not diagnostic[j], -lik[j], j))
        out.append(str({codes[j]: float(lik[j]) for j in order}))
    return out


CHRONIC: tuple[str, ...] = (
    "CLBBB", "CRBBB", "IRBBB", "LAFB", "LPFB", "WPW", "IMI", "ASMI", "QWAVE", "LVH", "RVH", "HVOLT", "LVOLT",
    "LAO/LAE", "RAO/RAE", "1AVB",
)
_SINUS = ("SR", "STACH", "SBRAD", "SARRH")  # rhythm statements compatible with NORM
_CLEARED_BY = {  # finding -> statements it rules out (drawn as incompatible)
    "AFIB": ("LAO/LAE", "RAO/RAE", "1AVB", "PAC", "BIGU", "WPW", "2AVB"),
    "AFLT": ("LAO/LAE", "RAO/RAE", "1AVB", "PAC", "BIGU", "WPW", "2AVB"),
    "SVTAC": ("LAO/LAE", "RAO/RAE", "1AVB", "PAC", "BIGU", "WPW", "2AVB"),
    "3AVB": ("LAO/LAE", "RAO/RAE", "1AVB", "2AVB", "PAC", "PVC", "BIGU", "WPW"),
    "2AVB": ("LAO/LAE", "RAO/RAE", "1AVB", "PAC", "PVC", "BIGU", "WPW"),
    "WPW": ("1AVB", "CRBBB", "IRBBB"),
    "LAFB": ("LPFB", "RVH"),
    "LPFB": ("RVH",),
    "CLBBB": ("CRBBB", "IRBBB", "LAFB", "LPFB", "RVH", "WPW", "IMI", "ASMI", "QWAVE", "LVH", "HVOLT", "LVOLT",
              "ISC_", "STD_", "STE_", "INJAS", "NDT", "INVT"),
    "CRBBB": ("IRBBB", "INVT"),
    "IMI": ("QWAVE",),
    "ASMI": ("QWAVE",),
    "LVH": ("HVOLT", "LVOLT"),
    "HVOLT": ("LVOLT",),
    "ISC_": ("NDT", "STD_", "STE_", "INJAS"),
    "STD_": ("STE_", "INJAS"),
    "STE_": ("INJAS",),
}


def harmonise(labels: np.ndarray) -> np.ndarray:
    """Apply the incompatibility rules (in place on a copy) and recompute NORM; (N, 71) uint8."""
    out = labels.copy()
    for code, cleared in _CLEARED_BY.items():
        hit = out[:, CODE_INDEX[code]] == 1
        for c in cleared:
            out[hit, CODE_INDEX[c]] = 0
    abnormal = np.zeros(len(out), dtype=bool)
    for c in SYNTH_CODES:
        if c not in _SINUS and c != "NORM":
            abnormal |= out[:, CODE_INDEX[c]] == 1
    out[:, CODE_INDEX["NORM"]] = ~abnormal
    return out


def share_chronic(rng: np.random.Generator, sample: LabelSample, first_index: np.ndarray, p_keep: float = 0.8) -> LabelSample:
    """Copy the chronic statements (CHRONIC) of each group's first record (``first_index``
    (N,) -> row index) onto the group's other records with probability ``p_keep``."""
    keep = (rng.random(len(first_index)) < p_keep) & (first_index != np.arange(len(first_index)))
    cols = [CODE_INDEX[c] for c in CHRONIC]
    labels = sample.labels.copy()
    lik = sample.likelihood.copy()
    sev = sample.severity.copy()
    src = first_index[keep]
    for arr, new in ((labels, sample.labels), (lik, sample.likelihood), (sev, sample.severity)):
        arr[np.ix_(np.flatnonzero(keep), cols)] = new[np.ix_(src, cols)]
    labels = harmonise(labels)
    norm = CODE_INDEX["NORM"]
    lik[:, norm] = np.where(labels[:, norm] == 1, np.where(lik[:, norm] > 0, lik[:, norm], 100.0), 0.0)
    lik = np.where(labels == 1, lik, 0.0).astype(np.float32)
    return LabelSample(labels=labels, likelihood=lik, severity=sev)
