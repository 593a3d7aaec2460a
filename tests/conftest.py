"""Session fixtures: one small real pipeline (corpus -> tokenizer -> tiny GEM trained a few steps -> bundle)
that the export, runtime and benchmark tests share. Everything is made here; nothing is downloaded."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from gem_runtime.trt_engine import cuda_device_present

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GEM_TRUSTED_KEYS", "")      # signatures deliberately unchecked: no notice line (test_signing)

SHARED = Path(__file__).resolve().parents[2] / "shared"      # beside the repository, in CI as here


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real PhysioNet and vendor ECGs), or a skip that says where it was looked for."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real ECGs not found: {data} is absent (shared/ sits beside the repository)")
    return data


@pytest.fixture(scope="session")
def ludb(shared_data) -> Path:
    """The shared LUDB records (cardiologists' per-lead P/QRS/T marks), or a skip."""
    path = shared_data / "real" / "ludb"
    if not (path / "1.hea").exists() or not (path / "3.hea").exists():
        pytest.skip(f"LUDB not found in {path}")
    return path


@pytest.fixture(scope="session")
def physionet(shared_data) -> Path:
    return shared_data / "physionet"


@pytest.fixture(scope="session")
def ptb(physionet) -> Path:
    """PTB Diagnostic ECG Database s0010_re: 15 leads (12 + Frank) at 1000 Hz, 38.4 s, an infarction."""
    return physionet / "s0010_re.hea"


def pytest_collection_modifyitems(config, items):
    if cuda_device_present():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def demo():
    """The committed demo bundle, loaded as `gem-run` loads it (2 threads)."""
    from gem_runtime import Interpreter

    with Interpreter.load(threads=2) as gem:
        yield gem


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from gem_train.corpus import write_corpus
    from gem_train.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, 24, seed=3, images=True, progress=False)
    train_tokenizer(out / "corpus.txt", out / "tokenizer", vocab_size=512)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    """A `tiny` GEM trained for a few steps (peaked logits, so greedy parity is meaningful), fp32 weights."""
    import torch

    from gem_train.config import GemConfig
    from gem_train.train import TrainArgs, fit

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("tiny-ckpt")
    args = TrainArgs(max_steps=60, batch_size=8, lr=3e-3, warmup_steps=5, log_every=1000, save_every=1000)
    fit(GemConfig.from_name("tiny"), tiny_corpus, tiny_corpus / "tokenizer", out, args, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def tiny_gem7b_layout(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint rewritten as a GEM-7B download is laid out: sharded safetensors with an index, the
    ECG tower only in a separate ECG-CoCa training checkpoint (`module.ecg.*`, found through `mm_ecg_tower`).
    The config keeps its `gem_edge` tower dims: a real GEM-7B config names its towers instead (see
    test_checkpoint for that path), and names cannot describe tiny dims."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from gem_train.checkpoint import ECG_PREFIX

    out = tmp_path_factory.mktemp("gem7b-layout")
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    tower = {"module.ecg." + k[len(ECG_PREFIX):]: v for k, v in state.items() if k.startswith(ECG_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(ECG_PREFIX)}
    keys = sorted(rest)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for name, ks in shards.items():
        save_file({k: rest[k] for k in ks}, str(out / name))
        weight_map.update({k: name for k in ks})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    torch.save({"epoch": 20, "name": "ecg-coca", "state_dict": tower}, out / "cpt_wfep_epoch_20.pt")
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["mm_ecg_tower"] = "cpt_wfep_epoch_20.pt"
    (out / "config.json").write_text(json.dumps(cfg))
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_checkpoint / f, out / f)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_gem7b_layout, tmp_path_factory) -> Path:
    from gem_export.build import BuildOptions, build_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    # q6_k besides q8_0: every type the export writes must load in gem-run (it once wrote one gem-run refused)
    build_bundle(tiny_gem7b_layout, out, BuildOptions(quants=("q8_0", "q6_k"), trt="auto", log=lambda m: None))
    return out
