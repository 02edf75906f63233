"""Training: SAM against a hand computation, DDP against one process, and short POSTER++ runs.

Full POSTER++ steps cost seconds per image on a CPU, so the whole module trains four SAM steps of
two images: a 2-epoch run, and a 1-epoch run resumed for its second epoch (compared with it).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import nn

from poster import cli
from poster.weights.checkpoints import load_checkpoint, read_weights, save_safetensors
from poster.training.sampler import BalancedSampler
from poster.errors import PosterError
from poster.models import PosterV2
from poster.models.poster_v2 import PosterV2Weights
from poster.training.sharpness_aware import SAM
from poster.training.recipe import RECIPES, TrainConfig, class_setup, resume_config, train_transform
from poster.training.initial_weights import build_model, fit_head
from poster.training.loop import run_training
from poster.training.run_folder import BEST_FILE, BEST_RUN, CURVES_FILE, LOG_FILE, load_training_state
from poster.training.step import make_optimizer, masked_cross_entropy, sam_step
from poster.inference.transforms import to_batch
from tests._checkpoints import checkpoint_file

RAF = PosterV2Weights.RAF_DB.value
HAPPINESS, NEUTRAL = RAF.class_names.index("Happiness"), RAF.class_names.index("Neutral")


# --- SAM on tiny models ------------------------------------------------------------------

def test_sam_step_matches_hand_computation() -> None:
    # loss(w) = (w . x - y)^2 on a 2-weight linear model: every gradient has a closed form.
    x, y = torch.tensor([[1.5, -0.5]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)
    w0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w0)
    rho, lr, eps = 0.05, 0.01, 1e-8
    optimizer = SAM(model.parameters(), torch.optim.Adam, rho=rho, lr=lr, eps=eps)

    def grad_at(w: torch.Tensor) -> torch.Tensor:
        return 2 * (w @ x[0] - y[0, 0]) * x[0]

    g = grad_at(w0)
    w_adv = w0 + rho * g / g.norm()
    g_adv = grad_at(w_adv)
    # Adam's first step: bias-corrected moments are g_adv and g_adv^2.
    expected = w0 - lr * g_adv / (g_adv.abs() + eps)

    ((model(x) - y) ** 2).sum().backward()
    norm = optimizer.first_step(zero_grad=True)
    assert torch.allclose(norm, g.norm())
    assert torch.allclose(model.weight[0].detach(), w_adv)
    ((model(x) - y) ** 2).sum().backward()
    assert torch.allclose(model.weight.grad[0], g_adv)
    optimizer.second_step(zero_grad=True)
    assert torch.allclose(model.weight[0].detach(), expected, atol=1e-12)


def test_sam_state_dict_round_trip_keeps_moments_and_schedule() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    config = TrainConfig.from_recipe("raf-db", "data", "out")
    optimizer, scheduler = make_optimizer(model, config)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    for _ in range(2):
        sam_step(model, optimizer, x, y)
        scheduler.step()
    # As written to and read back from last.pt: copies, not the live moment tensors.
    saved_opt, saved_sched = copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())
    assert len(saved_opt["state"]) == 2 and int(saved_opt["state"][0]["step"]) == 2  # Adam moments
    assert saved_opt["param_groups"][0]["rho"] == 0.05

    clone = nn.Linear(3, 2)
    clone.load_state_dict(model.state_dict())
    optimizer2, scheduler2 = make_optimizer(clone, config)
    optimizer2.load_state_dict(saved_opt)
    scheduler2.load_state_dict(saved_sched)
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(3.5e-5 * 0.98 ** 2)
    sam_step(model, optimizer, x, y)
    sam_step(clone, optimizer2, x, y)
    assert torch.equal(model.weight, clone.weight)
    scheduler.step()
    scheduler2.step()
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_sam_step_with_grad_scaler_equals_plain_step_and_skips_overflow() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    models = [nn.Linear(4, 3) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    plain, _ = make_optimizer(models[0], TrainConfig.from_recipe("raf-db", "d", "o", lr=1e-2))
    scaled, _ = make_optimizer(models[1], TrainConfig.from_recipe("raf-db", "d", "o", lr=1e-2))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    sam_step(models[0], plain, x, y)
    assert sam_step(models[1], scaled, x, y, scaler=scaler).applied
    # A power-of-two scale is exact: the same update as without a scaler.
    assert torch.allclose(models[0].weight, models[1].weight, atol=1e-7)

    before = models[1].weight.detach().clone()
    bad = x.clone()
    bad[0, 0] = float("inf")  # the first gradient overflows
    out = sam_step(models[1], scaled, bad, y, scaler=scaler)
    assert not out.applied
    assert torch.equal(models[1].weight, before)
    assert scaler.get_scale() == 2.0 ** 9


def test_sam_step_under_bfloat16_autocast_follows_the_float32_step() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    models = [nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = nn.utils.parameters_to_vector(models[0].parameters()).detach().clone()
    config = TrainConfig.from_recipe("raf-db", "d", "o", lr=1e-2)
    updates, outputs = [], []
    for model, amp in zip(models, (None, torch.bfloat16)):
        optimizer, _ = make_optimizer(model, config)
        outputs.append(sam_step(model, optimizer, x, y, amp=amp))
        assert model[0].weight.dtype == torch.float32  # autocast leaves the weights in float32
        updates.append(nn.utils.parameters_to_vector(model.parameters()).detach() - start)
    assert outputs[1].logits.dtype == torch.float32
    assert abs(float(outputs[0].loss) - float(outputs[1].loss)) < 0.05
    assert torch.nn.functional.cosine_similarity(updates[0], updates[1], dim=0) > 0.9


def test_masked_cross_entropy_ignores_unreadable_items() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    keep = torch.tensor([True, False, True])
    expected = nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(masked_cross_entropy(logits, labels, keep), expected)


# --- Two processes on the CPU ---------------------------------------------------------------

def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 5, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        x, y = _tiny_batch()
        half = slice(rank * 4, rank * 4 + 4)
        config = TrainConfig.from_recipe("raf-db", "d", "o", lr=1e-2, rho=0.5)

        # The training step: both backward passes through DDP, so both are all-reduced.
        model = DistributedDataParallel(_tiny_model())
        optimizer, _ = make_optimizer(model, config)
        for _ in range(2):
            sam_step(model, optimizer, x[half], y[half])

        # Control, one step: a first pass under no_sync climbs along each process's own gradient.
        control = DistributedDataParallel(_tiny_model())
        control_opt, _ = make_optimizer(control, config)
        with control.no_sync():
            nn.functional.cross_entropy(control(x[half]), y[half]).backward()
        control_opt.first_step(zero_grad=True)
        nn.functional.cross_entropy(control(x[half]), y[half]).backward()
        control_opt.second_step(zero_grad=True)

        torch.save({"model": model.module.state_dict(), "control": control.module.state_dict()},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes of DistributedDataParallel
def test_sam_under_ddp_matches_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    x, y = _tiny_batch()
    config = TrainConfig.from_recipe("raf-db", "d", "o", lr=1e-2, rho=0.5)
    single, one_step = _tiny_model(), _tiny_model()
    optimizer, _ = make_optimizer(single, config)
    for _ in range(2):
        sam_step(single, optimizer, x, y)
    sam_step(one_step, make_optimizer(one_step, config)[0], x, y)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    initial = _tiny_model().state_dict()
    for name, value in single.state_dict().items():
        assert not torch.equal(value, initial[name])
        for result in results:
            assert torch.allclose(result["model"][name], value, atol=1e-6), name
    # An unsynchronised first gradient climbs to the wrong point: the comparison can tell.
    control = results[0]["control"]["0.weight"]
    assert torch.allclose(control, results[1]["control"]["0.weight"])  # the second pass was all-reduced
    assert not torch.allclose(control, one_step.state_dict()["0.weight"], atol=1e-6)


def test_balanced_sampler_shards_one_draw_and_balances_classes() -> None:
    labels = [0] * 90 + [1] * 9 + [2] * 1
    whole = BalancedSampler(labels, seed=3)
    whole.set_epoch(2)
    shards = []
    for rank in range(2):
        shard = BalancedSampler(labels, num_replicas=2, rank=rank, seed=3)
        shard.set_epoch(2)
        shards.append(list(shard))
        assert len(shard) == 50
    merged = [index for pair in zip(*shards) for index in pair]
    assert merged == list(whole)

    big = BalancedSampler(labels, seed=0, num_samples=30000)
    counts = np.bincount([labels[i] for i in big], minlength=3)
    assert np.all(np.abs(counts / counts.sum() - 1 / 3) < 0.02)
    epoch0 = list(big)
    big.set_epoch(1)
    assert list(big) != epoch0


# --- Recipe and configuration ----------------------------------------------------------------

def test_recipes_follow_the_published_settings() -> None:
    raf = TrainConfig.from_recipe("raf-db", "d", "o")
    assert (raf.lr, raf.batch_size, raf.epochs, raf.gamma, raf.rho) == (3.5e-5, 144, 200, 0.98, 0.05)
    assert (raf.erase_p, raf.erase_scale, raf.balanced) == (0.5, (0.02, 0.1), False)
    for name in ("affectnet-7", "affectnet-8"):
        recipe = RECIPES[name]
        assert (recipe.lr, recipe.erase_p, recipe.erase_scale, recipe.balanced) == (1e-6, 1.0, (0.05, 0.05), True)
    assert (RECIPES["caer-s"].lr, RECIPES["caer-s"].balanced) == (4e-5, False)
    changed = TrainConfig.from_recipe("caer-s", "d", "o", lr=1e-3, batch_size=None, balanced=True)
    assert (changed.lr, changed.batch_size, changed.balanced) == (1e-3, 144, True)
    erasing = train_transform(raf).transforms[-1]
    assert (erasing.p, erasing.scale) == (0.5, (0.02, 0.1))
    with pytest.raises(PosterError, match="erase scale"):
        TrainConfig.from_recipe("raf-db", "d", "o", erase_scale=(0.2, 0.1))
    assert class_setup(raf) == (RAF.class_names, RAF.folder_names, "raf-db")
    own = TrainConfig.from_recipe("raf-db", "d", "o", classes=("calm", "smiling"))
    assert class_setup(own) == (("calm", "smiling"), ("calm", "smiling"), None)


def test_fit_head_reorders_keeps_or_replaces() -> None:
    state = {"transformer.head.weight": torch.arange(6.0).view(3, 2), "transformer.head.bias": torch.arange(3.0),
             "other": torch.ones(1)}
    same, note = fit_head(state, ["Happy", "Sad", "Angry"], ["Happiness", "Sadness", "Anger"])
    assert same is state and note == "head kept"
    reordered, note = fit_head(state, ["Happy", "Sad", "Angry"], ["Anger", "Happiness", "Sadness"])
    assert reordered["transformer.head.bias"].tolist() == [2.0, 0.0, 1.0] and "reordered" in note
    replaced, note = fit_head(state, ["Happy", "Sad", "Angry"], ["Happy", "Sad"])
    assert "transformer.head.weight" not in replaced and "other" in replaced and "replaced" in note


# --- POSTER++ runs on real photos --------------------------------------------------------------

def _face(photo: np.ndarray, box: tuple[int, int, int, int], mirror: bool) -> Image.Image:
    image = Image.fromarray(np.asarray(photo)).crop(box).resize((112, 112), Image.BILINEAR)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else image


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray, grace_hopper: np.ndarray) -> Path:
    """RAF-DB ImageFolder layout: train = the two faces, test = the same faces mirrored.
    The test's labels: the smiling astronaut is Happiness (folder 4), Grace Hopper Neutral (7)."""
    root = tmp_path_factory.mktemp("faces")
    for split, mirror in (("train", False), ("test", True)):
        for photo, box, label in ((astronaut, (150, 30, 300, 200), HAPPINESS),
                                  (grace_hopper, (120, 60, 390, 360), NEUTRAL)):
            folder = root / split / RAF.folder_names[label]
            folder.mkdir(parents=True)
            _face(photo, box, mirror).save(folder / "face.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def init_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised POSTER++ (seed 0) in the project's format, to fine-tune from."""
    torch.manual_seed(0)
    model = PosterV2(7)
    path = tmp_path_factory.mktemp("init") / "random.safetensors"
    return save_safetensors(model.state_dict(), path, dataset="raf-db", class_names=RAF.class_names,
                            source_sha256="", name="random", arch=model.arch)


def _args(faces_dir: Path, init_file: Path, out: Path, epochs: int) -> list[str]:
    # No augmentation (the batch stays fixed) and a larger step than RAF-DB's, so 2 steps show.
    return ["train", "--data", str(faces_dir), "--dataset", "raf-db", "--init", str(init_file), "--out", str(out),
            "--epochs", str(epochs), "--batch-size", "2", "--lr", "1e-4", "--flip-p", "0", "--erase-p", "0",
            "--workers", "0", "--seed", "7", "--no-progress"]


@pytest.fixture(scope="module")
def full_run(faces_dir: Path, init_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two uninterrupted epochs (one SAM step each), through the Python API."""
    from poster.cli.train import config_from_args
    from poster.cli import build_parser

    argv = _args(faces_dir, init_file, tmp_path_factory.mktemp("full") / "run", epochs=2)
    config, resume = config_from_args(build_parser(argv).parse_args(argv))
    assert not resume
    return run_training(config)


@pytest.fixture(scope="module")
def full_state(full_run) -> dict:
    """The uninterrupted run's last.pt (read once: model and Adam moments are ~0.5 GB)."""
    return load_training_state(full_run.run_dir)


@pytest.fixture(scope="module")
def first_epoch(faces_dir: Path, init_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """A run stopped after its first epoch, through the command line; its files copied aside."""
    out = tmp_path_factory.mktemp("resumed") / "run"
    assert cli.main(_args(faces_dir, init_file, out, epochs=1)) == 0
    # Hard links cost no disk; the run replaces its files (never rewrites them), so these stay as they were.
    aside = tmp_path_factory.mktemp("epoch1") / "run"
    shutil.copytree(out, aside, copy_function=os.link)
    return out, aside


def _fixed_batch(faces_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label in (HAPPINESS, NEUTRAL):
        with Image.open(faces_dir / "train" / RAF.folder_names[label] / "face.jpg") as image:
            images.append(np.asarray(image.convert("RGB")))
        labels.append(label)
    return to_batch(images), torch.tensor(labels)


@pytest.mark.slow  # trains POSTER++
def test_training_steps_reduce_the_loss_on_a_fixed_batch(full_run, full_state: dict, faces_dir: Path) -> None:
    losses = [h["train_loss"] for h in full_run.history]  # first pass of each step, before its update
    model = PosterV2(7)
    model.load_state_dict(full_state["model"])
    images, labels = _fixed_batch(faces_dir)
    with torch.no_grad():
        losses.append(float(nn.functional.cross_entropy(model.train()(images), labels)))
    assert losses[1] < losses[0] and losses[2] < losses[1], losses


@pytest.mark.slow  # trains POSTER++
def test_landmark_branch_is_unchanged_by_training(full_state: dict, init_file: Path) -> None:
    start, _ = read_weights(init_file)
    trained = full_state["model"]
    landmark = [k for k in start if k.startswith("landmark_backbone.")]
    assert len(landmark) > 100
    assert all(torch.equal(trained[k], start[k]) for k in landmark)  # weights and batch-norm statistics
    moved = [k for k in start if k.startswith("image_backbone.") and not torch.equal(trained[k], start[k])]
    assert moved  # while the image stream did train


@pytest.mark.slow  # trains POSTER++
def test_saved_checkpoint_gives_the_logits_training_computed(first_epoch, faces_dir: Path) -> None:
    _, out = first_epoch  # as it was after epoch 1
    state = load_training_state(out)
    assert state["history"][0]["epoch"] == 1
    model = load_checkpoint(out / BEST_FILE, channels_last=False)
    assert model.info.dataset == "raf-db" and model.info.class_names == RAF.class_names
    assert model.info.published_accuracy == pytest.approx(state["best"]["accuracy"], abs=1e-3)

    # What the loop computed: the run it wrote for the explorer (float64 probabilities of its logits).
    run = json.loads((out / BEST_RUN / "run.json").read_text())
    predictions = pd.read_parquet(out / BEST_RUN / "predictions.parquet")
    assert run["epoch"] == 1 and run["num_images"] == 2 and run["checkpoint_sha256"] == model.info.sha256
    images = []
    for path in predictions["path"]:
        with Image.open(faces_dir / path) as image:
            images.append(np.asarray(image.convert("RGB")))
    with torch.no_grad():
        logits = model(to_batch(images))
    probs = torch.softmax(logits.double(), 1).numpy()
    assert np.allclose(probs, predictions[[f"prob_{c}" for c in RAF.class_names]].to_numpy(), atol=1e-6)

    from data_explorer.runs import find_runs

    runs, broken = find_runs(out.parent)
    assert [r.name for r in runs] == [f"run/{BEST_RUN}"] and not broken


@pytest.mark.slow  # trains POSTER++
def test_checkpoint_logits_equal_the_loop_last_logits(full_run, full_state: dict, faces_dir: Path) -> None:
    if full_run.best_epoch != len(full_run.history):
        # The best file is from an earlier epoch; last.pt holds the weights the last logits came from.
        model = PosterV2(7)
        model.load_state_dict(full_state["model"])
    else:
        model = load_checkpoint(full_run.best_checkpoint, channels_last=False)
    predictions = pd.read_parquet(full_run.best_run / "predictions.parquet")
    images = []
    for path in sorted(predictions["path"]):  # the test split in dataset order
        with Image.open(faces_dir / path) as image:
            images.append(np.asarray(image.convert("RGB")))
    with torch.no_grad():
        logits = model.eval()(to_batch(images))
    assert torch.allclose(logits, full_run.test_logits, atol=1e-5)


@pytest.mark.slow  # trains POSTER++
def test_run_folder_has_log_curves_and_history(full_run) -> None:
    run_dir = full_run.run_dir
    log = (run_dir / LOG_FILE).read_text()
    assert "epoch 1:" in log and "epoch 2:" in log and "initialised from" in log
    assert (run_dir / CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["lr"] == pytest.approx(1e-4 * 0.98)
    assert all(h["images_per_second"] > 0 for h in history)


@pytest.mark.slow  # trains POSTER++
def test_resume_continues_at_the_next_epoch_with_the_same_state(first_epoch, full_state: dict) -> None:
    out, aside = first_epoch
    saved = load_training_state(aside)
    with pytest.raises(PosterError, match="lr"):
        resume_config(out, {"lr": 1.0})
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0

    resumed, full = load_training_state(out), full_state
    assert resumed["epoch"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == saved["history"][0]
    assert "resuming" in (out / LOG_FILE).read_text()
    # The resumed run is the uninterrupted one: weights, Adam moments, schedule and RNG.
    for name, value in full["model"].items():
        assert torch.allclose(resumed["model"][name].float(), value.float(), atol=1e-6), name
    for index, moments in full["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.allclose(resumed["optimizer"]["state"][index][key], value, atol=1e-9), key
    assert resumed["scheduler"]["last_epoch"] == full["scheduler"]["last_epoch"] == 2
    assert torch.equal(resumed["rng"][0]["torch"], full["rng"][0]["torch"])


@pytest.mark.slow  # trains POSTER++
def test_init_from_a_released_checkpoint_with_other_classes_replaces_the_head(tmp_path: Path) -> None:
    released = checkpoint_file(tmp_path / "affectnet8_best.pth", num_classes=8)  # .pth, DataParallel names
    config = TrainConfig.from_recipe("raf-db", "unused", "unused", init=str(released))
    torch.manual_seed(0)
    model = build_model(config, RAF.class_names)
    start, meta = read_weights(released)
    assert meta["dataset"] == "affectnet-8"
    assert model.transformer.head.weight.shape == (7, 768)
    assert not torch.equal(model.transformer.head.weight, start["transformer.head.weight"][:7])
    assert torch.equal(model.image_backbone.stem.conv.weight, start["image_backbone.stem.conv.weight"])
    assert torch.equal(model.transformer.blocks[1].mlp.fc2.weight, start["transformer.blocks.1.mlp.fc2.weight"])
