"""Expert-ranking studies: set up a study over a cohort and a model, let raters rank each case's modalities,
keep every submission in a database (SQLite by default, any SQLAlchemy URL), and read the rankings back in the
cohort's clinician_rankings.csv format."""

from neurofusion.studies.engine import STUDY_DB_ENV, STUDY_DIR_ENV, default_url, masked_url
from neurofusion.studies.history import history_frame, study_history
from neurofusion.studies.records import (
    PROTOCOLS,
    REVEAL_METHODS,
    SELECTIONS,
    SOURCES,
    Rater,
    Study,
    StudyCase,
    Submission,
)
from neurofusion.studies.schema import LATEST_VERSION, MIGRATIONS, StudyError
from neurofusion.studies.selection import describe_selection, select_cases
from neurofusion.studies.setup import add_raters_identities, create_study, parse_raters, read_model_config
from neurofusion.studies.store import StudyStore

__all__ = [
    "LATEST_VERSION", "MIGRATIONS", "PROTOCOLS", "REVEAL_METHODS", "SELECTIONS", "SOURCES", "STUDY_DB_ENV",
    "STUDY_DIR_ENV", "Rater", "Study", "StudyCase", "StudyError", "StudyStore", "Submission", "add_raters_identities",
    "create_study", "default_url", "describe_selection", "history_frame", "masked_url", "parse_raters", "read_model_config",
    "select_cases", "study_history",
]
