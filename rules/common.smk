# The plan (the validated, resolved, read-only configuration) and the helpers every rule file
# uses. Every name a rules/*.smk file uses is defined here or in that file.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cloakbench.errors import CloakbenchError
from cloakbench.plan import build_plan

# Validated once, before any job; Snakemake's `config` is left as given and no rule reads it.
try:
    PLAN = build_plan(config, Path(workflow.basedir) / "config" / "schema.yaml", base_dir=Path.cwd())
except CloakbenchError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# Data and weights the pipeline cannot make itself: listed when the Snakefile is read, so a
# dry run (-n) names them and still shows the whole DAG; a real run stops in `onstart`,
# before any job starts.
if PLAN.missing_inputs:
    _msg = "missing inputs (provide them, or `dvc pull`):\n  " + "\n  ".join(PLAN.missing_inputs)
    print(f"WARNING: {_msg}", file=sys.stderr)


onstart:
    if PLAN.missing_inputs:
        raise WorkflowError("missing inputs, no job started:\n  " + "\n  ".join(PLAN.missing_inputs))

DATASET_DIR = "results/dataset"
MANIFEST = f"{DATASET_DIR}/manifest.parquet"
ROLES = f"{DATASET_DIR}/roles.parquet"
EXTRACTORS = list(PLAN.extractors)
CLOAKS = list(PLAN.cloaks)
CLOAKS_AND_BASELINE = ["none"] + CLOAKS
SHARDS = list(PLAN.shards)
ADAPTIVE = PLAN["adaptive"]
ROBUST = ADAPTIVE["robust"]
DETECTORS = ADAPTIVE["detection"]["detectors"]
# gpu resource of the rules that run a model
GPU = 1 if PLAN["device"] != "cpu" else 0


def _alternation(names):
    return "|".join(names) if names else "(?!x)x"


wildcard_constraints:
    extractor=_alternation(EXTRACTORS),
    cloak=_alternation(CLOAKS_AND_BASELINE),
    shard=r"\d+",
    subset="protected|public",


def dataset_root_input(wildcards):
    """The dataset folder as an input when the demo rule makes it (else it is not a job's output)."""
    return [PLAN["dataset"]["root"]] if PLAN["demo"]["enabled"] else []


def checkpoint_path(name):
    return f"results/extractors/{name}.pt"


def checkpoints_for(names):
    """Checkpoint files of the extractors trained in the pipeline among ``names``."""
    return {n: checkpoint_path(n) for n in names if n in PLAN.trained}


def shard_dirs(cloak, subset="protected"):
    return [f"results/cloaked/{cloak}/{subset}/shard-{k}" for k in SHARDS]


# adaptive.finetune.variants -> the output folder (= the records' classifier label)
VARIANT_DIRS = {"oblivious": "finetune", "adaptive": "finetune_adaptive"}


def adaptive_targets():
    """Every adaptive output, by kind (what the report rule takes as extra inputs)."""
    ft, det, tt, cb = (ADAPTIVE[k] for k in ("finetune", "detection", "timetravel", "combine"))
    return {
        "finetune": [f"results/adaptive/{VARIANT_DIRS[v]}/{c}/{e}.json"
                     for v in ft["variants"] for c in ft["cloaks"] for e in ft["extractors"]],
        "robust_meta": [f"results/extractors/{n}.json" for n in ROBUST],
        "detection": [f"results/adaptive/detection/{d}/{c}.json" for d in DETECTORS for c in det["train_cloaks"]],
        "timetravel": [f"results/adaptive/timetravel/{o}__{n}/{e}.json"
                       for o, n in tt["pairs"] for e in tt["extractors"]],
        "combine": [f"results/adaptive/combine/{c}/{a}__{r}.json" for c in cb["cloaks"] for a, r in cb["pairs"]],
    }


ADAPTIVE_TARGETS = adaptive_targets()
