"""A terminal that says what is true about the run, once, in few lines.

Third-party lines that tell a user of this harness nothing about their run are filtered here, at their source
(the exact message, its category, the logger it comes from), each with the reason. Everything else (Lightning's
warnings about the user's data or settings, the harness's own warnings) still reaches the terminal. Installed once
per process by the command-line entry points (``tl_lightning.cli.common.run_app``), before Lightning is imported.
"""

import logging
import warnings

# (message pattern, category, why it is filtered)
KNOWN_WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     "Lightning's own pytree helper uses what torch deprecated; nothing a user can change, fixed by a Lightning release"),
    (r"The `srun` command is available on your system but is not used", None,
     "Lightning's hint to prepend srun: wrong advice here, where Slurm jobs go through hydra/launcher=slurm or "
     "scripts/slurm_sbatch.sh, and printed on every login node"),
    (r"Found \d+ module\(s\) in eval mode at the start of training", None,
     "the strategy puts them there on purpose (strategy.bn=freeze_stats, a frozen backbone); the harness's model "
     "line (callbacks.model_summary) says how many and why"),
    (r"`training_step` returned `None`", None,
     "on purpose while the L-BFGS linear probe's solved head is scored but not stepped (strategy.probe=lbfgs); the "
     "harness's own strategies return a loss otherwise"),
)

# Lightning's INFO lines (logger lightning.pytorch.utilities.rank_zero) that describe nothing about the run
KNOWN_LIGHTNING_LINES = (
    "💡 Tip:",  # an advertisement for another logging product
    "TPU available: False",  # a machine without TPUs or HPUs: the GPU line already says where the run is
    "HPU available: False",
    "Loading `train_dataloader` to estimate number of stepping batches",  # Lightning's own bookkeeping
)
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropKnownLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(prefix) for prefix in KNOWN_LIGHTNING_LINES)


_FILTER = _DropKnownLines()


def quiet_third_party() -> None:
    """Install the filters above (idempotent)."""
    for pattern, category, _why in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category or Warning)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class ConsoleFormatter(logging.Formatter):
    """The terminal's log lines: ``12:30:21 message``, with the level only where it says more than INFO
    (``12:30:21 WARNING ...``). The run dir's log file keeps Hydra's full format (date, logger, level)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        self._with_level = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record) if record.levelno == logging.INFO else self._with_level.format(record)


def metric_text(value) -> str:
    """A metric value as people read it: 4 decimals, or 3 significant digits for the very small and large."""
    value = float(value)
    if value != value:  # NaN
        return "nan"
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
