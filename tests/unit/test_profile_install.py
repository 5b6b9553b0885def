"""The profile installer (src/cloakbench/profiles.py, `make profiles`): the project's cluster
profiles become links in the user's Snakemake config folder, where `snakemake --profile <name>`
finds them; anything else already there under that name is never touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloakbench import profiles
from cloakbench.profiles import ProfileInstallError, install_profiles, main
from repo_paths import ROOT

PROFILES = ROOT / "profiles"
NAMES = {"slurm", "slurm-local"}


@pytest.fixture
def config_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home / "snakemake"


def links(folder: Path) -> dict[str, Path]:
    return {p.name: Path(os.readlink(p)) for p in folder.iterdir() if p.is_symlink()}


def test_config_folder_is_where_snakemake_looks(tmp_path, monkeypatch):
    import snakemake.common

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(snakemake.common, "APPDIRS", None)  # Snakemake caches it
    assert profiles.snakemake_config_dir() == tmp_path / "xdg" / "snakemake"
    assert profiles.snakemake_config_dir() == Path(snakemake.common.get_appdirs().user_config_dir)
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profiles.snakemake_config_dir() == tmp_path / "home" / ".config" / "snakemake"


def test_installs_every_cluster_profile_as_a_link_and_is_idempotent(config_home, capsys):
    assert main(["install", "--profiles", str(PROFILES)]) == 0
    assert links(config_home) == {n: (PROFILES / n).resolve() for n in NAMES}  # not `default`
    assert "(installed)" in capsys.readouterr().out
    assert main(["install", "--profiles", str(PROFILES)]) == 0
    out = capsys.readouterr().out
    assert out.count("(already installed)") == len(NAMES) and "(installed)" not in out
    assert links(config_home) == {n: (PROFILES / n).resolve() for n in NAMES}


def test_snakemake_resolves_the_installed_name(config_home, tmp_path, monkeypatch):
    import snakemake.common
    from snakemake.cli import get_profile_dir

    install_profiles(PROFILES)
    monkeypatch.setattr(snakemake.common, "APPDIRS", None)
    monkeypatch.chdir(tmp_path)  # not the repository root: only the config folder has `slurm`
    folder, config = get_profile_dir("slurm")
    assert folder == config_home / "slurm" and config.resolve() == PROFILES / "slurm" / "config.yaml"


@pytest.mark.parametrize("existing", ["folder", "foreign link", "dangling link", "file"])
def test_never_replaces_a_profile_it_did_not_install(existing, config_home, tmp_path, capsys):
    config_home.mkdir(parents=True)
    taken = config_home / "slurm"
    other = tmp_path / "site-profile"
    other.mkdir()
    (other / "config.yaml").write_text("executor: slurm\n")
    if existing == "folder":
        taken.mkdir()
        (taken / "config.yaml").write_text("executor: slurm  # the user's own\n")
    elif existing == "foreign link":
        taken.symlink_to(other)
    elif existing == "dangling link":
        taken.symlink_to(tmp_path / "moved-away")
    else:
        taken.write_text("not a profile\n")
    before = (taken.is_symlink(), os.readlink(taken) if taken.is_symlink() else None,
              sorted(p.name for p in taken.iterdir()) if taken.is_dir() and not taken.is_symlink()
              else None)

    assert main(["install", "--profiles", str(PROFILES)]) == 1
    err = capsys.readouterr().err
    assert f"NOT installed: {taken} already exists" in err and "PROFILE_PREFIX=" in err
    after = (taken.is_symlink(), os.readlink(taken) if taken.is_symlink() else None,
             sorted(p.name for p in taken.iterdir()) if taken.is_dir() and not taken.is_symlink()
             else None)
    assert after == before
    if existing == "folder":
        assert "the user's own" in (taken / "config.yaml").read_text()
    assert (config_home / "slurm-local").resolve() == (PROFILES / "slurm-local").resolve()


def test_prefix_installs_under_other_names(config_home, capsys):
    (config_home / "slurm").mkdir(parents=True)  # the user's own `slurm`
    assert main(["install", "--profiles", str(PROFILES), "--prefix", "cloakbench-"]) == 0
    assert links(config_home) == {f"cloakbench-{n}": (PROFILES / n).resolve() for n in NAMES}
    assert "snakemake --profile cloakbench-slurm" in capsys.readouterr().out
    with pytest.raises(ProfileInstallError, match="cannot contain '/'"):
        install_profiles(PROFILES, prefix="../x")


def test_missing_profiles_folder_is_a_clear_error(config_home, tmp_path, capsys):
    assert main(["install", "--profiles", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert f"no profiles folder at {tmp_path / 'nowhere'}" in err and "repository root" in err
    assert not config_home.exists()


def test_make_profiles_installs_with_the_makefile_prefix(tmp_path):
    from checkout import copy_checkout, make_profiles, user_env

    checkout = copy_checkout(tmp_path / "checkout")
    env = user_env(tmp_path / "xdg")
    first = make_profiles(checkout, env, "PROFILE_PREFIX=cb-")
    assert first.returncode == 0, first.stdout + first.stderr
    assert links(tmp_path / "xdg" / "snakemake") == {
        f"cb-{n}": (checkout / "profiles" / n).resolve() for n in NAMES}
    again = make_profiles(checkout, env, "PROFILE_PREFIX=cb-")
    assert again.returncode == 0 and again.stdout.count("(already installed)") == len(NAMES)
    # without a prefix, a name taken by another profile makes `make profiles` fail, naming it
    (tmp_path / "xdg" / "snakemake" / "slurm").mkdir()
    clash = make_profiles(checkout, env)
    assert clash.returncode != 0 and "slurm already exists" in clash.stderr, clash.stderr
