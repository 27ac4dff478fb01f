"""wide_align learning rules, alignment score and Add task against closed forms and identities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impls.wide_align import add_task, alignment, models, rules

torch.set_num_threads(1)


def _net(depth=3, width=6, norm="batch", param="ntk", runs=2, size=8, c_in=1):
    strides = (1, 2, 2) if depth == 3 else (1, 1, 1, 2, 1, 2, 1)
    shape = models.NetShape(c_in, size, width, strides, 10, norm, param)
    per_run = [models.init_params(shape, torch.Generator().manual_seed(s)) for s in range(runs)]
    g = torch.Generator().manual_seed(123)
    x = torch.rand(16, c_in, size, size, generator=g)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (runs, 16), generator=g), 10).float() - 0.1
    return shape, per_run, models.stack_params(per_run), x, y


def _max_diff(a, b):
    """Largest |a − b| relative to the largest |b| of the *same list* (the hidden biases' true
    gradients vanish under the batch-axis norm, so they are compared on the common scale)."""
    scale = max(float(q.abs().max()) for q in b)
    return max(float((p - q).abs().max()) for p, q in zip(a, b)) / max(scale, 1e-12)


@pytest.mark.parametrize("depth,norm,param", [(3, "batch", "ntk"), (7, "batch", "ntk"), (3, "bn", "ntk"),
                                              (3, "batch", "standard"), (3, "none", "ntk")])
@pytest.mark.parametrize("rule", ["alignzero", "alignada", "alignprop"])
def test_align_rules_equal_bp_at_initialisation(rule, depth, norm, param):
    shape, _, p, x, y = _net(depth, norm=norm, param=param)
    bp = rules.directions("bp", p, None, None, x, y, shape)[0]
    d = rules.directions(rule, p, p, None, x, y, shape)[0]
    assert _max_diff(d, bp) < 1e-5


def test_align_rules_differ_from_bp_once_the_live_net_moves():
    shape, _, p, x, y = _net()
    p0 = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in p.items()}
    live = {k: ([t + 0.5 * torch.randn_like(t) for t in v] if isinstance(v, list) else v + 0.5 * torch.randn_like(v))
            for k, v in p.items()}
    bp = rules.directions("bp", live, None, None, x, y, shape)[0]
    for rule in ("alignzero", "alignada", "alignprop"):
        assert _max_diff(rules.directions(rule, live, p0, None, x, y, shape)[0][:3], bp[:3]) > 1e-2, rule


def test_fa_with_feedback_equal_to_the_forward_weights_is_bp():
    shape, _, p, x, y = _net()
    bp = rules.directions("bp", p, None, None, x, y, shape)[0]
    fa = rules.directions("fa", p, None, {"w": p["w"], "v": p["v"]}, x, y, shape)[0]
    assert _max_diff(fa, bp) < 1e-6
    fb = [rules.init_feedback("fa", shape, q, torch.Generator().manual_seed(7)) for q in _net()[1]]
    random_fb = {"w": [torch.stack(z) for z in zip(*(f["w"] for f in fb))], "v": torch.stack([f["v"] for f in fb])}
    fa = rules.directions("fa", p, None, random_fb, x, y, shape)[0]
    assert _max_diff(fa[:2], bp[:2]) > 0.1          # hidden layers differ with random feedback
    assert _max_diff(fa[-2:], bp[-2:]) < 1e-6        # readout gets the gradient


@pytest.mark.parametrize("mode", ["full", "pooled"])
def test_dfa_hidden_direction_matches_its_closed_form_at_the_last_layer(mode):
    """Last hidden layer: d_W = VJP of W -> ReLU(h_L) applied to B_L e (checked against autograd)."""
    shape, per_run, p, x, y = _net()
    fbs = [rules.init_feedback("dfa", shape, q, torch.Generator().manual_seed(3), mode) for q in per_run]
    fb = {"dfa": [torch.stack(z) for z in zip(*(f["dfa"] for f in fbs))]}
    d, f, e = rules.directions("dfa", p, None, fb, x, y, shape, dfa_mode=mode)
    w = p["w"][2].clone().requires_grad_(True)
    q = {**p, "w": [p["w"][0], p["w"][1], w]}
    _, _, acts = models.forward(q, x, shape, local=True)
    signal = rules.dfa_signal(fb["dfa"][2], e, acts[2].shape, mode)
    expected = torch.autograd.grad((acts[2] * signal).sum(), w)[0]
    assert torch.allclose(d[2], expected, rtol=1e-5, atol=1e-7)
    bp = rules.directions("bp", p, None, None, x, y, shape)[0]
    assert torch.allclose(d[-2], bp[-2], rtol=1e-5, atol=1e-7)


def test_lastlayer_moves_only_the_readout():
    shape, _, p, x, y = _net()
    d = rules.directions("lastlayer", p, None, None, x, y, shape)[0]
    bp = rules.directions("bp", p, None, None, x, y, shape)[0]
    assert all(float(t.abs().max()) == 0 for t in d[:6])
    assert _max_diff(d[6:], bp[6:]) < 1e-6


def test_stacked_runs_equal_single_runs():
    shape, per_run, p, x, y = _net(runs=3)
    both = rules.directions("alignada", p, p, None, x, y, shape)[0]
    one = models.stack_params(per_run[1:2])
    single = rules.directions("alignada", one, one, None, x, y[1:2], shape)[0]
    assert _max_diff([t[1:2] for t in both], single) < 1e-5


def test_adam_matches_torch_adam():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 5, generator=g)
    ref = w[1:].clone().requires_grad_(True)
    opt = rules.Optimizer("adam", [w], torch.tensor([0.1, 0.01]))
    torch_opt = torch.optim.Adam([ref], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(5):
        d = torch.randn(2, 5, generator=g)
        opt.step([w], [d])
        ref.grad = d[1:].clone()
        torch_opt.step()
    assert torch.allclose(w[1:], ref.detach(), atol=1e-6)


# ------------------------------------------------------------------ alignment score


def test_estimator_equals_the_exact_frobenius_cosine_on_a_1x1_conv():
    g = torch.Generator().manual_seed(0)
    dw = torch.randn(5, 4, 1, 1, generator=g, dtype=torch.float64)
    dwt = dw + 0.8 * torch.randn(5, 4, 1, 1, generator=g, dtype=torch.float64)
    exact = alignment.exact_cosine(dw, dwt, 4, 6, 1)
    # 1x1 conv: G = (ΔWᵀΔW / C_out) ⊗ I, so the cosine is that of the channel Gram matrices
    a, b = dw[:, :, 0, 0].T @ dw[:, :, 0, 0], dwt[:, :, 0, 0].T @ dwt[:, :, 0, 0]
    assert exact == pytest.approx(float((a * b).sum() / (a.norm() * b.norm())), abs=1e-12)
    est = alignment.score(dw, dwt, 4, 6, 1, torch.Generator().manual_seed(1), draws=100)
    assert 0.3 < exact < 0.99
    assert est == pytest.approx(exact, abs=1e-3)  # 100 draws x 100 probes; more draws if this ever flakes


def test_gram_operator_is_the_exact_transpose_for_3x3_strided_layers():
    g = torch.Generator().manual_seed(0)
    dw = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    for stride in (1, 2):
        gram = alignment.gram_matrix(dw, 2, 6, stride)
        assert torch.allclose(gram, gram.T, atol=1e-12)
        assert float(torch.linalg.eigvalsh(gram).min()) > -1e-10
    dwt = dw + torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    exact = alignment.exact_cosine(dw, dwt, 2, 6, 2)
    est = alignment.score(dw, dwt, 2, 6, 2, torch.Generator().manual_seed(2), draws=100)
    assert est == pytest.approx(exact, abs=1e-2)


def test_shuffled_control_chance_level_depends_on_layer_shape():
    """Spec §4: ≈ 0.87 for a 1-channel 3x3 first layer, ≈ 0.22 for width-8 hidden layers."""
    def control(c_in, width=8, size=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        w0 = torch.randn(width, c_in, 3, 3, generator=g, dtype=torch.float64)
        w_bp = w0 + 0.3 * torch.randn(w0.shape, generator=g, dtype=torch.float64)
        dwt = (w_bp - w0) + 0.1 * torch.randn(w0.shape, generator=g, dtype=torch.float64)
        shuffled = alignment.shuffled_change(w_bp, w0, torch.Generator().manual_seed(seed + 1))
        return alignment.score(shuffled, dwt, c_in, size, 1, torch.Generator().manual_seed(seed + 2), draws=20)

    first = [control(1, seed=s) for s in range(3)]
    hidden = [control(8, seed=s) for s in range(3)]
    # synthetic changes here (not trained nets): first ≈ 0.91-0.94, hidden ≈ 0.49-0.51
    assert min(first) > 0.8 and max(hidden) < 0.6 and min(first) - max(hidden) > 0.3, (first, hidden)


# ------------------------------------------------------------------ Add task


def test_add_task_data_gives_the_spec_chance_loss():
    causal, released = add_task.make_data("causal"), add_task.make_data("released")
    assert add_task.chance_loss(causal["y_train"]) == pytest.approx(9.2942, abs=5e-5)
    assert add_task.chance_loss(causal["y_test"]) == pytest.approx(9.2169, abs=5e-5)
    assert add_task.chance_loss(released["y_train"]) == pytest.approx(9.3585, abs=5e-5)
    assert add_task.chance_loss(released["y_test"]) == pytest.approx(9.3119, abs=5e-5)
    x = causal["x_train"]
    assert causal["y_train"][0, 7] == 0.5 + 0.5 * x[0, 5] - 0.25 * x[0, 2]
    assert np.all(causal["y_train"][:, :2] == 0.5)


@pytest.mark.parametrize("rule", ["alignzero", "alignada"])
def test_add_align_rules_equal_bptt_at_initialisation(rule):
    data = add_task.make_data()
    x, y = (torch.tensor(data[k][:50], dtype=torch.float32) for k in ("x_train", "y_train"))
    p = add_task.init_params(16)
    p["s"] = 0.1 * torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    ref = add_task.directions("bptt", p, p, x, y)[0]
    got = add_task.directions(rule, p, p, x, y)[0]
    for name, a, b in zip(add_task.NAMES, got, ref):
        assert float((a - b).norm() / b.norm()) < 1e-5, name


def test_add_released_alignada_differs_on_u_w_b_only():
    data = add_task.make_data("released")
    x, y = (torch.tensor(data[k][:50], dtype=torch.float32) for k in ("x_train", "y_train"))
    p = add_task.init_params(16)
    ref = add_task.directions("bptt", p, p, x, y)[0]
    got = add_task.directions("alignada", p, p, x, y, "released")[0]
    rel = {n: float((a - b).norm() / b.norm().clamp_min(1e-12)) for n, a, b in zip(add_task.NAMES, got, ref)}
    assert all(rel[n] > 0.1 for n in ("u", "W", "b")) and all(rel[n] < 1e-5 for n in ("v", "c", "s")), rel


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_axis_norm_equals_the_formula_and_its_autograd(channels_last):
    """Mean and biased variance over the batch axis only, per (channel, row, col), in either layout."""
    z = torch.randn(7, 3, 4, 5, dtype=torch.float64)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    z.requires_grad_(True)
    g = torch.randn(7, 3, 4, 5, dtype=torch.float64)
    fused = torch.autograd.grad((models.batch_axis_norm(z) * g).sum(), z)[0]
    zz = z.detach().clone().requires_grad_(True)
    ref_y = (zz - zz.mean(0, keepdim=True)) / torch.sqrt(zz.var(0, unbiased=False, keepdim=True) + models.EPS)
    ref = torch.autograd.grad((ref_y * g).sum(), zz)[0]
    assert torch.allclose(fused, ref, atol=1e-10)
    assert torch.allclose(models.batch_axis_norm(z), ref_y, atol=1e-12)
    assert torch.autograd.gradcheck(models.batch_axis_norm, (z,))
