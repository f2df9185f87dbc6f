"""The compact table a run prints when it ends: what it scored, where it wrote, what to run next."""

import os
import shlex
from typing import Any, Dict, List, Optional, Tuple


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _print(title: str, rows: List[Tuple[str, str]]) -> None:
    """A title and aligned ``key  value`` rows: bold keys in a terminal, plain text in a log; a long value (a
    command) stays on one line, so it can be copied."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(soft_wrap=True, highlight=False)
    console.print(escape(title), style="bold")
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"[bold]{escape(key.ljust(width))}[/bold]  {escape(value)}")


def next_commands(ckpt: str) -> List[Tuple[str, str]]:
    q = shlex.quote(f"ckpt_path={ckpt}")
    return [("eval", f"python -m tl_lightning.eval {q}"),
            ("predict", f"python -m tl_lightning.predict {q} input=<folder|file|glob> output=preds.csv"),
            ("export", f"python -m tl_lightning.export {q} format=onnx")]


def wandb_rows(output_dir: str) -> List[Tuple[str, str]]:
    """The newest offline W&B run in the run dir and the command that uploads it (W&B's own lines are silenced)."""
    import glob

    runs = sorted(glob.glob(os.path.join(output_dir, "wandb", "offline-run-*")), key=os.path.getmtime)
    return [("W&B", f"offline; upload: wandb sync {shlex.quote(runs[-1])}")] if runs else []


def print_train_table(summary: Dict[str, Any], output_dir: str) -> None:
    test, val = summary.get("test") or {}, summary.get("val") or {}
    ckpt = summary.get("best_checkpoint") or ""
    rows = [
        ("test accuracy", _pct(test.get("test/acc"))),
        ("test macro-F1", _pct(test.get("test/f1_macro"))),
        (f"best {summary.get('optimized_metric', 'val')}",
         "-" if summary.get("best_score") is None else f"{summary['best_score']:.4f} (epoch {summary.get('best_epoch', '-')})"),
        ("wall time", f"{summary.get('wall_time_s', 0):.0f} s ({summary.get('epochs_run', 0)} epochs)"),
        ("run dir", output_dir),
        ("checkpoint", os.path.relpath(ckpt, output_dir) if ckpt else "none (checkpointing off)"),
    ]
    if not test and val:
        rows[0] = ("val accuracy", _pct(val.get("val/acc")))
    pruned = summary.get("optuna_pruning") or {}
    if pruned.get("pruned"):  # a trial of hparams_search=optuna stopped by its pruner (callbacks/pruning.py)
        rows.insert(4, ("optuna", f"trial {pruned['trial']} pruned after epoch {pruned['epoch']} "
                                  f"({pruned['value']:.4f}, {pruned['pruner']} pruner)"))
    _print(f"{summary.get('strategy')} | {summary.get('backbone')} | {summary.get('dataset')} "
           f"| {summary.get('samples_per_class') or 'all'} per class | seed {summary.get('seed')}",
           rows + wandb_rows(output_dir) + (next_commands(ckpt) if ckpt else []))


def print_eval_table(summary: Dict[str, Any], output_dir: str) -> None:
    test = summary.get("test") or {}
    _print(f"eval | {summary['trained']['backbone']} ({summary['trained']['strategy']}) on {summary['dataset']} "
           f"[{summary['split']}]", [
               ("accuracy", _pct(test.get("test/acc"))),
               ("macro-F1", _pct(test.get("test/f1_macro"))),
               ("samples", f"{summary['samples']} of {len(summary['classes_in_data'])} classes"),
               ("wall time", f"{summary['wall_time_s']:.0f} s"),
               ("summary", os.path.join(output_dir, "summary_eval.json")),
               *wandb_rows(output_dir),
           ])


def print_export_table(report: Dict[str, Any]) -> None:
    what = "folder" if report["format"] == "hf" else "file"
    rows = [(what, f"{report['path']} ({report['bytes'] / 1e6:.1f} MB)"), ("checked on", report["verified_on"])]
    for size, result in report["parity"].items():
        rows.append((f"batch {size}", f"max |logit diff| {result['max_abs_diff']:.2e}, "
                                      f"top-1 agreement {result['top1_agreement']:.1%}"))
    if "int8" in report:
        int8 = report["int8"]
        first = next(iter(int8["parity"].values()))
        acc = (f", accuracy {first['accuracy_exported']:.1%} vs fp32 {first['accuracy_pytorch']:.1%}"
               if "accuracy_exported" in first else "")
        rows.append(("int8", f"{int8['path']} ({int8['bytes'] / 1e6:.1f} MB): top-1 agreement "
                             f"{first['top1_agreement']:.1%}{acc}"))
    folder = report["path"] if report["format"] == "hf" else os.path.dirname(report["path"])
    if report.get("card"):
        rows.append(("model card", report["card"]))
    if report.get("pushed_to"):
        rows.append(("pushed to", report["pushed_to"]))
    rows.append(("report", os.path.join(folder, "export.json")))
    _print(f"export {report['format']}: {'verified' if report['passed'] else 'FAILED the parity check'}", rows)
