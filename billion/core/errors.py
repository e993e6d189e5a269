"""The one exception type the engine raises for problems a person can fix."""


class BillionError(Exception):
    """A problem with input, models or environment; the message names the fix.

    The UI shows it as a warning and keeps running; the CLI prints it and exits 2.
    """
