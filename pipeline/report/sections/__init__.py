"""The report's sections, one module per study or topic; importing this package registers them all
(pipeline/report/outline.py). A new study adds its module and its name here."""

from pipeline.report.sections import (  # noqa: F401  (each module registers its sections)
    ablations,
    appendix,
    architectures,
    clusters,
    distillation,
    fidelity,
    matched,
    per_class,
    regimes,
    storage,
    studies,
    variants,
)
