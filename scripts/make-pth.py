#!/usr/bin/env python3
"""PyTorch checkpoints written by PyTorch itself, for the tests of residual's .pth reader.

Needs Debian's python3-torch and python3-torchvision (for tests only; never a dependency).

    /usr/bin/python3 scripts/make-pth.py fixtures packages/core/src/io/pth-fixtures
        The small files the core tests read (committed): state dicts as torch.save writes them,
        each storage type, strided views, and damaged or hostile files, plus expected.json, torch's
        own reading of every valid one.

    /usr/bin/python3 scripts/make-pth.py torchvision MODEL OUT_DIR
        What the CLI test compares (made at test time, too large to commit): a randomly initialised
        torchvision MODEL saved by torch.save (OUT_DIR/MODEL.pth), the same weights as safetensors
        written here (OUT_DIR/MODEL.safetensors), an input (OUT_DIR/input.safetensors) and
        torchvision's logits for it (OUT_DIR/logits.json).
"""
import collections
import copy
import io
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3, 2))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net[1].num_batches_tracked.fill_(7)
    return net


def describe(state) -> dict:
    """torch's own reading of a state dict: key order, dtype, shape, values widened as residual widens them."""
    tensors = {}
    for k, t in state.items():
        values = (t.float() if t.is_floating_point() else t.long()).flatten().tolist()
        tensors[k] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "values": values}
    return {"keys": list(state.keys()), "tensors": tensors}


def records(path: Path) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        return names[0].split("/")[0], {n.split("/", 1)[1]: z.read(n) for n in names}


def write_archive(path: Path, prefix: str, recs: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    """A zip laid out as torch.save lays one out (data.pkl first, then data/<key>), for files torch cannot make."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in recs.items():
            # A fixed date, so the script writes the same bytes every time.
            z.writestr(zipfile.ZipInfo(f"{prefix}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), data, compression)


class FakeStorage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class FakeTensor:
    def __init__(self, storage: FakeStorage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())


class TorchLikePickler(pickle.Pickler):
    """Pickles FakeTensors as torch.save pickles tensors, so views torch would never save can be written."""

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, FakeTensor):
            return (torch._utils._rebuild_tensor_v2, obj.args)
        return NotImplemented


def fake_checkpoint(path: Path, tensors: dict, numel: int) -> None:
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(collections.OrderedDict(tensors))
    write_archive(path, path.stem, {"data.pkl": buf.getvalue(),
                                    "data/0": struct.pack(f"<{numel}f", *range(numel)), "version": b"3\n"})


class RunsAShellCommand:
    """What a hostile checkpoint holds: unpickling it runs `touch "$RESIDUAL_PTH_MARKER"`."""

    def __reduce__(self):
        return (os.system, ('touch "$RESIDUAL_PTH_MARKER"',))


def patch_central_size(path: Path, entry: str, size: int) -> None:
    """Makes the zip's central directory claim `size` bytes (stored and unstored) for `entry`."""
    data = bytearray(path.read_bytes())
    name = entry.encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + n] == name:
            assert struct.unpack_from("<I", data, at + 20)[0] != 0xFFFFFFFF, "zip64 sizes"
            struct.pack_into("<II", data, at + 20, size, size)
            path.write_bytes(data)
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise KeyError(entry)


def flip_data_bit(src: Path, dst: Path, entry: str) -> None:
    """Copies a zip with one bit of `entry`'s data flipped, its CRC left as it was."""
    data = bytearray(src.read_bytes())
    info = zipfile.ZipFile(src).getinfo(entry)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len] ^= 1
    dst.write_bytes(data)


def fixtures(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.pth"):
        old.unlink()
    expected = {}

    # Valid files, as torch.save writes them.
    net = tiny_net()
    state = net.state_dict()
    torch.save(state, out / "state-dict.pth")
    expected["state-dict.pth"] = describe(state)

    trained = copy.deepcopy(net)  # one SGD step, so the optimizer holds momentum tensors
    opt = torch.optim.SGD(trained.parameters(), lr=0.1, momentum=0.9)
    trained(torch.randn(2, 2, 3, 3)).sum().backward()
    opt.step()
    names = [f"name{i}" for i in range(300)]  # past 256 memo slots: LONG_BINPUT and LONG_BINGET
    torch.save({"model": nn.DataParallel(trained).state_dict(), "optimizer": opt.state_dict(), "epoch": 100000,
                "step": -3, "seed": 2**40, "huge": 2**70, "lr": 0.1, "best": None, "done": True,
                "names": names, "last": names[299]}, out / "wrapped-model.pth")
    expected["wrapped-model.pth"] = describe(trained.state_dict())
    torch.save({"state_dict": state, "arch": "tiny"}, out / "wrapped-state-dict-p4.pth", pickle_protocol=4)
    expected["wrapped-state-dict-p4.pth"] = describe(state)

    floats = torch.tensor([-2.5, -1.0, 0.0, 0.1, 1.0, 3.75])
    signed = torch.tensor([-128, -1, 0, 1, 100, 127])
    dtypes = collections.OrderedDict(
        (str(d).split(".")[1], (floats if d.is_floating_point else signed).to(d)) for d in SAFETENSORS_DTYPES)
    dtypes["uint8"] = torch.tensor([0, 1, 2, 100, 200, 255], dtype=torch.uint8)
    dtypes["bool"] = torch.tensor([True, False, False, True, True, False])
    dtypes["float16_subnormal"] = torch.tensor([6e-8, -6e-5, 65504.0], dtype=torch.float16)
    torch.save(dtypes, out / "dtypes.pth")
    expected["dtypes.pth"] = describe(dtypes)

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    base64 = torch.arange(12, dtype=torch.int64).reshape(3, 4) - 6
    half = (torch.arange(12, dtype=torch.float32) / 4).to(torch.float16).reshape(3, 4)
    views = collections.OrderedDict([
        ("base", base), ("transposed", base.t()), ("row", base[1]), ("column", base[:, 2]),
        ("strided", base[::2, 1::2]), ("long_transposed", base64.t()), ("half_transposed", half.t()),
        ("scalar", torch.tensor(5.5)), ("empty", torch.zeros(0, 3)),
    ])
    saved = collections.OrderedDict(views, parameter=nn.Parameter(torch.tensor([1.5, -2.0])))
    torch.save(saved, out / "views.pth")
    expected["views.pth"] = describe(saved)

    # Damaged and hostile files; each test names the error it expects.
    prefix, good = records(out / "state-dict.pth")
    evil = pickle.dumps(collections.OrderedDict(weight=RunsAShellCommand()), protocol=2)
    write_archive(out / "system.pth", "system", {"data.pkl": evil, "version": b"3\n"})
    # INST (protocol 0) imports and calls in one opcode.
    command = b'touch "$RESIDUAL_PTH_MARKER"'
    inst = b"(X" + struct.pack("<I", len(command)) + command + b"ios\nsystem\n."
    write_archive(out / "inst.pth", "inst", {"data.pkl": inst, "version": b"3\n"})
    (out / "truncated.pth").write_bytes((out / "state-dict.pth").read_bytes()[:700])
    write_archive(out / "short-storage.pth", "short-storage", dict(good, **{"data/0": good["data/0"][:-8]}))
    (out / "lying-size.pth").write_bytes((out / "state-dict.pth").read_bytes())
    patch_central_size(out / "lying-size.pth", f"{prefix}/data/0", 0xFFFFFF00)
    flip_data_bit(out / "state-dict.pth", out / "crc.pth", f"{prefix}/data/0")
    # Writing the records anew keeps the CRC right, so only the changed claim is at fault.
    write_archive(out / "compressed.pth", "compressed", good, zipfile.ZIP_DEFLATED)
    write_archive(out / "big-endian.pth", "big-endian", dict(good, byteorder=b"big"))
    fake_checkpoint(out / "past-end.pth", {"w": FakeTensor(FakeStorage("0", 4), 2, (3,), (1,))}, 4)
    fake_checkpoint(out / "expanded.pth", {"w": FakeTensor(FakeStorage("0", 4), 0, (100000, 100000), (0, 0))}, 4)
    torch.save({"n": torch.tensor([2**40])}, out / "i64-overflow.pth")
    torch.save({"w": torch.ones(2), "epoch": 3}, out / "not-only-tensors.pth")
    torch.save(state, out / "legacy.pth", _use_new_zipfile_serialization=False)

    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def write_safetensors(path: Path, tensors: dict) -> None:
    """Safetensors written here from its spec, not by residual, so the CLI test compares two independent writers."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(chunks))


def torchvision_model(name: str, out: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics that matter, not the 0 and 1 of a fresh model
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / f"{name}.pth")
    write_safetensors(out / f"{name}.safetensors", model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    write_safetensors(out / "input.safetensors", {"input": x})
    with torch.no_grad():
        (out / "logits.json").write_text(json.dumps(model(x).flatten().tolist()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["fixtures"] and len(sys.argv) == 3:
        fixtures(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["torchvision"] and len(sys.argv) == 4:
        torchvision_model(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
