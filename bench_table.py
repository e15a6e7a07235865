"""bench's Markdown table: each model's figures over its seeds, and its ratios to the baselines."""


def markdown_table(results):
    m = results["machine"]
    native = "native bfloat16" if m["bf16_native"] else "no native bfloat16"
    where = m["gpu"] or f"{m['cpu']} (CPU capability {m['cpu_capability']}, {native}), {m['torch_threads']} threads"
    quick = " (quick mode: not real figures)" if results["quick"] else ""
    lines = [
        (
            f"Measured on {where}; Python {m['python']}, torch {m['torch']}{quick}. "
            "Precision: the training forward pass's (evaluation is float32)."
        ),
        "",
        (
            "| model | precision | parameters | seed | test accuracy % | mean corruption accuracy % | train s | "
            "train images/s | inference images/s |"
        ),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, model in results["models"].items():
        for run in model["runs"]:
            lines.append(
                f"| {name} | {model['precision']} | {run['parameters']:,} | {run['seed']} | {run['accuracy']:.2f} | "
                f"{run['mean_corruption_accuracy']:.2f} | {run['train_seconds']:.2f} | "
                f"{run['train_images_per_second']:,} | {run['test_images_per_second']:,} |"
            )
    summary_header = (
        "| model | precision | architecture | mean accuracy % | min | std | mean corruption accuracy % | min | "
        "corruption error vs earlier | mean train s | train time vs earlier | train time vs classic | "
        "accuracy vs classic (points) | inference speed vs classic |"
    )
    lines += [
        "",
        summary_header,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, model in results["models"].items():
        s = model["summary"]
        lines.append(
            f"| {name} | {model['precision']} | {model.get('architecture', '')} | {s['accuracy_mean']:.2f} | "
            f"{s['accuracy_min']:.2f} | "
            f"{s['accuracy_std']:.3f} | "
            f"{s['mean_corruption_accuracy_mean']:.2f} | {s['mean_corruption_accuracy_min']:.2f} | "
            f"{_ratio(s, 'corruption_error_vs_earlier', 'x')} | {s['train_seconds_mean']:.2f} | "
            f"{_ratio(s, 'train_time_vs_earlier', 'x')} | {_ratio(s, 'train_time_vs_classic', 'x')} | "
            f"{_ratio(s, 'accuracy_vs_classic', '', signed=True)} | "
            f"{_ratio(s, 'inference_speed_vs_classic', 'x')} |"
        )
    names = list(results["models"])
    lines += [
        "",
        "Accuracy (%) under each corruption, mean over the seeds:",
        "",
        "| corruption | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    first = results["models"][names[0]]["summary"]["corruption_accuracy_mean"]
    for corruption in first:
        lines.append(
            f"| {corruption} | "
            + " | ".join(
                f"{results['models'][name]['summary']['corruption_accuracy_mean'][corruption]:.2f}" for name in names
            )
            + " |"
        )
    memory = f"Peak memory: {results['peak_memory_mib']:,} MiB resident"
    if "peak_gpu_memory_mib" in results:
        memory += f", {results['peak_gpu_memory_mib']:,} MiB on the GPU"
    return "\n".join(lines + ["", memory + "."]) + "\n"


def _ratio(summary, key, unit, signed=False):
    if key not in summary:
        return "-"
    return f"{summary[key]:+.2f}" if signed else f"{summary[key]:.2f}{unit}"
