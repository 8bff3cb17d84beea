"""Single-process numpy baseline for `average`: the per-position average of every input file
in a directory (whitespace-separated integers, the same count in each).

    python3 numpy_average.py <input directory> [output file]

Prints the files, the entries, the overall mean and the seconds spent (reading and parsing
included, interpreter start-up excluded).
"""

import os
import sys
import time

import numpy as np


def main() -> None:
    directory = sys.argv[1]
    names = sorted(n for n in os.listdir(directory) if n.endswith(".txt"))
    started = time.perf_counter()
    total = None
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            values = np.array(f.read().split(), dtype=np.int64)
        total = values if total is None else total + values
    averages = total / len(names)
    seconds = time.perf_counter() - started
    if len(sys.argv) > 2:
        np.savetxt(sys.argv[2], averages[None, :], fmt="%r")
    print(f"{len(names)} files x {len(total)} entries, mean {averages.mean()!r}, {seconds:.3f} s")


if __name__ == "__main__":
    main()
