"""One module per ``atacdenoise`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
