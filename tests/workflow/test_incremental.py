"""Incremental reruns, counted job by job from Snakemake's own plan (``snakemake -n``):

(a) changing one cloak's hyperparameter reruns exactly that cloak's perturb shards and what
    depends on them (its scrape, its scraped-picture embeddings, its evaluations, the report),
    and nothing of another cloak or of the uncloaked baseline;
(b) adding an extractor runs only its embeddings, its evaluations and the report;
(c) on an up-to-date tree, a dry run plans zero jobs.

Starts from a copy of the session's tiny run; the test's own config copy adds a second cloak
(`pgd_b`, cheap: one PGD step) so that "another cloak" exists. The test config's `adaptive:`
section (if any) is left out of the copies, so that the expected plans below are complete.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from smk_helpers import TEST_CONFIG, copy_workdir, dry_run, run_snakemake, write_config

pytestmark = pytest.mark.slow

BASE = yaml.safe_load(TEST_CONFIG.read_text())
FIRST = next(iter(BASE["cloaks"]))  # the tiny config's cloak
EXTRACTORS = list(BASE["extractors"])
SHARDS = BASE.get("perturb", {}).get("shards", 2)
NEW_CLOAK = "pgd_b"
ENSEMBLE = BASE["cloaks"][FIRST].get("ensemble") or ["sface"]


def cloak_spec(eps: float) -> dict:
    return {"type": "pgd", "ensemble": list(ENSEMBLE), "release_date": "2023-01-01",
            "params": {"eps": eps, "steps": 1, "step_size": 0.01}}


def config_with(path: Path, *, eps: float = 0.03, extra_extractor: dict | None = None) -> Path:
    cloaks = {**copy.deepcopy(BASE["cloaks"]), NEW_CLOAK: cloak_spec(eps)}
    extractors = {**copy.deepcopy(BASE["extractors"]), **(extra_extractor or {})}
    return write_config(path, drop=["adaptive"], cloaks=cloaks, extractors=extractors)


def key(rule: str, outputs: tuple[str, ...]) -> str:
    return f"{rule}:{outputs[0] if outputs else ''}"


def cloak_jobs(cloak: str, extractors: list[str]) -> set[str]:
    """A cloak's jobs: perturb shards -> scrape -> embeddings of its scraped set -> evaluations."""
    return ({f"perturb:results/cloaked/{cloak}/protected/shard-{k}" for k in range(SHARDS)}
            | {f"scrape:results/scrape/{cloak}/scrape.parquet"}
            | {f"embed:results/embeddings/{e}/scraped-{cloak}.parquet" for e in extractors}
            | {f"evaluate:results/records/{cloak}/{e}.json" for e in extractors})


FINAL = {"report:results/report.md", "all:"}


def plan(work: Path, config: Path) -> list[str]:
    jobs = [key(r, o) for r, o in dry_run(work, configfile=config)]
    assert len(jobs) == len(set(jobs)), jobs
    return jobs


def digest(work: Path, pattern: str) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(work)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(work.glob(pattern)) if p.is_file()}


@pytest.fixture(scope="module")
def two_cloaks(tiny_run, tmp_path_factory):
    """The tiny run plus a second cloak, computed; returns (workdir, config)."""
    tmp = tmp_path_factory.mktemp("incremental")
    work = copy_workdir(tiny_run, tmp / "work")
    config = config_with(tmp / "two_cloaks.yaml")
    jobs = plan(work, config)
    # adding a cloak runs that cloak's jobs and the report, nothing else
    assert set(jobs) == cloak_jobs(NEW_CLOAK, EXTRACTORS) | FINAL, sorted(jobs)
    print(f"\nincremental: adding cloak {NEW_CLOAK} plans {len(jobs)} jobs")
    run_snakemake(work, configfile=config)
    return work, config


def test_c_noop_dry_run_plans_zero_jobs(two_cloaks):
    work, config = two_cloaks
    assert plan(work, config) == []
    print("incremental (c): up-to-date tree plans 0 jobs")


def test_a_changing_one_cloak_reruns_exactly_that_cloak(two_cloaks, tmp_path):
    work, _ = two_cloaks
    work = copy_workdir(work, tmp_path / "work")
    changed = config_with(tmp_path / "changed.yaml", eps=0.02)
    jobs = plan(work, changed)
    expected = cloak_jobs(NEW_CLOAK, EXTRACTORS) | FINAL
    assert set(jobs) == expected, sorted(set(jobs) ^ expected)
    assert not [j for j in jobs if f"/{FIRST}/" in j or f"-{FIRST}." in j or "/none/" in j]
    print(f"incremental (a): changing {NEW_CLOAK}.params.eps plans {len(jobs)} jobs "
          f"({SHARDS} perturb shards)")

    # and running it really touches nothing of the other cloak or of the baseline
    others = {p: v for pat in (f"results/cloaked/{FIRST}/**/*", f"results/scrape/{FIRST}/**/*",
                               f"results/records/{FIRST}/*", "results/records/none/*",
                               f"results/embeddings/*/scraped-{FIRST}.parquet",
                               "results/embeddings/*/clean.parquet")
              for p, v in digest(work, pat).items()}
    assert others
    run_snakemake(work, configfile=changed)
    assert {p: v for pat in others for p, v in digest(work, pat).items()} == others
    assert plan(work, changed) == []


def test_b_adding_an_extractor_runs_only_its_jobs_and_the_report(two_cloaks, tmp_path):
    work, _ = two_cloaks
    # A new pretrained extractor (nothing to train). sface_insightface: not one of the types
    # the dataset card measures (sface, dlib_resnet), which would add that card and its figure.
    spec = {"type": "sface_insightface", "release_date": "2024-01-01"}
    config = config_with(tmp_path / "new_extractor.yaml", extra_extractor={"new_ext": spec})
    jobs = plan(work, config)
    cloaks = [FIRST, NEW_CLOAK]
    expected = ({"embed:results/embeddings/new_ext/clean.parquet"}
                | {f"embed:results/embeddings/new_ext/scraped-{c}.parquet" for c in cloaks}
                | {f"evaluate:results/records/{c}/new_ext.json" for c in ["none", *cloaks]}
                | FINAL)
    assert set(jobs) == expected, sorted(set(jobs) ^ expected)
    print(f"incremental (b): adding extractor new_ext plans {len(jobs)} jobs")


def test_d_switching_the_protocol_reruns_only_the_evaluations(tiny_run, tmp_path):
    # The scrape table is the same under per_user and joint (cloakbench.plan.scrape_table_settings):
    # switching reruns the classifiers, never a perturb shard, a scrape or an embedding.
    work = copy_workdir(tiny_run, tmp_path / "work")
    scrape = {**BASE.get("scrape", {}), "protocol": "joint"}
    jobs = plan(work, write_config(tmp_path / "joint.yaml", scrape=scrape))
    rules = {j.split(":")[0] for j in jobs}
    evaluations = {f"evaluate:results/records/{c}/{e}.json" for c in ["none", FIRST] for e in EXTRACTORS}
    assert evaluations <= set(jobs), sorted(evaluations - set(jobs))
    assert rules <= {"evaluate", "finetune_evaluate", "finetune_adaptive_evaluate", "timetravel", "report", "all"}, \
        sorted(jobs)
    print(f"incremental (d): scrape.protocol per_user -> joint plans {len(jobs)} jobs ({sorted(rules)})")
