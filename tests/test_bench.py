"""The benchmarks' own arithmetic: the update's FLOPs against a count by hand, the profile, and
the GPU benchmark's path (refused without CUDA in one line; run for real on the CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drm.bench import ceiling, levers, official, workload

REPO = Path(__file__).resolve().parents[1]


def _agent():
    torch.manual_seed(0)
    return workload.drqv2_agent()


def _batch(n):
    return workload.random_batch(n, seed=0)


def _conv_forward_flops_per_sample() -> int:
    """DrQ-v2's encoder by hand: 9->32 3x3 stride 2 (84 -> 41), then three 32->32 3x3 (-> 39, 37, 35);
    2 FLOPs per multiply-add."""
    first = 2 * 32 * 41 * 41 * 9 * 9
    rest = sum(2 * 32 * s * s * 32 * 9 for s in (39, 37, 35))
    return first, rest


def test_update_flops_equal_the_encoder_counted_by_hand():
    n = 4
    flops = ceiling.update_flops(_agent(), _batch(n), 10_000)
    first, rest = _conv_forward_flops_per_sample()
    # forward on obs (with gradients) and on next_obs (without): 2 x the batch
    assert flops["per_op"]["convolution"] == 2 * n * (first + rest)
    # backward of the obs pass: weights of every layer, inputs of all but the first (pixels need none)
    assert flops["per_op"]["convolution_backward"] == n * (first + 2 * rest)
    assert flops["total"] == sum(flops["per_op"].values())
    assert flops["per_op"]["addmm"] > 0 and flops["per_op"]["mm"] > 0  # trunks and heads


def test_drms_workload_is_drqv2s_networks_plus_its_value_predictor():
    # The bench compares DrM's update with DrQ-v2's on the same networks and batch.
    torch.manual_seed(0)
    drm, drqv2 = workload.drm_agent(), _agent()
    assert [p.shape for p in drm.critic.parameters()] == [p.shape for p in drqv2.critic.parameters()]
    metrics = drm.update(_batch(4), 10_000)
    assert drm.perturb_count == 0 and drm.target_lambda == 0.6
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values() if isinstance(v, float))


def test_the_profile_names_the_ops_that_take_the_time():
    rows = ceiling.profile_update(_agent(), _batch(8), 10_000, reps=1, top=10)
    assert len(rows) == 10 and 0 < sum(r["share_pct"] for r in rows) <= 100.0 + 1e-9
    assert "aten::convolution_backward" in [r["op"] for r in rows]
    assert all(r["ms_per_update"] >= 0 and r["calls_per_update"] >= 0 for r in rows)


def test_the_cpu_description_and_ceiling_are_this_machines():
    info = ceiling.cpu_info()
    assert info["logical_cores"] == os.cpu_count() and info["torch_cpu_capability"]
    assert set(info["isa"]) <= set(ceiling.ISA_FLAGS)
    assert ceiling.matmul_gflops(n=256, seconds=0.2) > 0.1


def _bench(*args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "drm.bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_the_gpu_benchmark_without_cuda_says_so_in_one_line():
    done = _bench("--gpu")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"drm.bench --gpu: --device cuda but torch sees no CUDA device (torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda}); use a GPU machine, or --device cpu to exercise the path"]
    bad = _bench("--gpu", "--cells", "1,x")
    assert bad.returncode == 2 and "--cells '1,x': give positive integers separated by commas" in bad.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_gpu_benchmark_path_runs_shared_cells_on_the_cpu():
    done = _bench("--gpu", "--device", "cpu", "--cells", "1,2", "--reps", "1", "--batch-size", "16",
                  "--threads", "1", "--episode-frames", "100", "--seed-frames", "100",
                  "--update-episodes", "2", "--json", timeout=800)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and result["threads_per_cell"] == 1
    assert result["update_ms_tf32_conv"] > 0 and result["update_ms_fp32_conv"] > 0
    assert [g["cells"] for g in result["groups"]] == [1, 2]
    for g in result["groups"]:
        assert g["frames_per_s_per_cell"] > 0
        assert g["frames_per_s_per_gpu"] == pytest.approx(g["frames_per_s_per_cell"] * g["cells"])
        assert 0 < g["cpu_cores_per_cell"] <= os.cpu_count() + 0.5  # one torch thread, plus rendering
        assert g["gpu_mib_per_cell_incl_rendering"] is None  # no nvidia-smi on a CPU machine
        assert 0 <= g["sample_and_copy_hidden_pct"] <= 100  # the cells' batch pipeline ran


def test_the_gpu_benchmark_counts_only_the_window_every_cell_trains_in():
    """The barrier: episodes of a cell running alone (before the others start, after they end)
    do not count; cells that never overlapped are each measured over their own episodes."""
    from drm.bench.gpu import barrier_rates

    early = [(0, 10, 100.0), (10, 20, 50.0), (20, 30, 50.0)]  # alone for its first episode
    late = [(10, 20, 40.0), (20, 30, 40.0), (30, 40, 90.0)]  # alone for its last
    assert barrier_rates([early, late]) == ([50.0, 40.0], True)
    assert barrier_rates([[(0, 10, 100.0)], [(20, 30, 60.0)]]) == ([100.0, 60.0], False)
    assert "--update-episodes 1: give 2 or more" in _bench("--gpu", "--device", "cpu", "--update-episodes", "1").stderr


def test_the_parse_benchmark_times_the_paper_grid_and_snakemakes_own_start():
    done = _bench("--parse", "--repeat", "1", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["command"] == "snakemake -n all" and result["target_s"] == 5.0
    assert 0 < result["snakemake_start_s"] < result["parse_s"] == result["runs_s"][0]
    assert result["cpu_s"] > 0


def test_the_levers_difference_tells_the_same_numbers_a_reordering_and_a_loss_of_precision():
    # The official out-of-place encoder computes the same numbers: nothing differs.
    assert levers.differences(lambda a: official.official_encoder(a.encoder), 8, 2) == (0.0, 0.0)
    # Reordered sums (NHWC convs) and bfloat16 both move parameters, by at most ~2 x lr after
    # Adam's first step; the first critic loss tells rounding (~1e-7) from bf16's precision.
    reordered, reordered_loss = levers.differences(levers.LEVERS["channels_last"][1], 8, 1)
    bf16, bf16_loss = levers.differences(levers.LEVERS["bf16_autocast"][1], 8, 1)
    assert 0 < reordered <= 2.1e-4 and 0 < bf16 <= 2.1e-4
    assert reordered_loss < 1e-6 and bf16_loss > 1e-4


def test_the_side_by_side_with_the_official_code_refuses_a_bad_official_path_in_one_line(tmp_path):
    # The official code is never in this repo: the user passes a checkout, checked before any import
    # (a drqv2.py that would say so if imported).
    (tmp_path / "drqv2.py").write_text("raise SystemExit('the official code was imported')\n")
    expected = ("expected a checkout of facebookresearch/drqv2 holding drqv2.py, dmc.py, "
                "replay_buffer.py, utils.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for path, problem in [(tmp_path / "absent", "does not exist"),
                          (tmp_path / "drqv2.py", "is not a directory"),
                          (tmp_path, "lacks dmc.py, replay_buffer.py, utils.py")]:
        done = subprocess.run([sys.executable, "-m", "drm.bench", "--against-official", str(path)],
                              capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            f"python -m drm.bench --against-official: {path} {problem}: {expected}"]
