#!/usr/bin/env python3
"""Ratio tables from the interleaved rounds that run.sh writes (model-rounds.csv, gemv-rounds.csv).

    ratios.py model target/vs-llama-cpp/model-rounds.csv
    ratios.py gemv  target/vs-llama-cpp/gemv-rounds.csv

Every ratio is taken within one round (edgesim's figure over llama.cpp's of the same round, so
a slow round slows both sides), then the median over rounds is printed with its range.
"""
import csv
import statistics
import sys
from collections import defaultdict


def median(values):
    return statistics.median(values) if values else float("nan")


def span(values):
    return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f})" if values else "–"


def model(path):
    rows = list(csv.DictReader(open(path)))
    rate = {}  # (round, side, build, format/file, threads, test) -> tokens/s
    loads = defaultdict(list)
    others = defaultdict(list)
    pairs = []
    for r in rows:
        key = (r["round"], r["side"], r["build"], r["format"], r["file"], r["threads"], r["test"])
        rate[key] = float(r["tokens_per_s"])
        loads[r["round"]] += [float(r["load_before"]), float(r["load_after"])]
        others[r["round"]].append(float(r.get("others_cpu_percent") or "nan"))
        if r["side"] == "edgesim":
            pair = (r["format"], r["file"], r["threads"], r["test"])
            if pair not in pairs:
                pairs.append(pair)
    rounds = sorted({r["round"] for r in rows}, key=int)
    print("edgesim ÷ llama.cpp tokens/s, median over rounds (range); above 1 = edgesim faster")
    print()
    print("| edgesim format | llama.cpp file | threads | test | edgesim tok/s | llama.cpp native "
          "tok/s | AVX2-only tok/s | ÷ native | ÷ AVX2-only | ÷ best build |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for fmt, file, threads, test in pairs:
        e, n, a, rn, ra, rb = [], [], [], [], [], []
        for rd in rounds:
            ev = rate.get((rd, "edgesim", "-", fmt, file, threads, test))
            nv = rate.get((rd, "llama.cpp", "native", file, file, threads, test))
            av = rate.get((rd, "llama.cpp", "avx2", file, file, threads, test))
            if ev is None:
                continue
            e.append(ev)
            if nv:
                n.append(nv)
                rn.append(ev / nv)
            if av:
                a.append(av)
                ra.append(ev / av)
            if nv and av:
                rb.append(ev / max(nv, av))
        print(f"| {fmt.replace(';', ',')} | {file} | {threads} | {test} | {median(e):.1f} | "
              f"{median(n):.1f} | {median(a):.1f} | {span(rn)} | {span(ra)} | **{span(rb)}** |")
    print()
    print_loads(loads, others)


def print_loads(loads, others):
    print("load average (1 min) over each round, min–max of the values before and after each "
          "run; and the largest share of the machine's CPU time other processes (or steal) took "
          "during one run of the round:")
    for rd in sorted(loads, key=int):
        print(f"- round {rd}: load {min(loads[rd]):.2f}–{max(loads[rd]):.2f}, others ≤ "
              f"{max(others[rd]):.1f} %")


def gemv(path):
    rows = list(csv.DictReader(open(path)))
    times = defaultdict(list)  # (side, build, kernel, threads, mode) -> [us per round]
    bpw = {}
    per_round = defaultdict(dict)
    loads = defaultdict(list)
    others = defaultdict(list)
    for r in rows:
        others[r["round"]].append(float(r.get("others_cpu_percent") or "nan"))
        key = (r["side"], r["build"], r["kernel"], r["threads"], r["mode"])
        times[key].append(float(r["us"]))
        bpw[(r["side"], r["build"], r["kernel"])] = float(r["bits_per_weight"])
        per_round[r["round"]][key] = float(r["us"])
        loads[r["round"]] += [float(r["load_before"]), float(r["load_after"])]
    threads = sorted({k[3] for k in times}, key=int)
    kernels = []
    for k in times:
        if (k[0], k[1], k[2]) not in kernels:
            kernels.append((k[0], k[1], k[2]))
    weights = 4096 * 4096
    # The DRAM floor: the bytes the format reads over the read bandwidth measured in the same
    # run (calibrate's streaming loop, 1 GiB, per thread count).
    bandwidth = {}
    for t in threads:
        us = times.get(("edgesim", "-", "memory read 1 GiB", t, "cold"))
        if us:
            bandwidth[t] = (1 << 30) / (median(us) * 1e-6)
    print("4096×4096 GEMV, one activation vector, µs (median over rounds); floor = weight bytes "
          "÷ read bandwidth measured in the same run")
    print()
    head = "| kernel | build | bits/weight |"
    for t in threads:
        head += f" {t}T hot | {t}T cold | {t}T floor | {t}T cold ÷ floor |"
    print(head)
    print("|---|---|---|" + "---|---|---|---|" * len(threads))
    for side, build, kernel in kernels:
        if kernel.startswith("memory"):
            continue
        b = bpw[(side, build, kernel)]
        line = f"| {kernel} | {build} | {b:.3f} |"
        for t in threads:
            hot = median(times.get((side, build, kernel, t, "hot"), []))
            cold = median(times.get((side, build, kernel, t, "cold"), []))
            floor = weights * b / 8 / bandwidth[t] * 1e6 if t in bandwidth else float("nan")
            line += f" {hot:.1f} | {cold:.1f} | {floor:.1f} | {cold / floor:.2f} |"
        print(line)
    for t in threads:
        if t in bandwidth:
            print(f"\nread bandwidth, {t} thread(s): {bandwidth[t] / 1e9:.1f} GB/s")
    # edgesim vs the fastest ggml kernel (any build) of equal or more bits, per round.
    print()
    print("edgesim ÷ fastest ggml kernel (any build) of equal or more bits per weight: ggml µs ÷ "
          "edgesim µs, median over rounds (range); above 1 = edgesim faster")
    print()
    head = "| edgesim kernel | bits/weight |"
    for t in threads:
        head += f" {t}T hot | {t}T cold |"
    print(head)
    print("|---|---|" + "---|---|" * len(threads))
    for side, build, kernel in kernels:
        if side != "edgesim" or kernel.startswith("memory"):
            continue
        b = bpw[(side, build, kernel)]
        rivals = [k for k in kernels if k[0] == "ggml" and bpw[k] >= b]
        line = f"| {kernel} | {b:.3f} |"
        for t in threads:
            for mode in ["hot", "cold"]:
                ratios, names = [], []
                for rd, values in per_round.items():
                    ours = values.get((side, build, kernel, t, mode))
                    theirs = [(values[(k[0], k[1], k[2], t, mode)], k) for k in rivals
                              if (k[0], k[1], k[2], t, mode) in values]
                    if ours and theirs:
                        best = min(theirs)
                        ratios.append(best[0] / ours)
                        names.append(f"{best[1][2]} ({best[1][1]})")
                winner = max(set(names), key=names.count) if names else "–"
                line += f" {span(ratios)} vs {winner} |"
        print(line)
    print()
    print_loads(loads, others)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("model", "gemv"):
        sys.exit(__doc__)
    {"model": model, "gemv": gemv}[sys.argv[1]](sys.argv[2])
