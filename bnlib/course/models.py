"""The networks of the course, as plain ``torch.nn`` modules.

The paper's MNIST network (Ioffe & Szegedy 2015, section 4.1): 784 inputs, three fully connected
hidden layers of 100 sigmoid units, a 10-way output. With batch norm, each hidden layer computes
``sigmoid(BN(W u))``: the bias ``b`` is dropped because BN's shift ``beta`` takes its place.
"""

from torch import nn

from bnlib.layers import BatchNorm1d

PAPER_HIDDEN = (100, 100, 100)


def mlp(norm=None, activation=nn.Sigmoid, hidden=PAPER_HIDDEN, init_std=0.01, inputs=784, classes=10):
    """``inputs`` -> [Linear -> ``norm`` -> ``activation``] per hidden layer -> Linear(``classes``). ``norm`` is a
    callable ``units -> module`` or None; a Linear before a norm has no bias (the norm's shift takes its place).
    Weights start as N(0, init_std^2), biases at zero."""
    layers, width = [], inputs
    for units in hidden:
        layers.append(nn.Linear(width, units, bias=norm is None))
        if norm is not None:
            layers.append(norm(units))
        layers.append(activation())
        width = units
    layers.append(nn.Linear(width, classes))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, init_std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def paper_mlp(batch_norm=False, hidden=PAPER_HIDDEN, init_std=0.01, inputs=784, classes=10):
    """The paper's sigmoid MLP, with batch norm (bnlib's) before each sigmoid or without."""
    return mlp(BatchNorm1d if batch_norm else None, nn.Sigmoid, hidden, init_std, inputs, classes)
