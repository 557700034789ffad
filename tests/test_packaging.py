"""One import name: the built wheel installs only `clbounds`, and a user's own `experiments/`
and `theory/` packages neither shadow it nor are shadowed by it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("theory", "bounds", "experiments", "figures")


def _declared_packages() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_pyproject_lists_every_package_folder():
    found = {"clbounds"} | {
        "clbounds." + ".".join(p.parent.relative_to(REPO).parts)
        for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py") if "__pycache__" not in p.parts
    }
    assert _declared_packages() == found


def test_import_clbounds_is_light_and_reaches_every_public_module():
    code = (
        "import sys, clbounds\n"
        "assert 'torch' not in sys.modules, 'import clbounds imported torch'\n"
        "import clbounds.theory.losses, clbounds.bounds.huang2023, clbounds.experiments.cli, clbounds.figures.report\n"
        "assert clbounds.theory.losses.info_nce.__module__ == 'clbounds.theory.losses'\n"
        "print(clbounds.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def _build_wheel(tmp_path: Path) -> Path:
    """Builds the wheel from a copy of the tracked sources (no build files land in the repo)."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = dist.glob("clbounds-*.whl")
    return wheel


def _user_project(root: Path) -> Path:
    """A directory that holds its own `experiments/` and `theory/` packages, as a researcher's might."""
    for name in ("experiments", "theory"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    return root


@pytest.mark.slow
def test_built_wheel_installs_one_name_and_runs_verify_beside_a_users_packages(tmp_path):
    wheel = _build_wheel(tmp_path)
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"clbounds", wheel.name.split("-py3")[0] + ".dist-info"}, tops

    # A fresh venv with only the wheel; the dependencies come from this environment's
    # site-packages as a plain path entry (its .pth files, the editable install among them,
    # are not processed there).
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = sorted(p.name for p in site.iterdir() if p.name not in ("deps.pth", "__pycache__") and not p.name.startswith("_"))
    assert [n for n in installed if not n.startswith("clbounds")] == [], installed

    user = _user_project(tmp_path / "notebook")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLBOUNDS_HOME")}
    check = (
        "import clbounds, experiments, theory, clbounds.experiments.cli\n"
        "assert experiments.OWNER == 'user experiments' and theory.OWNER == 'user theory'\n"
        "assert clbounds.experiments.__file__.startswith(" + repr(str(site)) + "), clbounds.experiments.__file__\n"
        "print('ok')\n"
    )
    out = subprocess.run([str(python), "-c", check], cwd=user, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

    # `import theory` outside the repository fails: nothing generic is installed.
    out = subprocess.run([str(python), "-c", "import theory"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0 and "No module named 'theory'" in out.stderr

    # The main job, from the user's directory (on sys.path first, as in a notebook), shrunk.
    small = ["data.n_train=200", "data.n_test=100", "optim.epochs=1", "optim.batch_size=64", "measure.n_samples=32", "measure.batch_size=16",
             "measure.views=2", "measure.sigma_per_class=4", "measure.hessian_iters=2", "measure.trace_samples=1", "measure.sharpness_steps=1", "measure.attack_steps=1"]
    out = subprocess.run([str(python), "-m", "clbounds.experiments.cli", "--store", str(tmp_path / "store"), "verify", "--preset", "quick", *small],
                         cwd=user, capture_output=True, text=True, env=env, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "store" / "quick" / "report.html").is_file()
    out = subprocess.run([str(venv / "bin" / "clbounds"), "--store", str(tmp_path / "store"), "runs"], cwd=user, capture_output=True, text=True, env=env, timeout=120)
    rows = out.stdout.splitlines()[1:]
    # nine distinct runs: with optim.epochs=1 for all, the epochs-3 item is the base run
    assert out.returncode == 0 and len(rows) == 9 and all(" done " in r for r in rows), out.stdout
