"""Data-parallel training (neurofusion/distributed.py): two CPU processes (gloo) train to the weights one process
reaches with their combined batch, the torchrun command line writes one checkpoint that loads like any other,
torchrun's environment is read strictly, and modality dropout leaves no parameter without a gradient."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.config import ModelConfig, TrainConfig
from neurofusion.data import CohortReader
from neurofusion.data.dataset import Collate, prepare_case
from neurofusion.data.tokenizer import load_tokenizer, make_tokenize
from neurofusion.distributed import (
    SINGLE,
    DistributedContext,
    check_encoders_run_everywhere,
    context_from_environment,
    find_unused_parameters,
)
from neurofusion.inference import Predictor
from neurofusion.loader import EpochSampler
from neurofusion.models import build_model
from neurofusion.models.heads import multitask_loss
from neurofusion.models.model import tabular_normalisers
from neurofusion.train import fit, main as train_main, modality_dropout, primary_targets
from tests.conftest import tiny_config

WORLD = 2
PER_PROCESS = 6  # the tiny cohort's 48 train cases: 4 steps of 2 x 6 per epoch, an even share for each process
# Two processes add their half-batch gradients in another order than one process sums the whole batch, and their
# synchronised batch norm takes the variance as E[x^2] - mean^2: float32 rounding. The per-epoch training loss
# agrees to ~1e-8 (LOSS_ATOL 1e-6). Weights are compared where the loss has a gradient: Adam turns the rounding
# noise of a gradient that is 0 in exact arithmetic (a bias before batch norm, the key bias of attention) into
# steps of size lr whatever its sign, so those elements (GRADIENT_FLOOR of the largest gradient) drift in both runs
# alike and say nothing. Measured on the rest, after 8 steps on weights of O(0.1): 2e-7 with one WordPiece
# vocabulary, 1.1e-5 with another (the deterministic fit's: an element whose gradient nears 0 at a later step,
# which the first-batch floor cannot see, has its rounding scaled up by Adam), hence WEIGHTS_ATOL 5e-5; one
# process with the per-process batch instead moves them by 3e-2 (asserted above 100 x WEIGHTS_ATOL).
LOSS_ATOL = 1e-6
WEIGHTS_ATOL = 5e-5
GRADIENT_FLOOR = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(seed: int, batch_size: int) -> TrainConfig:
    # modality dropout and augmentation off: what is compared is the data-parallel arithmetic
    return TrainConfig(lr=3e-3, batch_size=batch_size, max_epochs=2, patience=10, seed=seed, augment=False,
                       modality_dropout=0.0, device="cpu")


def _fit_rank(rank: int, port: int, root: str, tokenizer_dir: str, config: dict, seed: int, out: str) -> None:
    """One process of a 2-process job (spawned): train, and rank 0 saves what it trained."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = DistributedContext(rank, WORLD, rank)
    result = fit(CohortReader(root), ModelConfig.from_dict(config), _train(seed, PER_PROCESS), progress=False,
                 tokenizer=load_tokenizer(tokenizer_dir), context=context, state_path=os.path.join(out, "last.pt"))
    if rank == 0:
        save_checkpoint(out, result.model, result.tokenizer, training={"history": result.history})
    torch.distributed.destroy_process_group()


def _cli_rank(rank: int, port: int, argv: list[str]) -> None:
    """What torchrun starts: the training command with RANK, WORLD_SIZE and LOCAL_RANK set."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    if train_main(argv) != 0:
        raise SystemExit(f"rank {rank}: training failed")


def _check_rank(rank: int, port: int, out: str) -> None:
    """One process of a 2-process job whose batches differ: rank 1's has no image."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    present = torch.ones(3, 4, dtype=torch.bool)
    present[:, 0] = rank == 0
    names = ("image", "text", "signal", "tabular")
    try:
        check_encoders_run_everywhere(present, names, ("signal",), DistributedContext(rank, WORLD, rank))  # passes
        check_encoders_run_everywhere(present, names, ("image",), DistributedContext(rank, WORLD, rank))
        message = "no error"
    except ValueError as err:
        message = str(err)
    Path(out, f"rank{rank}.txt").write_text(message)
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def tokenizer_dir(tiny_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer.save_pretrained(path)
    return path


def test_two_processes_reach_the_weights_of_one_with_their_combined_batch(tiny_cohort, tiny_tokenizer,
                                                                          tokenizer_dir, tmp_path):
    assert len(tiny_cohort.ids("train")) % (WORLD * PER_PROCESS) == 0  # every step splits evenly
    config = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    for encoder in ("text", "tabular"):  # dropout draws per process: off, like modality dropout (fusion: 0)
        config[encoder]["dropout"] = 0.0
    mp.spawn(_fit_rank, args=(_free_port(), str(tiny_cohort.root), str(tokenizer_dir), config, 5,
                              str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    ddp = load_checkpoint(tmp_path / "ddp", device="cpu")  # loads like any other checkpoint
    tokenizer = load_tokenizer(tokenizer_dir)
    single = fit(tiny_cohort, ModelConfig.from_dict(config), _train(5, WORLD * PER_PROCESS), progress=False,
                 tokenizer=tokenizer)
    compared = _learnt_elements(tiny_cohort, ModelConfig.from_dict(config), tokenizer)
    expected, got = dict(single.model.named_parameters()), dict(ddp.model.named_parameters())
    assert expected.keys() == got.keys() == compared.keys()
    # most elements are compared (measured 60 %: the embeddings of word pieces absent from the first batch are
    # left out too)
    assert sum(int(m.sum()) for m in compared.values()) >= 0.5 * sum(m.numel() for m in compared.values())
    worst = {k: _largest_difference(expected[k], got[k], compared[k]) for k in expected}
    assert max(worst.values()) <= WEIGHTS_ATOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    # the same validation numbers on rank 0 as in one process, and the same kept epoch
    history = json.loads((tmp_path / "ddp" / "training.json").read_text())["history"]
    assert [h["val_accuracy"] for h in history] == [h["val_accuracy"] for h in single.history]
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in single.history],
                                                                abs=LOSS_ATOL)
    # and the comparison can fail: one process with the per-process batch trains elsewhere
    halves = fit(tiny_cohort, ModelConfig.from_dict(config), _train(5, PER_PROCESS), progress=False,
                 tokenizer=tokenizer)
    other = dict(halves.model.named_parameters())
    assert max(_largest_difference(other[k], got[k], compared[k]) for k in got) > 100 * WEIGHTS_ATOL


def _largest_difference(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    differences = (a.detach() - b.detach()).abs()[where]
    return float(differences.max()) if differences.numel() else 0.0


def _learnt_elements(cohort, config: ModelConfig, tokenizer) -> dict[str, torch.Tensor]:
    """{parameter: (its shape) bool}: the elements whose gradient on the first combined batch, from the seeded
    initial weights, is above GRADIENT_FLOOR of the largest (the rest have no gradient in exact arithmetic)."""
    torch.manual_seed(5)  # fit's seed: the same initial weights
    model = build_model(config).train()
    ids = cohort.ids("train")
    sampler = EpochSampler(len(ids), seed=5)
    sampler.set_epoch(1)
    first = [i for _, i in sampler][:WORLD * PER_PROCESS]
    spec = config.input_spec()
    batch = Collate(make_tokenize(tokenizer, config.text.max_length))([prepare_case(cohort[ids[i]], spec)
                                                                        for i in first])
    for name, normaliser in tabular_normalisers(model).items():  # as fit does, from the whole train split
        rows = Collate()([prepare_case(cohort[i], spec) for i in ids]).inputs[name]
        normaliser.fit(rows["numeric"], rows["numeric_mask"])
    multitask_loss(model(batch).heads, {config.heads[0].name: primary_targets(config, batch)},
                   config.heads)[0].backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).abs() for k, p in model.named_parameters()}
    floor = GRADIENT_FLOOR * max(float(g.max()) for g in grads.values())
    return {k: g > floor for k, g in grads.items()}


def test_torchrun_command_line_writes_one_checkpoint_on_rank_0(tiny_cohort, tiny_tokenizer, tmp_path):
    model = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    model.pop("classes"), model.pop("features")
    train = {"lr": 0.003, "batch_size": 8, "max_epochs": 1, "augment": True, "modality_dropout": 0.25, "seed": 2,
             "device": "cpu"}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"model": model, "train": train}))
    out = tmp_path / "ckpt"
    argv = ["--config", str(tmp_path / "tiny.yaml"), "--data", str(tiny_cohort.root), "--out", str(out), "--quiet"]
    mp.spawn(_cli_rank, args=(_free_port(), argv), nprocs=WORLD, join=True)
    checkpoint = load_checkpoint(out, device="cpu")
    training = json.loads((out / "training.json").read_text())
    assert training["processes"] == WORLD and training["epochs"] == 1
    assert (out / "last.pt").is_file() and json.loads((out / "metrics.json").read_text())["test"]["n"] == 6
    cases = [tiny_cohort[i] for i in tiny_cohort.ids("test")]
    _, probabilities = Predictor(checkpoint.model, checkpoint.tokenizer).predict(cases)
    assert probabilities.shape == (6, len(tiny_cohort.classes))


def test_a_batch_that_would_skip_a_synchronised_encoder_on_one_process_is_an_error_on_all(tmp_path):
    """Rather than a hang: every process raises the same specific error (and all-present batches pass)."""
    mp.spawn(_check_rank, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert message.startswith("a training batch of some process has no case with image while another's has")
        assert "use a larger train.batch_size" in message
    # one process: nothing to check
    check_encoders_run_everywhere(torch.zeros(2, 4, dtype=torch.bool), ("image", "text", "signal", "tabular"),
                                  ("image",), SINGLE)


def test_torchrun_environment_is_read_strictly():
    assert context_from_environment({}) == SINGLE
    assert context_from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == DistributedContext(1, 2, 1)
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE set but not LOCAL_RANK"):
        context_from_environment({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        context_from_environment({"RANK": "0", "WORLD_SIZE": "two", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE\)"):
        context_from_environment({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_modality_dropout_leaves_no_parameter_unused_but_missing_data_can(tiny_cohort, tiny_tokenizer):
    """Why DDP is told find_unused_parameters: hiding modalities (even all but one, per case) keeps every encoder
    in the graph; a batch where no case has a modality skips its encoder."""
    torch.manual_seed(0)
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer)).train()
    complete = [c for c in (tiny_cohort[i] for i in tiny_cohort.ids("train")) if all(
        c.value(m.name) is not None for m in model.specs)][:6]
    spec = model.config.input_spec()
    batch = Collate(make_tokenize(tiny_tokenizer, 128))([prepare_case(c, spec) for c in complete])
    assert batch.present.all()

    def unused(present: torch.Tensor) -> list[str]:
        """Parameters without a gradient after a step on ``batch`` with ``present`` and heavy modality dropout."""
        model.zero_grad(set_to_none=True)
        kept = modality_dropout(present, 0.95, np.random.default_rng(0))
        model(dataclasses.replace(batch, present=present), present=kept).logits.sum().backward()
        return [name for name, p in model.named_parameters() if p.grad is None]

    assert unused(batch.present) == []
    without_image = batch.present.clone()
    without_image[:, model.names.index("image")] = False
    assert any(name.startswith("encoders.image.") for name in unused(without_image))
    assert find_unused_parameters(model)
