"""The data pipeline that feeds a GPU (issue 23): uint8 pixels normalized where the batch is computed,
evaluation that reads its results from the device once, training metrics kept on the device, and
augmentation seeds that let loader processes live for the whole run. All on the CPU, no timing."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from poster.data import loading
from poster.data.datasets import ImageDataset, Pixels, list_images
from poster.data.loading import default_workers, device_batch
from poster.data.sample_faces import write_imagefolder
from poster.distributed import DistInfo
from poster.evaluation.protocol import ARM_PROTOCOL_BATCH, DEFAULT_BATCH, GPU_BATCH, choose_protocol
from poster.evaluation.run import evaluate
from poster.evaluation.steps import evaluate_in_steps
from poster.inference.transforms import BARE_MODEL
from poster.models.poster_v2 import PosterV2Weights
from poster.training import loop
from poster.training.feeding import SeededItems, sample_seed, train_loader
from poster.training.recipe import TrainConfig, train_transform
from poster.training.step import make_optimizer
from tests._data import write_unreadable

RAF = PosterV2Weights.RAF_DB.value
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_imagefolder(root, [i % 7 for i in range(6)], RAF.folder_names)
    write_imagefolder(root, [0, 1, 2, 3], RAF.folder_names, split_folder="train")
    return root


def _listing(root: Path, split: str = "test"):
    return list_images(root, RAF.class_names, RAF.folder_names, split=split)


@pytest.mark.parametrize("colour_order", ["RGB", "BGR"])
def test_pixels_normalized_on_the_device_are_the_transform_bit_for_bit(faces: Path, colour_order: str) -> None:
    pre = replace(BARE_MODEL, colour_order=colour_order)
    dataset = ImageDataset(_listing(faces), preprocessing=pre)
    expected = torch.stack([dataset[i][0] for i in range(len(dataset))])
    pixels = torch.stack([Pixels(dataset)[i][0] for i in range(len(dataset))])
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(dataset), 224, 224, 3)
    batch = device_batch(pixels, range(len(dataset)), torch.device("cpu"), torch.float32, pre)
    assert torch.equal(batch, expected) and batch.is_contiguous(memory_format=torch.channels_last)
    # Rows dropped (a skipped image) and a conversion, as the evaluation does them.
    some = device_batch(pixels, [0, 2, 5], torch.device("cpu"), torch.bfloat16, pre)
    assert torch.equal(some, expected[[0, 2, 5]].to(torch.bfloat16))
    plain = device_batch(pixels, [1], torch.device("cpu"), torch.float32, pre, memory_format=torch.contiguous_format)
    assert plain.is_contiguous() and torch.equal(plain, expected[[1]])


def test_pixels_of_an_unreadable_image_are_zeros_with_the_reason(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0], RAF.folder_names)
    write_unreadable(tmp_path / "test" / RAF.folder_names[1] / "broken.jpg")
    dataset = ImageDataset(_listing(tmp_path))
    image, index, reason = Pixels(dataset)[[i.path for i in dataset.listing.items].index(
        f"test/{RAF.folder_names[1]}/broken.jpg")]
    assert image.dtype == torch.uint8 and not image.any() and reason.startswith("unreadable image")
    with pytest.raises(ValueError):
        Pixels(ImageDataset(dataset.listing, train_transform(TrainConfig.from_recipe("raf-db", "-", "-"))))


def test_default_workers_use_the_available_cores_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_workers(torch.device("cpu")) == 0
    for cores, expected in ((1, 1), (4, 2), (16, 12), (64, loading.MAX_WORKERS)):
        monkeypatch.setattr(loading, "available_cores", lambda cores=cores: cores)
        assert default_workers(torch.device("cuda")) == expected


def test_batch_size_defaults_to_whole_gpu_batches_where_batches_do_not_change_scores() -> None:
    independent, interacting = nn.Module(), nn.Module()
    independent.faces_interact, interacting.faces_interact = False, True
    assert choose_protocol(independent, None, None, torch.device("cuda")) == ("independent", GPU_BATCH)
    assert choose_protocol(independent, None, None, "cpu") == ("independent", DEFAULT_BATCH)
    assert choose_protocol(independent, None, 8, "cuda") == ("independent", 8)
    assert choose_protocol(interacting, None, None, "cuda") == ("batch", ARM_PROTOCOL_BATCH)  # the published protocol


class Watched(torch.Tensor):
    """A tensor that records every call that reads its values on the host (a GPU would wait there)."""

    reads: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        to_host = name == "to" and any(str(a) == "cpu" for a in (*args[1:], kwargs and kwargs.get("device")))
        if to_host or name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
            cls.reads.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


class TinyNet(nn.Module):
    """Seven scores from the mean colour, returned as ``Watched`` tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3))).as_subclass(Watched)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_evaluate_reads_the_device_once_whatever_the_batch_count(faces: Path, dtype: torch.dtype) -> None:
    model = TinyNet().to(dtype).eval()
    reads = []
    tables = []
    for batch_size in (1, 2, 6):
        Watched.reads = []
        tables.append(evaluate(model, ImageDataset(_listing(faces)), batch_size=batch_size, progress=False,
                               precision="bfloat16" if dtype == torch.bfloat16 else "float32"))
        reads.append(list(Watched.reads))
    # 6, 3 and 1 batches, the same reads: one copy to the host, its finiteness check, the table.
    assert reads[0] == reads[1] == reads[2] == ["cpu", "__bool__", "numpy"]
    assert all(len(t) == 6 for t in tables)


def test_evaluation_in_steps_reads_the_device_only_after_the_last_batch(faces: Path) -> None:
    model = TinyNet().to(torch.bfloat16).eval()
    Watched.reads = []
    steps = evaluate_in_steps(model, ImageDataset(_listing(faces)), batch_size=2, precision="bfloat16")
    reads_at_each_batch = []
    try:
        while True:
            next(steps)
            reads_at_each_batch.append(len(Watched.reads))
    except StopIteration as done:
        table = done.value
    assert reads_at_each_batch == [0, 0, 0] and Watched.reads and len(table) == 6
    # The same predictions as the one-call evaluation.
    full = evaluate(model, ImageDataset(_listing(faces)), batch_size=2, progress=False, precision="bfloat16")
    assert (table["pred"] == full["pred"]).all() and (table["loss"] == full["loss"]).all()


def test_epoch_correct_equals_the_boolean_index_count() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(50, 7), torch.randint(0, 7, (50,))
    keep = torch.rand(50) > 0.3
    assert loop.epoch_correct(logits, labels, keep).item() == (logits.argmax(1) == labels)[keep].sum().item()


def test_epoch_totals_equal_the_per_step_computation(faces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device-side totals give what reading every step's loss and hits gave."""
    listing = _listing(faces)
    dataset = ImageDataset(listing)
    torch.manual_seed(0)
    net = TinyNet()
    optimizer, _ = make_optimizer(net, TrainConfig.from_recipe("raf-db", "-", "-"))
    steps = []
    real_step = loop.sam_step

    def recording_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        steps.append((out, args[3], kwargs["keep"]))
        return out

    monkeypatch.setattr(loop, "sam_step", recording_step)
    batches = []
    for start in (0, 4):  # two batches; the second has an image that failed to load
        indices = torch.arange(start, min(start + 4, len(dataset)))
        errors = ["", "unreadable image (test)", "", ""][:len(indices)] if start else [""] * len(indices)
        batches.append((torch.stack([dataset[int(i)][0] for i in indices]), indices, errors))
    stats = loop._train_epoch(net, optimizer, iter(batches), len(batches), dataset, DistInfo(), torch.device("cpu"),
                              None, None, desc="test", progress=False)
    loss_sum = sum(float(out.loss) * float(keep.sum()) for out, _, keep in steps)
    correct = sum(int((out.logits.argmax(1) == labels)[keep].sum()) for out, labels, keep in steps)
    seen = sum(int(keep.sum()) for _, _, keep in steps)
    assert seen == stats["images"] == 5
    assert stats["loss"] == pytest.approx(loss_sum / seen, rel=1e-12)
    assert stats["accuracy"] == pytest.approx(100 * correct / seen, rel=1e-12)
    assert [s.path for s in dataset.skipped] == [listing.items[5].path]


def test_sample_seeds_are_fixed_numbers_that_differ_per_key() -> None:
    assert sample_seed((7, 0, 1, 3)) == sample_seed((7, 0, 1, 3))
    seeds = {sample_seed((7, rank, epoch, position)) for rank in (0, 1) for epoch in (0, 1) for position in range(8)}
    assert len(seeds) == 32 and all(0 <= s < 2**63 for s in seeds)


def test_seeded_items_draw_the_same_augmentation_for_the_same_key(faces: Path) -> None:
    config = TrainConfig.from_recipe("raf-db", "-", "-")
    config.flip_p, config.erase_p = 0.5, 0.9
    items = SeededItems(ImageDataset(_listing(faces, "train"), train_transform(config)))
    first = items[(1, (7, 0, 0, 5))][0]
    torch.rand(100)  # whatever the generator did meanwhile
    assert torch.equal(items[(1, (7, 0, 0, 5))][0], first)
    assert not all(torch.equal(items[(1, (7, 0, e, 5))][0], first) for e in range(1, 6))


@pytest.mark.slow  # starts loader processes
def test_persistent_workers_give_a_resumed_epoch_the_same_batches(faces: Path) -> None:
    config = TrainConfig.from_recipe("raf-db", "-", "-")
    config.batch_size, config.workers, config.flip_p, config.erase_p = 2, 2, 0.5, 0.9
    dataset = ImageDataset(_listing(faces, "train"), train_transform(config))

    def epochs(loader, which):
        out = []
        for epoch in which:
            loader.sampler.set_epoch(epoch)
            out.append([(images, indices) for images, indices, _ in loader])
        loading.close_loader(loader)
        return out

    uninterrupted = epochs(train_loader(dataset, config, DistInfo(), 3, torch.device("cpu")), [0, 1])
    resumed = epochs(train_loader(dataset, config, DistInfo(), 3, torch.device("cpu")), [1])
    assert len(uninterrupted[1]) == len(resumed[0]) == 2
    for (a, i), (b, j) in zip(uninterrupted[1], resumed[0]):
        assert torch.equal(i, j) and torch.equal(a, b)
