# Helpers shared by the rules: validated config, names, and input functions.
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cloakbench.config import missing_inputs, validate_config
from cloakbench.errors import CloakbenchError
from cloakbench.extractors.registry import extractor_class

try:
    _validated = validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml",
                                 base_dir=Path.cwd(), check_paths=False)
except CloakbenchError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
config.clear()
config.update(_validated)

# Data and weights the pipeline cannot make itself: listed when the Snakefile is read, so a
# dry run (-n) names them and still shows the whole DAG; a real run stops in `onstart`,
# before any job starts.
MISSING_INPUTS = missing_inputs(config, base_dir=Path.cwd())
if MISSING_INPUTS:
    _msg = "missing inputs (provide them, or `dvc pull`):\n  " + "\n  ".join(MISSING_INPUTS)
    print(f"WARNING: {_msg}", file=sys.stderr)


onstart:
    if MISSING_INPUTS:
        raise WorkflowError("missing inputs, no job started:\n  " + "\n  ".join(MISSING_INPUTS))

DATASET_DIR = "results/dataset"
MANIFEST = f"{DATASET_DIR}/manifest.parquet"
ROLES = f"{DATASET_DIR}/roles.parquet"
EXTRACTORS = list(config["extractors"])
CLOAKS = list(config["cloaks"])
CLOAKS_AND_BASELINE = ["none"] + CLOAKS
SHARDS = list(range(config["perturb"]["shards"]))
TRAINED = [n for n, s in config["extractors"].items()
           if extractor_class(s["type"], name=n).trained_in_pipeline]


def _alternation(names):
    return "|".join(names) if names else "(?!x)x"


wildcard_constraints:
    extractor=_alternation(EXTRACTORS),
    cloak=_alternation(CLOAKS_AND_BASELINE),
    shard=r"\d+",
    subset="protected|public",


def checkpoint_path(name):
    return f"results/extractors/{name}.pt"


def checkpoints_for(names):
    """Checkpoint files of the extractors trained in the pipeline among ``names``."""
    return {n: checkpoint_path(n) for n in names if n in TRAINED}


def shard_dirs(cloak, subset="protected"):
    return [f"results/cloaked/{cloak}/{subset}/shard-{k}" for k in SHARDS]


def scrape_emits_images(cloak):
    """Does scrape write pictures that differ from the clean set (cloaked or re-encoded)?"""
    s = config["scrape"]
    cloaked = cloak != "none" and s["protected_fraction"] > 0
    return cloaked or bool(s["jpeg_quality"] or s["resize"])


def imagesets_for(cloak):
    return ["clean"] + ([f"scraped-{cloak}"] if scrape_emits_images(cloak) else [])


def as_json(obj):
    return json.dumps(obj, sort_keys=True)
