"""The pepita train loop: JAX-vs-PyTorch BP parity, stacked seeds, resume, the CLI contract."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from impls.common import specs as speclib
from impls.common.io import atomic_write_json, read_json
from impls.pepita import rules
from impls.pepita.stacked import StackedBatch, load_images, lr_at
from impls.rules_torch import backprop, cross_entropy
from tests.conftest import REPO


def test_torch_bp_matches_jax_bp_for_10_steps():
    """Same MLP (20-16-12-10, no biases), same initial weights and batches, momentum with η inside."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from impls.rules.backprop import backprop as jax_backprop

    rng = np.random.default_rng(0)
    sizes, batch, lr, mu, steps = [20, 16, 12, 10], 8, 0.1, 0.9, 10
    w0 = [rng.uniform(-1, 1, (o, i)) * np.sqrt(6 / i) for i, o in zip(sizes[:-1], sizes[1:])]
    xs = rng.uniform(0, 1, (steps, batch, sizes[0]))
    ys = np.eye(10)[rng.integers(0, 10, (steps, batch))]

    def loss_fn(params, x, y):
        h = x
        for l, p in enumerate(params):
            a = h @ p["w"].T
            h = jax.nn.relu(a) if l < len(params) - 1 else a
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(h), -1))

    jax_losses = []
    with jax.enable_x64(True):
        rule = jax_backprop(loss_fn)
        params = [{"w": jnp.asarray(w)} for w in w0]
        vel = [{"w": jnp.zeros_like(p["w"])} for p in params]
        for x, y in zip(xs, ys):
            grads, _, aux = rule.estimate(params, (), jnp.asarray(x), jnp.asarray(y))
            jax_losses.append(float(aux["loss"]))
            vel = [{"w": mu * v["w"] + lr * g["w"]} for v, g in zip(vel, grads)]
            params = [{"w": p["w"] - v["w"]} for p, v in zip(params, vel)]

    weights = [torch.tensor(w)[None] for w in w0]
    velocities = [torch.zeros_like(w) for w in weights]
    torch_losses = []
    for x, y in zip(xs, ys):
        xt, yt = torch.tensor(x)[None], torch.tensor(y)[None]
        grads, out = backprop.pseudo_grads(weights, xt, yt)
        torch_losses.append(cross_entropy(out, yt).mean().item())
        rules.apply_update("eta_inside", weights, velocities, grads, lr, mu, batch)

    rel = np.abs(np.array(torch_losses) - np.array(jax_losses)) / np.abs(jax_losses)
    assert rel.max() < 1e-5, (torch_losses, jax_losses)
    assert torch_losses[-1] < torch_losses[0]  # it trains


def digits_spec(rule="pepita", arch="fc", seed=0, epochs=1, **hparams):
    model = {"arch": "fc", "hidden": [32]} if arch == "fc" else {"arch": "conv", "channels": 4, "kernel": 3}
    return speclib.validate_spec(dict(paper="pepita", rule=rule, model=model, dataset="digits",
                                      hparams={"lr": 0.1 if arch == "fc" else 0.01, **hparams}, seed=seed,
                                      epochs=epochs, batch_size=64, scale="smoke"))


@pytest.mark.parametrize("rule, arch", [("pepita", "fc"), ("drtp", "fc"), ("pepita", "conv"), ("fa", "conv")])
def test_a_run_does_not_depend_on_the_other_seeds_of_its_batch(datasets_dir, rule, arch):
    spec = digits_spec(rule, arch)
    data = load_images(spec, datasets_dir)
    # float64: DRTP weights grow fast, and float32 matmuls of different batch shapes may round differently
    together = StackedBatch(spec, [0, 1], data, "cpu", torch.float64)
    alone = StackedBatch(spec, [1], data, "cpu", torch.float64)
    with torch.no_grad():
        m2, m1 = together.train_epoch(1), alone.train_epoch(1)
        e2, e1 = together.evaluate(), alone.evaluate()
    for w2, w1 in zip(together.weights, alone.weights):
        torch.testing.assert_close(w2[1:], w1, rtol=1e-9, atol=1e-12)
    assert e2["test_acc"][1] == e1["test_acc"][0]
    assert m2["train_loss"][1] == pytest.approx(m1["train_loss"][0], rel=1e-9)
    assert not torch.equal(together.weights[0][0], together.weights[0][1])  # seeds differ


def test_every_rule_starts_from_the_same_weights_for_a_seed(datasets_dir):
    data = load_images(digits_spec(), datasets_dir)
    first = [StackedBatch(digits_spec(rule), [3], data, "cpu").weights for rule in ("pepita", "bp", "fa", "drtp")]
    for other in first[1:]:
        assert all(torch.equal(a, b) for a, b in zip(first[0], other))


def test_learning_rate_decays_at_the_start_of_the_listed_epochs():
    hp = {"lr": 0.1, "decay": 0.1, "decay_epochs": [60, 90]}
    assert [lr_at(e, hp) for e in (1, 60, 61, 90, 91, 100)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_at(5, {"lr": 1e-5, "decay": 0.1, "decay_epochs": [0, 1, 2]}) == 1e-6  # floored as in the code


def _write_batch(tmp_path, specs, name="b0"):
    results = tmp_path / "results" / "pepita"
    batch_dir = results / "batches" / name
    runs = {speclib.run_id(s): s for s in specs}
    atomic_write_json(batch_dir / "batch.json", {"paper": "pepita", "batch_id": name, "runs": runs})
    return batch_dir / "batch.json", results, list(runs)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "impls.pepita", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})},
                          timeout=300)


def test_cli_trains_a_batch_and_a_killed_job_resumes_to_identical_metrics(tmp_path, datasets_dir):
    specs = [digits_spec(seed=s, epochs=3) for s in (0, 1)]
    batch, results, ids = _write_batch(tmp_path / "a", specs)
    done = _cli("train", batch, "--datasets-dir", datasets_dir, "--platform", "cpu")
    assert done.returncode == 0, done.stderr
    assert _cli("evaluate", batch, "--datasets-dir", datasets_dir).returncode == 0
    for rid in ids:
        run = results / "runs" / rid
        final = read_json(run / "final.json")
        assert final["status"] == "ok" and final["final"]["test_acc"] > 30
        assert final["provenance"]["device"]["framework"] == "torch"
        record = read_json(run / "train.json")
        assert record["runs_in_batch"] == 2 and record["seeds_in_process"] == [0, 1]
        metrics = pd.read_csv(run / "metrics.csv")
        assert {"acc", "loss", "angle", "w1norm"} <= set(metrics["metric"])

    batch_b, results_b, _ = _write_batch(tmp_path / "b", specs)
    killed = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0,
                  env={"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    assert killed.returncode != 0 and (batch_b.parent / "checkpoint.npz").exists()
    resumed = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0)
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr
    for rid in ids:
        a = pd.read_csv(results / "runs" / rid / "metrics.csv")
        b = pd.read_csv(results_b / "runs" / rid / "metrics.csv")
        pd.testing.assert_frame_equal(a, b)
    assert not (batch_b.parent / "checkpoint.npz").exists()


def test_bad_spec_names_the_key():
    from impls.common.errors import SpecError

    with pytest.raises(SpecError, match="hparams.last_error"):
        digits_spec(last_error="both")
    with pytest.raises(SpecError, match="model.hidden"):
        speclib.validate_spec(dict(paper="pepita", rule="pepita", model={"arch": "conv", "hidden": [3]},
                                   dataset="digits", hparams={"lr": 0.1}, seed=0, epochs=1, batch_size=8, scale="smoke"))
    with pytest.raises(SpecError, match="'rule'"):
        digits_spec(rule="dfa")


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_pepita_target_expands_at_every_scale_with_seeds_batched(scale):
    import yaml

    from impls.common.plan import build_plan

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    plan = build_plan({**config, "scale": scale, "papers": ["pepita"], "seeds": None}, REPO)
    targets = set(plan.targets("pepita"))
    assert targets == {"tab_pepita_accuracy", "fig_pepita_curves", "tab_pepita_slowness", "fig_pepita_control",
                       "fig_pepita_alignment", "fig_pepita_tutorial_check", "fig_pepita_conv_filters",
                       "fig_pepita_sweeps"}
    datasets = {plan.runs[r]["dataset"] for r in plan.runs}
    assert datasets == {"smoke": {"digits"}, "cpu": {"fashion_mnist"}, "paper": {"mnist", "cifar10", "cifar100"}}[scale]
    for batch in plan.batches.values():
        specs = [dict(plan.runs[r]) for r in batch.run_ids]
        assert len({s.pop("seed") for s in specs}) == len(specs)
        assert all(s == specs[0] for s in specs)  # one process per configuration, seeds inside
    acc = plan.figures["tab_pepita_accuracy"].run_ids
    assert len(acc) == {"smoke": 8, "cpu": 24, "paper": 240}[scale]
    # the curves, slowness and alignment figures reuse the table's runs
    assert set(plan.figures["fig_pepita_curves"].run_ids) == set(acc)
    assert set(plan.figures["fig_pepita_alignment"].run_ids) <= set(acc)


def test_carry_remainder_adds_the_partial_batch_to_the_next_epochs_first_update(datasets_dir):
    """n = 70, B = 64: epoch 1 applies one update and keeps the 6-sample remainder's G, which
    epoch 2 adds to its first update (numpy main.py); the default applies both batches."""
    from impls.pepita.stacked import STREAM_DATA, generator

    spec = speclib.validate_spec(dict(paper="pepita", rule="bp", model={"arch": "fc", "hidden": [16]},
                                      dataset="digits", hparams={"lr": 0.1, "keep": 1.0, "carry_remainder": True},
                                      seed=0, epochs=2, batch_size=64, scale="smoke", data={"n_train": 70}))
    data = load_images(spec, datasets_dir)
    prog = StackedBatch(spec, [0], data, "cpu", torch.float64)
    w0 = [w.clone() for w in prog.weights]
    perm = torch.randperm(70, generator=generator(STREAM_DATA))
    x, t = prog.x_train[perm[None]], prog.y_train[perm[None]]
    with torch.no_grad():
        prog.train_epoch(1)
        g_first, _ = rules.compute_grads("bp", "fc", w0, prog.F, [], x[:, :64], t[:, :64], None, prog.hp)
        for w, w_init, g in zip(prog.weights, w0, g_first):
            torch.testing.assert_close(w, w_init - 0.1 * g / 64, rtol=1e-12, atol=1e-14)
        g_rest, _ = rules.compute_grads("bp", "fc", prog.weights, prog.F, [], x[:, 64:], t[:, 64:], None, prog.hp)
        for c, g in zip(prog.carry, g_rest):
            torch.testing.assert_close(c, g, rtol=1e-12, atol=1e-14)
        restored = StackedBatch(spec, [0], data, "cpu", torch.float64)
        restored.load_state_dict(prog.state_dict())
        prog.train_epoch(2)
        restored.train_epoch(2)
        assert prog.carry is not None and all(torch.equal(a, b) for a, b in zip(prog.weights, restored.weights))

    default = StackedBatch(speclib.validate_spec({**spec, "hparams": {"lr": 0.1, "keep": 1.0}}), [0], data, "cpu",
                      torch.float64)
    with torch.no_grad():
        default.train_epoch(1)
    assert default.carry is None and not torch.allclose(default.weights[0], prog.weights[0])


@pytest.mark.parametrize("hparams, message", [({"double_mask": True}, "applies to rule 'pepita'"),
                                              ({"sqrt_conv": True}, "applies to rule 'pepita' with arch 'conv'"),
                                              ({"F_init": "glorot"}, "'hparams.F_init'"),
                                              ({"modulated_product": "fast"}, "'hparams.modulated_product'"),
                                              ({"carry_remainder": 1}, "expected true or false"),
                                              ({"shuffle": "random"}, "'hparams.shuffle'"),
                                              ({"dtype": "float16"}, "'hparams.dtype'")])
def test_variant_switches_are_validated(hparams, message):
    with pytest.raises(speclib.SpecError, match=message):
        digits_spec(rule="bp", **hparams)


@pytest.mark.parametrize("rule, activation, message", [("drtp", "sigmoid", "'model.activation' is 'sigmoid'"),
                                                       ("pepita", "tanh", "PEPITA is ReLU only")])
def test_activation_variant_is_validated(rule, activation, message):
    with pytest.raises(speclib.SpecError, match=message):
        speclib.validate_spec(dict(paper="pepita", rule=rule, model={"arch": "fc", "activation": activation},
                                   dataset="digits", hparams={"lr": 0.1}, seed=0, epochs=1, batch_size=8,
                                   scale="smoke"))


def test_a_checkpoint_of_another_batch_is_refused_naming_the_file(tmp_path, datasets_dir):
    """A checkpoint left by a batch of another model size is refused (exit 2, the file named), never loaded."""
    batch_a, _, _ = _write_batch(tmp_path / "a", [digits_spec(epochs=3)])
    killed = _cli("train", batch_a, "--datasets-dir", datasets_dir, "--platform", "cpu", "--checkpoint-minutes", 0,
                  env={"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    assert killed.returncode != 0 and (batch_a.parent / "checkpoint.npz").exists()
    other = speclib.validate_spec({**digits_spec(epochs=3), "model": {"arch": "fc", "hidden": [16]}})
    batch_b, results_b, ids_b = _write_batch(tmp_path / "b", [other])
    ckpt_b = batch_b.parent / "checkpoint.npz"
    ckpt_b.write_bytes((batch_a.parent / "checkpoint.npz").read_bytes())
    refused = _cli("train", batch_b, "--datasets-dir", datasets_dir, "--platform", "cpu")
    assert refused.returncode == 2, refused.stderr
    assert str(ckpt_b) in refused.stderr and "does not match" in refused.stderr
    assert ckpt_b.exists() and not (results_b / "runs" / ids_b[0] / "train.json").exists()


def test_a_checkpoint_of_another_model_size_is_refused_and_a_pending_carry_resumes(tmp_path, datasets_dir):
    """The state tree's structure depends on the spec only: a pending ``carry_remainder`` G goes through
    checkpoint.npz and training continues identically; other layer sizes are refused by path and shape."""
    from impls.common import checkpoint

    spec = speclib.validate_spec(dict(paper="pepita", rule="bp", model={"arch": "fc", "hidden": [16]},
                                      dataset="digits", hparams={"lr": 0.1, "keep": 1.0, "carry_remainder": True},
                                      seed=0, epochs=2, batch_size=64, scale="smoke", data={"n_train": 70}))
    data = load_images(spec, datasets_dir)
    prog = StackedBatch(spec, [0, 1], data, "cpu")
    with torch.no_grad():
        prog.train_epoch(1)
    assert prog.carry is not None
    path, names, runs = tmp_path / "checkpoint.npz", ["train_loss"], ["r0", "r1"]
    checkpoint.save(path, checkpoint.Snapshot(1, runs, 0.0, {"train_loss": np.zeros((3, 2))}, np.full(2, -1),
                                              np.full(2, -1), prog.state_dict()))
    restored = StackedBatch(spec, [0, 1], data, "cpu")
    restored.load_state_dict(checkpoint.load(path, runs, names, restored.state_dict()).state)
    assert restored.carry is not None and restored.weights[0].dtype == torch.float32
    with torch.no_grad():
        prog.train_epoch(2)
        restored.train_epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(prog.weights, restored.weights))
    assert all(torch.equal(a, b) for a, b in zip(prog.velocities, restored.velocities))

    wider = StackedBatch(speclib.validate_spec({**spec, "model": {"arch": "fc", "hidden": [32]}}), [0, 1], data, "cpu")
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"checkpoint\.npz does not match .*state/weights/0 has shape"):
        checkpoint.load(path, runs, names, wider.state_dict())


def test_compose_shuffle_applies_one_permutation_to_the_current_order_every_epoch(datasets_dir):
    """``shuffle: compose`` (numpy main.py): epoch e visits the data in the order P applied e times, P per run;
    P is the first draw of the run's data stream, so epoch 1 equals the default's and later epochs do not."""
    from impls.pepita.stacked import composed_order

    spec = digits_spec(epochs=3, shuffle="compose")
    data = load_images(spec, datasets_dir)
    prog = StackedBatch(spec, [0, 1], data, "cpu", torch.float64)
    p = prog.base_perm
    assert p.shape == (2, len(data["x_train"])) and not torch.equal(p[0], p[1])
    assert torch.equal(prog.epoch_order(1), p) and torch.equal(prog.epoch_order(2), torch.gather(p, 1, p))
    assert torch.equal(prog.epoch_order(3), torch.stack([q[q[q]] for q in p]))
    assert torch.equal(composed_order(p[0], 3), p[0][p[0][p[0]]])
    default = StackedBatch(digits_spec(epochs=3), [0, 1], data, "cpu", torch.float64)
    restored = StackedBatch(spec, [0, 1], data, "cpu", torch.float64)
    with torch.no_grad():
        prog.train_epoch(1)
        default.train_epoch(1)
        assert all(torch.equal(a, b) for a, b in zip(prog.weights, default.weights))
        restored.load_state_dict(prog.state_dict())
        for batch in (prog, default, restored):
            batch.train_epoch(2)
    assert not torch.allclose(prog.weights[0], default.weights[0])
    assert all(torch.equal(a, b) for a, b in zip(prog.weights, restored.weights))


def test_dtype_hparam_sets_the_precision_of_data_and_weights(datasets_dir):
    """``dtype: float64`` (numpy main.py) loads pixels/scale in float64 and trains in float64, the same run
    as the explicit float64 argument; the default stays float32."""
    spec64 = digits_spec(dtype="float64")
    data64 = load_images(spec64, datasets_dir)
    ds = np.load(datasets_dir / "digits.npz")
    assert data64["x_train"].dtype == torch.float64
    np.testing.assert_array_equal(data64["x_train"].flatten(1).numpy(), ds["x_train"].reshape(len(ds["x_train"]), -1) / 16.0)
    by_hparam = StackedBatch(spec64, [0], data64, "cpu")
    explicit = StackedBatch(digits_spec(), [0], data64, "cpu", torch.float64)
    default = StackedBatch(digits_spec(), [0], load_images(digits_spec(), datasets_dir), "cpu")
    assert by_hparam.weights[0].dtype == torch.float64 and default.weights[0].dtype == torch.float32
    with torch.no_grad():
        by_hparam.train_epoch(1)
        explicit.train_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(by_hparam.weights, explicit.weights))
