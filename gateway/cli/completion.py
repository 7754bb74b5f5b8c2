"""``klarna-gateway completion bash|zsh``: a shell completion script, generated from the
parser itself (``shtab``), so it always knows every command and flag of this version.

Install (bash): ``klarna-gateway completion bash > /etc/bash_completion.d/klarna-gateway``;
(zsh): ``klarna-gateway completion zsh > "${fpath[1]}/_klarna-gateway"``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

SHELLS = ("bash", "zsh")


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    from gateway.cli import build_parser

    parser = build_parser()
    script = shtab.complete(parser, shell=args.shell)
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script for every command and flag of this version. "
                    "bash: `klarna-gateway completion bash > "
                    "/etc/bash_completion.d/klarna-gateway` (or `source <(klarna-gateway "
                    "completion bash)` in ~/.bashrc); zsh: `klarna-gateway completion zsh > "
                    "\"${fpath[1]}/_klarna-gateway\"`, then start a new shell.")
    s.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh")
    s.set_defaults(func=cmd_completion)
