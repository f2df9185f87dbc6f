"""A run dir belongs to one run: it is locked while a run writes into it, and a dir that already holds a run
is reused only by ``resume=auto`` with the same config. Checked before Hydra writes anything into the dir.

Only the standard library and OmegaConf: this runs before torch is imported.
"""

import errno
import fcntl
import os
import socket
import sys
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from tl_lightning.context import RunLayout
from tl_lightning.errors import ConfigError, RunDirInUse, WeightsError

LOCK_NAME = ".lock"
# keys that may differ between a run and its resume=auto continuation: where and how it logs and loads,
# never what it computes
RESUME_MAY_DIFFER = ("resume", "resume_strict", "logger", "paths", "data.num_workers", "data.pin_memory",
                     "callbacks.rich_progress_bar", "callbacks.model_summary", "trainer.enable_progress_bar",
                     "trainer.enable_model_summary", "trainer.log_every_n_steps")
_LOCKS: Dict[str, int] = {}  # run dir -> open lock fd, held for the life of the process


def launched_rank() -> int:
    """This process's rank when a launcher started it as one of several (a DDP child, a Slurm task); else 0.
    Rank 0 owns the run dir; the others write into it under its lock."""
    for var in ("LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def holds_run(run_dir: str) -> List[str]:
    """What in ``run_dir`` shows that a run got somewhere there: a summary or a checkpoint (empty: a new dir, or
    one where a run failed before its first checkpoint; a new run may take that over)."""
    layout = RunLayout(run_dir)
    marks = [layout.SUMMARY] if os.path.isfile(layout.summary) else []
    ckpt_dir = layout.checkpoint_dir
    if os.path.isdir(ckpt_dir) and any(n.endswith(".ckpt") for n in os.listdir(ckpt_dir)):
        marks.append(f"{layout.CHECKPOINTS}/")
    return marks


# what train, eval and diagnose write into their run dirs, besides checkpoints: a tool's output is never one of these
RUN_RECORDS = (RunLayout.SUMMARY, RunLayout.CONFIG, "summary_eval.json", "diagnose.json", "diagnose.md",
               "failed.json", LOCK_NAME)


def run_records(run_dir: str) -> List[str]:
    """What in ``run_dir`` shows that a run of any tool wrote it: train's marks (``holds_run``), Hydra's
    ``.hydra/`` and the other tools' summaries."""
    marks = holds_run(run_dir)
    for name in (".hydra/", "summary_eval.json", "diagnose.json"):
        if os.path.exists(os.path.join(run_dir, name)) and name not in marks:
            marks.append(name)
    return marks


def check_tool_run_dir(run_dir: str, tool: str) -> None:
    """eval and diagnose keep a run dir of their own: never one that holds another run (its ``.hydra/`` and
    summaries would be rewritten)."""
    marks = run_records(run_dir)
    if marks:
        raise ConfigError(f"run dir {run_dir} already holds a run ({', '.join(marks)}); {tool} would rewrite its "
                          "files: leave hydra.run.dir unset (a new dir under paths.log_dir) or choose a new one")


def check_output(output: str, key: str, inputs: Dict[str, str]) -> None:
    """A tool's output file is never one of its inputs (``inputs``: what -> path) nor a file of a run (a
    checkpoint, a summary, ``.hydra/``): one line naming what it would destroy."""
    if os.path.isdir(output):
        raise ConfigError(f"{key}: {output} is a folder; give a file path (e.g. {os.path.join(output, '...')})")
    target = os.path.realpath(output)
    for what, path in inputs.items():
        if path and os.path.exists(path) and os.path.realpath(path) == target:
            raise ConfigError(f"{key}={output} is {what}, which this command reads; write to another file")
    folder, name = os.path.split(target)
    inside = os.path.basename(folder) in (".hydra", RunLayout.CHECKPOINTS) and run_records(os.path.dirname(folder))
    if inside or (os.path.exists(target) and (name.endswith(".ckpt") or (name in RUN_RECORDS and run_records(folder)))):
        raise ConfigError(f"{key}={output} is a file of the run in {RunLayout.of_checkpoint(target)}; a tool never "
                          "overwrites a run's files: write to another file")


def check_sweep_reuse(sweep_dir: str, overrides, resumes: bool) -> None:
    """A sweep dir whose job dirs hold runs is continued only with ``resume=auto`` (the Slurm launcher adds it to
    every job): a new sweep there would train over the finished jobs."""
    if resumes or "resume=auto" in overrides:
        return
    held = sorted(name for name in os.listdir(sweep_dir)
                  if os.path.isdir(os.path.join(sweep_dir, name)) and holds_run(os.path.join(sweep_dir, name)))
    if held:
        shown = ", ".join(f"{n}/" for n in held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise ConfigError(f"sweep dir {sweep_dir} already holds the runs of a sweep ({shown}); choose a new "
                          "hydra.sweep.dir, or add resume=auto to continue them")


def check_resume_path(resume: Optional[str], run_dir: str) -> None:
    """``resume=<path>`` continues the run that wrote the checkpoint, in that run's own dir: from another dir it
    would train nothing new there and report the other run's checkpoints as its own."""
    if not resume or resume == "auto" or not os.path.isfile(resume):
        return
    owner = RunLayout.of_checkpoint(resume)
    if os.path.realpath(owner) != os.path.realpath(run_dir):
        raise ConfigError(f"resume={resume} is a checkpoint of the run in {owner}, not of this run dir ({run_dir}); "
                          f"to continue that run: hydra.run.dir={owner} resume=auto; to start a new run from its "
                          f"weights: backbone=checkpoint backbone.path={resume}")


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict):
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_differences(recorded: Dict[str, Any], asked: Dict[str, Any]) -> List[str]:
    """Keys whose values differ between two (unresolved) task configs, ignoring RESUME_MAY_DIFFER."""
    old, new = _flatten(recorded), _flatten(asked)

    def ignored(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in RESUME_MAY_DIFFER)

    return [f"{k}: {old.get(k, '<unset>')} -> {new.get(k, '<unset>')}" for k in sorted(set(old) | set(new))
            if not ignored(k) and old.get(k) != new.get(k)]


def check_reuse(run_dir: str, task_cfg: DictConfig) -> bool:
    """Refuse to write into a dir that holds a run unless this is its ``resume=auto`` continuation with the
    same config (``resume_strict=false`` accepts a changed one). True when the dir holds a run."""
    marks = holds_run(run_dir)
    if not marks:
        return False
    if task_cfg.get("resume") != "auto":
        raise ConfigError(f"run dir {run_dir} already holds a run ({', '.join(marks)}); continue it with resume=auto "
                          "or choose a new hydra.run.dir")
    saved = os.path.join(run_dir, ".hydra", "config.yaml")
    if not os.path.isfile(saved):
        if task_cfg.get("resume_strict", True):
            raise ConfigError(f"resume=auto: {run_dir} has no .hydra/config.yaml to compare this run's config with; "
                              "add resume_strict=false to continue it anyway")
        return True
    try:
        recorded = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    except Exception as exc:  # a damaged file: say so instead of guessing
        raise ConfigError(f"resume=auto: cannot read {saved} ({type(exc).__name__}); add resume_strict=false to "
                          "continue without comparing configs") from None
    check_resumable(run_dir)
    differ = config_differences(recorded, OmegaConf.to_container(task_cfg, resolve=False))
    shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
    if differ and not task_cfg.get("resume_strict", True):
        print(f"warning: resume=auto with resume_strict=false: continuing {run_dir} with a changed config ({shown})",
              file=sys.stderr, flush=True)
    elif differ:
        raise ConfigError(f"resume=auto: the config differs from the one {run_dir} was started with ({shown}); "
                          "drop those overrides, or add resume_strict=false to continue with the new values")
    return True


def resume_candidates(run_dir: str) -> List[str]:
    """The checkpoints ``resume=auto`` may continue from: last.ckpt (every epoch, on a signal, or when submitit
    requeues) and Lightning's hpc_ckpt_N.ckpt (its own SLURM requeue in a plain sbatch job)."""
    import glob

    return [p for p in [RunLayout(run_dir).last_checkpoint,
                        *glob.glob(os.path.join(run_dir, "hpc_ckpt_*.ckpt"))] if os.path.isfile(p)]


def check_resumable(run_dir: str) -> None:
    """resume=auto in a dir whose checkpoints are all truncated (not complete zip archives): one line at start-up."""
    import zipfile

    found = resume_candidates(run_dir)
    if found and not any(zipfile.is_zipfile(p) for p in found):
        raise WeightsError(f"resume=auto: no checkpoint in {run_dir} can be read ({', '.join(found)}: truncated or "
                           "corrupt); move them away to start this run over, or resume=<path> another checkpoint")


def make_run_dir(run_dir: str, what: str = "run dir") -> None:
    """Create the run dir (and parents), or one line saying why it cannot be."""
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {run_dir}: {exc.strerror or exc} (set hydra.run.dir, "
                          "hydra.sweep.dir or paths.log_dir to a writable place)") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {run_dir} is not writable (set hydra.run.dir, hydra.sweep.dir or paths.log_dir to "
                          "a writable place)")


def lock_run_dir(run_dir: str) -> None:
    """Hold ``<run dir>/.lock`` (flock) for the life of this process; a second run into the dir stops with one
    line naming the process that holds it. The lock ends with the process, however it ends."""
    run_dir = os.path.abspath(run_dir)
    if run_dir in _LOCKS:
        return
    path = os.path.join(run_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise RunDirInUse(f"run dir {run_dir} is in use by {holder}; wait for it to end or choose another "
                              "hydra.run.dir") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _LOCKS[run_dir] = fd


def release_run_dir(run_dir: Optional[str] = None) -> None:
    """Release the lock of ``run_dir`` (all of this process's when None); the lock file stays."""
    for key in [os.path.abspath(run_dir)] if run_dir else list(_LOCKS):
        fd = _LOCKS.pop(key, None)
        if fd is not None:
            os.close(fd)
