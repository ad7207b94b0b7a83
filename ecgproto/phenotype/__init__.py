"""Prototype-to-phenotype association analysis (``ecgproto phenotype``).

Modules, in pipeline order: ``phecodes`` (shipped maps, ICD normalisation), ``cohort``
(ECG → admission linking, cases/controls), ``features`` (the four feature families),
``stats`` (vectorised score screen, rank AUC, BH), ``refit`` (Wald / Firth refits),
``association`` (one family × all phecodes), ``compare`` (family comparison),
``intraclass`` (prototype distances), ``auroc`` (grouped CV AUROC), ``pipeline``
(in-memory run + output files), ``inputs`` (reading scores, MIMIC tables, checkpoint)
and ``report`` (HTML).
"""
