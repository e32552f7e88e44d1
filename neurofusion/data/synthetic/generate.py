"""Write a synthetic cohort folder: cases rendered in parallel, then the tables, rankings and a README."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from neurofusion.data.annotations import write_rankings
from neurofusion.data.cohort import (
    COHORT_JSON,
    GROUND_TRUTH_CSV,
    RANKINGS_CSV,
    atomic_write_csv,
    write_case_files,
    write_cohort_tables,
)
from neurofusion.data.features import FeatureSpec
from neurofusion.data.modalities import CARDIO_MODALITIES, modalities_to_dicts
from neurofusion.data.schema import SPLITS, Case
from neurofusion.data.synthetic import cancer, cardio
from neurofusion.data.synthetic.interactions import RULES
from neurofusion.data.synthetic.labs import CARDIO_FEATURES
from neurofusion.data.synthetic.raters import SYNTHETIC_RATERS, simulate_rankings
from neurofusion.data.tasks import TASKS

RANKED_SPLITS = ("test",)  # the simulated annotation study covers the held-out cases
# How colour images (a modality declared colour, e.g. histopathology) are stored: lossless 8-bit RGB PNG,
# or 8-bit palette PNG (256 colours per image, Pillow's maximum-coverage quantiser without dithering), as some
# scanners' and PACS exports store colour. On the bundled H&E tiles: each channel within 6 of 255 levels
# (mean 1.9), 45 % of the RGB PNG's size (8.7 vs 20 MB for 200 cases).
COLOUR_FORMATS: tuple[str, ...] = ("rgb", "palette")


@dataclass(frozen=True)
class TaskGenerator:
    """What writing one task's synthetic cohort needs. draw: (n, seed) -> case draws (``case_id``,
    ``split``), all cases at once. render: (draw, seed) -> (Case, ground-truth row, image format for
    ``write_case_files``). features: the features.csv rows. rankings: (ground-truth rows, seed) -> simulated
    clinician rankings, one rank column per modality. readme: (cohort.json, cases written) -> README.md.
    interactions: whether render takes ``interaction_share`` (cross-modal interaction rules).
    interactions_readme: (share, ground truth) -> the README section on the task's interaction rules."""

    draw: Callable[[int, int], list[Any]]
    render: Callable[..., tuple[Case, dict, str]]
    features: list[FeatureSpec]
    rankings: Callable[[pd.DataFrame, int], pd.DataFrame]
    readme: Callable[[dict, int], str]
    interactions: bool = False
    interactions_readme: Callable[[float, pd.DataFrame], str] | None = None


def _render_cardio(draw: cardio.CaseDraw, seed: int, interaction_share: float = 0.0) -> tuple[Case, dict, str]:
    case, truth, site = cardio.synthesize_case(draw, seed, interaction_share)
    return case, truth, site.image_format


def _interactions_readme(share: float, truth: pd.DataFrame) -> str:
    """The README section on interaction-decided cases: the rules, their rationale and how many cases each
    decided among those written."""
    counts = Counter(zip(truth["interaction_rule"], truth["interaction_role"]))
    lines = [f"\n## Cross-modal interactions\n\nWith `--interaction-share {share:g}`, each case was decided by an "
             f"interaction rule with probability {share:g} ({sum(truth['interaction_rule'] != '')} of the "
             f"{len(truth)} cases written). Such a case shows the rule's two cues in proportion, both faint or both "
             "strong (a *conjunction*: the rule's label), or one cue strong with a faint partner (a *decoy*: another "
             "label), so neither cue means anything alone and no sum of per-modality evidence decides it. The other "
             "modalities show the rule's label weakly and the work-up (demographics, tests ordered, missing "
             "modalities) is the rule's, whichever way the case ends. `ground_truth.csv` names the rule, role, "
             "modality pair and strength of each (a conjunction's weaker cue; a decoy's strong minus faint cue).\n"]
    for rule in RULES:
        cues = " + ".join(f"{c.reads} ({c.modality})" for c in rule.cues)
        lines.append(f"- `{rule.name}` ({rule.pair}): {cues} -> {rule.label}; decided "
                     f"{counts[(rule.name, 'conjunction')]} conjunction and {counts[(rule.name, 'decoy')]} decoy "
                     f"case(s). {rule.rationale}")
        lines += [f"  - decoy: strong {d.cue.reads}, faint partner -> {d.label}: {d.rationale}." for d in rule.decoys]
    return "\n".join(lines) + "\n"


def _cardio_readme(info: dict, n_written: int) -> str:
    gen = info["generator"]
    raters = ", ".join(r.name for r in SYNTHETIC_RATERS)
    return f"""# Synthetic {info['task']} cohort ({n_written} cases)

**SYNTHETIC DATA. No real patient is represented; not for clinical use.**

Regenerate it (into an empty folder) with:

    {gen['command']}

That gives the same cases, tables and notes exactly, and on the same machine the same bytes whatever the
number of workers. On another CPU an image pixel or ECG sample may differ by one stored step (they are
rounded from floats), and PNG/WFDB bytes depend on the zlib, Pillow and wfdb versions.

It holds the {', '.join(gen['splits'])} part of an {gen['n']}-case cohort drawn with seed {gen['seed']};
the other splits come from the same command with `--splits` naming them.

- `cohort.csv`: one row per case (split, label, site, file paths, `has_<modality>` flags, labs).
- `features.csv`: units and reference ranges of the lab/demographic columns.
- `images/`: echo-like apical four-chamber images (8- and 16-bit PNG at two sites, 16-bit DICOM at the third).
- `signals/`: 12-lead 10 s ECGs as WFDB records (500 Hz at two sites, 250 Hz at one).
- `notes/`: cardiology consult notes, UTF-8.
- `ground_truth.csv`: how strongly each modality expresses the case's label (0-1, blank = modality
  missing), the distractor finding, the image region (`image_roi` = x0 y0 x1 y1), the ECG leads and
  the note phrases that carry the evidence, and the cross-modal interaction deciding the case, if any
  (`interaction_rule`, `interaction_role`, `interaction_pair`, `interaction_strength`; blank and 0 if none).
- `{RANKINGS_CSV}`: modality rankings (1 = most important) by the simulated raters {raters}:
  readings (noise calibrated to an assumed
  expert tau of 0.60, a lean per rater) of the ground truth, standing in for a clinician annotation study.
- `{COHORT_JSON}`: task, class names and this provenance.
"""


GENERATORS: dict[str, TaskGenerator] = {
    "cardio": TaskGenerator(cardio.draw_cohort, _render_cardio, CARDIO_FEATURES, simulate_rankings,
                            _cardio_readme, interactions=True, interactions_readme=_interactions_readme),
    "cancer": TaskGenerator(cancer.draw_cohort, cancer.render_cohort_case, cancer.CANCER_FEATURES,
                            cancer.simulate_cancer_rankings, cancer.cancer_readme, interactions=True,
                            interactions_readme=cancer.interactions_readme),
}


def generate_cohort(
    task: str,
    n: int,
    seed: int,
    out: str | Path,
    *,
    splits: tuple[str, ...] = SPLITS,
    workers: int | None = None,
    signal_format: str = "16",
    colour_format: str = "rgb",
    interaction_share: float = 0.0,
    progress: bool = True,
) -> Path:
    """Generate the ``splits`` part of an ``n``-case synthetic cohort into the empty folder ``out``.

    The same (task, n, seed) always gives the same cases, whichever splits are written, so a committed
    test split and a regenerated training split belong to one cohort. Cases, tables and notes are the same
    on any machine; stored pixels and ECG samples within one step (floats rounded on another CPU); on one
    machine the files are the same bytes whatever ``workers`` is.

    colour_format: how colour images are stored, one of COLOUR_FORMATS ("palette" only for a task that
    declares a colour image modality). A palette is chosen per image, so on another CPU a one-level change
    of a rendered pixel can move palette colours: compare palette tiles with the rendered tile within the
    quantiser's tolerance, not with each other's bytes.

    interaction_share: the probability, in [0, 1], that a case is decided by a cross-modal interaction rule
    (:mod:`neurofusion.data.synthetic.interactions` for cardio, the predictive biomarkers of
    :mod:`neurofusion.data.synthetic.cancer.interactions` for cancer, the SpO2 target rule of
    :mod:`neurofusion.data.synthetic.icu.interactions` for icu). 0 gives the additive cohort.
    """
    if task not in GENERATORS and task != "icu":
        raise ValueError(f"unknown task {task!r}; available: {', '.join(GENERATORS)}, icu")
    unknown = set(splits) - set(SPLITS)
    if unknown or not splits:
        raise ValueError(f"splits must be some of {SPLITS}, got {splits}")
    spec = TASKS[task]
    if colour_format not in COLOUR_FORMATS:
        raise ValueError(f"colour_format must be one of {COLOUR_FORMATS}, got {colour_format!r}")
    if colour_format != "rgb" and not any(m.colour for m in spec.modalities):
        raise ValueError(f"colour_format {colour_format!r} applies to colour images; task {task!r} has none")
    if not (isinstance(interaction_share, (int, float)) and 0.0 <= interaction_share <= 1.0):
        raise ValueError(f"interaction_share must be a number in [0, 1], got {interaction_share!r}")
    if interaction_share and not (task == "icu" or (task in GENERATORS and GENERATORS[task].interactions)):
        with_rules = [t for t, g in GENERATORS.items() if g.interactions] + ["icu"]
        raise ValueError(f"interaction_share applies to tasks with interaction rules ({', '.join(with_rules)}), "
                         f"not {task!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder (nothing was written)")
    if task == "icu":  # time-stamped long tables, not one file per case
        return _generate_icu(n, seed, out, splits, signal_format, colour_format, float(interaction_share))
    generator = GENERATORS[task]
    draws = [d for d in generator.draw(n, seed) if d.split in splits]
    out.mkdir(parents=True, exist_ok=True)

    jobs = [(task, d, seed, str(out), signal_format, colour_format, float(interaction_share)) for d in draws]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=f"generating {task}", unit="case", disable=not progress, file=sys.stderr)
    rows, truths = [], []
    if workers <= 1:
        results = map(_render_and_write, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_render_and_write, jobs, chunksize=8)
    for row, truth in results:
        rows.append(row)
        truths.append(truth)
        bar.update()
    bar.close()
    if workers > 1:
        pool.shutdown()

    info = _cohort_info(task, n, seed, splits, signal_format, colour_format, float(interaction_share))
    write_cohort_tables(out, rows, features=generator.features, info=info)
    truth = pd.DataFrame(truths)
    atomic_write_csv(truth, out / GROUND_TRUTH_CSV)
    ranked = truth[truth["case_id"].isin([d.case_id for d in draws if d.split in RANKED_SPLITS])]
    if len(ranked):
        names = tuple(m.name for m in spec.modalities)
        write_rankings(out / RANKINGS_CSV, generator.rankings(ranked, seed), modalities=names)
    readme = generator.readme(info, len(rows))
    if interaction_share > 0 and generator.interactions_readme is not None:
        readme += generator.interactions_readme(float(interaction_share), truth)
    (out / "README.md").write_text(readme, encoding="utf-8")
    return out


def _generate_icu(n: int, seed: int, out: Path, splits: tuple[str, ...], signal_format: str,
                  colour_format: str, interaction_share: float = 0.0) -> Path:
    """The ICU cohort (neurofusion.data.synthetic.icu.write): vitals.csv.gz, labs, notes, demographics; with an
    interaction share, stays decided by neurofusion.data.synthetic.icu.interactions."""
    from neurofusion.data.synthetic.icu.write import write_icu_cohort

    if signal_format != "16":
        raise ValueError("--signal-format applies to WFDB ECG files; the ICU task's vitals are a long table")
    info = _cohort_info("icu", n, seed, splits, signal_format, colour_format, interaction_share)
    provenance = {k: info[k] for k in ("synthetic", "description", "generator")}
    provenance["generator"].pop("signal_format")
    write_icu_cohort(out, n, seed, splits=splits, compress_vitals=True, info=provenance,
                     interaction_share=interaction_share)
    return out


def _cohort_info(task: str, n: int, seed: int, splits: tuple[str, ...], signal_format: str,
                 colour_format: str, interaction_share: float = 0.0) -> dict:
    """cohort.json: task, outcome (classes, or survival with its horizon), declared modalities (unless
    cardio's default four, so a cardio cohort.json is as before) and the generator's provenance (the
    interaction share only when above 0, so an additive cohort's cohort.json is as before)."""
    spec = TASKS[task]
    info: dict[str, Any] = {"task": task}
    if spec.outcome == "classification":
        info["classes"] = list(spec.classes)
    else:
        info.update(outcome=spec.outcome, horizon=spec.horizon, time_unit=spec.time_unit)
    if spec.modalities != CARDIO_MODALITIES:
        info["modalities"] = modalities_to_dicts(spec.modalities)
    generator = {
        "command": _command(task, n, seed, splits, signal_format, colour_format, interaction_share),
        "task": task, "n": n, "seed": seed, "splits": list(splits), "signal_format": signal_format,
    }
    if interaction_share > 0:
        generator["interaction_share"] = interaction_share
    if any(m.colour for m in spec.modalities):
        generator["colour_format"] = colour_format
    return {**info, "synthetic": True,
            "description": "SYNTHETIC data generated by NeuroFusion Explorer; no real patient is represented.",
            "generator": generator}


def _render_and_write(job: tuple[str, Any, int, str, str, str, float]) -> tuple[dict, dict]:
    task, draw, seed, out, signal_format, colour_format, interaction_share = job
    generator = GENERATORS[task]
    if generator.interactions:
        case, truth, image_format = generator.render(draw, seed, interaction_share)
    else:
        case, truth, image_format = generator.render(draw, seed)
    row = write_case_files(out, case, image_format=image_format, signal_format=signal_format)
    if colour_format == "palette":
        for spec in case.modalities:
            if spec.colour and row.get(spec.file_column):
                _store_as_palette(Path(out) / str(row[spec.file_column]))
    return row, truth


def _store_as_palette(path: Path) -> None:
    """Rewrite an 8-bit RGB PNG as an 8-bit palette PNG of 256 colours (maximum coverage, no dithering)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    palette = rgb.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    palette.save(path, optimize=True)


def _command(task: str, n: int, seed: int, splits: tuple[str, ...], signal_format: str,
             colour_format: str = "rgb", interaction_share: float = 0.0) -> str:
    command = f"python -m neurofusion.data generate --task {task} --n {n} --seed {seed}"
    if tuple(splits) != SPLITS:
        command += f" --splits {','.join(splits)}"
    if signal_format != "16":
        command += f" --signal-format {signal_format}"
    if colour_format != "rgb":
        command += f" --colour-format {colour_format}"
    if interaction_share > 0:
        command += f" --interaction-share {interaction_share:g}"
    return command + " --out <folder>"
