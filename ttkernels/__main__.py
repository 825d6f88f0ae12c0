"""Command line: ``python -m ttkernels demo`` (the main job) and ``python -m ttkernels info``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ttkernels", description="TT-LoRA adapters for PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fine-tune with TT-LoRA on the embedded default task", add_help=False)
    sub.add_parser("info", help="print versions, backends and what runs (for bug reports)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "info":
        import ttkernels

        print(json.dumps(ttkernels.info(), indent=2))
        return 0
    from .demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
