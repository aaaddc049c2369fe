r"""Does unsupervised GAN training make D a better action recogniser? (the paper's Table 3, Sec. 5.3)

    nohup nice -n 10 python benchmarks/finetune_experiment.py --out runs/finetune-exp \
        > runs/finetune-exp.log 2>&1 &

On synthetic-actions (data/actions.py) at the pretrained run's clip shape: D from GAN training on the
unlabeled synthetic scenes (--init) versus the same architecture randomly initialised, as a frozen linear
probe and fine-tuned, at label fractions 1, 1/2, 1/4, 1/8, for --seeds seeds each
(label subset, random init, head init, dropout and batch order all follow the seed; the test split is the same
fixed one for every run). Then the investigations (`--investigate`): the probe with the checkpoint's own
BatchNorm statistics, with earlier GAN checkpoints, with a 5x learning rate, on the pooled map
(C numbers per clip instead of C x t x 4 x 4), and one longer fine-tuning per init with the test accuracy
recorded along the way.

`--modes` and `--fractions` run part of the grid, e.g. a longer fine-tuning at two fractions:
    python benchmarks/finetune_experiment.py --out runs/finetune-exp-300 --modes finetune \
        --fractions 1,0.125 --finetune-steps 300

Resumable: a run whose OUT/.../summary.json exists is not run again. Writes OUT/results.json
(every run's numbers) and prints a markdown table of mean, standard deviation and range per setting.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from videogan.bench import cpu_name
from videogan.data.actions import ActionsConfig
from videogan.media import write_json
from videogan.representation.features import load_discriminator, pooled
from videogan.representation.finetune import FinetuneSettings, Splits, finetune, frozen_features, load_splits
from videogan.training.checkpoint import checkpoint_config, list_checkpoints


def run(settings: FinetuneSettings, out: Path, splits: Splits, tag: str) -> dict:
    """One run, or its saved summary when it already finished."""
    done = out / "summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
    else:
        summary = finetune(settings, out, splits=splits, progress=False)
        print(f"{time.strftime('%H:%M:%S')} {tag}: test {summary['test_accuracy']:.3f} train "
              f"{summary['train_accuracy']:.3f} ({summary['seconds']:.0f} s)", flush=True)
    return {"tag": tag, "mode": settings.mode,
            "init": "pretrained" if settings.init != "random" else "random",
            "label_fraction": settings.label_fraction, "seed": settings.seed,
            "test_accuracy": summary["test_accuracy"], "train_accuracy": summary["train_accuracy"],
            "num_train": summary["num_train"], "seconds": summary["seconds"],
            "history": [h for h in summary["history"] if "test_accuracy" in h], "dir": str(out)}


def pooled_probe(init: str, model, splits: Splits, seed: int = 0, steps: int = 1000) -> dict:
    """The "which features" check: a linear classifier (softmax regression, full batch, Adam 1e-3) on D's map
    averaged over time and space ([N, C]) instead of the whole flattened map the original head reads. D's map
    is the one the linear grid computed (BatchNorm statistics from the training clips), reused from `splits`
    if there."""
    loaded = load_discriminator(init, model, seed=seed)
    train, test = (pooled(f) for f in frozen_features(loaded, splits, seed, "data"))
    mean, std = train.mean(0), train.std(0) + 1e-6  # standardised: the pooled channels differ in scale
    train, test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(seed)
    head = torch.nn.Linear(train.shape[1], len(splits.classes))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(train), splits.train.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {"init": init, "seed": seed, "dim": train.shape[1],
                "train_accuracy": float((head(train).argmax(1) == splits.train.labels).float().mean()),
                "test_accuracy": float((head(test).argmax(1) == splits.test.labels).float().mean())}


def table(records: list[dict], tags: list[str]) -> str:
    """Markdown: one row per setting tag, mean and spread of the test accuracy over seeds."""
    lines = ["| setting | labels | seeds | test top-1 mean | std | min - max | train top-1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for tag in tags:
        group = [r for r in records if r["tag"] == tag]
        if not group:
            continue
        acc = [r["test_accuracy"] for r in group]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(f"| {tag} | {group[0]['num_train']} | {len(acc)} | {100 * statistics.mean(acc):.1f}% | "
                     f"{100 * std:.1f} | {100 * min(acc):.1f} - {100 * max(acc):.1f} | "
                     f"{100 * statistics.mean(r['train_accuracy'] for r in group):.1f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default="runs/demo",
                   help="the GAN run whose discriminator is the pretrained init")
    p.add_argument("--out", default="runs/finetune-exp")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=50)
    p.add_argument("--linear-steps", type=int, default=1000)
    p.add_argument("--finetune-steps", type=int, default=60)
    p.add_argument("--finetune-batch", type=int, default=16)
    p.add_argument("--long-steps", type=int, default=300, help="--investigate: the longer fine-tuning runs")
    p.add_argument("--modes", default="linear,finetune", help="which of the main grid's modes to run")
    p.add_argument("--fractions", default="1,0.5,0.25,0.125", help="label fractions of the main grid")
    p.add_argument("--investigate", action="store_true",
                   help="also run the investigations (after the main grid)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = checkpoint_config(args.init).model  # random init: the same architecture as the pretrained D
    started = time.perf_counter()

    actions = ActionsConfig(train_per_class=args.train_per_class, test_per_class=args.test_per_class)
    base = FinetuneSettings(init=args.init, data="synthetic-actions", model=model, actions=actions,
                            device="cpu", workers=0)
    splits = load_splits(base, model, progress=False)
    print(f"{time.strftime('%H:%M:%S')} synthetic-actions: {len(splits.train.ids)} train, "
          f"{len(splits.test.ids)} test clips of {model.frames}x{model.size}x{model.size}; init "
          f"{args.init}; {cpu_name()}, {torch.get_num_threads()} threads", flush=True)

    records, tags = [], []

    def grid(mode: str, init: str, fraction: float, tag: str, **changes) -> None:
        steps = args.linear_steps if mode == "linear" else args.finetune_steps
        batch = 32 if mode == "linear" else args.finetune_batch
        eval_every = 100 if mode == "linear" else 0
        if tag not in tags:
            tags.append(tag)
        for seed in range(args.seeds):
            s = replace(base, init=init, mode=mode, label_fraction=fraction, seed=seed, steps=steps,
                        batch_size=batch, eval_every=eval_every, **changes)
            name = tag.replace(" ", "_").replace("/", "-").replace(",", "")
            records.append(run(s, out / name / f"seed{seed}", splits, tag))
            write_json(out / "results.json", {"records": records,
                                              "seconds": round(time.perf_counter() - started)})

    label = lambda f: "1" if f == 1 else f"1/{round(1 / f)}"  # noqa: E731
    inits = [("pretrained", args.init), ("random", "random")]
    for mode in args.modes.split(","):
        for fraction in map(float, args.fractions.split(",")):
            for init_name, init in inits:
                grid(mode, init, fraction, f"{mode}, {init_name}, labels {label(fraction)}")
    if args.investigate:
        for init_name, init in inits:
            grid("linear", init, 1.0, f"linear, {init_name}, labels 1, BatchNorm stats from checkpoint",
                 bn_stats="checkpoint")
            grid("linear", init, 1.0, f"linear, {init_name}, labels 1, lr 1e-3", lr=1e-3)
        for ckpt in list_checkpoints(args.init)[:-1]:  # earlier GAN checkpoints: does more GAN training help?
            grid("linear", str(ckpt), 1.0, f"linear, pretrained {ckpt.name}, labels 1")
        pooled_file = out / "pooled_probe.json"
        if not pooled_file.is_file():
            write_json(pooled_file, [pooled_probe(init, model, splits, seed) for _, init in inits
                                     for seed in range(args.seeds)])
        for r in json.loads(pooled_file.read_text()):
            print(f"pooled probe ({r['dim']} dims), {r['init']} seed {r['seed']}: test "
                  f"{r['test_accuracy']:.3f} train {r['train_accuracy']:.3f}")
        for init_name, init in inits:
            s = replace(base, init=init, mode="finetune", steps=args.long_steps,
                        batch_size=args.finetune_batch, eval_every=max(1, args.long_steps // 5))
            tag = f"finetune, {init_name}, labels 1, {args.long_steps} steps"
            tags.append(tag)
            records.append(run(s, out / tag.replace(", ", "_").replace(" ", "_") / "seed0", splits, tag))
            write_json(out / "results.json", {"records": records,
                                              "seconds": round(time.perf_counter() - started)})
    print(table(records, tags))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
