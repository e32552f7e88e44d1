"""Cross-modal interactions of the synthetic cancer cohort: a *predictive biomarker*, the targeted therapy named
in the treatment summary whose effect on survival depends on the genomic alteration in the gene panel that it
targets (trastuzumab and ERBB2/HER2 amplification in breast cancer, osimertinib and an activating EGFR mutation
in lung cancer, encorafenib with cetuximab and BRAF V600E in colorectal cancer, olaparib and a BRCA2 mutation in
ovarian cancer).

In an interaction-decided case the alteration A (panel) and the therapy T (note) are drawn independently, each
present with probability 1/2, and add to the log hazard, times the case's interaction strength s in
[STRENGTH_RANGE]:

    A=0, T=0: 0                          (neither: the rule adds nothing)
    A=1, T=0: ALTERATION_LOG_HR  = +1.5  (the alteration untreated: aggressive biology, e.g. HER2-amplified)
    A=0, T=1: OFF_TARGET_LOG_HR  = +0.5  (therapy without its target: toxicity and delay, no benefit)
    A=1, T=1: TARGETED_LOG_HR    = -2.0  (the therapy on its target: a strong benefit)

The interaction is qualitative (crossing): the therapy raises the hazard without the alteration and lowers it
with it, and the alteration raises the hazard untreated and lowers it treated. In the log hazard it is
s * (ALTERATION_LOG_HR * A + OFF_TARGET_LOG_HR * T + INTERACTION_LOG_HR * A * T) with INTERACTION_LOG_HR =
-2.0 - 1.5 - 0.5 = -4.0: a product term no sum of a genomics and a notes term can fit (the best additive fit of
the four cells misses each by s * 1.0). An AND of two cues would be a sum of log-odds (see the cardio rules'
docstring); this rule makes each cue's meaning flip with its partner instead.

Attribution (ground_truth.csv): the Shapley values of the rule's two players (genomics, treatment_notes) with
"neither" as the baseline: each main effect goes to its own modality and half of the product term to each, so
contribution_genomics += s * (ALTERATION_LOG_HR * A + INTERACTION_LOG_HR * A * T / 2), likewise for the notes,
and the two still sum to the rule's log hazard. The simulated raters rank modalities by these |contribution|s.

Neither modality alone tells A and T: the note names the therapy but never the alteration, the panel shows the
alteration but never the treatment. Which cases are decided, and their A, T and s, come from the case's own
generator stream :data:`INTERACTION_STREAM` (the cancer cohort's streams 0-2 plan, render and draw the outcome),
so an interaction share of 0 reproduces the additive cohort exactly. A decided case keeps both modalities of the
pair (a targeted therapy is given on a panel result); its outcome is drawn from the same random numbers with the
rule's term added to the linear predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofusion.data.synthetic.cancer.genomics import GENE_PANEL, PRIMARY_SITES, RISK_GENES

INTERACTION_STREAM = 3
PAIR: tuple[str, str] = ("genomics", "treatment_notes")  # CANCER_MODALITIES order
ALTERATION_LOG_HR = 1.5
OFF_TARGET_LOG_HR = 0.5
TARGETED_LOG_HR = -2.0
INTERACTION_LOG_HR = TARGETED_LOG_HR - ALTERATION_LOG_HR - OFF_TARGET_LOG_HR
STRENGTH_RANGE = (0.75, 1.0)
# Roles: the four cells of (alteration, therapy).
NEITHER, UNTREATED, OFF_TARGET, TARGETED = "neither", "untreated_alteration", "off_target_therapy", "targeted"
ROLES: dict[tuple[int, int], str] = {(0, 0): NEITHER, (1, 0): UNTREATED, (0, 1): OFF_TARGET, (1, 1): TARGETED}
# ground_truth.csv columns a cohort drawn with an interaction share above 0 adds (blank and 0 where undecided).
INTERACTION_COLUMNS: tuple[str, ...] = (
    "interaction_rule", "interaction_role", "interaction_pair", "interaction_strength", "interaction_alteration",
    "interaction_therapy", "interaction_log_hazard", "interaction_term",
)


@dataclass(frozen=True)
class BiomarkerRule:
    """A targeted therapy and the panel gene whose alteration it targets, for one primary site."""

    name: str
    primary_site: str
    gene: str
    alteration: str
    therapy: str
    rationale: str

    def __post_init__(self) -> None:
        if self.primary_site not in PRIMARY_SITES:
            raise ValueError(f"rule {self.name!r}: primary site must be one of {PRIMARY_SITES}")
        if self.gene not in GENE_PANEL or self.gene in RISK_GENES:
            raise ValueError(f"rule {self.name!r}: the gene must be a panel gene outside RISK_GENES (whose "
                             f"status the planted drivers set), got {self.gene!r}")

    @property
    def pair(self) -> str:
        """The pair as ground_truth.csv writes it."""
        return "+".join(PAIR)


RULES: tuple[BiomarkerRule, ...] = (
    BiomarkerRule("her2_trastuzumab", "breast", "ERBB2", "ERBB2 (HER2) amplification", "trastuzumab",
                  "HER2-amplified breast cancer is aggressive untreated and responds strongly to trastuzumab; "
                  "without the amplification trastuzumab adds cardiotoxicity and no benefit."),
    BiomarkerRule("egfr_osimertinib", "lung", "EGFR", "activating EGFR mutation", "osimertinib",
                  "EGFR-mutant lung adenocarcinoma responds to osimertinib far better than to chemotherapy; in "
                  "EGFR wild-type tumours the inhibitor does not work and delays effective treatment."),
    BiomarkerRule("braf_encorafenib", "colorectal", "BRAF", "BRAF V600E mutation", "encorafenib with cetuximab",
                  "BRAF V600E colorectal cancer has a poor prognosis untreated and benefits from encorafenib with "
                  "cetuximab; without the mutation the combination only adds rash and diarrhoea."),
    BiomarkerRule("brca2_olaparib", "ovarian", "BRCA2", "pathogenic BRCA2 mutation", "olaparib",
                  "BRCA2-mutant (homologous-recombination-deficient) ovarian cancer is synthetically lethal with "
                  "PARP inhibition; without it olaparib maintenance adds myelotoxicity and little else."),
)
RULES_BY_SITE = {rule.primary_site: rule for rule in RULES}
RULES_BY_NAME = {rule.name: rule for rule in RULES}
# How each note style names the therapy (appended after every response phrase, so evidence spans stay put).
_THERAPY_LINE = {
    "structured": "\nTargeted therapy: {therapy}, started with the current line of treatment.\n",
    "terse": "Targeted: {therapy} added.\n",
    "narrative": "{therapy_cap} was added to {poss} treatment at this line.\n",
}


@dataclass(frozen=True)
class BiomarkerPlan:
    """How the rule decides one case: alteration and therapy (0/1), strength s, and the rule's log hazard."""

    rule: BiomarkerRule
    alteration: int
    therapy: int
    strength: float

    @property
    def role(self) -> str:
        return ROLES[(self.alteration, self.therapy)]

    @property
    def term(self) -> float:
        """The product (interaction) part of the rule's log hazard: s * INTERACTION_LOG_HR * A * T."""
        return self.strength * INTERACTION_LOG_HR * self.alteration * self.therapy

    @property
    def log_hazard(self) -> float:
        """The rule's whole addition to the linear predictor (the table of the module docstring, times s)."""
        main = ALTERATION_LOG_HR * self.alteration + OFF_TARGET_LOG_HR * self.therapy
        return self.strength * main + self.term

    @property
    def contribution(self) -> dict[str, float]:
        """Shapley split of :attr:`log_hazard` over the pair: own main effect plus half the product term."""
        return {"genomics": self.strength * ALTERATION_LOG_HR * self.alteration + self.term / 2,
                "treatment_notes": self.strength * OFF_TARGET_LOG_HR * self.therapy + self.term / 2}

    def truth(self) -> dict[str, object]:
        """This case's INTERACTION_COLUMNS."""
        return {"interaction_rule": self.rule.name, "interaction_role": self.role,
                "interaction_pair": self.rule.pair, "interaction_strength": round(self.strength, 4),
                "interaction_alteration": self.alteration, "interaction_therapy": self.therapy,
                "interaction_log_hazard": round(self.log_hazard, 4), "interaction_term": round(self.term, 4)}


def blank_truth() -> dict[str, object]:
    """INTERACTION_COLUMNS of a case no rule decides."""
    return {c: (0.0 if c in ("interaction_strength", "interaction_log_hazard", "interaction_term") else "")
            for c in INTERACTION_COLUMNS}


def draw_biomarker(seed: int, index: int, primary_site: str, share: float) -> BiomarkerPlan | None:
    """Whether case ``index`` (0-based) of a cohort drawn with ``seed`` is decided by its primary site's rule,
    and how; None when not. The first draw of the case's own stream decides, so the cases decided at a share
    are among those decided at any larger share."""
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"interaction share must be in [0, 1], got {share!r}")
    if primary_site not in RULES_BY_SITE:
        raise ValueError(f"no biomarker rule for primary site {primary_site!r}; rules exist for {list(RULES_BY_SITE)}")
    if share == 0.0:
        return None
    rng = np.random.default_rng([seed, index + 1, INTERACTION_STREAM])
    if rng.random() >= share:
        return None
    alteration, therapy = int(rng.random() < 0.5), int(rng.random() < 0.5)
    return BiomarkerPlan(RULES_BY_SITE[primary_site], alteration, therapy, float(rng.uniform(*STRENGTH_RANGE)))


def therapy_line(plan: BiomarkerPlan, style: str, sex: str) -> str:
    """The sentence a note of ``style`` adds when the therapy was given ("" when not): it names the drug,
    never the alteration."""
    if style not in _THERAPY_LINE:
        raise ValueError(f"note style must be one of {tuple(_THERAPY_LINE)}, got {style!r}")
    if not plan.therapy:
        return ""
    therapy = plan.rule.therapy
    return _THERAPY_LINE[style].format(therapy=therapy, therapy_cap=therapy[0].upper() + therapy[1:],
                                       poss="her" if sex == "F" else "his")


def named_therapy(note: str) -> str | None:
    """The rule therapy a note names, or None: what a reader of the note alone can tell of T."""
    for rule in RULES:
        if rule.therapy in note.lower():
            return rule.therapy
    return None


def interactions_readme(share: float, truth) -> str:
    """The cohort README section on the biomarker rules and how many cases each decided (``truth``: the
    ground-truth DataFrame)."""
    decided = truth[truth["interaction_rule"] != ""]
    lines = [f"\n## Cross-modal interactions: predictive biomarkers\n\nWith `--interaction-share {share:g}`, each "
             f"case was decided by its primary site's biomarker rule with probability {share:g} ({len(decided)} of "
             f"the {len(truth)} cases written). In such a case the panel's alteration (A) and the targeted therapy "
             "named in the treatment note (T) are drawn independently; the rule adds to the log hazard, times the "
             f"case's `interaction_strength` s: A alone +{ALTERATION_LOG_HR:g} (aggressive biology untreated), T "
             f"alone +{OFF_TARGET_LOG_HR:g} (toxicity without benefit), both {TARGETED_LOG_HR:g} (the therapy on its "
             "target). The effect crosses, so no sum of a genomics and a notes term fits it. The note names the "
             "therapy but never the alteration. `ground_truth.csv` gives the rule, role (`neither`, "
             "`untreated_alteration`, `off_target_therapy`, `targeted`), pair, s, A, T, the rule's whole log "
             "hazard (`interaction_log_hazard`) and its product term (`interaction_term` = "
             f"{INTERACTION_LOG_HR:g} s A T); `contribution_genomics` and `contribution_treatment_notes` hold the "
             "Shapley split (own main effect plus half the product term each), which the simulated raters rank.\n"]
    for rule in RULES:
        counts = decided[decided["interaction_rule"] == rule.name]["interaction_role"].value_counts()
        shown = ", ".join(f"{counts.get(r, 0)} {r}" for r in ROLES.values())
        lines.append(f"- `{rule.name}` ({rule.primary_site}): {rule.alteration} + {rule.therapy}; decided {shown}. "
                     f"{rule.rationale}")
    return "\n".join(lines) + "\n"
