"""The ``ecgproto`` console script: argument parsing over library functions.

Each sub-command lives in ``ecgproto/commands/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Every command takes
``--config`` (YAML under ``configs/``), ``--set key.path=value`` overrides and ``--out``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pickle
import sys
from collections.abc import Sequence

from ecgproto import __version__
from ecgproto.errors import UserError

# name -> one-line help; each command is ecgproto/commands/<name>.py
COMMANDS: dict[str, str] = {
    "synth": "write a synthetic PTB-XL- and MIMIC-IV-shaped archive (WFDB + CSV)",
    "prepare": "read, validate, filter and cache an archive as a memory-mapped array",
    "train": "staged training of the three prototype branches and the fusion head",
    "project": "project prototypes onto training ECG segments (stored with provenance)",
    "evaluate": "dataset-level metrics with bootstrap CIs and an HTML report",
    "score": "batch-score a WFDB folder, manifest, PTB-XL or MIMIC-IV-ECG archive",
    "merge": "merge the --shard i/n outputs of one `ecgproto score` job (checked complete and disjoint)",
    "explain": "case-based explanations (12-lead plots + HTML) for given records",
    "prototypes": "render the gallery of projected prototypes",
    "phenotype": "prototype-to-phecode association report on a MIMIC-IV cohort",
    "demo": "run the whole pipeline on the embedded synthetic archive",
}


def build_parser() -> argparse.ArgumentParser:
    """Parser with one sub-parser per command.

    Command modules import only the standard library and ``ecgproto.config`` at module level
    (torch, scipy and pandas inside ``run``), so ``--help`` answers without loading them
    (``tests/test_cli.py`` checks this).
    """
    parser = argparse.ArgumentParser(
        prog="ecgproto",
        description="Interpretable, case-based 12-lead ECG classification (ProtoECGNet-style).",
    )
    parser.add_argument("--version", action="version", version=f"ecgproto {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="YAML config file (see configs/); defaults apply when omitted")
        p.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override one config value, e.g. --set train.batch_size=16 (repeatable)",
        )
        importlib.import_module(f"ecgproto.commands.{name}").add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    User errors (:class:`~ecgproto.errors.UserError`, operating-system errors, a refused
    unsafe file, out of memory) print one line and return 1; any other exception is a bug
    and propagates with its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"ecgproto.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"ecgproto {args.command}: error: {exc}", file=sys.stderr)
    except pickle.UnpicklingError as exc:
        print(f"ecgproto {args.command}: error: refused to load a file that holds more than plain tensors and data "
              f"(possibly malicious, or not written by ecgproto): {_first_line(exc)}", file=sys.stderr)
    except MemoryError:
        print(f"ecgproto {args.command}: error: out of memory; use smaller batches/models or a larger machine",
              file=sys.stderr)
    except OSError as exc:  # disk full, permission denied, a folder where a file is expected, ...
        print(f"ecgproto {args.command}: error: {_os_error_text(exc, args.command)}", file=sys.stderr)
    return 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error_text(exc: OSError, command: str) -> str:
    """One line for an operating-system error, with what to do for the common ones."""
    where = f" ({exc.filename})" if exc.filename else ""
    text = f"{exc.strerror or _first_line(exc)}{where}"
    if exc.errno == errno.ENOSPC:
        hint = " with --resume (the committed chunks are kept)" if command == "score" else ""
        return f"{text}: the disk is full; free space and rerun{hint}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{text}: not writable/readable by this user; choose another path"
    return text


if __name__ == "__main__":
    sys.exit(main())
