"""Linear layers through oneDNN (`molab.learners.onednn`): the same products as `nn.Linear`'s, forward and backward,
learning as the plain layers do, and `nn.Linear` itself wherever oneDNN's would not be the same computation."""

import copy

import pytest
import torch
from torch import nn

from molab.learners import onednn
from molab.learners.onednn import OneDNNLinear, faster_linears
from test_stacked import TOKENIZER, batches, fresh

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.mkldnn, "_linear_pointwise")
                                or not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")


@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])  # gpt_neox's layers have biases
def test_onednn_layers_give_nn_linears_products_and_gradients(architecture):
    plain = fresh(0, architecture).cpu()
    fast = faster_linears(copy.deepcopy(plain), force=True)
    linears = [m for m in fast.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is OneDNNLinear for m in linears)
    batch = next(batches(0))
    out = [model(**{k: v.cpu() for k, v in batch.items()}) for model in (plain, fast)]
    assert torch.allclose(out[0].logits, out[1].logits, atol=1e-5)
    for o in out:
        o.loss.backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4), name
    with torch.inference_mode():
        assert torch.allclose(plain(batch["input_ids"]).logits, fast(batch["input_ids"]).logits, atol=1e-5)


def test_onednn_layers_learn_as_plain_ones():
    from molab.training.loop import train
    from molab.training.objectives import sft

    losses = [train(model, batches(1), sft, steps=60, lr=3e-3, progress=False)
              for model in (fresh(1).cpu(), faster_linears(fresh(1).cpu(), force=True))]
    assert losses[1][-1] < 0.7 * losses[1][0]
    assert max(abs(a - b) / a for a, b in zip(*losses)) < 1e-3


def test_onednn_layers_leave_other_computations_to_nn_linear(monkeypatch):
    """Under autocast, inside torch.func.vmap (stacked runs: the weights stacked, the inputs, or both), on no rows and
    in other dtypes each layer computes as nn.Linear: no oneDNN product is made (counted), and the results and
    gradients are exactly nn.Linear's."""
    calls = []
    monkeypatch.setattr(onednn, "_linear", lambda *a: calls.append(1) or torch.nn.functional.linear(*a))
    layer = nn.Linear(8, 4)
    fast = faster_linears(nn.Sequential(copy.deepcopy(layer)), force=True)[0]
    x = torch.randn(3, 8)
    fast(x)
    assert len(calls) == 1  # the check below can see a oneDNN product
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fast(x), layer(x))
    stacked, shared = {k: torch.stack([v, v + 1]) for k, v in layer.state_dict().items()}, dict(layer.state_dict())
    xs = torch.stack([x, x - 1])
    for weights, inputs, dims in [(stacked, x, (0, None)), (stacked, xs, (0, 0)), (shared, xs, (None, 0))]:
        got = []
        for model in (fast, layer):
            w = {k: v.clone().requires_grad_() for k, v in weights.items()}
            out = torch.func.vmap(lambda w, x, m=model: torch.func.functional_call(m, w, (x,)), in_dims=dims)(w, inputs)
            (out ** 2).sum().backward()
            got.append([out] + [w[k].grad for k in sorted(w)])
        assert all(torch.equal(a, b) for a, b in zip(*got)), dims
    empty = torch.zeros(0, 8, requires_grad=True)
    fast(empty).sum().backward()
    assert empty.grad.shape == (0, 8)
    assert torch.equal(fast.double()(x.double()), layer.double()(x.double()))
    assert not calls


def test_onednn_is_used_only_where_it_pays(monkeypatch):
    """On a processor with AVX-512, oneDNN is used unless it is Intel's (or unknown); without AVX-512, never."""
    for vendor, capability, used in [("AuthenticAMD", "AVX512", True), ("GenuineIntel", "AVX512", False),
                                     ("", "AVX512", False), ("AuthenticAMD", "AVX2", False)]:
        monkeypatch.setattr(onednn, "_vendor", lambda v=vendor: v)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        model = faster_linears(nn.Sequential(nn.Linear(2, 2)))
        assert (type(model[0]) is OneDNNLinear) == used, (vendor, capability)
    monkeypatch.setattr(onednn, "_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert onednn.pays()
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # the user's own switch
    assert not onednn.pays()


def test_loaded_models_compute_through_onednn_where_it_pays(tmp_path, monkeypatch):
    from molab.learners.lm import load

    fresh(0).save_pretrained(tmp_path)
    TOKENIZER.save_pretrained(tmp_path)
    for used in (True, False):
        monkeypatch.setattr(onednn, "pays", lambda u=used: u)
        model, _ = load(tmp_path)
        assert any(type(m) is OneDNNLinear for m in model.modules()) == (used and model.device.type == "cpu")
