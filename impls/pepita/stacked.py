"""A batch of pepita runs as one stacked network: initialisation, a train epoch, an evaluation.

Caller: ``impls.pepita.train.Program`` (what the common driver trains), ``impls.pepita.bench``
and the tests, which drive ``StackedBatch`` epoch by epoch themselves.

All runs of a batch share rule, model, dataset, hyper-parameters, epochs and batch size and
differ only in seed (``batch_over: [seed]``). Their weights are stacked along a leading run
axis R and every step is a handful of batched matmuls over R (``torch.matmul`` broadcasting),
so one process and one Python loop train every seed.

Per run r and its seed s, independent ``torch.Generator`` streams give:
  init (seed s): the forward weights, identical for every rule (so PEPITA, BP, FA, DRTP of
  one seed start from the same weights); F (s + 1_000_003); feedback matrices (s + 2_000_003);
  data order, dropout masks and control noise (s + 3_000_017). A run's numbers therefore do not
  depend on which other runs share its batch.

Per epoch (as the original): η ← max(decay·η, 1e-6) at the start of every epoch listed in
``decay_epochs`` (0-indexed, as the code's ``if epoch in [60, 90]``); a fresh seeded shuffle
(``shuffle: compose``: one permutation P per run, drawn first from its data stream at
initialisation, and epoch e visits the training set in the order P applied e times, as numpy
``main.py``'s ``shuffle(..., random_state=0)`` of the current order every epoch);
minibatches of B with the last partial one kept and still divided by B; the dropout mask is
drawn once per step and shared by both PEPITA passes. The full test set is evaluated before
training and after every epoch without dropout; FC runs also log the angle between F and
(W_L⋯W_1)ᵀ and ‖W_1‖_F (papers/pepita/README.md, "Metrics"). Train loss/accuracy are the running values of the
standard (dropout) pass over the epoch, as the code monitors them. Arithmetic is in the
``dtype`` hparam's precision (float32 by default; ``float64`` as numpy ``main.py``) unless the
caller passes ``dtype`` explicitly.
"""
from __future__ import annotations

import numpy as np
import torch

from impls.common import datasets
from impls.pepita import models, rules
from impls.pepita.options import resolved_hparams

EVAL_CHUNK = 1000
STREAM_F, STREAM_FEEDBACK, STREAM_DATA = 1_000_003, 2_000_003, 3_000_017
#: pixel maximum used to map images to [0, 1] (digits are stored as 0..16)
PIXEL_MAX = {"digits": 16.0}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def load_images(spec: dict, datasets_dir) -> dict:
    """Images in [0, 1] (float32, or float64 under ``dtype: float64``), channel-first (N, c, H, W);
    int64 labels; number of classes."""
    ds = datasets.load_dataset(datasets_dir / f"{spec['dataset']}.npz")
    ds = datasets.subset_for_spec(ds, spec)
    scale = PIXEL_MAX.get(spec["dataset"], 255.0)
    precision = np.dtype(resolved_hparams(spec)["dtype"])

    def prep(x):
        x = x.astype(precision) / scale
        return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    return {"x_train": torch.from_numpy(prep(ds.x_train)), "y_train": torch.from_numpy(ds.y_train.astype(np.int64)),
            "x_test": torch.from_numpy(prep(ds.x_test)), "y_test": torch.from_numpy(ds.y_test.astype(np.int64)),
            "n_classes": ds.num_classes}


def lr_at(epoch: int, hp: dict) -> float:
    """η used during (1-indexed) ``epoch``: decayed at the start of each listed 0-indexed epoch."""
    lr = float(hp["lr"])
    for _ in (e for e in sorted(hp["decay_epochs"]) if e <= epoch - 1):
        lr = max(hp["decay"] * lr, 1e-6)
    return lr


def composed_order(perm: torch.Tensor, epoch: int) -> torch.Tensor:
    """Order of the training set in (1-indexed) ``epoch`` under ``shuffle: compose``: the order of
    the epoch before, permuted by ``perm`` (order_0 = identity, order_e = order_{e−1}[perm]);
    ``perm`` is (n,) or stacked (R, n)."""
    order = perm
    for _ in range(epoch - 1):
        order = torch.gather(order, -1, perm)
    return order


def _copy(x) -> torch.Tensor:
    """A CPU tensor of its own from a tensor or a numpy array (a checkpoint's leaf)."""
    return x.detach().cpu().clone() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))


def _stack(per_run: list[list]) -> list:
    """[[W_0, W_1] per run] -> [stacked W_0, stacked W_1] (None stays None)."""
    return [None if layer[0] is None else torch.stack(layer) for layer in zip(*per_run)]


class StackedBatch:
    """Everything one batch needs: data, stacked state, a train epoch and an evaluation.

    Train and evaluate under ``torch.no_grad()`` (``impls.pepita.train.Program`` does); the rules
    that need autograd (conv BP) enable it locally.
    """

    def __init__(self, spec: dict, seeds, data: dict, device: str, dtype: torch.dtype | None = None):
        self.spec, self.rule, self.arch = spec, spec["rule"], spec["model"]["arch"]
        self.hp = resolved_hparams(spec)
        if dtype is None:
            dtype = getattr(torch, self.hp["dtype"])
        self.batch_size = spec["batch_size"]
        self.device, self.dtype = device, dtype
        x_train, x_test = data["x_train"], data["x_test"]
        c_in, height, width = x_train.shape[1:]
        self.n_classes = data["n_classes"]
        self.d_in = c_in * height * width
        model = spec["model"]
        self.activation = model.get("activation", "relu")  # FC hidden units (tanh: drtp_tanh variant)
        if self.arch == "fc":
            self.sizes = [self.d_in, *model.get("hidden", [1024]), self.n_classes]
            self.shape = None
            x_train, x_test = x_train.flatten(1), x_test.flatten(1)
        else:
            self.shape = models.ConvShape(c_in, height, width, model.get("channels", 32), model.get("kernel", 5),
                                          model.get("pool", 2), self.n_classes)
        self.x_train = x_train.to(device, dtype)
        self.y_train = torch.nn.functional.one_hot(data["y_train"], self.n_classes).to(device, dtype)
        self.x_test, self.y_test = x_test.to(device, dtype), data["y_test"].to(device)
        self.optimizer = rules.optimizer_kind(self.rule, self.arch)
        #: PEPITA FC folds G_l = δᵀh into the velocity (one baddbmm_, G never materialised)
        self.fused_update = (self.rule == "pepita" and self.arch == "fc" and self.optimizer == "eta_inside"
                             and not self.hp["carry_remainder"])
        self.seeds = list(seeds)
        self.init_state()

    # ------------------------------------------------------------------ state
    def init_state(self) -> None:
        w, f, fb = [], [], []
        for s in self.seeds:
            ws = (models.init_fc(self.sizes, generator(s), self.dtype) if self.arch == "fc"
                  else models.init_conv(self.shape, generator(s), self.dtype))
            w.append(ws)
            f.append(models.init_F(self.d_in, self.n_classes, self.hp["F_scale"], generator(s + STREAM_F), self.dtype,
                                   self.hp["F_init"]))
            fb.append(rules.init_feedback(self.rule, self.arch, ws, generator(s + STREAM_FEEDBACK), self.shape))
        to = dict(device=self.device)
        self.weights = [x.to(**to) for x in _stack(w)]
        self.velocities = [torch.zeros_like(x) for x in self.weights]
        self.F = torch.stack(f).to(**to)
        self.feedback = [None if x is None else x.to(**to) for x in _stack(fb)] if fb[0] else []
        self.generators = [generator(s + STREAM_DATA) for s in self.seeds]
        #: ``shuffle: compose``: each run's fixed permutation, the first draw of its data stream (so
        #: epoch 1's order and masks equal the default's); the generator states carry it through a checkpoint
        self.base_perm = (torch.stack([torch.randperm(len(self.x_train), generator=g) for g in self.generators])
                          if self.hp["shuffle"] == "compose" else None)
        self.carry = None  # ``carry_remainder``: the last partial batch's grads, added to the next update

    def state_dict(self) -> dict:
        """Everything that evolves, as a tree of dicts, lists, None and tensors whose structure
        depends on the spec only (the checkpoint refuses a tree of another structure): weights,
        velocities, F, feedback (None for a layer without one), the data generators' states
        (uint8 tensors) and, with ``carry_remainder``, the carried grads and whether one is pending
        (zeros and False when none is)."""
        carry = None
        if self.hp["carry_remainder"]:
            pending = self.carry is not None
            carry = {"pending": torch.tensor(pending),
                     "grads": self.carry if pending else [torch.zeros_like(w) for w in self.weights]}
        return {"weights": self.weights, "velocities": self.velocities, "F": self.F, "feedback": self.feedback,
                "generators": [g.get_state() for g in self.generators], "carry": carry}

    def load_state_dict(self, state: dict) -> None:
        """Take back a ``state_dict()`` tree, its leaves tensors or numpy arrays (copied, so the
        batch never shares storage with the tree it was loaded from)."""
        def float_(x):
            return _copy(x).to(self.device, self.dtype)

        self.weights = [float_(w) for w in state["weights"]]
        self.velocities = [float_(v) for v in state["velocities"]]
        self.F = float_(state["F"])
        self.feedback = [None if b is None else float_(b) for b in state["feedback"]]
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(_copy(s).to(torch.uint8))
        carry = state["carry"]
        pending = carry is not None and bool(carry["pending"])
        self.carry = [float_(c) for c in carry["grads"]] if pending else None

    # ------------------------------------------------------------------ training
    def _per_run(self, fn) -> torch.Tensor:
        return torch.stack([fn(g) for g in self.generators]).to(self.device, self.dtype)

    def train_epoch(self, epoch: int) -> dict[str, np.ndarray]:
        """One epoch at η = lr_at(epoch); returns running train loss/accuracy per run."""
        hp, n, bsz = self.hp, len(self.x_train), self.batch_size
        lr = lr_at(epoch, hp)
        perms = self.epoch_order(epoch).to(self.device)
        hidden = self.sizes[1:-1] if self.arch == "fc" else []
        loss_sum = torch.zeros(len(self.seeds), dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(loss_sum)
        for start in range(0, n, bsz):
            idx = perms[:, start:start + bsz]
            b = idx.shape[1]
            x, t = self.x_train[idx], self.y_train[idx]
            masks = None
            if hidden and hp["keep"] < 1.0:
                masks = [self._per_run(lambda g, h=h: (torch.rand(b, h, generator=g) < hp["keep"]).float())
                         / hp["keep"] for h in hidden]
            noise = None
            if self.rule == "pepita" and hp["perturbation"] == "random":
                noise = self._per_run(lambda g: torch.randn(b, self.d_in, generator=g) if hp["rp_noise"] == "normal"
                                      else torch.rand(b, self.d_in, generator=g) * 2 - 1)
            if self.fused_update:
                factors, y = rules.pepita_fc_factors(self.weights, self.F, x, t, masks, hp, noise)
                rules.apply_outer_update(self.weights, self.velocities, factors, lr, hp["momentum"], bsz)
                loss_sum += -(t * torch.log(y.clamp_min(1e-30))).sum((1, 2)).double()
                correct += (y.argmax(-1) == t.argmax(-1)).sum(1).double()
                continue
            grads, y = rules.compute_grads(self.rule, self.arch, self.weights, self.F, self.feedback, x, t,
                                           masks, hp, self.shape, noise, self.activation)
            if hp["carry_remainder"]:
                grads = self._carry(grads, partial=b < bsz)
            if grads is not None:
                rules.apply_update(self.optimizer, self.weights, self.velocities, grads, lr, hp["momentum"], bsz)
            loss_sum += -(t * torch.log(y.clamp_min(1e-30))).sum((1, 2)).double()
            correct += (y.argmax(-1) == t.argmax(-1)).sum(1).double()
        return {"train_loss": (loss_sum / n).cpu().numpy(), "train_acc": (100.0 * correct / n).cpu().numpy()}

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """(R, n) indices of the training set in (1-indexed) ``epoch``: a fresh draw from each run's
        data stream, or (``shuffle: compose``) its fixed permutation applied ``epoch`` times."""
        if self.base_perm is not None:
            return composed_order(self.base_perm, epoch)
        return torch.stack([torch.randperm(len(self.x_train), generator=g) for g in self.generators])

    def _carry(self, grads, partial: bool):
        """``carry_remainder`` (numpy main.py): a partial batch's G is kept, not applied, and added
        to the next step's G (still divided by B); returns the G to apply now, or None."""
        if self.carry is not None:
            grads, self.carry = [g + c for g, c in zip(grads, self.carry)], None
        if partial:
            self.carry, grads = grads, None
        return grads

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, np.ndarray]:
        """Test accuracy (%) and cross-entropy per run, no dropout; FC: alignment angle and ‖W_1‖."""
        r = len(self.seeds)
        correct = torch.zeros(r, dtype=torch.float64, device=self.device)
        loss = torch.zeros_like(correct)
        chunk = EVAL_CHUNK if self.arch == "fc" else 250
        for start in range(0, len(self.x_test), chunk):
            x, y = self.x_test[start:start + chunk], self.y_test[start:start + chunk]
            if self.arch == "fc":
                out = models.fc_forward(self.weights, x, activation=self.activation)[0]
            else:
                out = models.conv_forward(self.weights, x.unsqueeze(0).expand(r, *x.shape), self.shape)[0]
            correct += (out.argmax(-1) == y).sum(-1).double()
            loss += -torch.log(out.gather(-1, y.expand(r, -1).unsqueeze(-1)).clamp_min(1e-30)).sum((1, 2)).double()
        n = len(self.x_test)
        out = {"test_acc": (100.0 * correct / n).cpu().numpy(), "test_loss": (loss / n).cpu().numpy()}
        if self.arch == "fc":
            angle, norm = models.alignment(self.weights, self.F)
            out.update(weights_angle=angle.cpu().numpy(), weights_w1norm=norm.cpu().numpy())
        return out
