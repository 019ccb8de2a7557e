"""Run as a child process: make products into a catalogue forever, printing each committed id.

``python -m tests.imaging.catalogue_writer STATE_DIR SEED``; the test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from flight.imaging.catalogue import Catalogue, Quota
from flight.imaging.products import Format, ProductJob, make_product


def main() -> None:
    state, seed = Path(sys.argv[1]), int(sys.argv[2])
    cat = Catalogue.open(state / "products.db", state / "products")
    quota = Quota(1 << 40, cat.used_bytes())
    rng = np.random.default_rng(seed)
    i = 0
    while True:
        i += 1
        img = rng.integers(0, 255, (120, 160), dtype=np.uint8)
        fmt = Format.PNG if i % 2 else Format.JPEG
        pid = cat.reserve(float(i), fmt.label, 90, i % 5, {"i": i})
        p = cat.get(pid)
        made = make_product(ProductJob(pid, img, fmt, 90, cat.file(p, "full"), cat.file(p, "thumb"), {"i": i}), quota)
        cat.commit(pid, made.width, made.height, made.full, made.thumb)
        if i % 7 == 0:
            cat.delete(pid - 3)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
