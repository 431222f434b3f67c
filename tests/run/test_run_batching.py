#!/usr/bin/env python3
"""`tdeploy run --texts`: texts are sorted by length into batches (so a batch
pads little), answers come out in input order and equal the answers of
one-text batches; a terminal shows progress, a pipe or -q does not."""
import json
import os
import pty
import re
import signal
import subprocess
import time

import numpy as np

from run_common import FIXTURES, TD_BIN, TMP, Tally, run, run_json

t = Tally()
ST = os.path.join(FIXTURES, "hf", "minilm-st")
WORK = os.path.join(TMP, "run_batching")
os.makedirs(WORK, exist_ok=True)
rng = np.random.default_rng(7)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 40, size=37)]
path = os.path.join(WORK, "texts.txt")
with open(path, "w") as f:
    f.write("\n".join(texts) + "\n")

rc, objs, err = run_json(["run", ST, "--texts", path, "--batch-size", "4", "-v"])
t.check(rc == 0 and [o["index"] for o in objs] == list(range(len(texts))) and [o["text"] for o in objs] == texts,
        "answers in input order", err[-500:])
batches = [(int(a), int(b)) for a, b in re.findall(r"batch of \d+ texts \((\d+)\.\.(\d+) bytes\)", err)]
t.check(len(batches) == 10 and all(b[0] <= b[1] for b in batches)
        and all(batches[i][1] <= batches[i + 1][0] for i in range(len(batches) - 1)),
        "batches hold texts sorted by length (-v shows each batch's byte range)", str(batches))
rc1, one, err1 = run_json(["run", ST, "--texts", path, "--batch-size", "1"])
worst = max(np.max(np.abs(np.array(a["embedding"]) - np.array(b["embedding"]))) for a, b in zip(objs, one)) \
    if rc1 == 0 and len(one) == len(objs) else 1e9
t.check(worst <= 1e-5, "sorted batches give the answers of one-text batches", f"max abs {worst}")

# progress: on a terminal only
master, slave = pty.openpty()
p = subprocess.run([TD_BIN, "run", ST, "--texts", path, "--batch-size", "4"], stdout=subprocess.PIPE, stderr=slave,
                   timeout=300)
os.close(slave)
tty = b""
try:
    while True:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        tty += chunk
except OSError:
    pass
os.close(master)
t.check(p.returncode == 0 and b"run: texts" in tty and b"100%" in tty, "progress bar on a terminal", tty[-300:])
rc, out, err = run(["run", ST, "--texts", path])
t.check(rc == 0 and "run: texts" not in err, "no progress when stderr is not a terminal", err[-300:])
# Ctrl-C while reading stdin: exit 130 with a message, no half answer
p = subprocess.Popen([TD_BIN, "run", ST, "--texts", "-", "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
p.stdin.write(b"one text\nanother\n")
p.stdin.flush()
time.sleep(1.0)
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=60)
t.check(p.returncode == 130 and b"interrupted" in err and all(json.loads(l) for l in out.splitlines()),
        "SIGINT while reading stdin: exit 130, every printed line a whole answer", f"rc={p.returncode} {err[-300:]}")
t.finish()
