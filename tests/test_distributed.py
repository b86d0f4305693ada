"""Tests for training in several processes (lm.distributed): `torchrun -m lm train` with gloo
on the CPU trains exactly as one process with the same global batch, stops through the
run manager and resumes on the same curve, and dies with its launcher; the collective
helpers in two real processes; the choice of precision and device, without a GPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from explorer import runs
from lm import run_folder
from lm import distributed
from lm.__main__ import build_parser
from lm.device import Precision, choose_precision, max_processes
from lm.distributed import World
from lm.plan import RunChoice, RunPlan, plan_run
from lm.trainer import TrainConfig, Trainer
from tests.checkpoints import shakespeare_bpe, text_and_bpe
from tests.helpers import read_jsonl, wait_for

REPO = Path(__file__).resolve().parents[1]
STEPS = 20
# One layer, 32 wide; warmup longer than any run here, so the learning rate at a step does
# not depend on max_steps and a stopped run with a far-off max_steps can resume to STEPS.
TINY = dict(
    n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, lr=1e-2, min_lr=0.0, warmup_steps=100,
    log_every=1, eval_every=10, eval_batches=2, sample_every=10, sample_tokens=8, seed=0, device="cpu", threads=1,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory, shakespeare_text) -> dict:
    return text_and_bpe(tmp_path_factory.mktemp("ddp-data"), shakespeare_text[:20_000])


def torchrun(processes: int, *flags: str, **options) -> list[str]:
    """`torchrun -m lm train` (as `python -m torch.distributed.run`) with a flag per option."""
    flags += tuple(item for k, v in options.items() for item in ("--" + k.replace("_", "-"), str(v)))
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "lm", "train", *flags]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def two_process_plan(options: dict) -> RunPlan:
    """A run planned as the Train page plans one in two processes."""
    return plan_run(RunChoice(options, vocab_size=shakespeare_bpe().vocab_size, processes=2))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data) -> tuple[Path, str]:
    """STEPS steps in 2 processes of batch 4, uninterrupted: the reference of these tests."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    result = run_to_end(torchrun(2, **TINY, **data, out=out, max_steps=STEPS))
    return out, result.stdout


def assert_same_curve(metrics: list[dict], reference: list[dict], rel: float) -> None:
    assert [m["step"] for m in metrics] == [r["step"] for r in reference] == list(range(1, STEPS + 1))
    for m, r in zip(metrics, reference):
        for key in ("train_loss", "grad_norm", "val_loss"):
            assert (key in m) == (key in r)
            if key in m:
                assert m[key] == pytest.approx(r[key], rel=rel), (m["step"], key)


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=atol)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(two_process_run, data, tmp_path):
    out, stdout = two_process_run
    single = TrainConfig(**{**TINY, "batch_size": 8}, **data, out=str(tmp_path / "one"), max_steps=STEPS)
    assert Trainer(single).train() == "finished"

    # Each process takes half of the batch one process would draw; DDP averages their gradients,
    # so the curve and the weights agree up to the order of float additions.
    assert_same_curve(read_jsonl(out / "metrics.jsonl"), read_jsonl(tmp_path / "one" / "metrics.jsonl"), rel=1e-5)
    assert_same_weights(out, tmp_path / "one", atol=1e-5)
    # Process 0 alone writes: one status, one line per sample (the same text as one process wrote).
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert read_jsonl(out / "samples.jsonl") == read_jsonl(tmp_path / "one" / "samples.jsonl")
    assert len(read_jsonl(out / "samples.jsonl")) == STEPS // TINY["sample_every"]
    # Only process 0 reports.
    assert stdout.count("finished at step 20") == 1 and "2 processes" in stdout


@pytest.mark.slow
def test_a_two_process_run_stopped_from_the_app_resumes_on_the_same_curve(two_process_run, data, tmp_path, monkeypatch):
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path))
    # Started as the Train page does, with a max_steps far off: it is stopped long before.
    info = runs.start_run("stopped", two_process_plan({**TINY, **data, "max_steps": 10**6}))
    launch = json.loads((info.folder / run_folder.LAUNCH_FILE).read_text())
    assert "torch.distributed.run" in launch["command"] and launch["processes"] == 2
    wait_for(lambda: (info.folder / "metrics.jsonl").is_file() or not runs.run_info(info.folder).active)
    assert runs.stop_run("stopped")  # SIGTERM to torchrun, which passes it on to both processes
    wait_for(lambda: not runs.run_info(info.folder).active)
    stopped = runs.run_info(info.folder)
    assert stopped.state == "stopped", (stopped.error, (info.folder / run_folder.LOG_FILE).read_text()[-3000:])
    assert 1 <= stopped.step < STEPS, "stopped too late to test resuming"

    run_to_end(torchrun(2, "--resume", out=info.folder, max_steps=STEPS))
    reference, _ = two_process_run
    assert_same_curve(read_jsonl(info.folder / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl"), rel=1e-6)
    assert_same_weights(info.folder, reference, atol=1e-6)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and Linux's parent-death signal")
@pytest.mark.slow
def test_deleting_a_two_process_run_kills_every_process(data, tmp_path, monkeypatch):
    """torchrun starts each process in its own session, out of reach of a signal to its group;
    SIGKILL to torchrun (a deleted run) must still end them, or they would train on."""
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path))
    info = runs.start_run("doomed", two_process_plan({**TINY, **data, "max_steps": 10**6}))
    launcher = json.loads((info.folder / run_folder.LAUNCH_FILE).read_text())["pid"]
    wait_for(lambda: (info.folder / "metrics.jsonl").is_file() or not runs.run_info(info.folder).active)
    workers = child_pids(launcher)
    assert len(workers) == 2 and all(map(alive, workers))
    runs.delete_run("doomed")
    wait_for(lambda: not any(map(alive, workers)), timeout=20)
    assert not info.folder.exists()


def test_the_train_page_starts_a_run_in_several_processes(app_dirs, monkeypatch):
    started = []

    def record(name, plan):
        started.append((plan.config.device, plan.processes))
        raise runs.RunError("recorded instead of started")

    monkeypatch.setattr(runs, "start_run", record)
    at = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120).run()
    assert "cpu = CPU (" in " ".join(c.value for c in at.caption)
    assert at.number_input(key="train_processes").value == 1
    at.number_input(key="train_processes").set_value(2).run()
    assert "2 processes train together: a step learns from 2 × 16 = 32 sequences" in " ".join(c.value for c in at.caption)
    at.button(key="train_start").click().run()
    assert started == [("cpu", 2)] and "recorded instead of started" in at.error[0].value


# --- the collective helpers, in two real processes ------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Run by each of two processes, as torchrun would start them (RANK etc. in the environment);
# its own interpreter, which imports no more than it needs.
COLLECTIVES = """
import json, sys
from pathlib import Path
import torch
from lm import distributed

torch.set_num_threads(1)
world = distributed.world_from_env()
distributed.start("cpu", world)
torch.manual_seed(0)
model = torch.nn.Linear(3, 2)
answers = {"agree": distributed.replicas_agree(model, world)}
if world.rank == 1:
    with torch.no_grad():
        model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(2.0))  # one float step away
answers["agree_after_change"] = distributed.replicas_agree(model, world)
answers["sum"] = distributed.sum_all([world.rank + 1.0, 10.0 * world.rank], "cpu", world)
answers["broadcast"] = distributed.broadcast({"from": world.rank}, world)
answers["gather"] = distributed.gather(world.rank * 2, world)
wrapped = distributed.wrap(model, "cpu", world)  # DDP copies process 0's weights to process 1
answers["agree_in_ddp"] = distributed.replicas_agree(wrapped.module, world)
distributed.end()
Path(sys.argv[1], f"{world.rank}.json").write_text(json.dumps(answers))
distributed.exit_process(0)  # as python -m lm does under torchrun
"""


@pytest.mark.slow
def test_collective_helpers_in_two_processes(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    processes = [
        subprocess.Popen([sys.executable, "-c", COLLECTIVES, str(tmp_path)], cwd=REPO,
                         env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
        for rank in range(2)
    ]
    try:
        assert [p.wait(timeout=120) for p in processes] == [0, 0]
    finally:
        for p in processes:
            p.kill()
    for rank in range(2):
        answers = json.loads((tmp_path / f"{rank}.json").read_text())
        assert answers == {
            "agree": True, "agree_after_change": False, "sum": [3.0, 10.0], "broadcast": {"from": 0},
            "gather": [0, 2], "agree_in_ddp": True,
        }


# --- without other processes ----------------------------------------------------------------


def test_each_process_takes_consecutive_equal_rows_that_make_up_the_batch():
    batch = torch.arange(12).reshape(6, 2)
    shares = [distributed.own_share(batch, World(rank, 3)) for rank in range(3)]
    assert torch.equal(torch.cat(shares), batch) and [len(s) for s in shares] == [2, 2, 2]
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.own_share(batch, World(0, 4))


def test_one_process_without_torchrun_needs_no_process_group():
    world = distributed.world_from_env({})
    assert world == World(0, 1, 0) and world.is_main
    assert distributed.world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, "cpu", world) is model
    assert distributed.sum_all([1.5], "cpu", world) == [1.5] and distributed.broadcast("x", world) == "x"


def test_each_process_gets_its_own_gpu_and_impossible_devices_are_refused():
    assert distributed.process_device("cuda:1", World()) == "cuda:1"  # one process: as asked
    assert distributed.process_device("cpu", World(1, 2, 1)) == "cpu"  # the CPU is shared
    with pytest.raises(ValueError, match="ask for cuda, not cuda:1"):
        distributed.process_device("cuda:1", World(1, 2, 1))
    with pytest.raises(ValueError, match="CUDA GPUs or the CPU"):
        distributed.process_device("mps", World(0, 2, 0))
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="at most as many processes per machine as it has GPUs"):
            distributed.process_device("cuda", World(1, 2, 1))


@pytest.mark.parametrize(
    "choice, device, bf16, expected",
    [
        ("auto", "cuda", True, Precision(torch.bfloat16)),  # Ampere and later: bf16, no scaling
        ("auto", "cuda", False, Precision(torch.float16, scaled=True)),  # older GPUs: fp16 and a scaler
        ("auto", "cpu", False, Precision()),
        ("auto", "mps", False, Precision()),
        ("fp32", "cuda", True, Precision()),
        ("bf16", "cpu", False, Precision(torch.bfloat16)),
        ("fp16", "cuda", True, Precision(torch.float16, scaled=True)),
    ],
)
def test_precision_follows_what_the_device_supports(choice, device, bf16, expected):
    assert choose_precision(choice, device, bf16) == expected


@pytest.mark.parametrize(
    "choice, device, bf16, message",
    [
        ("fp16", "cpu", False, "needs a CUDA GPU"), ("bf16", "cuda", False, "has no bf16"),
        ("bf16", "mps", False, "needs a CUDA GPU or the CPU"), ("fp8", "cuda", True, "one of"),
    ],
)
def test_a_precision_the_device_lacks_is_refused(choice, device, bf16, message):
    with pytest.raises(ValueError, match=message):
        choose_precision(choice, device, bf16)
    assert max_processes("mps") == 1 and max_processes("cpu") == (os.cpu_count() or 1)


def test_the_cli_takes_precision_and_compile_and_the_config_checks_precision():
    args = build_parser().parse_args(["train", "--precision", "bf16", "--compile"])
    assert (args.precision, args.compile) == ("bf16", True)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half").check()


def test_bf16_autocast_trains_on_the_cpu_close_to_fp32(data, tmp_path):
    curves = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(**TINY, **data, out=str(tmp_path / precision), max_steps=5, precision=precision)
        assert Trainer(cfg).train() == "finished"
        curves[precision] = [r["train_loss"] for r in read_jsonl(tmp_path / precision / "metrics.jsonl")]
    # bf16 keeps 8 bits of mantissa: the losses differ (autocast is on), but only a little.
    assert curves["bf16"] != curves["fp32"]
    assert curves["bf16"] == pytest.approx(curves["fp32"], rel=0.01)
