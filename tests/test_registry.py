"""The registry: one builder per architecture (defined in its model module), one lookup of weight
records by name or by architecture and dataset, one listing."""
from __future__ import annotations

import pytest

from poster.models import arm, poster_v1, poster_v2
from poster.weights.registry import ARCHITECTURES, get_weights, list_weights


def test_each_architecture_is_built_by_its_own_module() -> None:
    assert [spec.builder for spec in ARCHITECTURES.values()] == [poster_v2.poster_v2, poster_v1.poster_v1, arm.arm]
    assert all(spec.builder.__module__ == spec.module for spec in ARCHITECTURES.values())


def test_list_weights_filters_by_architecture_and_kind() -> None:
    checkpoints = list_weights()
    assert [w.key for w in checkpoints] == ["raf-db", "affectnet-7", "affectnet-8", "caer-s", "poster-v1-raf-db",
                                            "arm-raf-db"]
    assert [w.key for w in list_weights("poster-v1")] == ["poster-v1-raf-db"]
    assert [w.key for w in list_weights(kind="backbone")] == ["ir50", "mobilefacenet"]
    assert list_weights(kind=None) == checkpoints + list_weights(kind="backbone")


@pytest.mark.parametrize("kwargs, key", [
    ({"name": "raf-db"}, "raf-db"),
    ({"name": "RAF_DB"}, "raf-db"),
    ({"name": "rafdb_best.pth"}, "raf-db"),               # POSTER's file has the same name: POSTER++ first
    ({"name": "affectnet8_best.safetensors"}, "affectnet-8"),
    ({"name": "ir50"}, "ir50"),
    ({"dataset": "AffectNet8"}, "affectnet-8"),
    ({"arch": "arm"}, "arm-raf-db"),
    ({"arch": "poster-v1", "dataset": "raf-db"}, "poster-v1-raf-db"),
])
def test_get_weights_by_name_or_by_arch_and_dataset(kwargs, key) -> None:
    assert get_weights(**kwargs).key == key


def test_get_weights_says_what_exists() -> None:
    with pytest.raises(KeyError, match="unknown weight file 'imagenet'; known: raf-db"):
        get_weights("imagenet")
    with pytest.raises(KeyError, match="unknown dataset 'fer2013'; known: raf-db, affectnet-7"):
        get_weights(dataset="fer2013")
    with pytest.raises(KeyError, match="no released ARM checkpoint for 'caer-s'; there are: arm-raf-db"):
        get_weights(arch="arm", dataset="caer-s")
    with pytest.raises(TypeError):
        get_weights()
    with pytest.raises(TypeError):
        get_weights("raf-db", arch="arm")
