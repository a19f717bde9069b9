#!/usr/bin/env python3
"""Checks .onnx files with the ONNX project's own checker, for the tests of packages/resnet's exporter.

Needs Debian's python3-onnx (a cross-check only; never a dependency):

    /usr/bin/python3 scripts/check-onnx.py FILE.onnx...

For each file: the full check (schema, every node against its operator's definition at the file's
opset, types and shapes inferred through the whole graph, strictly), then one JSON line with what the
official decoder read: IR version, opset, the count of each operator, and the inferred shape of the
input and the output. Exits non-zero naming the first file that fails.
"""
import collections
import json
import sys

try:
    import onnx
except ImportError:
    sys.exit("the python onnx package is not installed (apt-get install python3-onnx)")


def shape(value):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


for path in sys.argv[1:]:
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker's and shape inference's errors share no base class
        # A line per node left untyped follows the cause: keep the cause.
        sys.exit(f"{path}: {str(e).splitlines()[0]}")
    print(json.dumps({
        "file": path,
        "ir_version": model.ir_version,
        "opset": {o.domain: o.version for o in model.opset_import},
        "ops": collections.Counter(n.op_type for n in model.graph.node),
        "input": {v.name: shape(v) for v in model.graph.input},
        "output": {v.name: shape(v) for v in model.graph.output},
    }))
