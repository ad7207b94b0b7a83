"""Configuration of the synthetic PTB-XL- and MIMIC-IV-shaped archive (``ecgproto synth``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthConfig:
    """Size, randomness and noise of the synthetic PTB-XL- and MIMIC-shaped archives.

    See ``docs/readme/synth.md`` for what each field changes in the written files.
    """

    n_records: int = 2000  # PTB-XL-shaped records (10 s, 12 leads, 100 Hz)
    n_mimic_subjects: int = 300  # MIMIC-shaped subjects (each with 1-4 admissions, ~2-3 ECGs at 500 Hz)
    seed: int = 0
    write_500hz: bool = False  # also write records500/ (5x the disk and time)
    records_per_patient: float = 1.25  # mean PTB-XL records per patient (>= 1)
    noise_scale: float = 1.0  # multiplies every noise amplitude (0 = clean signals)
    powerline_hz: float = 0.0  # 0 = no mains interference; 50 or 60 adds it where fs allows
    rare_label_floor: float = 0.02  # minimum prevalence of each simulated label (learnability)

    def __post_init__(self) -> None:
        if self.n_records < 1:
            raise ValueError(f"synth.n_records must be >= 1, got {self.n_records}")
        if self.seed < 0:
            raise ValueError(f"synth.seed must be >= 0, got {self.seed}")
        if self.n_mimic_subjects < 0:
            raise ValueError(f"synth.n_mimic_subjects must be >= 0, got {self.n_mimic_subjects}")
        if self.records_per_patient < 1.0:
            raise ValueError(f"synth.records_per_patient must be >= 1, got {self.records_per_patient}")
        if self.noise_scale < 0.0:
            raise ValueError(f"synth.noise_scale must be >= 0, got {self.noise_scale}")
        if self.powerline_hz < 0.0:
            raise ValueError(f"synth.powerline_hz must be >= 0 (0 = off), got {self.powerline_hz}")
        if not 0.0 <= self.rare_label_floor <= 0.2:
            raise ValueError(f"synth.rare_label_floor must be in [0, 0.2], got {self.rare_label_floor}")
