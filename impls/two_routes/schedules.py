"""Per-coefficient schedules and the task/alignment rate schedule of Kunin et al. 2020 (papers/two_routes/README.md,
"Options").

Reference: the original code's flags ``{alpha,beta,gamma}_{start,stop,cycle,schedule_rate,schedule_type}``,
``delay_epochs``, ``alternate_step_freq``, ``constant_rate`` (neuroailab/Neural-Alignment @ c3ea4f1;
facts only, reimplemented). Epochs are e = t / steps_per_epoch with t the number of updates done so far
(the first update has t = 0); T = the run's ``epochs``. The keys and their defaults are declared in
impls.two_routes.options (``schedule_keys``), which the workflow imports without JAX.

Coefficient c ∈ {α, β, γ} with base value c₀ (the rule's default or the spec's override):

    pos, s = e − start·T, 1                          (no cycle)
    pos, s = tri(e − start·T, cycle/2), cycle/2       (``cycle`` > 0; tri = triangular wave in [0, 1])
    linear:      c(e) = c₀ + rate·pos·s
    exponential: c(e) = c₀·exp(rate·pos·s)
    none:        c(e) = c₀
    c(e) = 0 if e < start·T or e > stop·T            (always applied; default [0, 1] = all of training)

    tri(x, h) = max(0, 1 − |x/h − 2·floor(1 + x/(2h)) + 1|)

Rates (L = ρ_task·(CE + L2) + ρ_align·Σ_l R_l, both 1 by default):
    ``delay_epochs`` D:       ρ_task = 0 while e < D; the lr schedule reads e' = max(e − D, 0)
                              (with warm-up the shared lr is 0 during the delay, as in the original)
    ``alternate_step_freq`` k: t mod (k+1) = 0 → alignment-only step (ρ_task = 0); otherwise a task-only
                              step (ρ_align = 0, except during the delay); every lr milestone (warm-up
                              length, decay epochs) is multiplied by k + 1
    ``constant_rate`` False:  both rates ×1, 0.1, 0.01, 0.001 from epochs 5, 30, 60, 80
"""
from __future__ import annotations

import jax.numpy as jnp

RATE_STEPS = ((1.0, 5.0), (0.1, 30.0), (0.01, 60.0), (0.001, 80.0))   # constant_rate False: (×, from epoch)


def triangular_cycle(x, half_period):
    """Triangular wave: 0 at x = 0, 1 at x = half_period, 0 at 2·half_period, ..."""
    cycle = jnp.floor(1.0 + x / (2.0 * half_period))
    return jnp.maximum(0.0, 1.0 - jnp.abs(x / half_period - 2.0 * cycle + 1.0))


def coefficient_value(base, epoch, train_epochs: float, hp: dict, coefficient: str):
    """c(e) of the module docstring for ``coefficient`` (alpha/beta/gamma) with base value ``base``."""
    start = hp.get(f"{coefficient}_start", 0.0) * train_epochs
    stop = hp.get(f"{coefficient}_stop", 1.0) * train_epochs
    kind = hp.get(f"{coefficient}_schedule_type", "none")
    rate = hp.get(f"{coefficient}_schedule_rate", 0.0)
    cycle = hp.get(f"{coefficient}_cycle", None)
    value = jnp.asarray(base, jnp.float32)
    if kind != "none":
        if cycle is not None and cycle > 0:
            step_size = 0.5 * cycle
            pos = triangular_cycle(epoch - start, step_size)
        else:
            step_size, pos = 1.0, epoch - start
        value = value + rate * pos * step_size if kind == "linear" else value * jnp.exp(rate * pos * step_size)
    return jnp.where((epoch < start) | (epoch > stop), 0.0, value)


def rates(t, steps_per_epoch: int, hp: dict):
    """(ρ_task, ρ_align) at update t (module docstring)."""
    t = jnp.asarray(t, jnp.float32)
    epoch = t / steps_per_epoch
    task, align = jnp.float32(1.0), jnp.float32(1.0)
    delay, k = hp.get("delay_epochs"), hp.get("alternate_step_freq")
    if delay is not None:
        task = jnp.where(epoch < delay, 0.0, task)
    if k is not None:
        alignment_step = jnp.mod(t, k + 1) == 0
        task = jnp.where(alignment_step, 0.0, task)
        in_delay = epoch < delay if delay is not None else False
        align = jnp.where(alignment_step | in_delay, align, 0.0)
    if not hp.get("constant_rate", True):
        task0, align0 = task, align
        for mult, start in RATE_STEPS:
            task = jnp.where(epoch < start, task, task0 * mult)
            align = jnp.where(epoch < start, align, align0 * mult)
    return task, align


def lr_epoch_and_stretch(t, steps_per_epoch: int, hp: dict):
    """The epoch the lr schedule reads (shifted by ``delay_epochs``) and the factor k + 1 by which
    ``alternate_step_freq`` stretches its milestones (1 without alternation)."""
    epoch = jnp.asarray(t, jnp.float32) / steps_per_epoch
    delay = hp.get("delay_epochs")
    if delay is not None:
        epoch = jnp.where(epoch >= delay, epoch - delay, 0.0)
    k = hp.get("alternate_step_freq")
    return epoch, (1 if k is None else k + 1)
