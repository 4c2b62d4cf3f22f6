"""The packed update's operations against PyTorch's own on plain tensors: the packed layer against
`nn.Linear`, the step with analytic penalty gradients against autograd through the penalty plus
`torch.optim.SGD`, max-norm against `torch.renorm`, for members that differ in everything."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropreg.schema import Activation, L2Form
from dropreg.net import PackedLinear
from dropreg.optim import PackedSGD
from dropreg.regularizers import Regularizers, column_norms
from test_regularizers import regs


def test_packed_linear_is_k_linear_layers():
    torch.manual_seed(0)
    layer = PackedLinear(3, 5, 4)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    x = torch.randn(3, 7, 5)
    out = layer(x)
    out.square().sum().backward()
    for k in range(3):
        ref = nn.Linear(5, 4)
        with torch.no_grad():
            ref.weight.copy_(layer.weight[k].t())
            ref.bias.copy_(layer.bias[k])
        y = ref(x[k])
        assert torch.allclose(out[k], y, atol=1e-6)
        y.square().sum().backward()
        assert torch.allclose(layer.weight.grad[k], ref.weight.grad.t(), atol=1e-5)
        assert torch.allclose(layer.bias.grad[k], ref.bias.grad, atol=1e-5)


# four members: L2 (sum, biases too), none, L1 late + L2 half_sum, L1 (biases too); members 0 and 2
# hold L2 and members 2 and 3 L1, so the L2 slots are not contiguous (the gather/scatter path)
MEMBERS = [{"l2.weight": 0.01, "l2.include_biases": True}, {},
           {"l1.weight": 0.003, "l1.start_fraction": 0.5, "l2.weight": 0.02, "l2.form": L2Form.half_sum},
           {"l1.weight": 0.002, "l1.include_biases": True}]
LR = [0.1, 0.05, 0.2, 0.3]
MOMENTUM = [0.5, 0.9, 0.0, 0.7]


def _penalty(cfg: dict, w: torch.Tensor, b: torch.Tensor, update: int, max_updates: int) -> torch.Tensor:
    """The penalty as the README defines it, for autograd."""
    out = torch.zeros(())
    l2 = cfg.get("l2.weight", 0.0) * (0.5 if cfg.get("l2.form") is L2Form.half_sum else 1.0)
    out = out + l2 * (w.square().sum() + (b.square().sum() if cfg.get("l2.include_biases") else 0.0))
    if update >= int(cfg.get("l1.start_fraction", 0.0) * max_updates):
        l1 = cfg.get("l1.weight", 0.0)
        out = out + l1 * (w.abs().sum() + (b.abs().sum() if cfg.get("l1.include_biases") else 0.0))
    return out


def test_the_step_is_sgd_on_the_penalized_loss_per_member():
    torch.manual_seed(1)
    K, steps, max_updates = len(MEMBERS), 6, 8
    weight = nn.Parameter(torch.randn(K, 6, 5))
    bias = nn.Parameter(torch.randn(K, 5))
    r = Regularizers(regs(*MEMBERS), Activation.relu, max_updates)
    assert not r.weight_penalties[0].slots.contiguous
    opt = PackedSGD([("layers.0.weight", weight), ("layers.0.bias", bias)], K, r.weight_penalties)
    refs = [(nn.Parameter(weight[k].detach().clone()), nn.Parameter(bias[k].detach().clone())) for k in range(K)]
    ref_opts = [torch.optim.SGD(refs[k], lr=LR[k], momentum=MOMENTUM[k]) for k in range(K)]
    grads = [(torch.randn(K, 6, 5), torch.randn(K, 5)) for _ in range(steps)]  # stand-ins for the data gradient
    update = torch.zeros(1, dtype=torch.long)
    for t in range(steps):
        weight.grad, bias.grad = grads[t][0].clone(), grads[t][1].clone()
        opt.set_schedule(torch.tensor(LR), torch.tensor(MOMENTUM))
        opt.step(update)
        for k in range(K):
            w, b = refs[k]
            ref_opts[k].zero_grad()
            (_penalty(MEMBERS[k], w, b, t, max_updates) + (w * grads[t][0][k]).sum() + (b * grads[t][1][k]).sum()).backward()
            ref_opts[k].step()
        update += 1
    for k in range(K):
        assert torch.allclose(weight[k], refs[k][0], rtol=1e-5, atol=1e-6), k
        assert torch.allclose(bias[k], refs[k][1], rtol=1e-5, atol=1e-6), k


def test_max_norm_is_torch_renorm_per_member():
    torch.manual_seed(2)
    from dropreg.net import PackedMLP

    net = PackedMLP(3, 40, [64, 32], 10, Activation.relu)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.normal_(std=0.5)
    before = [layer.weight.detach().clone() for layer in net.layers]
    Regularizers(regs({"max_norm.radius": 1.5}, {}, {"max_norm.radius": 2.5}), Activation.relu, 10).max_norm.apply(net)
    for k, radius in ((0, 1.5), (2, 2.5)):
        for i, layer in enumerate(net.hidden_layers):
            # nn.Linear's [out, in] rows are the units' incoming vectors
            expected = torch.renorm(before[i][k].t(), p=2, dim=0, maxnorm=radius).t()
            assert torch.allclose(layer.weight[k], expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(net.layers[0].weight[1], before[0][1]) and torch.equal(net.layers[-1].weight, before[-1])


@pytest.mark.parametrize("n_out", [10, 2048])
def test_column_norms_match_torch_and_do_not_depend_on_the_pack(n_out):
    torch.manual_seed(3)
    w = torch.randn(9, 300, n_out)
    norms = column_norms(w)
    assert torch.allclose(norms, torch.linalg.vector_norm(w, dim=1, keepdim=True), rtol=1e-5)
    assert torch.equal(column_norms(w[4:5]), norms[4:5])  # the same bits alone as among eight others
