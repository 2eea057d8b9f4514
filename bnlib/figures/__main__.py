"""``python -m bnlib.figures [--list] [--jobs N] [--out DIR] [NAME ...]``: regenerate the course's figures.

Figures are drawn in ``--jobs`` processes at once (default 2, one per core); experiments that several
figures share are computed once (the result cache makes the others wait, then load it).
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from bnlib.course.data import project_root
from bnlib.course.parallel import process_context
from bnlib.figures import all_figures, write_figure

SLOWEST_FIRST = ("mnist_fig1",)  # started first, so that the other figures fill the second core meanwhile


def main(argv=None):
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(prog="python -m bnlib.figures", description="Regenerate the course's figures.")
    parser.add_argument("names", nargs="*", help="figures to regenerate (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--jobs", type=int, default=2, help="figures drawn at once, in separate processes")
    parser.add_argument("--out", default=str(project_root() / "figures"), help="output folder")
    args = parser.parse_args(argv)
    figures = all_figures()
    if args.list:
        print("\n".join(figures))
        return 0
    unknown = [name for name in args.names if name not in figures]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}; `--list` names the figures")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")
    names = sorted(args.names or figures, key=lambda name: name not in SLOWEST_FIRST)
    out = Path(args.out)
    with tqdm(total=len(names), desc="figures", unit="figure") as bar:
        if args.jobs == 1:
            for name in names:
                bar.write(f"wrote {write_figure(name, out)}")
                bar.update()
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=process_context()) as pool:
                for done in as_completed([pool.submit(write_figure, name, out) for name in names]):
                    bar.write(f"wrote {done.result()}")
                    bar.update()
    return 0


if __name__ == "__main__":
    sys.exit(main())
