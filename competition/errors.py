"""The one exception type for mistakes a user can make (bad file, bad flag, missing run).

The CLI turns it into a one-line message and a non-zero exit, as it does an OSError (an output
path that cannot be made, no permission, a full disk); anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and where."""
