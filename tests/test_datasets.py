"""Listing and loading labeled datasets in each layout, and reporting what was skipped."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from poster.data.datasets import ImageDataset, list_images, thumbnail_name
from poster.data.layouts import detect_layout
from poster.data.listing import Item, Skipped
from poster.models.weights_api import Preprocessing
from poster.errors import DatasetError
from poster.models.poster_v2 import PosterV2Weights
from poster.inference.transforms import eval_transform
from poster.data.sample_faces import face, write_imagefolder
from tests._data import write_csv, write_rafdb, write_unreadable

RAF = PosterV2Weights.RAF_DB.value
AFFECTNET7 = PosterV2Weights.AFFECTNET_7.value
CAER = PosterV2Weights.CAER_S.value


def items_of(pairs: list[tuple[str, int]]) -> list[Item]:
    return [Item(path, label) for path, label in pairs]


# --- ImageFolder ------------------------------------------------------------------------------

def test_imagefolder_maps_class_folders_to_checkpoint_order(tmp_path: Path) -> None:
    expected = write_imagefolder(tmp_path, [0, 3, 3, 6, 5], RAF.folder_names)
    listing = list_images(tmp_path, RAF.class_names, RAF.folder_names)
    assert detect_layout(tmp_path) == "imagefolder"
    assert (listing.layout, listing.root, listing.source) == ("imagefolder", tmp_path, str(tmp_path / "test"))
    assert listing.items == items_of(expected)
    assert listing.skipped == []


def test_imagefolder_accepts_class_names_as_folders(tmp_path: Path) -> None:
    expected = write_imagefolder(tmp_path, [0, 3, 6], CAER.folder_names)
    assert list_images(tmp_path, CAER.class_names, CAER.folder_names).items == items_of(expected)
    # CAER-S folders named after classes in any case also work for a checkpoint without folder names.
    (tmp_path / "test" / "Anger").rename(tmp_path / "test" / "anger")
    assert Item("test/anger/img_00.jpg", 0) in list_images(tmp_path, CAER.class_names).items


@pytest.mark.parametrize("folder", ["valid", "val"])
def test_test_split_falls_back_to_valid_folder(tmp_path: Path, folder: str) -> None:
    write_imagefolder(tmp_path, [1, 2], AFFECTNET7.folder_names, split_folder=folder)
    write_imagefolder(tmp_path, [4], AFFECTNET7.folder_names, split_folder="train")
    listing = list_images(tmp_path, AFFECTNET7.class_names, AFFECTNET7.folder_names, split="test")
    assert listing.source == str(tmp_path / folder)
    assert [i.label for i in listing.items] == [1, 2]
    train = list_images(tmp_path, AFFECTNET7.class_names, AFFECTNET7.folder_names, split="train")
    assert [i.label for i in train.items] == [4]


def test_folder_of_class_folders_is_used_as_the_split(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0, 1], RAF.folder_names, split_folder="faces")
    listing = list_images(tmp_path / "faces", RAF.class_names, RAF.folder_names)
    assert [i.path for i in listing.items] == ["1/img_00.jpg", "2/img_01.jpg"]


def test_imagefolder_reports_unknown_folders_and_non_images(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0], RAF.folder_names)
    write_imagefolder(tmp_path, [0, 0], ("8",))  # no class 8 in RAF-DB
    (tmp_path / "test" / "1" / "notes.txt").write_text("not a face")
    (tmp_path / "test" / "1" / ".DS_Store").write_bytes(b"\0")
    listing = list_images(tmp_path, RAF.class_names, RAF.folder_names)
    assert listing.items == [Item("test/1/img_00.jpg", 0)]
    assert listing.skipped == [
        Skipped("test/1/notes.txt", "not an image file (.txt)"),
        Skipped("test/8", "unknown class folder '8' (2 files; expected 1, 2, 3, 4, 5, 6, 7)"),
    ]


def test_missing_split_and_empty_dataset_are_fatal(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0], RAF.folder_names, split_folder="train")
    with pytest.raises(DatasetError, match="no test split .* test/ or valid/ or val/"):
        list_images(tmp_path, RAF.class_names, RAF.folder_names, split="test")
    (tmp_path / "test" / "9").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no usable images in .*: 1 skipped .*unknown class folder"):
        list_images(tmp_path, RAF.class_names, RAF.folder_names)


def test_unknown_layout_and_missing_data_are_fatal(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset not found"):
        list_images(tmp_path / "nowhere", RAF.class_names)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        list_images(tmp_path, RAF.class_names)
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        list_images(tmp_path / "a.txt", RAF.class_names)
    with pytest.raises(DatasetError, match="unknown layout"):
        list_images(tmp_path, RAF.class_names, layout="coco")


# --- RAF-DB release ---------------------------------------------------------------------------

def test_rafdb_release_layout_picks_the_split_by_prefix(tmp_path: Path) -> None:
    expected = write_rafdb(tmp_path, test_labels=[1, 4, 7], train_labels=[2, 2])
    assert detect_layout(tmp_path) == "rafdb"
    listing = list_images(tmp_path, RAF.class_names, split="test")
    assert listing.items == [Item(path, raf - 1) for path, raf in expected]
    assert listing.items[0].path == "Image/aligned/test_0001_aligned.jpg"
    train = list_images(tmp_path, RAF.class_names, split="train")
    assert [i.label for i in train.items] == [1, 1]


def test_rafdb_labels_map_by_name_onto_another_checkpoint(tmp_path: Path) -> None:
    write_rafdb(tmp_path / "basic", test_labels=[1, 4, 7])  # Surprise, Happiness, Neutral
    listing = list_images(tmp_path, AFFECTNET7.class_names)  # the release's basic/ folder is found
    assert listing.root == tmp_path / "basic"
    names = [AFFECTNET7.class_names[i.label] for i in listing.items]
    assert names == ["Surprise", "Happiness", "Neutral"]


def test_rafdb_reports_bad_lines_labels_and_missing_files(tmp_path: Path) -> None:
    write_rafdb(tmp_path, test_labels=[1, 2, 3])
    (tmp_path / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + "test_0009.jpg 8\ntest_0010.jpg\n")
    listing = list_images(tmp_path, RAF.class_names)
    assert [i.path for i in listing.items] == ["Image/aligned/test_0001_aligned.jpg",
                                              "Image/aligned/test_0003_aligned.jpg"]
    assert listing.skipped == [
        Skipped("Image/aligned/test_0002_aligned.jpg", "missing file"),
        Skipped("Image/aligned/test_0009_aligned.jpg",
                "label 8 not in RAF-DB's 1..7 (EmoLabel/list_patition_label.txt:4)"),
        Skipped("EmoLabel/list_patition_label.txt:5", "expected 'NAME LABEL', got 'test_0010.jpg'"),
    ]


# --- CSV --------------------------------------------------------------------------------------

def test_csv_labels_by_name_in_any_case_or_by_index(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "faces" / "labels.csv",
                         [("a/one.jpg", "happiness"), ("b/two.jpg", "SURPRISE"), ("three.jpg", "6")])
    assert detect_layout(csv_path) == "csv"
    listing = list_images(csv_path, RAF.class_names)
    assert listing.root == tmp_path / "faces"
    assert listing.items == [Item("a/one.jpg", 3), Item("b/two.jpg", 0), Item("three.jpg", 6)]
    # "happy" is CAER-S's name for Happiness: canonical names are accepted too.
    write_csv(csv_path, [("a/one.jpg", "Happy")], images=False)
    assert list_images(csv_path, RAF.class_names).items == [Item("a/one.jpg", 3)]


def test_csv_reports_bad_rows(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "labels.csv", [("ok.jpg", "Fear"), ("bad_label.jpg", "Contempt"),
                                                   ("bad_index.jpg", "7")])
    with csv_path.open("a") as handle:
        handle.write("gone.jpg,Fear\n/etc/passwd,Fear\n../up.jpg,Fear\n,Fear\n")
    listing = list_images(csv_path, RAF.class_names)
    assert listing.items == [Item("ok.jpg", 1)]
    classes = ", ".join(RAF.class_names)
    assert listing.skipped == [
        Skipped("bad_label.jpg", f"label 'Contempt' not in the class list ({classes})"),
        Skipped("bad_index.jpg", f"label '7' not in the class list ({classes})"),
        Skipped("gone.jpg", "missing file"),
        Skipped("/etc/passwd", "path outside the CSV's folder"),
        Skipped("../up.jpg", "path outside the CSV's folder"),
        Skipped("labels.csv:8", "empty path"),
    ]


def test_csv_with_extra_columns_short_rows_and_a_bom(tmp_path: Path) -> None:
    write_csv(tmp_path / "labels.csv", [("a.jpg", "Fear"), ("b.jpg", "Anger")])
    (tmp_path / "labels.csv").write_text("\ufeffLabel,Path,note\nFear,a.jpg,x,extra\nAnger,b.jpg\nSadness\n")
    listing = list_images(tmp_path / "labels.csv", RAF.class_names)
    assert listing.items == [Item("a.jpg", 1), Item("b.jpg", 5)]
    assert listing.skipped == [Skipped("labels.csv:4", "empty path")]


def test_csv_without_header_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("a.jpg,Fear\n")
    with pytest.raises(DatasetError, match="header row with the columns path,label"):
        list_images(tmp_path / "labels.csv", RAF.class_names)
    with pytest.raises(DatasetError, match="needs a .csv file"):
        list_images(tmp_path, RAF.class_names, layout="csv")
    (tmp_path / "labels.csv").write_bytes(b"path,label\n\xff\xfe.jpg,Fear\n")
    with pytest.raises(DatasetError, match="cannot read .*labels.csv: 'utf-8' codec"):
        list_images(tmp_path / "labels.csv", RAF.class_names)


# --- Loading ----------------------------------------------------------------------------------

def test_dataset_returns_original_eval_preprocessing(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0, 1], RAF.folder_names)
    dataset = ImageDataset(list_images(tmp_path, RAF.class_names, RAF.folder_names))
    image, index, error = dataset[1]
    with Image.open(tmp_path / "test" / "2" / "img_01.jpg") as original:
        expected = eval_transform()(original.convert("RGB"))
    assert (index, error) == (1, "")
    assert image.shape == (3, 224, 224)
    torch.testing.assert_close(image, expected, rtol=0, atol=0)


def test_unreadable_image_is_a_sentinel_recorded_by_the_caller(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0, 1, 2], RAF.folder_names)
    write_unreadable(tmp_path / "test" / "2" / "broken.jpg")
    truncated = tmp_path / "test" / "3" / "truncated.jpg"
    face(3).save(truncated, "JPEG")
    truncated.write_bytes(truncated.read_bytes()[:1500])
    dataset = ImageDataset(list_images(tmp_path, RAF.class_names, RAF.folder_names))
    assert len(dataset) == 5

    # A worker process must survive the broken files; the main process records them.
    loaded = []
    for images, indices, errors in DataLoader(dataset, batch_size=2, num_workers=1):
        assert images.shape[1:] == (3, 224, 224)
        kept = dataset.record_failures(indices.tolist(), errors)
        loaded += [dataset.listing.items[i].path for i in indices[kept].tolist()]
    assert loaded == ["test/1/img_00.jpg", "test/2/img_01.jpg", "test/3/img_02.jpg"]
    assert [s.path for s in dataset.skipped] == ["test/2/broken.jpg", "test/3/truncated.jpg"]
    assert dataset.skipped[0].reason.startswith("unreadable image (cannot identify image file")
    assert dataset.skipped[1].reason.startswith("unreadable image (")


def test_dataset_sizes_images_and_placeholders_by_its_preprocessing(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0, 1], RAF.folder_names)
    write_unreadable(tmp_path / "test" / "2" / "broken.jpg")
    listing = list_images(tmp_path, RAF.class_names, RAF.folder_names)
    dataset = ImageDataset(listing, preprocessing=Preprocessing(input_size=112))
    items = [dataset[i] for i in range(len(dataset))]
    assert [error != "" for _, _, error in items] == [False, True, False]  # test/2/broken.jpg sorts first
    assert {tuple(image.shape) for image, _, _ in items} == {(3, 112, 112)}
    assert not items[1][0].any()
    assert {tuple(image.shape) for image, _, _ in ImageDataset(listing)} == {(3, 224, 224)}


def test_thumbnails_are_written_under_the_relative_path(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "data" / "labels.csv", [("x/face.png", "Fear")])
    dataset = ImageDataset(list_images(csv_path, RAF.class_names), thumbnail_dir=tmp_path / "thumbs",
                           thumbnail_size=48)
    dataset[0]
    assert thumbnail_name("x/face.png") == "x/face.jpg"
    with Image.open(tmp_path / "thumbs" / "x" / "face.jpg") as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (48, 48))


def test_limit_spreads_over_the_list(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, [0, 0, 0, 1, 1, 1, 2, 2, 2], RAF.folder_names)
    listing = list_images(tmp_path, RAF.class_names, RAF.folder_names)
    assert [i.label for i in listing.limit(3).items] == [0, 1, 2]
    assert listing.limit(None) is listing
