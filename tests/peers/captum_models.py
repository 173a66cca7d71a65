"""The models of captum's own tests, copied with their fixed weights, and the adapter that lets kdscope run them.

Sources: pytorch/captum captum/testing/helpers/basic_models.py (formerly tests/helpers/basic_models.py) and
captum/testing/helpers/classification_models.py, at commit faac08773131888714b15709b28494ebeea7f6eb. The models are
copied verbatim apart from typing; captum's multi-argument models keep their signatures and `PeerImage` maps one
kdscope image onto their inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BasicModel(nn.Module):
    def forward(self, input: Tensor) -> Tensor:
        return 1 - F.relu(1 - input)


class BasicModel2(nn.Module):
    """f(x1, x2) = RELU(ReLU(x1) - 1 - ReLU(x2)) (Sundararajan et al. 2017, example one)."""

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return F.relu(F.relu(input1) - 1 - F.relu(input2))


class BasicModel3(nn.Module):
    """f(x1, x2) = RELU(ReLU(x1 - 1) - ReLU(x2)) (Sundararajan et al. 2017, example two)."""

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return F.relu(F.relu(input1 - 1) - F.relu(input2))


class BasicModel4_MultiArgs(nn.Module):
    """f(x1, x2) = RELU(ReLU(x1 - 1) - ReLU(x2) / x3)."""

    def forward(self, input1: Tensor, input2: Tensor, additional_input1: float, additional_input2: int = 0) -> Tensor:
        relu_out1 = F.relu(input1 - 1)
        relu_out2 = F.relu(input2).div(additional_input1)
        return F.relu(relu_out1 - relu_out2)[:, additional_input2]


class BasicModel5_MultiArgs(nn.Module):
    """f(x1, x2) = RELU(ReLU(x1 - 1) * x3[0] - ReLU(x2) * x3[1])."""

    def forward(self, input1: Tensor, input2: Tensor, additional_input1: list[int],
                additional_input2: int = 0) -> Tensor:
        relu_out1 = F.relu(input1 - 1) * additional_input1[0]
        relu_out2 = F.relu(input2) * additional_input1[1]
        return F.relu(relu_out1 - relu_out2)[:, additional_input2]


class BasicModel6_MultiTensor(nn.Module):
    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        input = input1 + input2
        return 1 - F.relu(1 - input)[:, 1]


class BasicLinearModel(nn.Module):
    """Its Linear(7, 1) keeps torch's random initialisation: build it under a fixed seed."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(7, 1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.linear(torch.cat((x1, x2), dim=-1))


class BasicModel_MultiLayer(nn.Module):
    """Without captum's `multi_input_module` and `multidim_output` branches, which no ported case uses."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.linear0 = nn.Linear(3, 3)
        self.linear0.weight = nn.Parameter(torch.eye(3))
        self.linear0.bias = nn.Parameter(torch.zeros(3))
        self.linear1 = nn.Linear(3, 4)
        self.linear1.weight = nn.Parameter(torch.ones(4, 3))
        self.linear1.bias = nn.Parameter(torch.tensor([-10.0, 1.0, 1.0, 1.0]))
        self.relu = nn.ReLU(inplace=inplace)
        self.linear2 = nn.Linear(4, 2)
        self.linear2.weight = nn.Parameter(torch.ones(2, 4))
        self.linear2.bias = nn.Parameter(torch.tensor([-1.0, 1.0]))

    def forward(self, x: Tensor, add_input: Tensor | None = None) -> Tensor:
        input = x if add_input is None else x + add_input
        return self.linear2(self.relu(self.linear1(self.linear0(input))))


class BasicModel_MultiLayer_MultiInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = BasicModel_MultiLayer()

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor, scale: int) -> Tensor:
        return self.model(scale * (x1 + x2 + x3))


class BasicModel_ConvNet_One_Conv(nn.Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, 1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.fc1 = nn.Linear(8, 4)
        self.conv1.weight = nn.Parameter(torch.ones(2, 1, 3, 3))
        self.conv1.bias = nn.Parameter(torch.tensor([-50.0, -75.0]))
        self.fc1.weight = nn.Parameter(torch.cat([torch.ones(4, 5), -1 * torch.ones(4, 3)], dim=1))
        self.fc1.bias = nn.Parameter(torch.zeros(4))
        self.relu2 = nn.ReLU(inplace=inplace)

    def forward(self, x: Tensor, x2: Tensor | None = None) -> Tensor:
        if x2 is not None:
            x = x + x2
        x = self.relu1(self.conv1(x))
        x = x.view(-1, 8)
        return self.relu2(self.fc1(x))


class SoftmaxModel(nn.Module):
    """classification_models.py: random initialisation (build it under a fixed seed), softmax outputs."""

    def __init__(self, num_in: int, num_hidden: int, num_out: int, inplace: bool = False) -> None:
        super().__init__()
        self.lin1 = nn.Linear(num_in, num_hidden)
        self.lin2 = nn.Linear(num_hidden, num_hidden)
        self.lin3 = nn.Linear(num_hidden, num_out)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, input: Tensor) -> Tensor:
        lin1 = self.relu1(self.lin1(input))
        lin2 = self.relu2(self.lin2(lin1))
        return self.softmax(self.lin3(lin2))


def by_channel(x: Tensor) -> list[Tensor]:
    """Channel c of the image, flattened to (N, H * W), is the model's c-th input: a gradient with respect to the
    image holds the gradients with respect to every input."""
    return [x[:, c].flatten(1) for c in range(x.shape[1])]


def by_pixel(x: Tensor) -> list[Tensor]:
    """Each pixel of channel 0, as (N, 1), is one input: occluding or masking a pixel removes one input."""
    flat = x[:, 0].flatten(1)
    return [flat[:, i : i + 1] for i in range(flat.shape[1])]


def by_row(*rows: int):
    """Those rows of channel 0, (N, W) each, are the inputs; the other rows are never read. They make room for a
    square occlusion patch or superpixel which, on the rows read, acts exactly like captum's 1-D window."""
    return lambda x: [x[:, 0, row] for row in rows]


def whole(x: Tensor) -> list[Tensor]:
    """Channel 0 with its (H, W) shape is the one input."""
    return [x[:, 0]]


class PeerImage(nn.Module):
    """A captum test model as a kdscope image model, (N, C, H, W) -> (N, classes >= 2).

    `inputs` maps the image onto the model's inputs (`by_channel`, `by_pixel`, `by_row`, `whole`); `extra` are
    captum's `additional_forward_args`. An output beyond (N, K) is flattened (captum's tuple targets become flat
    indices); a scalar per example becomes the first of two logits, the second 0, so target 0 is captum's scalar
    output."""

    def __init__(self, model: nn.Module, *extra: object, inputs=by_channel) -> None:
        super().__init__()
        self.model, self.extra, self.inputs = model, extra, inputs

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(*self.inputs(x), *self.extra).reshape(len(x), -1)
        return torch.cat([out, torch.zeros_like(out)], 1) if out.shape[1] == 1 else out
