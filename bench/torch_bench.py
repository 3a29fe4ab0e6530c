#!/usr/bin/python3
"""PyTorch side of the fmd/PyTorch benchmark (bench/compare.sh runs it; see
docs/performance.md). The same models, shapes and steps as
bench/fmd_bench.lua; one measurement per process, one JSON line out:

  /usr/bin/python3 bench/torch_bench.py --model SimpleNet --mode train \
      [--batch 32] [--steps 10] [--warmup 2] [--threads 2] [--size 256]

modes: train = zero_grad + forward + cross-entropy + backward + Adam step on
one preloaded random batch; eval = forward in eval mode under torch.no_grad().
PyTorch at its best on this machine also needs, set by compare.sh:
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread and
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736.

The models are lib/fmd/models/SimpleNet.lua, XceptionBased.lua and
MobileNetBased.lua written in PyTorch (MobileNetBased: Keras' MobileNetV2,
i.e. bottom/right zero padding before stride-2 convs, BatchNorm eps 1e-3,
ReLU6, then the 1280-256-2 head; at 224x224 by default). Xception follows the public port (tstandley / Cadene, the one
the course loads through pretrainedmodels, not installable here): the ReLUs
inside a block after its first, and those after bn1/bn2/bn3/bn4, are
in place, and a block adds its skip in place, as there. MACs are counted
like fmd's models.count_macs (conv and linear layers only).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SimpleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 7)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 7)
        self.conv3 = nn.Conv2d(16, 24, 7)
        self.fc1 = nn.Linear(24 * 26 * 26, 1024)
        self.fc2 = nn.Linear(1024, 256)
        self.fc3 = nn.Linear(256, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout, k=1, stride=1, padding=0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, k, stride, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    def __init__(self, cin, cout, reps, stride=1, start_with_relu=True, grow_first=True):
        super().__init__()
        if cout != cin or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(cout)
        else:
            self.skip = None
        rep, c = [], cin

        def unit(i, o):
            rep.extend([nn.ReLU(inplace=True), SeparableConv2d(i, o, 3, 1, 1), nn.BatchNorm2d(o)])
        if grow_first:
            unit(cin, cout)
            c = cout
        for _ in range(reps - 1):
            unit(c, c)
        if not grow_first:
            unit(cin, cout)
        if not start_with_relu:
            rep = rep[1:]
        else:
            rep[0] = nn.ReLU(inplace=False)   # the block input is still needed by the skip
        if stride != 1:
            rep.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*rep)

    def forward(self, inp):
        x = self.rep(inp)
        skip = self.skipbn(self.skip(inp)) if self.skip is not None else inp
        x += skip
        return x


class XceptionBased(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        blocks = [Block(64, 128, 2, 2, start_with_relu=False), Block(128, 256, 2, 2), Block(256, 728, 2, 2)]
        blocks += [Block(728, 728, 3, 1) for _ in range(8)]
        blocks += [Block(728, 1024, 2, 2, grow_first=False)]
        self.blocks = nn.Sequential(*blocks)
        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        self.fc = nn.Sequential(nn.Linear(2048, 1000), nn.ReLU(), nn.Linear(1000, 256), nn.ReLU(),
                                nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = self.blocks(x)
        x = F.relu(self.bn3(self.conv3(x)), inplace=True)
        x = F.relu(self.bn4(self.conv4(x)), inplace=True)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.residual = stride == 1 and cin == cout
        layers = []
        if t != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden, eps=1e-3), nn.ReLU6()]
        if stride == 2:
            layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1 if stride == 1 else 0, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden, eps=1e-3), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y


class MobileNetBased(nn.Module):
    def __init__(self):
        super().__init__()
        layers = [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 32, 3, 2, 0, bias=False), nn.BatchNorm2d(32, eps=1e-3),
                  nn.ReLU6()]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                           (6, 320, 1, 1)]:
            for r in range(n):
                layers.append(InvertedResidual(cin, c, s if r == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(1280, 256), nn.ReLU(), nn.Linear(256, 2))

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


MODELS = {"SimpleNet": SimpleNet, "XceptionBased": XceptionBased, "MobileNetBased": MobileNetBased}
SIZES = {"MobileNetBased": 224}   # the input side of each model; 256 otherwise


def count_macs(model, shape):
    """MACs of one forward, conv + linear only (fmd's models.count_macs)."""
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        total[0] += out.numel() * inp[0].shape[-1]
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total[0]


def peak_rss_gb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="SimpleNet")
    p.add_argument("--mode", choices=["train", "eval"], default="train")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=None, help="input side (default: the model's, 256 or 224)")
    a = p.parse_args()
    for k in ("batch", "steps", "threads"):
        if getattr(a, k) < 1:
            p.error(f"--{k} must be >= 1")
    a.size = a.size or SIZES.get(a.model, 256)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = MODELS[a.model]()
    macs = count_macs(model, (1, 3, a.size, a.size)) * a.batch
    x = torch.randn(a.batch, 3, a.size, a.size)
    target = torch.arange(a.batch) % 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    times = []
    if a.mode == "train":
        model.train()
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = crit(model(x), target)
            loss.backward()
            opt.step()
            t = time.perf_counter() - t0
            if s >= a.warmup:
                times.append(t)
    else:
        model.eval()
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            with torch.no_grad():
                model(x)
            t = time.perf_counter() - t0
            if s >= a.warmup:
                times.append(t)
    med = statistics.median(times)
    flops = 2 * macs * (1 if a.mode == "eval" else 3)
    rss = peak_rss_gb()
    print(json.dumps({"side": "torch", "model": a.model, "mode": a.mode, "batch": a.batch, "size": a.size,
                      "threads": a.threads, "steps": len(times), "median_s": round(med, 6),
                      "times_s": [round(t, 6) for t in times], "images_per_s": round(a.batch / med, 3),
                      "macs": macs, "gflops": round(flops / med / 1e9, 3),
                      "peak_rss_gb": round(rss, 4) if rss is not None else None,
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
