"""Errors the pipelines' launchers raise before anything runs."""


class OptionsError(ValueError):
    """The flags of a run are invalid; the message lists every problem."""
