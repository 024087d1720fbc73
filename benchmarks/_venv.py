"""What the benchmarks share: logging to stderr, pinned threads, and a venv of their own for the other tool (the
other tools pin package versions that clash with this project's). Standard library only: the workers import it
from inside the other tools' venvs."""
import json, os, platform, shutil, subprocess, sys
from pathlib import Path


def log(*a): print(*a, file=sys.stderr, flush=True)


def fail(msg):
    "A mistake the user can fix: one line on stderr, exit 1."
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def pin_threads(n):
    import torch
    torch.set_num_threads(n)
    try: torch.set_num_interop_threads(1)
    except RuntimeError: pass


def venv_python(venv): return Path(venv)/'bin'/'python'


def torch_wheel(version):
    "A local wheel of this torch version (`2.13.0` or an exact build such as `2.13.0+cpu`) in pip's find-links folders, if there is one."
    tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    dirs = [Path(p) for p in os.environ.get('PIP_FIND_LINKS', '').split() if p and '://' not in p] + [Path('/opt/wheels')]
    for d in dirs:
        for w in sorted(d.glob(f'torch-{version}*-{tag}-*.whl')) if d.is_dir() else []:
            return w
    return None


def versions(py, pkgs):
    "{package: version} of `pkgs` in the interpreter `py`, or None if it cannot say."
    out = subprocess.run([str(py), '-c', 'import json, sys, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))',
                          *pkgs], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def ensure_venv(venv:Path, # the venv's folder
                torch_version:str, # torch to install first, a CPU build (otherwise the tool's unpinned torch pulls CUDA)
                pkg:str, # the tool, e.g. 'circuit-tracer==0.5.0'
                report:tuple, # packages whose versions are returned (and checked by `ok`)
                ok, # ok(versions) -> bool: the venv holds what is wanted
               ) -> dict:
    "Create `venv` with torch, then `pkg`, unless it is already there (or was built by hand and passes `ok`); its package versions."
    venv, marker = Path(venv), Path(venv)/'.mi_repro_bench.json'
    want = dict(pkg=pkg, torch=torch_version, python=platform.python_version())
    py = venv_python(venv)
    if marker.exists() and json.loads(marker.read_text()).get('want') == want and py.exists():
        return json.loads(marker.read_text())['have']
    if py.exists() and ok(have := versions(py, report)):  # built by hand: adopt it
        marker.write_text(json.dumps(dict(want=want, have=have), indent=1)); return have
    if venv.exists(): shutil.rmtree(venv)
    log(f"creating {venv} (once, a few minutes): torch {torch_version} (CPU), then {pkg}")
    def sh(*cmd):
        log('  $ ' + ' '.join(map(str, cmd)))
        r = subprocess.run([str(c) for c in cmd], stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode: fail(f"`{' '.join(map(str, cmd))}` failed (exit {r.returncode}); see the log above; delete {venv} and try again")
    sh(sys.executable, '-m', 'venv', venv)
    pip = [py, '-m', 'pip', 'install', '-qq']  # -qq: errors only (pip warns about every missing local index folder)
    wheel = torch_wheel(torch_version)
    sh(*pip, wheel) if wheel else sh(*pip, f'torch=={torch_version}', '--extra-index-url', 'https://download.pytorch.org/whl/cpu')
    sh(*pip, pkg, f"torch=={versions(py, ('torch',))['torch']}")  # pinning torch again stops pip replacing it
    have = versions(py, report)
    if not ok(have): fail(f"{venv} got {have}, wanted torch {torch_version} and {pkg}; delete it and retry")
    marker.write_text(json.dumps(dict(want=want, have=have), indent=1))
    return have
