"""What both benchmarks share: the machine they ran on, and the result table printed and written as JSON."""
import datetime
import os
import platform
import subprocess
from pathlib import Path

import utils

REPO = Path(__file__).resolve().parents[1]
GB = 1e9  # results are in decimal units: 1 GB = 10^9 bytes, 1 MB = 10^6 bytes
MB = 1e6
# numpy's BLAS runs matrix products on several threads unless these say otherwise; on a busy machine the
# threads of parallel workers compete for the cores, so the setting is printed with every result
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def machine():
    """CPU model (/proc/cpuinfo), logical core count, `nproc` (cores usable here), Python, and the date."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "nproc": int(nproc), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_1min_at_start": os.getloadavg()[0],
            "blas_threads": {name: os.environ.get(name, "unset") for name in BLAS_THREAD_VARIABLES}}


def machine_line(info, repeats):
    """A line naming the machine, its load, the date and the number of repeats, printed above each table."""
    blas = ", ".join(f"{name}={value}" for name, value in info["blas_threads"].items())
    return (f"Machine: {info['cpu']}, {info['cores']} cores (nproc {info['nproc']}), Python {info['python']}, "
            f"{blas}; 1-min load average {info['load_average_1min_at_start']:.1f} at start, "
            f"{info['load_average_1min_at_end']:.1f} at end; {info['date']}; medians of {repeats} repeats.")


def markdown_table(rows):
    """A two-column markdown table of (measurement, value) rows."""
    lines = ["| measurement | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def provenance():
    """What made a result: the code (commit, "+changes" when the tree differs), the recipe and every
    DEEP_SPEAKER_<NAME> override in effect (so a "default" figure that was not is seen as such), and when."""
    import constants
    return {"code_version": utils.code_version(), "recipe": constants.RECIPE,
            "overrides": {name: utils.json_value(value) for name, value in constants.OVERRIDES.items()},
            "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def write_results(out, rows, key=None, **record):
    """Write `rows` (dicts) to the JSON file `out` atomically, each with the provenance of this run, beside
    `record`'s entries. With `key` (a function of a row), rows of earlier runs whose key no row of this run has
    are kept (a run of some configurations does not drop the others'); a row of the same key is replaced."""
    out = Path(out)
    utils.ensure_writable_dir(out.parent)
    made = provenance()
    rows = [{**row, "provenance": made} for row in rows]
    if key is not None:
        earlier = utils.read_json(out, default={}, what="an earlier result file of this bench script",
                                  fix="Move it away; this run writes a new one")
        earlier_rows = earlier.get("rows", []) if isinstance(earlier, dict) else []
        mine = {key(row) for row in rows}
        rows = [row for row in earlier_rows if key(row) not in mine] + rows
    utils.write_json(out, {**record, "rows": rows})
    return out


def publish(record, rows, out):
    """Print the machine line and the table, and write the record (with the table and the provenance) as JSON
    to `out`."""
    record["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    table = machine_line(record["machine"], record["repeats"]) + "\n\n" + markdown_table(rows)
    print("\n" + table)
    out = Path(out)
    utils.ensure_writable_dir(out.parent)
    utils.write_json(out, {**record, "table": table, "provenance": provenance()})
    print(f"\nwritten to {out}")


def study_setup(run):
    """What a study of a trained run's embeddings starts from: (inputs, the trained model (as stage 2 loads it), the
    feature cache, {utterance key: speaker}, `usable(keys)` (the cached keys at least one window long), and
    {"validation": keys, "unseen": keys})."""
    from audio import features
    from audio.cache import FeatureCache
    from audio.corpus import find_corpus, split_speakers
    from ml import embeddings
    from ml.inputs import load_inputs
    inputs = load_inputs()
    trained = embeddings.load_trained_model(run, settings="inputs")
    corpus = find_corpus()
    _, unseen = split_speakers(corpus.speakers)
    cache = FeatureCache(corpus.root)
    speaker_of = {u.key: s for s, items in corpus.utterances.items() for u in items}

    def usable(keys):
        return [k for k in keys if k in speaker_of and cache.has(k) and not features.too_short(cache.num_frames(k))]
    groups = {"validation": usable(inputs.validation.utterance_keys.tolist()) if inputs.validation is not None else [],
              "unseen": usable([u.key for s in unseen for u in corpus.utterances.get(s, [])])}
    return inputs, trained, cache, speaker_of, usable, groups
