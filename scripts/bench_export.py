"""PyTorch eager vs onnxruntime fp32 vs onnxruntime int8 (dynamic quantisation) on the CPU, one invocation, same
checkpoint, same test images, same thread count: latency at batch 1 (median, p90), throughput at batch 32, and
top-1 accuracy on the checkpoint's test split. Targets: onnxruntime fp32 >= 1.3x eager at batch 1; int8 within
1 point of fp32 accuracy.

    python train.py                                               # the default job: its best.ckpt
    python scripts/bench_export.py <run dir>/checkpoints/best.ckpt [--threads 2] [--runs 200]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def timings(fn, inputs, runs: int):
    fn(inputs)  # warm-up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(inputs)
        out.append(time.perf_counter() - start)
    return np.asarray(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed batch-1 calls per variant")
    parser.add_argument("--batches", type=int, default=10, help="timed batch-32 calls per variant")
    args = parser.parse_args()

    import onnxruntime as ort

    from tl_lightning.deploy.export import add_metadata, export_onnx, metadata, quantize_dynamic_int8
    from tl_lightning.deploy.export import verification_samples as test_samples
    from tl_lightning.inference import load

    torch.set_num_threads(args.threads)
    model = load(args.checkpoint)
    samples, source = test_samples(model, 100_000, "data", ".cache")  # the whole (capped) test split
    images = torch.stack([s["inputs"] for s in samples])
    labels = np.asarray([s["target"] for s in samples])
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = f"{tmp}/model.onnx", f"{tmp}/model.int8.onnx"
        export_onnx(model, ["input"], images[:2], fp32, None)
        add_metadata(fp32, metadata(model, args.checkpoint))
        quantize_dynamic_int8(fp32, int8)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        sessions = {name: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                    for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8))}

        def eager(x):
            with torch.inference_mode():
                return model(x).numpy()

        def eager_cl(x):
            with torch.inference_mode():
                return model(x.contiguous(memory_format=torch.channels_last)).numpy()

        variants = {"PyTorch eager": eager, "PyTorch eager, channels_last": eager_cl}
        for name, session in sessions.items():
            variants[name] = lambda x, s=session: s.run(None, {"input": x.numpy()})[0]
        print(f"{Path(args.checkpoint).parent.parent.name}: {model.backbone.name}, {model.input_spec.size} px, "
              f"{args.threads} threads; accuracy on {source}")
        print(f"{'':30s} {'batch 1 median':>15s} {'p90':>9s} {'batch 32':>12s} {'top-1 acc':>10s}")
        results = {}
        for name, fn in variants.items():
            lat = timings(fn, images[:1], args.runs)
            batch = images[:32]
            thr = 32 * args.batches / timings(fn, batch, args.batches).sum()
            preds = np.concatenate([fn(images[i:i + 100]).argmax(-1) for i in range(0, len(images), 100)])
            acc = float((preds == labels).mean())
            results[name] = (np.median(lat), thr, acc)
            print(f"{name:30s} {1e3 * np.median(lat):12.2f} ms {1e3 * np.percentile(lat, 90):6.2f} ms "
                  f"{thr:8.0f} img/s {100 * acc:9.1f} %")
        base, fast, quant = results["PyTorch eager"], results["onnxruntime fp32"], results["onnxruntime int8"]
        print(f"onnxruntime fp32 / eager at batch 1: {base[0] / fast[0]:.2f}x (target >= 1.3); at batch 32: "
              f"{fast[1] / base[1]:.2f}x; int8 accuracy drop vs fp32: {100 * (fast[2] - quant[2]):.1f} points "
              f"(target <= 1); int8 / fp32 speed at batch 1: {fast[0] / quant[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
