"""The srun command line and the reading of srun's exit: pure functions, tested without Slurm.

Whether srun really places steps this way is shown by tests/slurm/, on the real cluster.
"""

from __future__ import annotations

import pytest

from fsqueue.launcher import Launch, classify_srun_exit, srun_argv, srun_environment
from fsqueue.model import Placement


def launch(cores: dict[str, int], tasks_per_node: int = 1, **fields: object) -> Launch:
    placement = Placement(tuple((node, tuple(range(count))) for node, count in cores.items()))
    defaults: dict[str, object] = dict(job_id="0000000000000000", argv=("prog", "a b"), env={}, wd=None, stdin=None,
                                       stdout="/s/o", stderr="/s/e", cpus=None)
    defaults.update(fields)
    return Launch(**defaults, placement=placement, tasks_per_node=tasks_per_node, launch_log="/s/l")  # type: ignore[arg-type]


def options(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


@pytest.mark.parametrize(
    ("cores", "tasks", "expected"),
    [
        pytest.param({"n1": 1}, 1, {"nodes": "1", "ntasks": "1", "ntasks-per-node": "1", "cpus-per-task": "1",
                                    "nodelist": "n1"}, id="one-core"),
        pytest.param({"n3": 4}, 1, {"nodes": "1", "ntasks": "1", "cpus-per-task": "4", "nodelist": "n3"}, id="threaded"),
        pytest.param({"n1": 4, "n2": 4}, 4, {"nodes": "2", "ntasks": "8", "ntasks-per-node": "4", "cpus-per-task": "1",
                                             "nodelist": "n1,n2"}, id="mpi-8-ranks"),
        pytest.param({"n1": 4, "n2": 4}, 2, {"ntasks": "4", "cpus-per-task": "2"}, id="hybrid"),
        pytest.param({"a": 40, "b": 128}, 1, {"nodes": "2", "cpus-per-task": "40", "nodelist": "a,b"}, id="uneven"),
    ],
)
def test_shape_flags(cores, tasks, expected):
    flags = options(srun_argv(launch(cores, tasks)))
    assert {key: flags[key] for key in expected} == expected


def test_placement_and_safety_flags_are_always_there():
    argv = srun_argv(launch({"n2": 2}), srun="/usr/bin/srun")
    assert argv[0] == "/usr/bin/srun" and argv[-2:] == ["prog", "a b"]
    assert {"--exact", "--cpu-bind=cores", "--kill-on-bad-exit=1"} <= set(argv)
    flags = options(argv)
    assert flags["job-name"] == "fsq-0000000000000000"
    assert (flags["input"], flags["output"], flags["error"]) == ("none", "/s/o", "/s/e")
    assert "chdir" not in flags and "mem-per-cpu" not in flags


def test_no_pin_asks_srun_not_to_bind():
    argv = srun_argv(launch({"n1": 2}), bind=False)
    assert "--cpu-bind=none" in argv and "--cpu-bind=cores" not in argv


def test_optional_flags_and_percent_signs():
    argv = srun_argv(launch({"n1": 1}, wd="/w", stdin="in%j", stdout="/o/100%.txt"), mem_per_cpu_mb=1800)
    flags = options(argv)
    assert flags["chdir"] == "/w" and flags["mem-per-cpu"] == "1800"
    # srun expands %j and friends in file names; a literal percent sign is written %%.
    assert flags["input"] == "in%%j" and flags["output"] == "/o/100%%.txt"


def test_the_job_command_is_never_parsed_by_srun():
    argv = srun_argv(launch({"n1": 1}, argv=("--help", "--nodes=9")))
    assert argv[-2:] == ["--help", "--nodes=9"]
    assert options(argv[:-2])["nodes"] == "1"


# Messages as srun 22.05 prints them, from ../shared/slurm/MEASURED.md and runs on the local cluster.
TASK_EXIT_3 = "srun: error: n1: task 0: Exited with exit code 3\n"
TASK_KILLED = "srun: error: n3: task 0: Killed\nsrun: Force Terminated StepId=4.4\n"
BAD_EXEC = ("srun: error: n1: task 0: Exited with exit code 2\n"
            "slurmstepd-n1: error: execve(): /nonexistent/x: No such file or directory\n")
NO_STEP = "srun: error: Unable to create step for job 26: More processors requested than permitted\n"
NODE_DEAD = ("srun: error: slurm_receive_msgs: [[localhost]:16821] failed: Socket timed out on send/recv operation\n"
             "srun: error: Task launch for StepId=29.0 failed on node n4: Socket timed out on send/recv operation\n"
             "srun: error: Application launch failed: Socket timed out on send/recv operation\n"
             "srun: Job step aborted\n")
BINDING_NOTE = "srun: cluster configuration lacks support for cpu binding\n"
SEGFAULT = "srun: error: n1: task 0: Segmentation fault\nsrun: launch/slurm: _step_signal: Terminating StepId=91.0\n"


@pytest.mark.parametrize(
    ("code", "log", "exit_code", "signal", "launch_failure", "nodes"),
    [
        pytest.param(0, BINDING_NOTE, 0, None, None, (), id="success"),
        pytest.param(3, TASK_EXIT_3, 3, None, None, (), id="task-exit"),
        pytest.param(137, TASK_KILLED, None, 9, None, (), id="task-killed"),
        pytest.param(139, SEGFAULT, None, 11, None, (), id="task-segfault"),
        pytest.param(139, "srun: error: n1: task 0: Exited with exit code 139\n", 139, None, None, (),
                     id="exit-code-139-is-an-exit-code"),
        pytest.param(2, BAD_EXEC, 2, None, None, (), id="bad-exec-is-the-job"),
        pytest.param(1, NO_STEP, 1, None, NO_STEP.strip(), (), id="no-step"),
        pytest.param(140, NODE_DEAD, 140, None, "srun: error: Application launch failed: Socket timed out on send/recv operation",
                     ("n4",), id="node-dead"),
        pytest.param(-15, "", None, 15, None, (), id="srun-stopped-by-us"),
        pytest.param(1, "", 1, None, None, (), id="exit-1-no-message"),
    ],
)
def test_classify(code, log, exit_code, signal, launch_failure, nodes):
    exit = classify_srun_exit("0000000000000000", code, BINDING_NOTE + log)
    assert (exit.exit_code, exit.signal, exit.launch_failure, exit.failed_nodes) == (exit_code, signal, launch_failure, nodes)


def test_a_task_failure_keeps_srun_words_as_detail():
    exit = classify_srun_exit("0000000000000000", 3, TASK_EXIT_3)
    assert exit.detail == "n1: Exited with exit code 3"


def test_gpus_per_node_flag():
    assert "--gpus-per-node=2" in srun_argv(launch({"n1": 4}, gpus_per_node=2))
    assert not any(arg.startswith("--gpus") for arg in srun_argv(launch({"n1": 4})))


def test_srun_runs_without_the_batch_scripts_option_defaults_and_keeps_the_rest() -> None:
    # sbatch --gpus-per-node=4 --export=NONE --hint=nomultithread leave these for every srun inside.
    env = {"SLURM_GPUS_PER_NODE": "4", "SLURM_EXPORT_ENV": "NONE", "SLURM_HINT": "nomultithread",
           "SLURM_JOB_ID": "12", "SLURM_JOB_NODELIST": "n[1-2]", "FSQ_JOB_ID": "x", "PATH": "/usr/bin"}
    assert srun_environment(env) == {"SLURM_JOB_ID": "12", "SLURM_JOB_NODELIST": "n[1-2]", "FSQ_JOB_ID": "x",
                                     "PATH": "/usr/bin"}
