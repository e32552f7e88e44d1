"""The synthetic cancer-prognosis cohort (paper section 6.1): H&E tiles, a 50-gene panel, oncology treatment
summaries and a clinical row per case, with survival from a stated hazard model and known ground truth."""

from neurofusion.data.synthetic.cancer.clinical import (
    CLINICAL_COLUMNS, MISSING_VALUE_RATE, STAGES, ClinicalRow, clinical_log_hazard, draw_clinical,
)
from neurofusion.data.synthetic.cancer.cohort import (
    CANCER_MODALITIES, MISSING_COUNT_P, SITES, TRUTH_COLUMNS, CancerCase, CancerSite, CaseDraw, CasePlan,
    draw_cohort, plan_case, simulate_cancer_rankings, synthesize_case,
)
from neurofusion.data.synthetic.cancer.files import CANCER_FEATURES, cancer_readme, cohort_case, render_cohort_case
from neurofusion.data.synthetic.cancer.genomics import (
    GENE_PANEL, HIGH_RISK_GENES, PRIMARY_SITES, RISK_GENES, PanelResult, choose_drivers, draw_panel,
    genomic_log_hazard,
)
from neurofusion.data.synthetic.cancer.histology import (
    COHORT_MEAN_GRADE, GRADES, StainSpec, TileResult, render_tile,
)
from neurofusion.data.synthetic.cancer.interactions import interactions_readme
from neurofusion.data.synthetic.cancer.notes import RESPONSES, OncologyNote, write_note
from neurofusion.data.synthetic.cancer.outcome import (
    HORIZON_MONTHS, Outcome, expected_censoring_share, sample_event_time, sample_outcome, survival_probability,
)

__all__ = [
    "CANCER_FEATURES", "CANCER_MODALITIES", "CLINICAL_COLUMNS", "COHORT_MEAN_GRADE", "GENE_PANEL", "GRADES",
    "HIGH_RISK_GENES", "HORIZON_MONTHS", "MISSING_COUNT_P", "MISSING_VALUE_RATE", "PRIMARY_SITES", "RESPONSES",
    "RISK_GENES", "SITES", "STAGES", "TRUTH_COLUMNS", "CancerCase", "CancerSite", "CaseDraw", "CasePlan",
    "ClinicalRow", "OncologyNote", "Outcome", "PanelResult", "StainSpec", "TileResult", "cancer_readme",
    "choose_drivers", "clinical_log_hazard", "cohort_case", "draw_clinical", "draw_cohort", "draw_panel",
    "expected_censoring_share", "genomic_log_hazard", "interactions_readme", "plan_case", "render_cohort_case",
    "render_tile", "sample_event_time", "sample_outcome", "simulate_cancer_rankings", "survival_probability",
    "synthesize_case", "write_note",
]
