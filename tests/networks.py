"""Networks as students edit model.py, for the tests of the page, the exported file and page/nodes.py:
batch norm, another ReLU, wider layers, grouped and dilated convolutions, every other operation the
file computes, softmax every way, pytorch/examples' Net; and a way to put one in model.py's place.

Usage: from tests.networks import EDITED, DilatedNet, in_model_py, ...   (tests only)
"""
import contextlib
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F

import train
from extras import checkpoints
from model import Net
from page import routes


class BatchNormNet(Net):
    """Net as a student edits it: batch normalisation after convolution1, and a third convolution
    (4 x 4 with padding 'same', so 16 x 4 x 4 stays 16 x 4 x 4) without pooling."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(6)
        self.convolution3 = nn.Conv2d(16, 16, kernel_size=4, padding="same")

    def forward(self, x):
        x = self.pool(F.relu(self.norm1(self.convolution1(x))))
        x = self.conv_dropout(x)
        x = self.pool(F.relu(self.convolution2(x)))
        x = self.convolution3(x)
        return self.fc2(self.fc1(torch.flatten(x, 1)))


class ReluAfterFc1Net(Net):
    """Net with the ReLU between fc1 and fc2 that the tutorial leaves out."""

    def forward(self, x):
        x = self.pool(F.relu(self.convolution1(x)))
        x = self.pool(F.relu(self.convolution2(self.conv_dropout(x))))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class WideNet(nn.Module):
    """A wider network with other names: 12 and 24 kernels, 64 hidden units, nn.ReLU modules."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 12, kernel_size=5)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv2d(12, 24, kernel_size=5)
        self.act_b = nn.ReLU()
        self.hidden = nn.Linear(24 * 4 * 4, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act_a(self.conv_a(x)), 2)
        x = F.max_pool2d(self.act_b(self.conv_b(x)), 2)
        return self.out(self.hidden(x.view(x.size(0), -1)))


class DilatedNet(nn.Module):
    """A grouped, dilated convolution, in-place ReLUs (a module and relu_()), and the functional
    F.max_pool2d and F.dropout, as students write them."""

    def __init__(self):
        super().__init__()
        self.convolution1 = nn.Conv2d(1, 6, kernel_size=5)
        self.norm = nn.BatchNorm2d(6)
        self.act = nn.ReLU(inplace=True)  # changes norm's output tensor itself
        self.convolution2 = nn.Conv2d(6, 12, kernel_size=3, dilation=2, groups=2)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act(self.norm(self.convolution1(x))), 2)  # (6, 12, 12)
        x = F.dropout(x, p=0.25, training=self.training)
        x = F.max_pool2d(self.convolution2(x).relu_(), 2)                # (12, 8, 8) -> (12, 4, 4)
        return self.fc(torch.flatten(x, 1))


# Stage names and shapes each edited network must show, in order.
EDITED = {
    "batchnorm": (BatchNormNet, [("convolution1", [6, 24, 24]), ("norm1", [6, 24, 24]),
                                 ("relu", [6, 24, 24]), ("pool", [6, 12, 12]),
                                 ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                 ("pool_1", [16, 4, 4]), ("convolution3", [16, 4, 4]),
                                 ("flatten", [256]), ("fc1", [30]), ("fc2", [10]), ("softmax", [10])]),
    "relu after fc1": (ReluAfterFc1Net, [("convolution1", [6, 24, 24]), ("pool", [6, 12, 12]),
                                         ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                         ("pool_1", [16, 4, 4]), ("flatten", [256]), ("fc1", [30]),
                                         ("fc2", [10]), ("softmax", [10])]),
    "wide": (WideNet, [("conv_a", [12, 24, 24]), ("max_pool2d", [12, 12, 12]),
                       ("conv_b", [24, 8, 8]), ("max_pool2d_1", [24, 4, 4]), ("view", [384]),
                       ("hidden", [64]), ("out", [10]), ("softmax", [10])]),
    "dilated": (DilatedNet, [("convolution1", [6, 24, 24]), ("norm", [6, 24, 24]),
                             ("act", [6, 24, 24]), ("max_pool2d", [6, 12, 12]),
                             ("dropout", [6, 12, 12]), ("convolution2", [12, 8, 8]),
                             ("max_pool2d_1", [12, 4, 4]), ("flatten", [192]), ("fc", [10]),
                             ("softmax", [10])]),
}


class OpsNet(nn.Module):
    """Every other operation the file computes: strides, padding, 'same', dilation, a residual
    x + y, tanh, sigmoid, LeakyReLU, average pooling, padded max pooling, reshape, + a number."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 4, 3, stride=2, padding=1)        # (4, 14, 14)
        self.conv_same = nn.Conv2d(4, 4, 3, padding="same")
        self.average = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.conv_b = nn.Conv2d(4, 6, 3, padding=2, dilation=2)      # (6, 7, 7)
        self.squash = nn.Sigmoid()
        self.fc = nn.Linear(24, 16)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.tanh(self.conv_a(x))
        x = F.leaky_relu(x + self.conv_same(x), 0.1)                # a residual connection
        x = self.squash(self.conv_b(self.average(x)))              # (4, 7, 7) -> (6, 7, 7)
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)  # (6, 4, 4)
        x = F.avg_pool2d(x, 2).reshape(x.size(0), -1)              # (24,)
        return self.out(self.act(self.fc(x))) + 0.5


class SoftmaxNet(nn.Module):
    """softmax and log_softmax as modules, functions and tensor methods, along several dimensions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2)                    # (4, 12, 12)
        self.channels = nn.Softmax(dim=1)
        self.fc = nn.Linear(4 * 12 * 12, 32)
        self.out = nn.Linear(32, 10)
        self.last = nn.LogSoftmax()  # no dim: PyTorch takes dim 1 of (N, 10)

    def forward(self, x):
        x = self.channels(self.conv(x))                            # over the 4 maps
        x = x.log_softmax(-1) + torch.softmax(x, 2)                # along each row and each column
        h = F.relu(self.fc(torch.flatten(x, 1)))
        h = h + torch.log_softmax(h, 1) + F.softmax(h, dim=1)
        return self.last(self.out(h))


class ExamplesNet(nn.Module):
    """pytorch/examples' mnist/main.py Net, as it is pasted into model.py."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


class GeluNet(nn.Module):
    """One layer after F.gelu, which the exported file cannot compute; edited further by the tests."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(F.gelu(torch.flatten(x, 1)))


@contextlib.contextmanager
def in_model_py(network):
    """The scripts build network wherever they build model.py's Net, as if it were pasted there."""
    with mock.patch.object(train, "Net", network), mock.patch.object(checkpoints, "Net", network), \
            mock.patch.object(routes, "Net", network):
        yield
