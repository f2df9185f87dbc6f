"""After training: evaluate a checkpoint on any data (evaluate.py), predict on new files (predict.py), export to
ONNX or TorchScript with a parity check (export.py). Each starts from the checkpoint's inference model."""
