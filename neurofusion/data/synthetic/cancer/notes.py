"""Synthetic oncology treatment summaries whose treatment-response phrases sit at known character spans, so
text attributions can be checked against the evidence that was planted.

A summary states the diagnosis (age, sex, stage and primary site as in the clinical row), the treatment
(stages I-III: neoadjuvant regimen with surgery planned after it; stage IV: palliative first-line regimen),
radiotherapy, the restaging response, toxicity and the plan. The response is the note's prognostic
evidence: at strength >= EXPLICIT_STRENGTH it is stated plainly ("complete response", "no evidence of
progression"), below it hedged ("findings may represent early progression"). Negated phrases are labelled by
what they assert: "no evidence of progression" expresses stable disease or response, never progression.
Three writing styles stand for the sites' templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from neurofusion.data.synthetic.cancer.clinical import STAGES
from neurofusion.data.synthetic.cancer.genomics import PRIMARY_SITES

RESPONSES: tuple[str, ...] = ("complete_response", "partial_response", "stable_disease", "progressive_disease")
RESPONSE_PRIOR: tuple[float, ...] = (0.22, 0.30, 0.27, 0.21)
NOTE_STYLES: tuple[str, ...] = ("structured", "terse", "narrative")
EXPLICIT_STRENGTH = 0.5

# response -> phrases that state it. Explicit ones are definite; hedged ones are uncertain on purpose.
_EXPLICIT: dict[str, tuple[str, ...]] = {
    "complete_response": ("complete response", "no evidence of disease", "complete metabolic response on PET-CT",
                          "complete radiological response"),
    "partial_response": ("partial response", "a partial response with a 45% decrease in target lesions",
                         "marked reduction in tumour burden consistent with partial response"),
    "stable_disease": ("stable disease", "no evidence of progression", "no new lesions and unchanged target lesions"),
    "progressive_disease": ("progressive disease", "new hepatic metastases consistent with disease progression",
                            "disease progression with new pulmonary nodules", "interval progression"),
}
_HEDGED: dict[str, tuple[str, ...]] = {
    "complete_response": ("possible complete response, to be confirmed on repeat imaging",
                          "no definite residual disease, although small-volume disease cannot be excluded"),
    "partial_response": ("findings may represent a partial response", "possible modest decrease in target lesions"),
    "stable_disease": ("broadly stable appearance, although comparison is limited",
                       "probably stable, with no convincing new lesions"),
    "progressive_disease": ("findings may represent early progression", "cannot exclude early progression",
                            "equivocal new lesions, possibly progression"),
}
# What the plan says after each response (verb phrases); definite plans only follow an explicit response.
_PLAN: dict[str, tuple[str, ...]] = {
    "complete_response": ("proceed to surveillance imaging every 3 months",
                          "stop systemic therapy and enter surveillance"),
    "partial_response": ("continue the current regimen", "complete the planned cycles and restage"),
    "stable_disease": ("continue the current regimen", "continue maintenance therapy with restaging in 3 months"),
    "progressive_disease": ("switch to second-line therapy", "discuss second-line options and clinical trials"),
}
_HEDGED_PLAN = ("repeat imaging in 6-8 weeks to clarify the response", "discuss at the tumour board and re-image")
# After neoadjuvant therapy: surgery unless the disease progressed (only that plan tells the responses apart).
_SURGICAL_PLAN = "proceed to {surgery}"
_NO_SURGERY_PLAN = ("abandon the planned {surgery} and switch to second-line therapy",
                    "cancel the planned {surgery} and discuss second-line options")
_HEDGED_SURGICAL_PLAN = ("repeat imaging in 6-8 weeks before deciding on surgery",
                         "discuss at the tumour board before confirming the planned {surgery}")

_DIAGNOSIS = {"breast": ("invasive ductal carcinoma of the {side} breast", "breast cancer"),
              "colorectal": ("adenocarcinoma of the sigmoid colon", "colorectal adenocarcinoma",
                             "adenocarcinoma of the ascending colon"),
              "lung": ("non-small cell lung cancer (adenocarcinoma)", "NSCLC of the {side} upper lobe"),
              "ovarian": ("high-grade serous ovarian carcinoma", "epithelial ovarian cancer")}
# Stages I-III are treated with neoadjuvant systemic therapy, restaged, then operated on (the response is the
# response to neoadjuvant therapy); stage IV with palliative first-line therapy.
_SURGERY = {"breast": ("{side} lumpectomy with sentinel node biopsy", "{side} mastectomy with axillary dissection"),
            "colorectal": ("laparoscopic sigmoid colectomy", "right hemicolectomy"),
            "lung": ("{side} upper lobectomy with mediastinal node dissection",),
            "ovarian": ("interval debulking surgery (TAH-BSO and omentectomy)",)}
_NEOADJUVANT = {"breast": (("AC-T (doxorubicin and cyclophosphamide followed by paclitaxel)", "neutropenia"),
                           ("docetaxel and cyclophosphamide (TC)", "fatigue")),
                "colorectal": (("FOLFOX", "peripheral neuropathy"), ("CAPOX", "hand-foot syndrome")),
                "lung": (("carboplatin/pemetrexed with pembrolizumab", "hypothyroidism"),
                         ("carboplatin/paclitaxel", "peripheral neuropathy")),
                "ovarian": (("three-weekly carboplatin/paclitaxel", "peripheral neuropathy"),
                            ("weekly carboplatin/paclitaxel", "anaemia"))}
_METASTATIC = {"breast": (("weekly paclitaxel", "peripheral neuropathy"), ("capecitabine", "hand-foot syndrome")),
               "colorectal": (("FOLFOX with bevacizumab", "hypertension"), ("FOLFIRI", "diarrhoea")),
               "lung": (("carboplatin/pemetrexed with pembrolizumab", "pneumonitis"),
                        ("pembrolizumab monotherapy", "immune-related colitis")),
               "ovarian": (("carboplatin/paclitaxel", "neutropenia"), ("carboplatin/pegylated liposomal doxorubicin",
                                                                      "mucositis"))}
_ADJUVANT_RT = {"breast": "adjuvant radiotherapy after surgery, 40 Gy in 15 fractions"}
_PALLIATIVE_RT = ("palliative radiotherapy to a painful bone metastasis, 20 Gy in 5 fractions",
                  "palliative radiotherapy to a bone metastasis, 8 Gy in a single fraction")
_TOX_GRADE = ("grade 1", "grade 2", "grade 2", "grade 3")


@dataclass(frozen=True)
class OncologyNote:
    """A written summary and where its response evidence lies."""

    text: str
    # (start, end, response): text[start:end] is a phrase that expresses `response`.
    evidence: tuple[tuple[int, int, str], ...]


class _Writer:
    """Joins text pieces, remembering where each evidence phrase lands."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.evidence: list[tuple[int, int, str]] = []

    def add(self, text: str, response: str | None = None) -> None:
        if response is not None:
            self.evidence.append((self.length, self.length + len(text), response))
        self.parts.append(text)
        self.length += len(text)

    def note(self) -> OncologyNote:
        return OncologyNote("".join(self.parts), tuple(self.evidence))


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def write_note(
    rng: np.random.Generator, clinical: Mapping[str, object], response: str, strength: float, style: str,
) -> OncologyNote:
    """A treatment summary for the patient of ``clinical`` (age, sex, stage, primary_site and, if recorded,
    ecog) whose restaging ``response`` shows at ``strength`` in [0, 1], written in ``style``."""
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {RESPONSES}, got {response!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"text strength must be in [0, 1], got {strength!r}")
    if style not in NOTE_STYLES:
        raise ValueError(f"note style must be one of {NOTE_STYLES}, got {style!r}")
    stage, primary, sex = clinical.get("stage"), clinical.get("primary_site"), clinical.get("sex")
    if stage not in STAGES or primary not in PRIMARY_SITES or sex not in ("F", "M"):
        raise ValueError(f"clinical row needs stage in {STAGES}, primary_site in {PRIMARY_SITES} and sex F or M, "
                         f"got stage={stage!r}, primary_site={primary!r}, sex={sex!r}")
    age = int(clinical["age"])  # type: ignore[call-overload]
    ecog = clinical.get("ecog")
    ecog_known = isinstance(ecog, (int, np.integer))
    pro, poss = ("She", "her") if sex == "F" else ("He", "his")
    noun = "woman" if sex == "F" else "man"
    side = _pick(rng, ("left", "right"))
    diagnosis = _pick(rng, _DIAGNOSIS[str(primary)]).format(side=side)
    metastatic = stage == "IV"
    surgery = _pick(rng, _SURGERY[str(primary)]).format(side=side)
    regimen, toxicity = (_METASTATIC if metastatic else _NEOADJUVANT)[str(primary)][int(rng.integers(2))]
    setting = "palliative" if metastatic else "neoadjuvant"
    rt_draw, rt_pick = rng.random(), _pick(rng, _PALLIATIVE_RT)
    radiotherapy = (rt_pick if rt_draw < 0.35 else None) if metastatic else _ADJUVANT_RT.get(str(primary))
    tox_grade = _pick(rng, _TOX_GRADE)
    cycles = int(rng.integers(3, 7))
    explicit = strength >= EXPLICIT_STRENGTH
    phrase = _pick(rng, (_EXPLICIT if explicit else _HEDGED)[response])
    plan, plan_evidence = _plan(rng, response, explicit, None if metastatic else surgery)
    header = {"structured": "ONCOLOGY TREATMENT SUMMARY", "terse": "Onc f/u",
              "narrative": "Medical Oncology Clinic Letter"}
    w = _Writer()
    w.add(header[style] + "\n\n")
    if style == "terse":
        w.add(f"{age} y/o {sex}, stage {stage} {diagnosis}.")
        if ecog_known:
            w.add(f" ECOG {ecog}.")
        w.add(f"\nTx: {setting} {regimen}" + ("" if metastatic else f", {surgery} planned"))
        w.add(f"; {radiotherapy}.\n" if radiotherapy else ".\n")
        w.add(f"Restaging after C{cycles}: ")
        w.add(phrase, response)
        w.add(f".\nTox: {tox_grade} {toxicity}.\nPlan: ")
        w.add(plan, plan_evidence)
        w.add(".\n")
        return w.note()
    if style == "structured":
        w.add(f"Diagnosis: {age}-year-old {noun} with stage {stage} {diagnosis}.")
        if ecog_known:
            w.add(f" ECOG performance status {ecog}.")
        w.add(f"\n\nTreatment:\n- Systemic therapy: {setting} {regimen}.\n")
        w.add("- Surgery: not a surgical candidate (metastatic disease).\n" if metastatic
              else f"- Surgery: {surgery}, planned after neoadjuvant therapy.\n")
        if radiotherapy:
            w.add(f"- Radiotherapy: {radiotherapy}.\n")
        w.add(f"\nResponse (restaging CT after {cycles} cycles): ")
        w.add(phrase, response)
        w.add(f".\n\nToxicity: {tox_grade} {toxicity}, managed supportively.\n\nPlan: ")
        w.add(plan, plan_evidence)
        w.add(".\n")
        return w.note()
    w.add(f"{pro} is a {age}-year-old {noun} with stage {stage} {diagnosis}, seen today in follow-up.")
    if ecog_known:
        w.add(f" {pro} remains ECOG {ecog}.")
    if metastatic:
        w.add(f" {pro} was not a surgical candidate and started palliative {regimen}")
    else:
        w.add(f" {pro} received neoadjuvant {regimen} ahead of a planned {surgery}")
    w.add(f", with {radiotherapy}." if radiotherapy else ".")
    w.add(f" Treatment was complicated by {tox_grade} {toxicity}.")
    w.add(f" {pro} had {poss} restaging scan after {cycles} cycles. Impression: ")
    w.add(phrase, response)
    w.add(". We will ")
    w.add(plan, plan_evidence)
    w.add(".\n")
    return w.note()


def _plan(rng: np.random.Generator, response: str, explicit: bool, surgery: str | None) -> tuple[str, str | None]:
    """The plan after restaging and the response it expresses (None when it tells no response apart):
    ``surgery`` is the planned operation after neoadjuvant therapy, None in the metastatic setting."""
    if surgery is None:
        return (_pick(rng, _PLAN[response]), response) if explicit else (_pick(rng, _HEDGED_PLAN), None)
    if not explicit:
        return _pick(rng, _HEDGED_SURGICAL_PLAN).format(surgery=surgery), None
    if response == "progressive_disease":
        return _pick(rng, _NO_SURGERY_PLAN).format(surgery=surgery), response
    return _SURGICAL_PLAN.format(surgery=surgery), None
