"""A stronger attack than the synthetic track's, run outside robench's leaderboard on an entry's zoo model.

APGD-CE, then APGD-DLR on the clips still robust, each 100 steps with 5 restarts, L-inf eps 8/255 on RGB and
skeleton jointly (XRS), on the clips the record counts as robust on XRS. Writes the clips it fools (or all, with
--all) as a challenge file. The files of the committed challenges are in leaderboard/challenges/synthetic/:

    python tools/challenge_synthetic.py amr /tmp/amr.safetensors
    robench leaderboard challenge leaderboard/synthetic/amr.json --adversarial /tmp/amr.safetensors
"""
import sys
import time

import numpy as np
import torch
from safetensors.torch import save_file

import robench
from robench.data.base import to_model_inputs
from robench.leaderboard.record import challenged_columns, read_record

entry, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
torch.manual_seed(0)
record = read_record(f"leaderboard/synthetic/{entry}.json")
robust = challenged_columns(record)["RS"]
ids = torch.tensor(np.flatnonzero(robust), dtype=torch.int64)
model = robench.load_model("synthetic", entry, device="cpu")
clips = robench.dataset("synthetic", split="test", cache="results/cache/data")
batch = clips.clips.get_batch(clips.indices[ids])
inputs, labels = to_model_inputs(batch, "cpu"), batch["label"]
best = {m: x.clone() for m, x in inputs.items()}
fooled = torch.zeros(len(ids), dtype=torch.bool)
attacks = [("APGD-CE", robench.attack("apgd", "RS", eps="8/255", steps=100, restarts=5, loss="ce")),
           ("APGD-DLR", robench.attack("apgd", "RS", eps="8/255", steps=100, restarts=5, loss="dlr"))]
for name, attack in attacks:
    t = time.time()
    todo = torch.nonzero(~fooled).flatten()
    for start in range(0, len(todo), 32):
        idx = todo[start:start + 32]
        adv = attack(model, {m: x[idx] for m, x in inputs.items()}, labels[idx])
        with torch.no_grad():
            wrong = model(adv).argmax(1) != labels[idx]
        for m in best:
            best[m][idx[wrong]] = adv[m][wrong]
        fooled[idx[wrong]] = True
    print(f"{name}: {int(fooled.sum())} of {len(ids)} robust clips fooled so far ({time.time() - t:.0f} s)", flush=True)
keep = fooled if "--all" not in sys.argv else torch.ones_like(fooled)
print("fooled clip ids:", ids[fooled].tolist())
if keep.any():
    save_file({"rgb": best["rgb"][keep].contiguous(), "skeleton": best["skeleton"][keep].contiguous(),
               "clip_ids": ids[keep].contiguous()}, out,
              metadata={"scenario": "RS", "author": "robench maintainers",
                        "attack": "APGD-CE then APGD-DLR, 100 steps x 5 restarts each, eps 8/255 on RGB and skeleton "
                                  "(robench.attack, seed 0)"})
    print("wrote", out)
