"""A stronger attack than the synthetic track's, run outside robench's leaderboard on an entry's zoo model.

APGD-CE, then APGD-DLR on the clips still robust, each 100 steps with 5 restarts, L-inf eps 8/255 on the inputs
of a scenario (XR, XS or XRS, the default; the skeleton's eps in the track's units, threat.skeleton.scale), on the
clips the record counts as robust there. Writes the clips it fools (or all, with --all) as a challenge file holding
the attacked inputs only. The files of the committed challenges are in leaderboard/challenges/synthetic/:

    python tools/challenge_synthetic.py amr /tmp/amr.safetensors [R|S|RS]
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
from robench.leaderboard.tracks import load_track

entry, out = sys.argv[1], sys.argv[2]
scenario = next((a for a in sys.argv[3:] if a in ("R", "S", "RS")), "RS")
attacked = {"R": ["rgb"], "S": ["skeleton"], "RS": ["rgb", "skeleton"]}[scenario]
torch.set_num_threads(1)
torch.manual_seed(0)
record = read_record(f"leaderboard/synthetic/{entry}.json")
scale = float(load_track("synthetic").data["threat"]["skeleton"]["scale"])
robust = challenged_columns(record)[scenario]
ids = torch.tensor(np.flatnonzero(robust), dtype=torch.int64)
model = robench.load_model("synthetic", entry, device="cpu")
clips = robench.dataset("synthetic", split="test", cache="results/cache/data")
batch = clips.clips.get_batch(clips.indices[ids])
inputs, labels = to_model_inputs(batch, "cpu"), batch["label"]
best = {m: x.clone() for m, x in inputs.items()}
fooled = torch.zeros(len(ids), dtype=torch.bool)
attacks = [("APGD-CE", robench.attack("apgd", scenario, eps="8/255", skeleton_scale=scale, steps=100, restarts=5,
                                          loss="ce")),
           ("APGD-DLR", robench.attack("apgd", scenario, eps="8/255", skeleton_scale=scale, steps=100, restarts=5,
                                           loss="dlr"))]
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
    inputs_of = " and ".join({"rgb": "RGB", "skeleton": "skeleton"}[m] for m in attacked)
    save_file({**{m: best[m][keep].contiguous() for m in attacked}, "clip_ids": ids[keep].contiguous()}, out,
              metadata={"scenario": scenario, "author": "robench maintainers",
                        "attack": f"APGD-CE then APGD-DLR, 100 steps x 5 restarts each, eps 8/255 on {inputs_of} "
                                  f"(skeleton scale {scale:g}; robench.attack, seed 0)"})
    print("wrote", out)
