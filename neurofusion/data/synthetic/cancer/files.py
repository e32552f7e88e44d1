"""A synthetic cancer case as a cohort-folder case: the declared modalities (histopathology RGB, genomics,
treatment notes, clinical), the survival outcome, the features.csv description of every tabular column and
the cohort README. Used by ``python -m neurofusion.data generate --task cancer``.

Gene columns are numeric 0/1 rather than categorical: a mutation is present or not, so one number per gene
is the whole information; the tabular encoder then gives each gene one input and one attribution (a
categorical column becomes an embedding per gene), and its missing mask keeps "panel not done" (blank)
apart from "no mutation found" (0).
"""

from __future__ import annotations

import numpy as np

from neurofusion.data.features import FeatureSpec
from neurofusion.data.modalities import CANCER_MODALITIES as CANCER_SPECS
from neurofusion.data.schema import Case
from neurofusion.data.synthetic.cancer.clinical import CLINICAL_COLUMNS, STAGES
from neurofusion.data.synthetic.cancer.cohort import CancerCase, CaseDraw, synthesize_case
from neurofusion.data.synthetic.cancer.genomics import GENE_PANEL, PRIMARY_SITES
from neurofusion.data.synthetic.cancer.outcome import HORIZON_MONTHS
from neurofusion.data.synthetic.raters import SYNTHETIC_RATERS

_CLINICAL_FEATURES: dict[str, FeatureSpec] = {
    "age": FeatureSpec("age", unit="years", description="age at diagnosis", modality="clinical"),
    "sex": FeatureSpec("sex", kind="categorical", categories=("F", "M"), description="sex recorded at birth",
                       modality="clinical"),
    "stage": FeatureSpec("stage", kind="categorical", categories=STAGES,
                         description="AJCC stage group at diagnosis (I-IV)", modality="clinical"),
    "ecog": FeatureSpec("ecog", unit="points", ref_low=0, ref_high=1, modality="clinical",
                        description="ECOG performance status, 0 (fully active) to 4 (bedbound); 0-1 = fit"),
    "primary_site": FeatureSpec("primary_site", kind="categorical", categories=PRIMARY_SITES,
                                description="primary tumour site", modality="clinical"),
    "bmi": FeatureSpec("bmi", unit="kg/m2", ref_low=18.5, ref_high=25, description="body-mass index",
                       modality="clinical"),
}
# features.csv of a cancer cohort: the clinical row, then the 50-gene panel in panel order.
CANCER_FEATURES: list[FeatureSpec] = [_CLINICAL_FEATURES[c] for c in CLINICAL_COLUMNS] + [
    FeatureSpec(gene, description=f"1 = pathogenic somatic {gene} mutation reported, 0 = none found "
                                  "(blank = panel not done)", modality="genomics")
    for gene in GENE_PANEL
]


def cohort_case(case: CancerCase) -> Case:
    """A synthesised case -> the Case a cohort folder holds: histopathology float32 (3, H, W) RGB in [0, 1]
    (uint8 / 255, so writing it as 8-bit PNG is exact), genomics {gene: 0/1}, treatment_notes str, clinical
    {column: value} (NaN = not recorded), missing modalities None; outcome {time, event}; label ""."""
    values: dict[str, object] = {
        "histopathology": np.moveaxis(case.histopathology, -1, 0).astype(np.float32) / 255.0,
        "genomics": dict(case.genomics),
        "treatment_notes": case.treatment_notes,
        "clinical": dict(case.clinical),
    }
    values = {m: v if case.present[m] else None for m, v in values.items()}
    return Case.from_values(case.case_id, "", case.split, values, CANCER_SPECS, site=case.site,
                            outcome={"time": float(case.time), "event": int(case.event)})


def render_cohort_case(
    draw: CaseDraw, seed: int, interaction_share: float = 0.0,
) -> tuple[Case, dict[str, object], str]:
    """Render case ``draw`` of the cohort drawn with ``seed`` -> (Case, ground-truth row in TRUTH_COLUMNS
    order, then the interaction columns when ``interaction_share`` > 0; image format "png8": the writer
    stores a colour image as 8-bit RGB PNG)."""
    case = synthesize_case(draw, seed, interaction_share)
    return cohort_case(case), dict(case.truth), "png8"


def cancer_readme(info: dict, n_written: int) -> str:
    """The README.md of a generated cancer cohort folder (``info``: its cohort.json)."""
    gen = info["generator"]
    raters = ", ".join(r.name for r in SYNTHETIC_RATERS)
    storage = {
        "rgb": "8-bit RGB PNG (lossless)",
        "palette": "8-bit palette PNG: 256 colours chosen per tile\n  (Pillow's maximum-coverage quantiser, "
                   "no dithering), as some slide-scanner and PACS exports store\n  colour. Measured on the "
                   "bundled sample: each channel within 6 of 255 levels of the rendered tile\n  (mean 1.9), "
                   "at 45 % of the lossless RGB PNG's size",
    }[gen["colour_format"]]
    return f"""# Synthetic cancer cohort ({n_written} cases)

**SYNTHETIC DATA. No real patient is represented; not for clinical use.**

Regenerate it (into an empty folder) with:

    {gen['command']}

That gives the same cases, tables and notes exactly, and on the same machine the same bytes whatever the
number of workers. On another CPU a tile pixel may differ by one stored level (tiles are rendered in
floating point), and PNG bytes depend on the zlib and Pillow versions.

It holds the {', '.join(gen['splits'])} part of a {gen['n']}-case cohort drawn with seed {gen['seed']};
the other splits come from the same command with `--splits` naming them.

Task: survival prognosis (paper section 6.1). Each case has an observed follow-up `time` in months and
`event` (1 = death, 0 = censored); the model predicts survival to {HORIZON_MONTHS:g} months. Times come from a
Weibull proportional-hazards model whose linear predictor sums the four modalities' contributions, each
scaled by that modality's evidence strength, with staggered entry, administrative censoring and loss to
follow-up (neurofusion/data/synthetic/cancer/outcome.py states it). Missing modalities follow the paper's
Table 1 (54 % complete, 31 % missing one, 15 % two or more), informatively: genomics is missing more often
in stage I and at site_c. A missing file-backed modality has no file; a missing tabular modality has empty
cells (never zeros); `has_<modality>` says which a case has.

- `cohort.csv`: one row per case: split, site, time, event, file paths, `has_<modality>` flags, the
  clinical columns (age, sex, stage, ecog, primary_site, bmi; ecog and bmi sometimes unrecorded) and the
  50-gene panel (1 = pathogenic mutation reported, 0 = none found, blank = panel not done).
- `features.csv`: kind, unit, reference range and modality (`clinical` or `genomics`) of every column.
- `histopathology/`: 256 x 256 H&E tiles (pink stroma, purple nuclei; grade shows as nuclear size,
  pleomorphism, density and mitoses), {storage}.
- `treatment_notes/`: oncology treatment summaries (regimen, surgery, restaging response), UTF-8.
- `ground_truth.csv`: per case and modality the evidence strength (0-1, blank = modality missing) and its
  contribution to the true log hazard, the dominant modality, the tumour region (`histopathology_roi` =
  x0 y0 x1 y1), grade, planted driver genes, the response and the note spans that state it, the true linear
  predictor and 5-year survival.
- `clinician_rankings.csv`: modality rankings (1 = most important) of the test cases by the simulated
  raters {raters}:
  readings (noise calibrated to an assumed
  expert tau of 0.60, a lean per rater) of the modalities ordered by |contribution|, standing in for a clinician
  annotation study.
- `cohort.json`: task, survival outcome, the declared modalities and this provenance.
"""
