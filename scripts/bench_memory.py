"""Activation memory with and without activation checkpointing (``backbone.grad_checkpointing=true``), in one
invocation: the bytes autograd keeps for backward at the end of a training forward pass (counted through
``torch.autograd.graph.saved_tensors_hooks``, each storage once), and the training step time.

    python scripts/bench_memory.py                    # Lite0 at 224 px and MiniLM at 128 tokens, batch 32
    python scripts/bench_memory.py --batch-size 8 --steps 2
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def saved_bytes(net, inputs) -> int:
    """Bytes of the tensors autograd saves for backward in one forward pass (storages counted once)."""
    seen, total = set(), [0]

    def pack(t):
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net(inputs).float().logsumexp(-1).mean()
    loss.backward()
    return total[0]


def step_time(net, inputs, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = net(inputs).float().logsumexp(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def build(kind: str, name: str, checkpointing: bool, batch_size: int):
    from tl_lightning.backbones.registry import build_backbone

    cfg = OmegaConf.create({"kind": kind, "name": name, "weights": None, "grad_checkpointing": checkpointing,
                            "max_length": 128})
    backbone = build_backbone(cfg, pretrained=True, image_size=224)
    net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, 10)).train()
    torch.manual_seed(0)
    if backbone.preprocessing.modality == "text":
        ids = torch.randint(1000, 20000, (batch_size, 128))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    else:
        inputs = torch.randn(batch_size, 3, 224, 224)
    return net, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"batch {args.batch_size}, training mode, CPU, {torch.get_num_threads()} threads")
    print(f"{'model':<40} {'checkpointing':>13} {'saved MiB':>10} {'step s':>8}")
    for kind, name, label in (("efficientnet_lite0", "efficientnet_lite0", "EfficientNet-Lite0, 224 px"),
                              ("minilm", "all-MiniLM-L6-v2", "MiniLM-L6, 128 tokens")):
        rows = []
        for checkpointing in (False, True):
            net, inputs = build(kind, name, checkpointing, args.batch_size)
            mib = saved_bytes(net, inputs) / 2**20
            seconds = step_time(net, inputs, args.steps)
            rows.append((mib, seconds))
            print(f"{label:<40} {'on' if checkpointing else 'off':>13} {mib:>10.1f} {seconds:>8.2f}")
        print(f"{'':<40} {'on / off':>13} {rows[1][0] / rows[0][0]:>9.2f}x {rows[1][1] / rows[0][1]:>7.2f}x")


if __name__ == "__main__":
    main()
