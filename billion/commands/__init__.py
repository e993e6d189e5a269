"""CLI subcommands: each module has `register(subparsers)` that adds its parser and sets `func`.

`func(args) -> int` is the exit code. Add a module here and list it in COMMAND_MODULES.
"""

COMMAND_MODULES = ("models", "chat", "arena", "race", "bench", "finetune", "download")
