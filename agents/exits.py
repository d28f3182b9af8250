"""The process exit codes of the worker and of every `engagement` command.

Documented in `engagement --help` and docs/cli.md. They live here, not in the command line's
package (engagement_cli), because the worker exits with them too and agents/ never imports the
command line.
"""

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed (e.g. a server did not answer)
EXIT_USAGE = 2  # bad flags or arguments (argparse's own convention)
EXIT_CONFIG = 3  # the configuration file is missing, unreadable or invalid
EXIT_INPUT = 4  # an input file is missing or unreadable
EXIT_INTERRUPTED = 130
