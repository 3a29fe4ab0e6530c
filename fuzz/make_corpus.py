#!/usr/bin/env python3
"""Writes the committed seed corpora fuzz/corpus/<target>/ (a few KB each).
Run once from the repository root: /usr/bin/python3 fuzz/make_corpus.py.
PIL for the images, torch 1.13 for the .pth files (zip and legacy)."""
import io, json, os, struct
import numpy as np
import torch
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

rng = np.random.default_rng(0)
def img(mode, w, h):
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    return Image.fromarray(a, "RGBA").convert(mode)

def png(im, **kw):
    b = io.BytesIO(); im.save(b, "PNG", **kw); return b.getvalue()
def jpeg(im, **kw):
    b = io.BytesIO(); im.save(b, "JPEG", **kw); return b.getvalue()

put("png", "rgb_4x3.png", png(img("RGB", 4, 3)))
put("png", "rgba_5x5.png", png(img("RGBA", 5, 5)))
put("png", "gray_3x7.png", png(img("L", 3, 7)))
put("png", "la_2x2.png", png(img("LA", 2, 2)))
put("png", "palette_6x4.png", png(img("RGB", 6, 4).convert("P")))
put("png", "bits1_9x3.png", png(img("L", 9, 3).convert("1")))
put("png", "rgb_8x8.png", png(img("RGB", 8, 8)))
put("png", "gray16_3x3.png", png(Image.fromarray(rng.integers(0, 65535, (3, 3)).astype(np.uint16))))
put("jpeg", "rgb_8x8.jpg", jpeg(img("RGB", 8, 8), quality=90))
put("jpeg", "gray_5x3.jpg", jpeg(img("L", 5, 3)))
put("jpeg", "progressive_16x9.jpg", jpeg(img("RGB", 16, 9), progressive=True))
put("jpeg", "subsampled_17x11.jpg", jpeg(img("RGB", 17, 11), subsampling=2, quality=50))
put("jpeg", "cmyk_4x4.jpg", jpeg(img("RGB", 4, 4).convert("CMYK")))

def safetensors(tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

f32 = lambda a: np.asarray(a, np.float32).tobytes()
put("safetensors", "f32.safetensors", safetensors({"w": ("F32", [2, 3], f32(range(6))), "b": ("F32", [3], f32([1, 2, 3]))},
                                                   {"format": "pt"}))
put("safetensors", "dtypes.safetensors", safetensors({
    "h": ("F16", [2], np.asarray([1, -2], np.float16).tobytes()),
    "bf": ("BF16", [1], b"\x80\x3f"),
    "d": ("F64", [1], np.asarray([3.5], np.float64).tobytes()),
    "i64": ("I64", [2], np.asarray([1, -1], np.int64).tobytes()),
    "i32": ("I32", [1], np.asarray([7], np.int32).tobytes()),
    "i16": ("I16", [1], np.asarray([7], np.int16).tobytes()),
    "i8": ("I8", [1], b"\xff"), "u8": ("U8", [1], b"\xff"), "bool": ("BOOL", [2], b"\x01\x00"),
    "scalar": ("F32", [], f32([4])), "empty": ("F32", [0, 5], b"")}))
put("safetensors", "meta_only.safetensors", safetensors({}, {"epoch": "3", "log": "{\"a\": [1, 2]}"}))

def pth(obj, zip_format):
    b = io.BytesIO(); torch.save(obj, b, _use_new_zipfile_serialization=zip_format); return b.getvalue()
torch.manual_seed(0)
sd = {"conv.weight": torch.randn(2, 1, 2, 2), "conv.bias": torch.zeros(2), "fc.weight": torch.randn(2, 3)}
put("pth", "zip_state.pth", pth(sd, True))
put("pth", "legacy_state.pth", pth(sd, False))
base = torch.arange(12.0)
put("pth", "zip_views.pth", pth({"state_dict": {"module.a": base[2:8].view(2, 3), "module.t": base.view(3, 4).t(),
                                                "module.h": torch.ones(2, dtype=torch.float16),
                                                "module.i": torch.tensor([1, 2], dtype=torch.int64)}}, True))
put("pth", "legacy_nested.pth", pth({"model": {"x": torch.ones(1, 2)}, "epoch": 4, "names": ["a", "b"], "t": (1, 2.5)},
                                   False))

put("json", "log.json", json.dumps([{"model": "SimpleNet", "train_loss": [0.5, 0.25], "lr": 1e-3,
                                     "optimizer": {"name": "Adam", "params": {"lr": 0.001}}}], indent=4).encode())
put("json", "values.json", b'{"a": null, "b": true, "c": false, "d": -0.0, "e": 1e308, "f": "\\u00e9\\n\\"", "g": [], "h": {}}')
put("json", "numbers.json", b"[0, -1, 3.0, 9007199254740993, 1.5e-300, 123456789012345678901234567890]")
put("json", "keys.json", b'{"z": 1, "a": {"__order": 2, "1": 3}, "#1": [1, [2, [3]]]}')
put("json", "strings.json", "[\"\u0001\", \"\\ud83d\\ude00\", \"\u00ff\"]".encode())

put("cli", "train", b"--lr\n0.01\n-b\n32\n-m\nXceptionBased\n--resume")
put("cli", "inline", b"--lr=1e-3\n--resume=no\n--data-root=/tmp/x\npositional")
put("cli", "typos", b"--modle\nSimpleNet")
put("cli", "values", b"-b\n0\n-x\n-1\n--model\nsimplenet")
put("cli", "help", b"-h")
