"""Every architecture keeps the same model contract: the attributes callers read, Grad-CAM layers
whose declared grids are their outputs' grids, ``forward_alone`` and ``forward_intermediates``
returning labelled maps of one type."""
from __future__ import annotations

import pytest
import torch

from poster.models.outputs import GradCamLayer, ModelOutput
from poster.weights.registry import ARCHITECTURES, build_with_state, create_model, create_model_with_state
from tests._reference import reference_input


# POSTER (the largest network) keeps the contract in the full suite; the fast subset checks it on
# POSTER++ and ARM, and POSTER's maps and outputs in test_poster_v1 and test_explain_models.
@pytest.fixture(scope="module", params=[pytest.param(arch, marks=pytest.mark.slow) if arch == "poster-v1" else arch
                                        for arch in ARCHITECTURES])
def model(request):
    torch.manual_seed(0)
    return create_model(request.param, num_classes=7).eval()


def test_attributes_are_the_same_for_every_architecture(model) -> None:
    assert model.arch in ARCHITECTURES and model.num_classes == 7
    assert isinstance(model.faces_interact, bool)
    state = model.state_dict()
    assert all(key in state for key in model.head_keys)
    assert state[model.head_keys[0]].shape[0] == 7
    for module in model.frozen_modules():
        assert not any(p.requires_grad for p in module.parameters())
    optional = {id(p) for m in model.optional_modules() for p in m.parameters()}
    assert len(optional) < len(list(model.parameters()))


def test_gradcam_layers_declare_the_grids_of_their_outputs(model) -> None:
    layers = model.gradcam_layers()
    assert layers and all(isinstance(layer, GradCamLayer) for layer in layers)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(k: int):
        def hook(module, inputs, output) -> None:
            shapes[k] = tuple(output.shape[-2:])
        return hook

    handles = [layer.module.register_forward_hook(record(k)) for k, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            out = model.forward_intermediates(reference_input(torch.float32)[:1])
    finally:
        for handle in handles:
            handle.remove()
    assert [shapes[k] for k in range(len(layers))] == [layer.grid for layer in layers]
    assert isinstance(out, ModelOutput) and out.logits.shape == (1, 7)
    for named in out.maps():
        assert named.name and named.meaning
        if named.grid is not None:
            assert named.value.shape[-1] >= named.grid[0] * named.grid[1] or named.value.shape[-2:] == named.grid


def test_forward_alone_gives_each_face_its_batch_of_one_logits(model) -> None:
    x = reference_input(torch.float32)
    with torch.inference_mode():
        alone = model.forward_alone(x)
        one_by_one = torch.cat([model(x[i:i + 1]) for i in range(x.shape[0])])
        recorded = model.forward_intermediates(x).logits
    torch.testing.assert_close(alone, one_by_one, rtol=0, atol=1e-4)
    torch.testing.assert_close(recorded, alone, rtol=0, atol=1e-4)


def test_a_model_built_with_its_state_is_the_model_that_state_came_from(model) -> None:
    """``create_model_with_state`` skips the random initialisation (meta device, then empty memory):
    every parameter and buffer, those a state dict does not carry included, is the source's."""
    built = create_model_with_state(model.arch, model.state_dict(), model.num_classes).eval()
    source = dict(model.named_buffers()) | dict(model.named_parameters())
    mine = dict(built.named_buffers()) | dict(built.named_parameters())
    assert mine.keys() == source.keys()
    for name, value in source.items():
        assert mine[name].device.type == "cpu" and torch.equal(mine[name], value), name
    assert [p.requires_grad for p in built.parameters()] == [p.requires_grad for p in model.parameters()]
    x = reference_input(torch.float32)[:1]
    with torch.inference_mode():
        assert torch.equal(built(x), model(x))


def test_a_buffer_outside_the_state_dict_needs_its_module_to_remake_it() -> None:
    class Forgets(torch.nn.Module):
        def __init__(self, num_classes: int = 7) -> None:
            super().__init__()
            self.head = torch.nn.Linear(4, num_classes)
            self.register_buffer("table", torch.arange(4), persistent=False)

    with pytest.raises(TypeError, match="table"):
        build_with_state(Forgets, Forgets().state_dict())
