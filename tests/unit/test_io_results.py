import math

import h5py
import numpy as np
import torch
from mpi4py import MPI

from mpihybrid.analysis import analyze, read_results
from mpihybrid.comm import Comm
from mpihybrid.io.results import RunResults, param_sha256, peak_device_bytes


def test_results_file_schema_and_analyze(tmp_path, capsys):
    comm = Comm(MPI.COMM_SELF)
    comm.Allreduce(np.ones(4))
    r = RunResults(tmp_path / "r.h5", algorithm="dp-adam", config_json='{"seed": 0}', comm=comm, device="cuda")
    r.log(1, wall_time=0.1, train_loss=2.0)
    r.log(2, wall_time=0.2, train_loss=1.0, test_accuracy=0.5)
    assert math.isnan(r.metrics["test_accuracy"][0])
    params = [torch.ones(3), torch.zeros(2)]
    r.finish(status="completed", params=params, memory={"optimizer_bytes": 64})
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["status"] == "completed" and f.attrs["world_size"] == 1 and f.attrs["device"] == "cuda"
        for key in ("algorithm", "config", "mpihybrid_version", "mpi_library", "started", "finished"):
            assert f.attrs[key] != ""
        assert list(f["metrics/step"][()]) == [1, 2]
        assert f["comm/allreduce/payload_bytes"][0] == 32 and f["comm/allreduce/calls"][0] == 1
        assert f["memory/optimizer_bytes"][0] == 64 and f["memory/peak_rss_bytes"][0] > 0
        assert f["memory/peak_device_bytes"][0] == peak_device_bytes()  # 0 where CUDA was never used
        assert f["final/param_sha256"][0].decode() == param_sha256(params)
        assert f["final/test_accuracy"][()] == 0.5
    assert read_results(tmp_path / "r.h5").attrs["algorithm"] == "dp-adam"
    assert analyze([str(tmp_path / "r.h5")]) == 0
    assert "| step | wall_time | train_loss | test_accuracy |" in capsys.readouterr().out


def test_analyze_reports_bad_files_and_goes_on(tmp_path, capsys):
    comm = Comm(MPI.COMM_SELF)
    for name in ("a.h5", "b.h5"):
        r = RunResults(tmp_path / name, algorithm="dp-adam", config_json="{}", comm=comm)
        r.log(1, train_loss=1.0)
        r.finish(status="completed", params=[torch.ones(1)])
    (tmp_path / "trunc.h5").write_bytes((tmp_path / "a.h5").read_bytes()[:300])
    code = analyze([str(tmp_path / n) for n in ("a.h5", "missing.h5", "trunc.h5", "b.h5")], fmt="csv")
    out, err = capsys.readouterr()
    assert code == 2
    assert "missing.h5: no such file" in err and "trunc.h5: unreadable" in err
    assert out.count("dp-adam") == 2 and out.startswith("run,algorithm")
