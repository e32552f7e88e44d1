"""Cases, cohorts on disk in clinical formats, synthetic cohorts with known ground truth, torch datasets."""

from neurofusion.data.augment import CLINICAL_SYNONYMS, AugmentConfig, augment_batch, replace_synonyms
from neurofusion.data.annotations import read_ground_truth, read_rankings, write_rankings
from neurofusion.data.cohort import (
    CohortCheck,
    CohortReader,
    check_cohort,
    cohort_summary,
    validate_cohort,
    write_case_files,
    write_cohort_tables,
)
from neurofusion.data.dataset import Batch, CaseDataset, Collate, InputSpec, prepare_case
from neurofusion.data.errors import CohortError
from neurofusion.data.features import FeatureSpec, read_features, write_features
from neurofusion.data.modalities import (
    CANCER_MODALITIES,
    CARDIO_MODALITIES,
    KINDS,
    MAX_MODALITIES,
    ModalityError,
    ModalitySpec,
    modalities_from_dicts,
    modalities_to_dicts,
)
from neurofusion.data.formats import read_image, read_note, read_signal, write_dicom_image, write_png, write_wfdb
from neurofusion.data.schema import (
    MODALITIES,
    SPLITS,
    STANDARD_LEADS,
    Case,
    LeadMatch,
    Signal,
    lead_issues,
    match_leads,
    standard_lead,
)
from neurofusion.data.tasks import CARDIO_CLASSES, CARDIO_FINDINGS, TASKS, TaskSpec

__all__ = [
    "CANCER_MODALITIES", "CARDIO_MODALITIES", "KINDS", "MAX_MODALITIES", "ModalityError", "ModalitySpec",
    "TaskSpec", "modalities_from_dicts", "modalities_to_dicts",
    "AugmentConfig", "CLINICAL_SYNONYMS", "augment_batch", "replace_synonyms",
    "Batch", "CARDIO_CLASSES", "CARDIO_FINDINGS", "Case", "CaseDataset", "CohortCheck", "CohortError",
    "CohortReader", "Collate", "FeatureSpec", "InputSpec", "LeadMatch", "MODALITIES", "SPLITS",
    "STANDARD_LEADS", "Signal", "TASKS", "check_cohort", "cohort_summary", "lead_issues", "match_leads",
    "prepare_case", "standard_lead", "read_features", "read_ground_truth", "read_image", "read_note",
    "read_rankings", "read_signal", "validate_cohort", "write_case_files", "write_cohort_tables",
    "write_dicom_image", "write_features", "write_png", "write_rankings", "write_wfdb",
]
