"""Training throughput on text: length bucketing + dynamic padding vs padding every text to max_length.

Same model (the embedded all-MiniLM-L6-v2 + a linear head, fine-tuned with AdamW), same training texts
(Debian's fortunes), same batch size, one invocation; the order of the two runs alternates over repeats.

    python scripts/bench_text.py                     # 384 texts, batch 32, max_length 128, 2 repeats
    python scripts/bench_text.py --texts 128 --repeats 1 --threads 1
"""

import argparse
import time

import torch


def epoch(model, head, opt, batches):
    """One pass of training steps; returns (seconds, samples, real tokens, padded tokens)."""
    samples = real = padded = 0
    start = time.perf_counter()
    for batch in batches:
        inputs, target = batch["inputs"], batch["target"]
        loss = torch.nn.functional.cross_entropy(head(model(inputs)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        samples += len(target)
        real += int(inputs["attention_mask"].sum())
        padded += inputs["input_ids"].numel()
    return time.perf_counter() - start, samples, real, padded


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.config.schema import FortunesDataConf
    from tl_lightning.data import build_datamodule
    from tl_lightning.data.text import BucketBatchSampler

    backbone = build_backbone(OmegaConf.create({"kind": "minilm", "name": "all-MiniLM-L6-v2",
                                                "max_length": args.max_length}), pretrained=True)
    prep = backbone.preprocessing
    cfg = OmegaConf.merge(OmegaConf.structured(FortunesDataConf), {"name": "fortunes", "samples_per_class": None})
    dm = build_datamodule(cfg, prep)
    dm.setup("fit")
    ds = dm.datasets["train"]
    items = [ds[k] for k in range(min(args.texts, len(ds)))]
    lengths = [len(it["inputs"]) for it in items]
    head = torch.nn.Linear(backbone.feature_dim, dm.num_classes)
    state = ({k: v.clone() for k, v in backbone.state_dict().items()}, {k: v.clone() for k, v in head.state_dict().items()})

    def bucketed():
        order = BucketBatchSampler(lengths, args.batch_size, seed=0).batches()
        return [prep.collate([items[i] for i in b]) for b in order]

    def padded_to_max():
        perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(0)).tolist()
        prep.pad_to = args.max_length
        try:
            return [prep.collate([items[i] for i in perm[k:k + args.batch_size]]) for k in range(0, len(perm), args.batch_size)]
        finally:
            prep.pad_to = None

    results = {"bucketing + dynamic padding": [], f"padding to max_length={args.max_length}": []}
    makers = dict(zip(results, (bucketed, padded_to_max)))
    print(f"{len(items)} fortunes texts (mean {sum(lengths) / len(lengths):.1f} tokens, max {max(lengths)}), batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, MiniLM-L6 fine-tuning")
    for r in range(args.repeats):
        for name in (list(results) if r % 2 == 0 else list(reversed(results))):
            backbone.load_state_dict(state[0])
            head.load_state_dict(state[1])
            opt = torch.optim.AdamW(list(backbone.parameters()) + list(head.parameters()), lr=3e-5)
            backbone.train()
            results[name].append(epoch(backbone, head, opt, makers[name]()))
    rates = {}
    for name, runs in results.items():
        secs = min(r[0] for r in runs)
        _, samples, real, padded = runs[0]
        rates[name] = samples / secs
        print(f"{name:38s} {samples / secs:7.1f} samples/s  {real / secs:8.0f} real tokens/s  "
              f"{padded / secs:8.0f} tokens/s incl. padding  (padding {100 * (1 - real / padded):.0f} % of the batch)")
    a, b = rates.values()
    print(f"speed-up of bucketing + dynamic padding: {a / b:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
