"""Execute jupytext percent-format notebooks (`make notebooks`): NAME.py -> OUT/NAME.ipynb with outputs.

Uses jupytext to read and nbclient to run, in this interpreter's own kernel, with the notebook's folder as the
working directory. A failing cell fails the run, naming the notebook.
    python notebooks/execute.py notebooks/0.01-corpus-exploration.py ... --out build/notebooks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def execute(path: Path, out_dir: Path, timeout: int = 600) -> Path:
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    out = out_dir / (path.stem + ".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, out)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/notebooks"))
    args = parser.parse_args(argv)
    for path in args.notebooks:
        start = time.perf_counter()
        try:
            out = execute(path, args.out)
        except Exception as err:  # report which notebook failed, with the cell's error, and stop
            print(f"{path}: failed\n{err}", file=sys.stderr)
            return 1
        print(f"{path} -> {out} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
