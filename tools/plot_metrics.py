#!/usr/bin/env python3
"""Loss curve of a `bitttt train` run: reads metrics.jsonl and writes loss.png next to it.

    python3 tools/plot_metrics.py out/metrics.jsonl [-o out/loss.png]

Training loss per step (and its running mean), validation loss at each evaluation, and the
learning rate on a second axis. Lines of an interrupted run that was resumed appear in order; a
step logged twice keeps its last value.
"""
import argparse
import json
import pathlib
import sys


def read_metrics(path):
    train, val = {}, {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{number}: not JSON: {e}")
            if not isinstance(row, dict) or "step" not in row:
                raise SystemExit(f"{path}:{number}: expected an object with a 'step'")
            if "val_loss" in row:
                val[int(row["step"])] = float(row["val_loss"])
            elif "loss" in row:
                train[int(row["step"])] = (float(row["loss"]), float(row.get("lr", "nan")))
    return train, val


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=pathlib.Path, help="metrics.jsonl of a training run")
    parser.add_argument("-o", "--output", type=pathlib.Path, help="PNG path (default: loss.png next to the metrics)")
    args = parser.parse_args(argv)
    train, val = read_metrics(args.metrics)
    if not train:
        raise SystemExit(f"{args.metrics}: no training steps")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(train)
    loss = [train[s][0] for s in steps]
    lr = [train[s][1] for s in steps]
    window = max(1, len(steps) // 50)
    smooth = [sum(loss[max(0, i - window + 1):i + 1]) / len(loss[max(0, i - window + 1):i + 1])
              for i in range(len(loss))]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="train loss")
    ax.plot(steps, smooth, color="tab:blue", linewidth=1.5, label=f"train loss (mean of {window})")
    if val:
        vs = sorted(val)
        ax.plot(vs, [val[s] for s in vs], "o-", color="tab:red", markersize=3, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, lr, color="tab:gray", linestyle="--", linewidth=0.8, label="learning rate")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right")
    ax.set_title(f"{args.metrics.parent.name}: {len(steps)} steps")
    fig.tight_layout()
    output = args.output or args.metrics.with_name("loss.png")
    fig.savefig(output, dpi=120)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
