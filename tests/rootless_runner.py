"""Run notebooks in sandboxes from an ordinary user's process: the rootless mode's test driver.

Reads a JSON request on stdin, {"runs": [{"cells": [...], "slot": 0, "limits": {...}}, ...],
"side_by_side": false}, runs each notebook with `sandbox.run` (all at once when side_by_side)
and prints {"mode", "available", "euid", "results": [...]} as JSON, each result being the
RunResult's fields with the notebook replaced by the text each cell printed.
"""
import dataclasses
import json
import sys
import tempfile
import threading
from pathlib import Path

from nbformat.v4 import new_code_cell, new_notebook

from deepngrams import sandbox


def run_one(spec: dict, scratch: Path) -> dict:
    nb = new_notebook(cells=[new_code_cell(s) for s in spec["cells"]])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    limits = sandbox.Limits(**spec.get("limits", {}))
    result = sandbox.run({"notebook": nb, "probes": {}, "cell_timeout": limits.cell_timeout}, scratch,
                         spec.get("slot", 0), limits)
    cells = (result.notebook or {}).get("cells", [])
    out = dataclasses.asdict(result)
    out["notebook"] = result.notebook is not None
    out["texts"] = ["".join(o.get("text", "") + str(o.get("evalue", "")) + str(o.get("data", {}).get("text/plain", ""))
                            for o in c.get("outputs", [])) for c in cells]
    return out


def main() -> None:
    request = json.load(sys.stdin)
    scratch = Path(tempfile.mkdtemp())
    runs = request["runs"]
    results: list = [None] * len(runs)

    def task(i: int) -> None:
        results[i] = run_one(runs[i], scratch / str(i))

    if request.get("side_by_side"):
        threads = [threading.Thread(target=task, args=(i,)) for i in range(len(runs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(len(runs)):
            task(i)
    import os
    print(json.dumps({"mode": sandbox.mode(), "available": sandbox.available(), "euid": os.geteuid(),
                      "results": results}))


if __name__ == "__main__":
    main()
