"""One module per `explorer` subcommand, each with `register(subparsers)`."""

# The --trial help of train and calibrate (explorer.selection reads the selector; kept here so
# `explorer --help` imports no storage code).
SELECTOR_HELP = ("best (its most accurate front trial), smallest (the smallest front trial within seed noise "
                 "of the best; needs a calibration) or a trial number N")
