"""CLI subcommands: each module has `register(subparsers)` that adds its parser and sets `func`.

`func(args, ctx) -> int` is the exit code; ctx is the billion.context.AppContext that
billion.cli builds for the command. Add a module here and list it in COMMAND_MODULES.
"""

COMMAND_MODULES = ("models", "chat", "arena", "race", "bench", "finetune", "download")
