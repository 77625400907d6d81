"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad input, missing data); never a bug."""


class SpecError(UserError, ValueError):
    """An invalid design point: names the field, the value and what is allowed."""
