"""Non-overlapping 1-D convolutions as matrix products: same numbers, same modules, plain path kept."""
import pytest
import torch
from torch import nn

from poster.models.fusions import fuse_for_cpu
from poster.models.patch_conv1d import PatchConv1d, PatchConvTranspose1d, adopt_patch_conv1d


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv1d(100, 100, 1), (2, 100, 512)),        # POSTER's token mixing
    (lambda: nn.Conv1d(100, 100, 2, 2), (1, 100, 512)),     # its pyramid's downsampling
    (lambda: nn.Conv1d(100, 64, 4, 4, bias=False), (3, 100, 128)),
    (lambda: nn.ConvTranspose1d(100, 100, 2, 2), (2, 100, 128)),  # its upsampling
    (lambda: nn.ConvTranspose1d(30, 20, 3, 3), (1, 30, 7)),
])
def test_matrix_product_equals_the_convolution_in_float64(make, shape):
    torch.manual_seed(0)
    conv = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        expected = conv(x)
        assert adopt_patch_conv1d(conv)
        got = conv(x)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("conv", [nn.Conv1d(8, 8, 3, 1, padding=1), nn.Conv1d(8, 8, 2, 1), nn.Conv1d(8, 8, 2, 2, groups=2),
                                  nn.ConvTranspose1d(8, 8, 2, 2, output_padding=1, dilation=2)])
def test_overlapping_or_grouped_convolutions_stay_as_they_are(conv):
    assert not adopt_patch_conv1d(conv)
    assert type(conv) in (nn.Conv1d, nn.ConvTranspose1d)


def test_fuse_for_cpu_swaps_them_in_and_gradients_take_the_plain_path():
    model = nn.Sequential(nn.Conv1d(6, 6, 2, 2), nn.ConvTranspose1d(6, 6, 2, 2))
    keys = list(model.state_dict())
    fuse_for_cpu(model)
    assert [type(m) for m in model] == [PatchConv1d, PatchConvTranspose1d]
    assert list(model.state_dict()) == keys
    x = torch.randn(2, 6, 10, requires_grad=True)
    model(x).sum().backward()  # autograd through nn.Conv1d's own forward
    assert x.grad is not None and x.grad.shape == x.shape
