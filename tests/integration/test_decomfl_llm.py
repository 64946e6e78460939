"""DeComFL on a local Hugging Face causal LM (a tiny random OPT, a word-level tokenizer, a small
SST-2) as a real 2-rank MPI job: K·P scalars a round, every rank's rebuilt model equal to the
server's bit for bit, a resume after a crash equal to the uninterrupted run bit for bit."""

import pytest

pytest.importorskip("transformers", reason="the llm extra is not installed (pip install -e '.[llm]')")
pytest.importorskip("peft", reason="the llm extra is not installed (pip install -e '.[llm]')")

import numpy as np  # noqa: E402
from llm_fixtures import make_opt, write_sst2  # noqa: E402

from conftest import REPO, explain, launch  # noqa: E402
from mpihybrid.analysis import read_results  # noqa: E402

K, P = 2, 3


def _args(tmp_path, *sets: str) -> list[str]:
    model, data = make_opt(tmp_path / "opt"), write_sst2(tmp_path / "sst2")
    overrides = [
        f"model.path='{model}'",
        f"data.path='{data}'",
        "fl.clients=6",  # 3 virtual clients a rank
        "fl.sampled=3",
        f"fl.local_steps={K}",
        f"zo.perturbations={P}",
        "train.steps=8",
        "train.eval_every=4",
        "train.batch_size=8",
        "train.lr=1e-3",
        "checkpoint.every=3",
        *sets,
    ]
    args = ["run", "decomfl", "--config", str(REPO / "jobs" / "decomfl" / "sst2-opt.toml")]
    for s in overrides:
        args += ["--set", s]
    return args


def test_decomfl_llm_moves_kp_scalars_agrees_bitwise_and_resumes_bitwise(tmp_path):
    args = _args(tmp_path)
    full = launch(2, *args, "--out", str(tmp_path / "full.h5"), timeout=240)
    assert full.returncode == 0, explain(full)
    r = read_results(tmp_path / "full.h5")
    assert len(set(r.param_sha256)) == 1, r.param_sha256
    assert np.all(r.metrics["uplink_bytes"] == 4 * K * P) and np.all(r.metrics["downlink_bytes"] == 4 * K * P)
    assert r.final["replayed_rounds"].sum() > 0
    assert np.isfinite(r.metrics["test_accuracy"][-1])

    ckpt = tmp_path / "ckpt"
    crash = launch(
        2,
        *args,
        "--out",
        str(tmp_path / "res.h5"),
        "--checkpoint",
        str(ckpt),
        env={"MPIHYBRID_FAULT": "1:5"},
        timeout=240,
    )
    assert crash.returncode != 0 and "injected fault" in crash.stderr, explain(crash)
    resumed = launch(2, *args, "--out", str(tmp_path / "res.h5"), "--checkpoint", str(ckpt), "--resume", timeout=240)
    assert resumed.returncode == 0, explain(resumed)
    assert read_results(tmp_path / "res.h5").param_sha256 == r.param_sha256


def test_lora_in_bfloat16_with_momentum_agrees_bitwise(tmp_path):
    args = _args(tmp_path, "model.trainable='lora'", "model.dtype='bfloat16'", "train.momentum=0.9", "zo.mu=0.05")
    proc = launch(2, *args, "--out", str(tmp_path / "lora.h5"), "--checkpoint", str(tmp_path / "ck"), timeout=240)
    assert proc.returncode == 0, explain(proc)
    r = read_results(tmp_path / "lora.h5")
    assert len(set(r.param_sha256)) == 1 and r.final["replayed_rounds"].sum() > 0
    assert set(r.metrics["uplink_bytes"].tolist()) == {4 * K * P}


@pytest.mark.cuda
def test_on_cuda_the_ranks_agree_bitwise(tmp_path):
    args = _args(tmp_path, "device.type='cuda'", "device.share=true", "train.steps=4")
    proc = launch(2, *args, "--out", str(tmp_path / "cuda.h5"), timeout=240)
    assert proc.returncode == 0, explain(proc)
    r = read_results(tmp_path / "cuda.h5")
    assert len(set(r.param_sha256)) == 1 and set(r.metrics["uplink_bytes"].tolist()) == {4 * K * P}
