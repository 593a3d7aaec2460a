"""ECG tower pretraining (gem_train.pretrain): the targets are the simulator's truth, a stopped run resumes to the
weights an unstopped one reaches, the tower lands in `fit` under GEM's names, and a tower of another preset is one
line through the CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from clirun import run_main
from safetensors.torch import load_file

from gem_train.checkpoint import ECG_PREFIX
from gem_train.cli import main
from gem_train.config import GemConfig
from gem_train.model import GemForCausalLM
from gem_train.pretrain import (
    SCALAR_TARGETS, TOWER_FILE, PretrainArgs, beat_targets, load_tower, pretrain_tower, simulate_batch,
    truth_targets,
)
from gem_train.simulate import AF, CONDITIONS, NSR, simulate_ecg

TINY = GemConfig.from_name("tiny")


def test_targets_are_the_truth_and_af_has_no_pr():
    rng = np.random.default_rng(3)
    _, sinus = simulate_ecg(rng, [NSR])
    values, mask, labels = truth_targets(sinus)
    (_, hr_centre, hr_scale), (_, pr_centre, pr_scale) = SCALAR_TARGETS[0], SCALAR_TARGETS[2]
    assert values[0] * hr_scale + hr_centre == pytest.approx(sinus.hr_bpm, abs=1e-3)
    assert values[2] * pr_scale + pr_centre == pytest.approx(sinus.pr_ms, abs=1e-3) and mask[2] == 1
    assert labels[CONDITIONS.index(NSR)] == 1 and labels.sum() == len(sinus.conditions)
    _, af = simulate_ecg(rng, [AF])
    values, mask, _ = truth_targets(af)
    assert mask[2] == 0 and values[2] == 0                 # no PR in AF: masked, not a made-up number
    axis = len(SCALAR_TARGETS) + 2                         # the QRS axis as (cos, sin)
    assert math.degrees(math.atan2(values[axis + 1], values[axis])) == pytest.approx(af.qrs_axis_deg, abs=1e-3)

    beats = beat_targets(sinus, 50, 100)                   # where each beat's P, QRS and R fall, patch by patch
    assert beats[:, 4].sum() == len(sinus.r_peaks)
    r = sinus.r_peaks[1]
    assert beats[r // 50, 4] == 1 and beats[r // 50, 5] == pytest.approx((r % 50) / 50)
    p_onset = sinus.qrs_onsets[1] - round(sinus.pr_ms / 2)      # 2 ms per sample
    assert beats[p_onset // 50, 0] == 1 and beats[p_onset // 50, 1] == pytest.approx((p_onset % 50) / 50)
    assert beat_targets(af, 50, 100)[:, 0].sum() == 0      # AF: no P waves to place


def test_a_run_is_fixed_by_its_seed_and_noise_changes_the_signal_only():
    a, b = simulate_batch(5, 10, 3, 0.0), simulate_batch(5, 10, 3, 0.0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (3, 12, 5000) and a[0].dtype == torch.float32
    noisy = simulate_batch(5, 10, 3, 1.0)
    assert not torch.equal(noisy[0], a[0])


def test_pretraining_learns_resumes_exactly_and_feeds_fit(tmp_path):
    args = PretrainArgs(max_steps=30, batch_size=8, lr=3e-3, warmup_steps=5, validation_size=16, log_every=10,
                        save_every=10)
    logs = []
    path = pretrain_tower(TINY, tmp_path / "whole", args, log=logs.append)
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in logs if line.startswith("step ")]
    assert losses[-1] < 0.8 * losses[0], logs                 # it learns: the loss falls

    def stop_at_step_20(line):                               # a kill: after step 10's save, before step 20's
        if line.startswith("step 20/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pretrain_tower(TINY, tmp_path / "resumed", args, log=stop_at_step_20)
    resumed_logs = []
    pretrain_tower(TINY, tmp_path / "resumed", args, resume=True, log=resumed_logs.append)
    assert resumed_logs[0].startswith("resumed from") and "at step 10" in resumed_logs[0]
    whole, resumed = load_file(str(path)), load_file(str(tmp_path / "resumed" / TOWER_FILE))
    assert set(whole) == set(resumed) and all(k.startswith(ECG_PREFIX) for k in whole)
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-5) for k in whole)   # stopped = never stopped

    model = GemForCausalLM(TINY)
    load_tower(model, tmp_path / "whole")
    tower = model.model.ecg_tower.ecg_tower.state_dict()
    assert all(torch.equal(tower[k[len(ECG_PREFIX):]], v) for k, v in whole.items())


def test_a_tower_of_another_preset_is_one_line(tmp_path, tiny_corpus, capsys):
    pretrain_tower(GemConfig.from_name("demo"), tmp_path / "tower", PretrainArgs(max_steps=1, batch_size=2, validation_size=2),
                   log=lambda m: None)
    code, _, err = run_main(main, ["fit", "--preset", "tiny", "--data", str(tiny_corpus), "--out",
                                  str(tmp_path / "ckpt"), "--tokenizer", str(tiny_corpus / "tokenizer"),
                                  "--init-tower", str(tmp_path / "tower"), "--max-steps", "1"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert TOWER_FILE in err and "not a tower of this preset" in err
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()


def test_oversampling_draws_the_condition_and_a_bad_one_is_one_line(tiny_corpus, tmp_path, capsys):
    import random

    from gem_train.train import _draw

    members = [3, 7, 11]
    rng = random.Random(0)
    idx = [i for _ in range(200) for i in _draw(rng, 24, 8, [(members, 0.9)])]
    assert 0.8 < sum(i in members for i in idx) / len(idx) < 0.97          # 0.9 + 0.1 * 3/24 expected
    for bad in ("left bundle:0.3", "first-degree AV block:1.5", "first-degree AV block"):
        code, _, err = run_main(main, ["fit", "--preset", "tiny", "--data", str(tiny_corpus), "--out",
                                       str(tmp_path / "o"), "--oversample", bad, "--max-steps", "1"], capsys)
        assert code == 2 and "--oversample" in err, err
    assert not (tmp_path / "o").exists()
