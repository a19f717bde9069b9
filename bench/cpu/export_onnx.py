"""Writes torchvision's ResNet-50 (random weights) as ONNX, for the onnxruntime-node peer of run.mjs.

python3 export_onnx.py OUT.onnx

The batch axis is dynamic, so one file serves every batch size. Needs torch and torchvision only:
the exporter of torch itself writes the protobuf, the python `onnx` package is not used.
"""
import sys

try:
    import torch
    import torchvision
except ImportError as e:
    sys.exit(f"{e.name} is not installed")

if len(sys.argv) != 2:
    sys.exit("usage: export_onnx.py OUT.onnx")
model = torchvision.models.resnet50(weights=None).eval()
torch.onnx.export(
    model,
    torch.randn(1, 3, 224, 224),
    sys.argv[1],
    opset_version=17,
    input_names=["images"],
    output_names=["logits"],
    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
)
